// rotauth for Cloudflare Workers and workerd (the `workerd` export condition): these
// runtimes refuse to compile WebAssembly from bytes at run time, so the module is imported
// as a `.wasm` module, which wrangler and workerd hand over already compiled.
import { instantiate } from './core.js';
import module from './rotauth.wasm';

export * from './core.js';

/** Makes a rotator from keys and a policy. See `index.d.ts`. */
export async function createRotator(options) {
  return instantiate(module, options);
}
