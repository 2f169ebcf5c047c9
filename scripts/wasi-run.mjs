#!/usr/bin/env node
// Cargo runner for wasm32-wasip1: runs a .wasm test binary under Node's built-in WASI
// (`node:wasi`, preview1), forwarding its arguments, environment and exit status.
//
// Usage (as cargo invokes it): node scripts/wasi-run.mjs BINARY.wasm [ARGS...]
//
// The guest sees the current directory (the package root, where cargo runs tests) as `/`
// and as its working directory, so relative paths such as `tests/vectors/tokens.txt` or
// proptest's regression files resolve as they do natively. Nothing else is visible.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import process from 'node:process';

// `node:wasi` warns that it is experimental once per test binary; keep every other warning.
process.removeAllListeners('warning');
process.on('warning', (warning) => {
  if (warning.name !== 'ExperimentalWarning') console.warn(warning);
});
const { WASI } = await import('node:wasi');

const [wasmPath, ...args] = process.argv.slice(2);
if (!wasmPath) {
  console.error('usage: wasi-run.mjs BINARY.wasm [ARGS...]');
  process.exit(2);
}

const wasi = new WASI({
  version: 'preview1',
  args: [basename(wasmPath), ...args],
  env: process.env,
  preopens: { '/': process.cwd() },
  returnOnExit: true,
});

let status;
try {
  const module = await WebAssembly.compile(await readFile(wasmPath));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  status = wasi.start(instance);
} catch (error) {
  // A trap: on wasm32-wasip1 a panic aborts, which Node reports as an `unreachable` trap.
  // Exit as a native test binary that aborted would, so cargo reports a failure.
  console.error(`wasi-run: ${basename(wasmPath)} trapped: ${error?.message ?? error}`);
  status = 134;
}
process.exitCode = status;
