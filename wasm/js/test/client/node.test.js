// The client's suite in Node, under node:test: `node --test-reporter=spec test/client/node.test.js`
// (after `npm run build:client`).
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as rotauth from 'rotauth';
import * as client from 'rotauth/client';
import * as hono from 'rotauth/hono';
import { clientSuite } from './suite.js';

const vectors = readFileSync(new URL('../../../../tests/vectors/tokens.txt', import.meta.url), 'utf8');
let passed = 0;
let failed = 0;
for (const { name, fn } of clientSuite({ client, rotauth, hono, vectors })) {
  test(name, async () => {
    try {
      await fn();
      passed += 1;
    } catch (error) {
      failed += 1;
      throw error;
    }
  });
}
console.log(`# node ${process.version}`);
process.on('exit', () => console.log(`node (client): ${passed} passed, ${failed} failed`));
