// rotauth for Node, Deno, Bun and browsers: the WebAssembly module travels inside this
// package as base64 (`wasm-inline.js`, made by `wasm/build.sh`), so no file or network read
// is needed and any bundler takes it as plain JavaScript. It is compiled once, on the
// first `createRotator`.
import { instantiate } from './core.js';
import { wasmBase64 } from './wasm-inline.js';

export * from './core.js';

let compiled;

function compile() {
  if (compiled === undefined) {
    const text = atob(wasmBase64);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i += 1) bytes[i] = text.charCodeAt(i);
    compiled = WebAssembly.compile(bytes);
  }
  return compiled;
}

/** Makes a rotator from keys and a policy. See `index.d.ts`. */
export async function createRotator(options) {
  return instantiate(await compile(), options);
}
