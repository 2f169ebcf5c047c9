// Runs before `npm test`: checks that the dev dependencies are installed, and builds the WebAssembly module into lib/ when it is missing or
// older than the Rust sources it is built from (the core's `src/` and the module's own),
// so that a fresh checkout, or a change to the core, is tested as it is. The build needs
// Rust with the wasm32-unknown-unknown target and binaryen's wasm-opt; without them it
// says so in one line and the tests do not run.
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const built = here('../lib/wasm-inline.js');

function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.rs')) {
      latest = Math.max(latest, statSync(`${entry.parentPath}/${entry.name}`).mtimeMs);
    }
  }
  return latest;
}

try {
  statSync(here('../node_modules/hono/package.json'));
} catch {
  console.error('npm test: the example app needs its dev dependencies: run `npm ci` first');
  process.exit(1);
}

let builtAt = 0;
try {
  builtAt = statSync(built).mtimeMs;
} catch {
  // Not built yet.
}
const sources = Math.max(newest(here('../../src')), newest(here('../../../src')));
if (builtAt < sources) {
  console.log(builtAt === 0 ? '# building the module (lib/ has none yet)' : '# rebuilding the module (the Rust sources changed)');
  try {
    execFileSync('bash', [here('../../build.sh')], { stdio: 'inherit' });
  } catch {
    console.error(
      'npm test: the module could not be built; it needs Rust (`rustup target add wasm32-unknown-unknown`) and wasm-opt (`apt-get install binaryen`), then `npm run build`',
    );
    process.exit(1);
  }
}
