// The suite in Deno and Bun (any runtime with `node:fs` and bare-specifier resolution from
// node_modules): `deno run --allow-read test/run.js`, `bun test/run.js`. Exits non-zero
// on a failure.
import { readFileSync } from 'node:fs';
import * as rotauth from 'rotauth';
import * as hono from 'rotauth/hono';
import * as example from '../example/app.js';
import { inProcessEnv } from './app-config.js';
import { runAll, suite } from './suite.js';

const runtime = globalThis.Deno ? `deno ${Deno.version.deno}` : globalThis.Bun ? `bun ${Bun.version}` : 'unknown runtime';
const vectors = readFileSync(new URL('../../../tests/vectors/tokens.txt', import.meta.url), 'utf8');
const env = await inProcessEnv({ rotauth, hono, example, vectors });
console.log(`# ${runtime}`);
const { failed } = await runAll(suite(env), (line) => console.log(/^\d+ passed, \d+ failed(, \d+ skipped)?$/.test(line) ? `${runtime.split(' ')[0]}: ${line}` : line));
if (failed > 0) {
  if (globalThis.Deno) Deno.exit(1);
  process.exit(1);
}
