// The cookie transport in a real browser: the example app in cookie mode over HTTP, driven
// in headless Chromium (Debian's /usr/bin/chromium, through playwright-core).
//
//   node test/cookies-browser.mjs
//
// The app is served as http://localhost:PORT, which Chromium counts as a secure context, so
// that a `Secure` `__Host-` cookie is kept over plain HTTP (checked, not assumed). The
// attacker's pages come from http://127.0.0.1:OTHER: another host and so another site. It
// checks, in the browser:
//   1. the cookie is set on sign-in and on rotation, with HttpOnly, Secure, SameSite=Lax
//      and Path=/, and a page script cannot read it from `document.cookie`;
//   2. a same-origin `fetch` (which rotates) and a same-origin form POST are served;
//   3. another site's form POST and its `fetch` with `credentials: 'include'` to an unsafe
//      route are answered 403, and neither the cookie nor the stored generation moves;
//   4. a 401 that arrives late (its request held by the server while a newer request
//      rotated) leaves the newer cookie in place, and the next request is served.
//   5. sign-out clears the cookie in the browser.
// Prints one line per check and exits non-zero if any failed.
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';
import { createRotator } from 'rotauth';
import { MemoryStore } from 'rotauth/hono';
import { createApp } from '../example/app.js';
import { KEY_HEX, PASSWORD_ITERATIONS } from './app-config.js';

const WINDOW_MS = 300;
const NAME = '__Host-rotauth';
const EMAIL = 'cookie@browser.test';
const PASSWORD = 'correct horse battery';
const hexBytes = (hex) => Uint8Array.from(hex.match(/../g), (b) => parseInt(b, 16));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** Past the batch window, so that the next request with the current token rotates. */
const pastWindow = () => sleep(WINDOW_MS + 100);

const rotator = await createRotator({ keys: [{ id: 1, key: hexBytes(KEY_HEX) }], batchWindowMs: WINDOW_MS });
const store = new MemoryStore();
const app = createApp({ rotator, store, passwordIterations: PASSWORD_ITERATIONS, protocol: 'cookie' });

// Every request the app answered: method, path, status, and whether a cookie came with it.
const log = [];
// Requests whose path carries `?hold`: kept from the app until `release()`.
const held = [];
const page = (script = '') => `<!doctype html><meta charset="utf-8"><title>page</title><script>${script}</script>`;

async function serveApp(req, res) {
  const url = new URL(req.url, `http://${req.headers.host}`);
  if (url.pathname === '/page') {
    res.writeHead(200, { 'content-type': 'text/html' }).end(page());
    return;
  }
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  if (url.searchParams.has('hold')) await new Promise((resolve) => held.push(resolve));
  const body = chunks.length > 0 ? Buffer.concat(chunks) : undefined;
  const response = await app.fetch(new Request(url, { method: req.method, headers, body }));
  log.push({ method: req.method, path: url.pathname + url.search, status: response.status, cookie: headers.has('cookie') });
  const out = Object.fromEntries([...response.headers].filter(([name]) => name !== 'set-cookie'));
  const setCookie = response.headers.getSetCookie();
  if (setCookie.length > 0) out['set-cookie'] = setCookie;
  res.writeHead(response.status, out).end(Buffer.from(await response.arrayBuffer()));
}

const listen = async (handler) => {
  const server = createServer((req, res) => handler(req, res).catch((error) => res.writeHead(500).end(String(error))));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
};
const appServer = await listen(serveApp);
const attackerServer = await listen(async (_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(page()));
const appOrigin = `http://localhost:${appServer.address().port}`;
const attackerOrigin = `http://127.0.0.1:${attackerServer.address().port}`;
const target = `${appOrigin}/demo/members_only`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
});
const results = [];
/** Runs one check; a thrown error fails it, and the next check still runs. */
async function checkThat(name, fn) {
  try {
    await fn();
    results.push({ name, ok: true });
  } catch (error) {
    results.push({ name, ok: false, why: error.message });
  }
}
const expect = (condition, message) => {
  if (!condition) throw new Error(message);
};

