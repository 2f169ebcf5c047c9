#!/usr/bin/env node
// Checks the wasm32-unknown-unknown build of rotauth from a plain WebAssembly host:
// the module imports nothing (it instantiates with an empty import object), its tokens
// match the known-answer vectors in tests/vectors/tokens.txt, and sign-in and decide
// behave as the decision table says. Prints `N passed, N failed`; exits non-zero on any failure.
//
// Usage: node wasm/check.mjs [path/to/rotauth_wasm.wasm]
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { webcrypto } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wasmPath =
  process.argv[2] ?? join(here, 'target/wasm32-unknown-unknown/release/rotauth_wasm.wasm');
const vectorsPath = join(here, '../tests/vectors/tokens.txt');

// Buffer layout and result encoding: see wasm/src/lib.rs.
const KEY = 0;
const RECORD = 160;
const INPUT = 256;
const TOKEN_OUT = 384;
const RECORD_LEN = 75;
const TOKEN_TEXT_LEN = 55;
const KIND = ['accept', 'rotate', 'batch_reuse', 'reissue', 'reject'];
const REASON = { 2: 'malformed', 3: 'unknown_key', 4: 'forged', 5: 'expired', 7: 'replayed' };
const FORCE_ROTATION = 1;
const RECOVER = 2;
const REVOKE_ON_REPLAY = 4;

let passed = 0;
let failed = 0;
function check(name, body) {
  try {
    body();
    passed += 1;
    console.log(`test ${name} ... ok`);
  } catch (error) {
    failed += 1;
    console.log(`test ${name} ... FAILED\n${error?.stack ?? error}`);
  }
}

const module = new WebAssembly.Module(readFileSync(wasmPath));
check('module_has_no_imports', () => {
  assert.equal(WebAssembly.Module.imports(module).length, 0);
});
const { exports } = new WebAssembly.Instance(module, {});
const io = () => new Uint8Array(exports.memory.buffer, exports.io_buffer(), 512);
const hex = (text) => Uint8Array.from(text.match(/../g) ?? [], (b) => parseInt(b, 16));
const ascii = new TextDecoder('ascii');

function putKey(key) {
  io().set(key, KEY);
  return key.length;
}
function tokenOut() {
  return ascii.decode(io().slice(TOKEN_OUT, TOKEN_OUT + TOKEN_TEXT_LEN));
}
function record() {
  return io().slice(RECORD, RECORD + RECORD_LEN);
}
function putRecord(bytes) {
  io().set(bytes, RECORD);
}
/** The record layout of `Session::encode`, written by hand: big-endian integers. */
function encodeRecord({ clientId, seed, keyId, generation, created, rotated, expires }) {
  const out = new Uint8Array(RECORD_LEN);
  const view = new DataView(out.buffer);
  out[0] = 1;
  out.set(clientId, 1);
  out.set(seed, 17);
  out[33] = keyId;
  view.setBigUint64(34, generation);
  view.setBigUint64(42, created);
  view.setBigUint64(50, rotated);
  view.setBigUint64(58, expires);
  out[66] = 0;
  view.setBigUint64(67, 0n);
  return out;
}
function generationOf(bytes) {
  return new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(34);
}
function signIn(key, keyId, entropy, now) {
  const keyLen = putKey(key);
  io().set(entropy, INPUT);
  const status = exports.sign_in(keyLen, keyId, now);
  assert.equal(status, 0, `sign_in returned ${status}`);
  return { record: record(), token: tokenOut() };
}
/** Decides `token` against `session` at `now`; returns the unpacked result. */
function decide(key, keyId, session, token, now, flags = 0) {
  const keyLen = putKey(key);
  putRecord(session);
  const text = new TextEncoder().encode(token);
  io().set(text, INPUT);
  const r = exports.decide(keyLen, keyId, text.length, now, flags);
  assert.ok(r >= 0, `decide returned ${r}`);
  return {
    kind: KIND[r & 0xf],
    record: r & 0x10 ? record() : null,
    token: r & 0x20 ? tokenOut() : null,
    revoke: Boolean(r & 0x40),
    reason: r & 0xf ? REASON[(r >> 8) & 0xff] ?? (r >> 8) & 0xff : undefined,
    behind: (r >> 16) & 0xff,
  };
}

const vectors = readFileSync(vectorsPath, 'utf8')
  .split('\n')
  .filter((line) => line.trim() && !line.startsWith('#'))
  .map((line) => {
    const [key, keyId, clientId, seed, generation, token] = line.trim().split(/\s+/);
    return {
      key: hex(key),
      keyId: Number(keyId),
      clientId: hex(clientId),
      seed: hex(seed),
      generation: BigInt(generation),
      token,
    };
  });

