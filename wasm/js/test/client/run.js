// The client's suite in Deno and Bun: `deno run --allow-read test/client/run.js`,
// `bun test/client/run.js` (after `npm run build:client`). Exits non-zero on a failure.
import { readFileSync } from 'node:fs';
import * as rotauth from 'rotauth';
import * as client from 'rotauth/client';
import * as hono from 'rotauth/hono';
import { runAll } from '../suite.js';
import { clientSuite } from './suite.js';

const runtime = globalThis.Deno ? `deno ${Deno.version.deno}` : globalThis.Bun ? `bun ${Bun.version}` : 'unknown runtime';
const vectors = readFileSync(new URL('../../../../tests/vectors/tokens.txt', import.meta.url), 'utf8');
console.log(`# ${runtime} (client)`);
const name = runtime.split(' ')[0];
const { failed } = await runAll(clientSuite({ client, rotauth, hono, vectors }), (line) =>
  console.log(/^\d+ passed, \d+ failed(, \d+ skipped)?$/.test(line) ? `${name} (client): ${line}` : line),
);
if (failed > 0) {
  if (globalThis.Deno) Deno.exit(1);
  process.exit(1);
}
