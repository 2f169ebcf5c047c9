// The suite in Cloudflare's workerd (the `workerd` npm package): bundles test/workerd/
// worker.js with esbuild under the `workerd` export condition (so the package imports its
// `.wasm` as a module, as on Cloudflare), serves it on 127.0.0.1, runs the 'api' tests
// inside workerd one request each, and the 'http' tests from Node against the example app
// over HTTP. Exits non-zero on a failure.
import { spawn, execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import * as rotauth from 'rotauth';
import * as hono from 'rotauth/hono';
import { KEY_HEX, ORIGIN, PASSWORD_ITERATIONS, WINDOW_MS } from './app-config.js';
import { runAll, suite } from './suite.js';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const out = here('../.test-out/workerd/');
const workerd = here('../node_modules/.bin/workerd');
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [here('workerd/worker.js')],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  conditions: ['workerd', 'worker'],
  external: ['*.wasm'],
  outfile: `${out}worker.js`,
  logLevel: 'warning',
});
copyFileSync(here('../lib/rotauth.wasm'), `${out}rotauth.wasm`);
copyFileSync(here('../../../tests/vectors/tokens.txt'), `${out}tokens.txt`);
writeFileSync(
  `${out}config.capnp`,
  `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "main", worker = .worker)],
  sockets = [(name = "http", address = "127.0.0.1:0", http = (), service = "main")],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
    (name = "rotauth.wasm", wasm = embed "rotauth.wasm"),
  ],
  compatibilityDate = "2025-09-01",
  bindings = [
    (name = "ROTAUTH_KEY", text = "${KEY_HEX}"),
    (name = "BATCH_WINDOW_MS", text = "${WINDOW_MS}"),
    (name = "PASSWORD_ITERATIONS", text = "${PASSWORD_ITERATIONS}"),
    (name = "ORIGINS", text = "${ORIGIN}"),
    (name = "VECTORS", text = embed "tokens.txt"),
  ],
);
`,
);

const port = await new Promise((resolve) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const { port: free } = probe.address();
    probe.close(() => resolve(free));
  });
});
const version = execFileSync(workerd, ['--version'], { encoding: 'utf8' }).trim();
const child = spawn(workerd, ['serve', `${out}config.capnp`, '--socket-addr', `http=127.0.0.1:${port}`], { stdio: ['ignore', 'inherit', 'inherit'] });
const base = `http://127.0.0.1:${port}`;

let result = { passed: 0, failed: 1 };
try {
  let list;
  for (let attempt = 0; list === undefined; attempt += 1) {
    try {
      list = await (await fetch(`${base}/__suite/list`)).json();
    } catch (error) {
      if (attempt >= 100 || child.exitCode !== null) throw new Error(`workerd did not start: ${error}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const local = suite({ rotauth, hono, vectors: '', fetch: (path, init) => fetch(`${base}${path}`, init) });
  const names = (tests) => tests.map(({ name, kind }) => `${kind} ${name}`).join('\n');
  if (names(local) !== names(list)) throw new Error('the suite in workerd differs from the one in Node');
  const tests = local.map(({ name, kind, fn }) =>
    kind === 'http'
      ? { name, fn }
      : {
          name,
          fn: async () => {
            const response = await fetch(`${base}/__suite/run?name=${encodeURIComponent(name)}`);
            const { ok, error } = await response.json();
            if (!ok) throw new Error(`in workerd: ${error}`);
          },
        },
  );
  console.log(`# ${version}, serving ${base}`);
  result = await runAll(tests, (line) => console.log(/^\d+ passed, \d+ failed(, \d+ skipped)?$/.test(line) ? `workerd: ${line}` : line));
} finally {
  child.kill('SIGTERM');
}
process.exitCode = result.failed === 0 && result.passed > 0 ? 0 : 1;
