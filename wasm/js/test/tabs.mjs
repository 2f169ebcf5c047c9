// Many tabs in Chromium: rotauth/client against the naive client, under the same load.
//
//   node test/tabs.mjs [--duration=SECONDS] [--window=MS] [--latency=MS] [--reload=timer|burst]
//                      [--no-recovery] [--verbose] [--check]
//
// Serves the Hono example app (Strict mode, a 1.5 s batch window by default) over HTTP from
// this process, and opens headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) with one browser context per client, each with five tabs
// (test/client/tabs-page.js): three plain, one that reloads every 2–5 s, and one run as a
// hidden tab. Every tab fires bursts of 1–6 parallel requests at random intervals, half
// inside the window and half after it, for the duration (default 20 s; use 120 or more for
// a real run). Both clients run at once, against one server. Prints, per client, the
// answers its tabs saw, its sign-outs, and what the server answered.
//
//   --latency=MS      delays each response by up to MS (default 0), as a network would
//   --reload=burst    reloads the reloading tab a millisecond after it fired a burst, not
//                     on a timer, so that responses (rotating ones too) are lost to reloads
//   --no-recovery     leaves out the client's `refreshUrl`, to see what that loss costs
//   --verbose         prints every 401 and every recovery with what the server held
//   --check           exits non-zero unless the client saw no 401 and no sign-out, and the
//                     naive client saw both (so the load did race)
//
// Headless Chromium shows every page as visible and does not throttle it, so the hidden tab
// is a model of one: its `document.visibilityState` is 'hidden' and its timers wake on whole
// seconds, as Chrome runs a background page's.
import { createServer } from 'node:http';
import { readFileSync, statSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { createRotator } from 'rotauth';
import { MemoryStore } from 'rotauth/hono';
import { createApp } from '../example/app.js';
import { KEY_HEX, PASSWORD_ITERATIONS } from './app-config.js';

const flags = Object.fromEntries(process.argv.slice(2).map((arg) => arg.replace(/^--/, '').split('=')));
const durationMs = Number(flags.duration ?? 20) * 1000;
const windowMs = Number(flags.window ?? 1_500);
const check = 'check' in flags;
const verbose = 'verbose' in flags;
const recover = !('no-recovery' in flags);
const latencyMs = Number(flags.latency ?? 0);
const reload = flags.reload ?? 'timer';
const MODES = { client: 'rotauth/client', naive: 'naive' };
const ROLES = ['plain', 'plain', 'plain', 'reload', 'hidden'];
const PASSWORD = 'correct horse battery';
const email = (mode) => `${mode}@tabs.test`;

const hexBytes = (hex) => Uint8Array.from(hex.match(/../g), (b) => parseInt(b, 16));
const rotator = await createRotator({ keys: [{ id: 1, key: hexBytes(KEY_HEX) }], batchWindowMs: windowMs, mode: 'strict' });
const store = new MemoryStore();
const app = createApp({ rotator, store, passwordIterations: PASSWORD_ITERATIONS });
for (const mode of Object.keys(MODES)) {
  const response = await app.request('/auth', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: email(mode), password: PASSWORD }),
  });
  if (response.status !== 200) throw new Error(`sign-up of ${mode}: ${response.status}`);
}

const count = () => ({ loads: 0, requests: 0, 200: 0, 401: 0, other: 0, signouts: 0, server401: 0, server503: 0, recoveries: 0 });
const stats = Object.fromEntries(Object.keys(MODES).map((mode) => [mode, count()]));
const modeOf = (uid) => Object.keys(MODES).find((mode) => email(mode) === uid);

