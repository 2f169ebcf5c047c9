// Many tabs in Chromium: rotauth/client against the naive client, under the same load.
//
//   node test/tabs.mjs [--host=hono|devise|axum-bearer|axum-cookie] [--duration=SECONDS]
//                      [--window=MS] [--latency=MS] [--jitter=MS] [--reload=timer|burst]
//                      [--mode=strict|recover] [--no-recovery] [--verbose] [--check]
//
// Runs a host (test/tabs/hosts.js) in Strict mode with a 1.5 s batch window by default,
// puts an HTTP front (test/tabs/proxy.js) before it that also serves the tab page and the
// client's modules, so page and API share one origin, and opens headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) with one browser context per client kind,
// each with five tabs (test/client/tabs-page.js): three plain, one that reloads every
// 2–5 s, and one run as a hidden tab. Every tab fires bursts of 1–6 parallel requests at
// random intervals, half inside the window and half after it, for the duration (default
// 20 s; use 120 or more for a real run). The client kinds: rotauth/client and the naive
// client (its own token per tab, the last response's token in localStorage) with header
// transports; with the cookie host, cookie tabs alone (plain `fetch`, the browser keeps the
// cookie: there is no naive way to hold it). Prints, per kind, the answers its tabs saw,
// its sign-outs, and what the server answered.
//
//   --host=NAME       hono (default: the example app in this process), devise (the devise
//                     server), axum-bearer or axum-cookie (rotauth-axum's example app);
//                     the servers must be built: cargo build -p devise-server --bin
//                     devise_server, cargo build -p rotauth-axum --example axum_app --features sqlite
//   --latency=MS      the network's one-way delay: each request on its way in and each
//   --jitter=MS       response on its way out is held for LATENCY ± JITTER ms (uniform,
//                     independent, at least 0; default 0 ± 0), so that both reorder
//   --reload=burst    reloads the reloading tab a millisecond after it fired a burst, not
//                     on a timer, so that responses (rotating ones too) are lost to reloads
//   --mode=recover    runs the host in Recover mode (a client that lost a response gets
//                     its token again, once), to see what Strict mode's refusals cost
//   --no-recovery     leaves out the client's `refreshUrl`, to see what that loss costs
//   --verbose         prints every 401 with the rule that refused it, and every recovery
//   --check           exits non-zero unless rotauth/client (or the cookie tabs) saw no 401
//                     and no sign-out, and the naive client, where there is one, saw both
//                     (so the load did race)
//
// Headless Chromium shows every page as visible and does not throttle it, so the hidden tab
// is a model of one: its `document.visibilityState` is 'hidden' and its timers wake on whole
// seconds, as Chrome runs a background page's.
import { chromium } from 'playwright-core';
import { HOSTS, startHost } from './tabs/hosts.js';
import { serverCounts, startProxy } from './tabs/proxy.js';
import { Rotations } from './tabs/rotations.js';

const flags = Object.fromEntries(process.argv.slice(2).map((arg) => arg.replace(/^--/, '').split('=')));
const hostName = flags.host ?? 'hono';
const durationMs = Number(flags.duration ?? 20) * 1000;
const windowMs = Number(flags.window ?? 1_500);
const check = 'check' in flags;
const verbose = 'verbose' in flags;
const recover = !('no-recovery' in flags);
const latencyMs = Number(flags.latency ?? 0);
const jitterMs = Number(flags.jitter ?? 0);
const reload = flags.reload ?? 'timer';
const serverMode = flags.mode ?? 'strict';
if (serverMode !== 'strict' && serverMode !== 'recover') throw new Error('--mode: strict or recover');
if (!HOSTS.includes(hostName)) throw new Error(`--host: one of ${HOSTS.join(', ')}`);
const ROLES = ['plain', 'plain', 'plain', 'reload', 'hidden'];
const email = (mode) => `${mode}@tabs.test`;

const host = await startHost(hostName, { windowMs, mode: serverMode });
const MODES = host.protocol === 'cookie' ? { cookie: 'cookie tabs' } : { client: 'rotauth/client', ...(host.naive ? { naive: 'naive' } : {}) };
const count = () => ({ loads: 0, requests: 0, 200: 0, 401: 0, other: 0, signouts: 0, ...serverCounts() });
const stats = Object.fromEntries(Object.keys(MODES).map((mode) => [mode, count()]));
const rotations = new Rotations(windowMs, serverMode);
const proxies = {};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
});
const until = Date.now() + durationMs;
// Bounds a step of the teardown: a browser or server that hangs on closing must not keep
// the figures, counted by then, from being printed and the run from ending.
const bounded = (what, promise) =>
  Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve(console.log(`# ${what} did not finish in 10 s`)), 10_000).unref())]);
try {
  for (const mode of Object.keys(MODES)) {
    await host.signUp(email(mode));
    const log = verbose ? (line) => console.log(`${mode} ${line}`) : undefined;
    proxies[mode] = await startProxy({ host, counts: stats[mode], rotations, latencyMs, jitterMs, windowMs, log });
  }
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
      const params = { mode, email: email(mode), until: String(until), window: String(windowMs), recover: recover ? '1' : '0', reload };
      const query = (role) => new URLSearchParams({ ...params, ...host.page(email(mode)), role });
      const origin = proxies[mode].origin;
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
      // The tabs stop firing at `until`; their last answers are in after a window or two.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, until - Date.now()) + 2 * windowMs + 2 * (latencyMs + jitterMs) + 1_000));
    }),
  );
  report();
} finally {
  await bounded('closing Chromium', browser.close());
  await bounded('closing the proxies', Promise.all(Object.values(proxies).map((proxy) => proxy.close())));
  await bounded(`stopping ${hostName}`, host.stop());
}

function report() {
  const columns = ['loads', 'requests', '200', '401', 'other', 'signouts', 'server401', 'server503', 'recoveries'];
  const heads = ['page loads', 'requests', '200', '401', 'other', 'sign-outs', 'server 401', 'server 503', 'recoveries'];
  const network = latencyMs + jitterMs > 0 ? `${latencyMs} ± ${jitterMs} ms each way` : 'no added latency';
  console.log(`# ${hostName} (${host.protocol}), ${browser.version()}, ${ROLES.length} tabs per client (${ROLES.join(', ')}), ${durationMs / 1000} s, batch window ${windowMs} ms, ${network}, reload on ${reload}, ${serverMode === 'strict' ? 'Strict' : 'Recover'} mode${recover ? '' : ', no recovery'}`);
  console.log(['client'.padEnd(16), ...heads.map((h) => h.padStart(11))].join(''));
  for (const [mode, label] of Object.entries(MODES)) {
    console.log([label.padEnd(16), ...columns.map((c) => String(stats[mode][c]).padStart(11))].join(''));
  }
}

if (check) {
  const mine = stats.client ?? stats.cookie;
  const fine = mine.requests > 0 && mine[401] === 0 && mine.signouts === 0;
  const raced = stats.naive === undefined || (stats.naive[401] > 0 && stats.naive.signouts > 0);
  if (!fine) console.log(`FAILED: ${MODES.client ?? MODES.cookie} saw a 401 or a sign-out`);
  if (!raced) console.log('FAILED: the naive client saw no 401: the load did not race');
  process.exitCode = fine && raced ? 0 : 1;
}
// Nothing the run started may keep it alive once the verbose lines (due two windows after
// their 401) are out.
setTimeout(() => process.exit(), 3 * windowMs).unref();