try {
  const context = await browser.newContext();
  const tab = await context.newPage();
  await tab.goto(`${appOrigin}/page`);
  const attacker = await context.newPage();
  await attacker.goto(`${attackerOrigin}/page`);

  /** The browser's cookie for the app, as playwright reads its jar (HttpOnly ones too). */
  const jarCookie = async () => (await context.cookies(appOrigin)).find((c) => c.name === NAME);
  /** The stored generation of the session the browser's cookie names. */
  const generation = async () => {
    const cookie = await jarCookie();
    const stored = cookie === undefined ? undefined : await store.get(cookie.value.split('.')[0]);
    return stored === undefined ? undefined : Number(rotator.inspect(stored.record).generation);
  };
  /** A same-origin `fetch` from the app's page: its status. */
  const fetchFromApp = (path, init = {}) =>
    tab.evaluate(async ([path, init]) => (await fetch(path, { credentials: 'same-origin', ...init })).status, [path, init]);
  /** A form on `page` posted to `action`, as a navigation: the status the browser got. */
  async function postForm(on, action) {
    const [response] = await Promise.all([
      on.waitForResponse((r) => r.url() === action && r.request().method() === 'POST'),
      on.evaluate((action) => {
        const form = document.createElement('form');
        form.method = 'POST';
        form.action = action;
        const input = Object.assign(document.createElement('input'), { name: 'note', value: 'hello' });
        form.append(input);
        document.body.append(form);
        form.submit();
      }, action),
    ]);
    const status = response.status();
    // The navigation's response is in; wait until the page shows it.
    await on.waitForURL(action);
    return status;
  }

  await checkThat('1. the cookie is set on sign-in and on rotation, HttpOnly, Secure, SameSite=Lax, Path=/', async () => {
    expect(await tab.evaluate(() => window.isSecureContext), 'http://localhost is not a secure context');
    const signUp = await fetchFromApp('/auth', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
    });
    expect(signUp === 200, `sign-up answered ${signUp}`);
    const signIn = await fetchFromApp('/auth/sign_in', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
    });
    expect(signIn === 200, `sign-in answered ${signIn}`);
    const first = await jarCookie();
    expect(first !== undefined, 'no cookie after sign-in');
    const attrs = (c) => `httpOnly=${c.httpOnly} secure=${c.secure} sameSite=${c.sameSite} path=${c.path} domain=${c.domain}`;
    const wanted = 'httpOnly=true secure=true sameSite=Lax path=/ domain=localhost';
    expect(attrs(first) === wanted, `cookie after sign-in: ${attrs(first)}`);
    expect((await generation()) === 0, `generation after sign-in: ${await generation()}`);
    // A script's own cookie is readable, so `document.cookie` works: ours is not in it.
    const seen = await tab.evaluate(() => {
      document.cookie = 'visible=1; path=/';
      return document.cookie;
    });
    expect(seen.includes('visible=1'), `document.cookie does not work: ${JSON.stringify(seen)}`);
    expect(!seen.includes(NAME), `a script reads the cookie: ${JSON.stringify(seen)}`);
    await pastWindow();
    const rotated = await fetchFromApp('/demo/members_only');
    expect(rotated === 200, `GET with the cookie answered ${rotated}`);
    const second = await jarCookie();
    expect(second !== undefined && second.value !== first.value, 'the cookie did not change on rotation');
    expect(attrs(second) === wanted, `cookie after rotation: ${attrs(second)}`);
    expect((await generation()) === 1, `generation after rotation: ${await generation()}`);
    const again = await tab.evaluate(() => document.cookie);
    expect(!again.includes(NAME), `a script reads the rotated cookie: ${JSON.stringify(again)}`);
  });

  await checkThat('2. same-origin requests are served: a rotating fetch and a form POST', async () => {
    await pastWindow();
    const before = await generation();
    const status = await fetchFromApp('/demo/members_only', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'note=fetch',
    });
    expect(status === 200, `same-origin fetch POST answered ${status}`);
    expect((await generation()) === before + 1, `the fetch did not rotate: ${before} -> ${await generation()}`);
    await pastWindow();
    const form = await postForm(tab, target);
    expect(form === 200, `same-origin form POST answered ${form}`);
    expect((await generation()) === before + 2, `the form POST did not rotate: ${before} -> ${await generation()}`);
    await tab.goto(`${appOrigin}/page`);
  });

  await checkThat('3. another site\'s form POST and credentialed fetch get 403; the session does not move', async () => {
    await pastWindow();
    const cookie = (await jarCookie())?.value;
    const before = await generation();
    expect(cookie !== undefined && before !== undefined, 'no session to attack');
    const form = await postForm(attacker, target);
    expect(form === 403, `cross-site form POST answered ${form}`);
    await attacker.goto(`${attackerOrigin}/page`);
    const logged = log.length;
    const fetched = await attacker.evaluate(async (target) => {
      try {
        await fetch(target, { method: 'POST', credentials: 'include', body: new URLSearchParams({ note: 'forged' }) });
        return 'read';
      } catch {
        return 'opaque';
      }
    }, target);
    const answer = log.slice(logged).find((entry) => entry.path === '/demo/members_only');
    expect(answer !== undefined, `the cross-site fetch never reached the app (the page saw ${fetched})`);
    expect(answer.status === 403, `cross-site fetch answered ${answer.status} (the page saw ${fetched})`);
    expect((await jarCookie())?.value === cookie, 'the cookie changed');
    expect((await generation()) === before, `the stored generation moved: ${before} -> ${await generation()}`);
    const after = await fetchFromApp('/demo/members_only');
    expect(after === 200, `the cookie no longer works: ${after}`);
  });

  await checkThat('4. a late 401 leaves the newer cookie, and the next request is served', async () => {
    await pastWindow();
    const stale = (await jarCookie())?.value;
    // Sent with the current token, held by the server before the app sees it.
    const late = tab.evaluate(async () => (await fetch('/demo/members_only?hold', { credentials: 'same-origin' })).status);
    // Awaited below; if this check fails first, its page closes under it.
    late.catch(() => {});
    for (let i = 0; held.length === 0; i += 1) {
      expect(i < 100, 'the held request never came');
      await sleep(20);
    }
    const newer = await fetchFromApp('/demo/members_only');
    expect(newer === 200, `the newer request answered ${newer}`);
    const fresh = (await jarCookie())?.value;
    expect(fresh !== undefined && fresh !== stale, 'the newer request set no new cookie');
    // Past the window, the held token is refused: its 401 arrives after the new cookie.
    await pastWindow();
    held.shift()();
    const lateStatus = await late;
    expect(lateStatus === 401, `the late request answered ${lateStatus}`);
    expect(log.findLast((entry) => entry.path === '/demo/members_only?hold')?.cookie === true, 'the late request carried no cookie');
    expect((await jarCookie())?.value === fresh, `the late 401 changed the cookie (now ${(await jarCookie()) === undefined ? 'gone' : 'another'})`);
    const next = await fetchFromApp('/demo/members_only');
    expect(next === 200, `the next request answered ${next}`);
  });

  await checkThat('5. sign-out clears the cookie, and the session is gone', async () => {
    const client = (await jarCookie())?.value.split('.')[0];
    const status = await fetchFromApp('/auth/sign_out', { method: 'DELETE' });
    expect(status === 200, `sign-out answered ${status}`);
    expect((await jarCookie()) === undefined, 'the browser still holds the cookie');
    expect((await store.get(client)) === undefined, 'the session is still stored');
    const after = await fetchFromApp('/demo/members_only');
    expect(after === 401, `a request after sign-out answered ${after}`);
  });
  await context.close();
} finally {
  for (const release of held.splice(0)) release();
  await browser.close();
  appServer.close();
  attackerServer.close();
}

console.log(`# ${browser.version()}, app ${appOrigin}, other site ${attackerOrigin}, batch window ${WINDOW_MS} ms`);
for (const { name, ok, why } of results) console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : `: ${why}`}`);
const failed = results.filter((r) => !r.ok).length;
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exitCode = failed === 0 && results.length === 5 ? 0 : 1;