check('vectors_file_parses', () => assert.ok(vectors.length >= 7));
for (const [i, v] of vectors.entries()) {
  check(`known_answer_vector_${i}_current_token`, () => {
    const keyLen = putKey(v.key);
    putRecord(encodeRecord({ ...v, created: 0n, rotated: 0n, expires: 2n ** 64n - 1n }));
    assert.equal(exports.current_token(keyLen, v.keyId), 0);
    assert.equal(tokenOut(), v.token);
  });
  if (v.generation === 0n) {
    check(`known_answer_vector_${i}_sign_in`, () => {
      const entropy = new Uint8Array([...v.clientId, ...v.seed]);
      const { record: rec, token } = signIn(v.key, v.keyId, entropy, 1_700_000_000_000n);
      assert.equal(token, v.token);
      assert.deepEqual(rec.slice(1, 17), v.clientId);
    });
  }
}

const key = new Uint8Array(32).fill(0x42);
const t0 = 1_700_000_000_000n;
const fresh = () => signIn(key, 1, webcrypto.getRandomValues(new Uint8Array(32)), t0);

check('batch_then_rotate_then_replay', () => {
  const s = fresh();
  const batch = decide(key, 1, s.record, s.token, t0 + 4_999n);
  assert.deepEqual([batch.kind, batch.record, batch.token], ['batch_reuse', null, null]);
  const rotated = decide(key, 1, s.record, s.token, t0 + 5_000n);
  assert.equal(rotated.kind, 'rotate');
  assert.equal(generationOf(rotated.record), 1n);
  assert.notEqual(rotated.token, s.token);
  const late = decide(key, 1, rotated.record, s.token, t0 + 10_000n);
  assert.deepEqual([late.kind, late.reason, late.behind, late.revoke], ['reject', 'replayed', 1, false]);
  const inWindow = decide(key, 1, rotated.record, s.token, t0 + 9_999n);
  assert.equal(inWindow.kind, 'batch_reuse');
  const next = decide(key, 1, rotated.record, rotated.token, t0 + 10_000n);
  assert.equal(next.kind, 'rotate');
  assert.equal(generationOf(next.record), 2n);
});

check('force_rotation_and_revoke_policy', () => {
  const s = fresh();
  const forced = decide(key, 1, s.record, s.token, t0 + 1n, FORCE_ROTATION);
  assert.equal(forced.kind, 'rotate');
  const replay = decide(key, 1, forced.record, s.token, t0 + 10_000n, REVOKE_ON_REPLAY);
  assert.deepEqual([replay.reason, replay.revoke], ['replayed', true]);
});

check('recover_mode_reissues_the_lost_token', () => {
  const s = fresh();
  const rotated = decide(key, 1, s.record, s.token, t0 + 5_000n, RECOVER);
  const reissued = decide(key, 1, rotated.record, s.token, t0 + 10_000n, RECOVER);
  assert.deepEqual([reissued.kind, reissued.token], ['reissue', rotated.token]);
  // The first reissue records itself (a recovery is granted once); the next stores nothing.
  assert.notEqual(reissued.record, null);
  const again = decide(key, 1, reissued.record, s.token, t0 + 10_001n, RECOVER);
  assert.deepEqual([again.kind, again.token, again.record], ['reissue', rotated.token, null]);
});

check('force_rotation_rotates_a_previous_token_in_the_window', () => {
  const s = fresh();
  const rotated = decide(key, 1, s.record, s.token, t0 + 5_000n);
  const forced = decide(key, 1, rotated.record, s.token, t0 + 5_001n, FORCE_ROTATION);
  assert.equal(forced.kind, 'rotate');
  assert.equal(generationOf(forced.record), 2n);
});

check('bad_tokens_are_refused', () => {
  const s = fresh();
  const other = fresh();
  assert.equal(decide(key, 1, s.record, 'abc', t0).reason, 'malformed');
  assert.equal(decide(key, 1, s.record, '!'.repeat(55), t0).reason, 'malformed');
  assert.equal(decide(key, 1, s.record, other.token, t0).reason, 'forged');
  const wrongKey = decide(new Uint8Array(32).fill(7), 2, s.record, s.token, t0);
  assert.equal(wrongKey.reason, 'unknown_key');
  const expired = decide(key, 1, s.record, s.token, t0 + 14n * 86_400_000n);
  assert.equal(expired.reason, 'expired');
});

check('bad_calls_return_negative', () => {
  putKey(key);
  assert.equal(exports.sign_in(31, 1, t0), -1);
  assert.equal(exports.sign_in(32, 256, t0), -1);
  putRecord(new Uint8Array(RECORD_LEN));
  assert.equal(exports.current_token(32, 1), -2);
  const s = fresh();
  putRecord(s.record);
  assert.equal(exports.decide(32, 1, 129, t0, 0), -3);
});

console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
