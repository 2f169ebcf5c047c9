// The suite in Node, under node:test: `node --test-reporter=spec test/node.test.js`.
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as rotauth from 'rotauth';
import * as hono from 'rotauth/hono';
import * as example from '../example/app.js';
import { inProcessEnv } from './app-config.js';
import { suite } from './suite.js';

const vectors = readFileSync(new URL('../../../tests/vectors/tokens.txt', import.meta.url), 'utf8');
const env = await inProcessEnv({ rotauth, hono, example, vectors });
let passed = 0;
let failed = 0;
let skipped = 0;
for (const { name, fn } of suite(env)) {
  test(name, async (t) => {
    try {
      await fn();
      passed += 1;
    } catch (error) {
      if (error?.name === 'Skip') {
        skipped += 1;
        t.skip(error.message);
        return;
      }
      failed += 1;
      throw error;
    }
  });
}
console.log(`# node ${process.version}`);
process.on('exit', () => console.log(`node: ${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`));
