// The example app on Cloudflare Workers and workerd. Bindings: `ROTAUTH_KEY` (a secret,
// 64 hex digits or more) and optionally `BATCH_WINDOW_MS`, `PASSWORD_ITERATIONS` (Workers
// allow PBKDF2 up to 100 000) and `ORIGINS` (comma-separated, for CORS).
import { createRotator } from 'rotauth';
import { createApp } from './app.js';

function hexBytes(hex) {
  if (typeof hex !== 'string' || !/^([0-9a-f]{2})+$/i.test(hex)) throw new Error('ROTAUTH_KEY must be hex');
  return Uint8Array.from(hex.match(/../g), (byte) => parseInt(byte, 16));
}

let app;

async function makeApp(env) {
  const rotator = await createRotator({
    keys: [{ id: 1, key: hexBytes(env.ROTAUTH_KEY) }],
    batchWindowMs: Number(env.BATCH_WINDOW_MS ?? 5_000),
  });
  return createApp({
    rotator,
    passwordIterations: Number(env.PASSWORD_ITERATIONS ?? 100_000),
    origins: env.ORIGINS ? env.ORIGINS.split(',') : [],
  });
}

export default {
  async fetch(request, env, ctx) {
    app ??= makeApp(env);
    return (await app).fetch(request, env, ctx);
  },
};
