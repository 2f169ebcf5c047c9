// The npm package's benchmark, in Node, in one run: `decide` on the current token inside
// the batch window (batch reuse) and after it (rotate), against Node's own one-shot
// `crypto.createHmac('sha256', key).update(55 bytes).digest()` (what a hand-written
// JavaScript implementation would pay for its one HMAC) and against the native crate's
// time for the same decisions (wasm/bench-native, built and run by this script). Also:
// what re-making the rotator on every call would add, and the sizes.
//
// Run from wasm/js after `bash ../build.sh`: `node bench/bench.mjs`. `--quick` runs a few
// iterations of each case (no native build): a smoke test that the benchmark runs.
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRotator } from 'rotauth';

const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 1 : 15;
const ITERATIONS = quick ? 1_000 : 50_000;
const T0 = 1_700_000_000_000;
const KEY = new Uint8Array(32).fill(0x42);
const here = (path) => fileURLToPath(new URL(path, import.meta.url));

let sink = 0;
/** CPU time of the process (user + system), in ns: other processes on a shared machine do not inflate it. */
function cpuNs() {
  const { user, system } = process.cpuUsage();
  return (user + system) * 1_000;
}

const rotator = await createRotator({ keys: [{ id: 1, key: KEY }] });
const { record, token } = rotator.signIn(T0, new Uint8Array(32).fill(7));
const kindOf = (now) => rotator.decide(record, token, now).kind;
if (kindOf(T0 + 1) !== 'batch_reuse' || kindOf(T0 + 5_000) !== 'rotate') throw new Error('unexpected decisions');

const message = Buffer.alloc(55, 0x5a);
const hmacKey = Buffer.from(KEY);
// Re-making the rotator per call instead of keeping it: the module's `init` (key schedule
// and policy) alone, on a bare instance of the same module.
const { instance } = await WebAssembly.instantiate(readFileSync(here('../lib/rotauth.wasm')), {});
const io = new Uint8Array(instance.exports.memory.buffer, instance.exports.io_buffer(), 640);

const HMAC = "node crypto.createHmac('sha256', key), 55 bytes, one-shot";
const BATCH = 'decide, current token in the window (batch reuse)';
const ROTATE = 'decide, current token after the window (rotate)';
const cases = {
  [BATCH]: () => rotator.decide(record, token, T0 + 1).kind.length,
  [ROTATE]: () => rotator.decide(record, token, T0 + 5_000).token.length,
  [HMAC]: () => createHmac('sha256', hmacKey).update(message).digest()[0],
  're-making the rotator (module init: key schedule + policy)': () => {
    io.set(KEY, 0);
    return instance.exports.init(0, 5_000n, 1_209_600_000n, 0n, 32, 1);
  },
};
// Round-robin: every round times each case once, so a slow spell of the machine hits all
// of them; ratios are taken within a round, then the median across rounds.
const times = Object.fromEntries(Object.keys(cases).map((name) => [name, []]));
for (const run of Object.values(cases)) for (let i = 0; i < 10_000; i += 1) sink ^= run();
for (let r = 0; r < ROUNDS; r += 1) {
  for (const [name, run] of Object.entries(cases)) {
    const start = cpuNs();
    for (let i = 0; i < ITERATIONS; i += 1) sink ^= run();
    times[name].push((cpuNs() - start) / ITERATIONS);
  }
}
const median = (values) => values.slice().sort((a, b) => a - b)[Math.floor(values.length / 2)];
const ratio = (a, b) => median(times[a].map((t, r) => t / times[b][r]));
const results = Object.fromEntries(Object.entries(times).map(([name, values]) => [name, median(values)]));

let native;
if (!quick) {
  const crate = here('../../bench-native/');
  execFileSync('cargo', ['build', '--quiet', '--release'], { cwd: crate, stdio: 'inherit' });
  native = JSON.parse(execFileSync(`${crate}target/release/rotauth-bench-native`, { encoding: 'utf8' }));
  results['native crate, batch reuse (rotauth::Rotator::decide)'] = native.batch_reuse_ns;
  results['native crate, rotate'] = native.rotate_ns;
}

const batch = results[BATCH];
const rotate = results[ROTATE];
console.log(`node ${process.version}, ${ROUNDS} rounds of ${ITERATIONS}, median CPU ns per call`);
for (const [name, ns] of Object.entries(results)) console.log(`${ns.toFixed(0).padStart(8)} ns  ${name}`);
console.log('ratios');
console.log(`${ratio(BATCH, HMAC).toFixed(2).padStart(8)}    batch-reuse decide / node one-shot HMAC`);
console.log(`${ratio(ROTATE, HMAC).toFixed(2).padStart(8)}    rotating decide / node one-shot HMAC`);
// A rotation checks the presented token and derives the next one: two HMACs wherever it is
// written, so a hand-written JavaScript rotation pays two one-shot HMACs.
console.log(`${(ratio(ROTATE, HMAC) / 2).toFixed(2).padStart(8)}    rotating decide / two node one-shot HMACs (verify + derive)`);
if (native) {
  console.log(`${(batch / native.batch_reuse_ns).toFixed(2).padStart(8)}    batch-reuse decide / native`);
  console.log(`${(rotate / native.rotate_ns).toFixed(2).padStart(8)}    rotating decide / native`);
}
const wasmBytes = readFileSync(here('../lib/rotauth.wasm')).length;
console.log(`module: ${wasmBytes} bytes (${(wasmBytes / 1024).toFixed(1)} KiB)`);
if (sink === 0.5) console.log(sink);