// The package's client modules, the tab page and the app, from one origin.
const here = fileURLToPath(new URL('.', import.meta.url));
const files = { '/tabs-page.js': join(here, 'client/tabs-page.js') };
const page = '<!doctype html><meta charset="utf-8"><title>tab</title><script type="module" src="/tabs-page.js"></script>';
const server = createServer(async (req, res) => {
  const url = new URL(req.url, `http://${req.headers.host}`);
  if (url.pathname === '/tab') {
    res.writeHead(200, { 'content-type': 'text/html' }).end(page);
    return;
  }
  const lib = url.pathname.startsWith('/lib/client') ? join(here, '..', normalize(url.pathname)) : files[url.pathname];
  if (lib !== undefined) {
    const ok = extname(lib) === '.js' && statSync(lib, { throwIfNoEntry: false })?.isFile();
    res.writeHead(ok ? 200 : 404, { 'content-type': 'text/javascript' }).end(ok ? readFileSync(lib) : '');
    return;
  }
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = chunks.length > 0 ? Buffer.concat(chunks) : undefined;
  const client = headers.get('client');
  const before = verbose && client !== null ? await store.get(client) : undefined;
  const response = await app.fetch(new Request(url, { method: req.method, headers, body }));
  const mode = modeOf(headers.get('uid'));
  if (mode !== undefined) {
    if (response.status === 401) stats[mode].server401 += 1;
    if (response.status === 503) stats[mode].server503 += 1;
    if (url.searchParams.has('unbatch')) stats[mode].recoveries += 1;
    if (verbose && (response.status === 401 || url.searchParams.has('unbatch'))) {
      // What the server held when the request came: why it was refused, or what it recovered.
      const held = before === undefined ? undefined : rotator.inspect(before.record);
      const presented = headers.get('access-token') ?? '';
      const g = presented.length === 55 ? Buffer.from(presented.slice(0, 12), 'base64url').readBigUInt64BE(1) : '?';
      const at = held === undefined ? 'no session' : `n=${held.generation}, ${Date.now() - held.rotatedAt} ms after its rotation`;
      console.log(`${mode} ${req.method} ${url.pathname}${url.search} ${response.status}: presented ${g}, server ${at}`);
    }
  }
  // The network's delay, on the way back: the server has decided by then.
  if (latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * latencyMs));
  res.writeHead(response.status, Object.fromEntries(response.headers));
  res.end(Buffer.from(await response.arrayBuffer()));
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
});
const until = Date.now() + durationMs;
try {
  await Promise.all(
    Object.keys(MODES).map(async (mode) => {
      const context = await browser.newContext();
      await context.exposeFunction('reportTab', (_, what) => {
        const s = stats[mode];
        if (what === 'signout') s.signouts += 1;
        else if (what === 'load') s.loads += 1;
        else {
          s.requests += 1;
          if (what === 200 || what === 401) s[what] += 1;
          else s.other += 1;
        }
      });
      const query = (role) =>
        new URLSearchParams({ mode, role, email: email(mode), until: String(until), window: String(windowMs), recover: recover ? '1' : '0', reload });
      // The first tab signs in; the others open once it has a session to share.
      const first = await context.newPage();
      await first.goto(`${origin}/tab?${query(ROLES[0])}`);
      await first.waitForFunction(() => localStorage.length > 0, null, { timeout: 10_000 });
      for (const role of ROLES.slice(1)) {
        const tab = await context.newPage();
        if (role === 'hidden') {
          await tab.addInitScript(() => {
            Object.defineProperty(document, 'visibilityState', { get: () => 'hidden' });
            Object.defineProperty(document, 'hidden', { get: () => true });
          });
        }
        await tab.goto(`${origin}/tab?${query(role)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, until - Date.now()) + 2 * windowMs + 1_000));
      await context.close();
    }),
  );
} finally {
  await browser.close();
  server.close();
}

const columns = ['loads', 'requests', '200', '401', 'other', 'signouts', 'server401', 'server503', 'recoveries'];
const heads = ['page loads', 'requests', '200', '401', 'other', 'sign-outs', 'server 401', 'server 503', 'recoveries'];
console.log(`# ${browser.version()}, ${ROLES.length} tabs per client (${ROLES.join(', ')}), ${durationMs / 1000} s, batch window ${windowMs} ms, latency up to ${latencyMs} ms, reload on ${reload}, Strict mode${recover ? '' : ', no recovery'}`);
console.log(['client'.padEnd(16), ...heads.map((h) => h.padStart(11))].join(''));
for (const [mode, label] of Object.entries(MODES)) {
  console.log([label.padEnd(16), ...columns.map((c) => String(stats[mode][c]).padStart(11))].join(''));
}
if (check) {
  const mine = stats.client;
  const naive = stats.naive;
  const fine = mine.requests > 0 && mine[401] === 0 && mine.signouts === 0;
  const raced = naive[401] > 0 && naive.signouts > 0;
  if (!fine) console.log('FAILED: rotauth/client saw a 401 or a sign-out');
  if (!raced) console.log('FAILED: the naive client saw no 401: the load did not race');
  process.exitCode = fine && raced ? 0 : 1;
}
