// One tab of test/tabs.mjs: signs in if it holds no session, then fires bursts of 1–6
// parallel requests at random intervals (some inside the batch window, some after) until
// `until`, and reports every answer to the driver. `mode=client` uses rotauth/client;
// `mode=naive` is the client this package exists to replace: each tab keeps its own token in
// memory and the last response's token goes to localStorage (read at page load).
// `role=reload` reloads the page every few seconds; `role=hidden` runs as a background tab
// (see tabs.mjs); `recover=0` leaves out the client's `refreshUrl`.
import { createClient } from '/lib/client.js';

const params = new URLSearchParams(location.search);
const mode = params.get('mode');
const role = params.get('role');
const email = params.get('email');
const until = Number(params.get('until'));
const windowMs = Number(params.get('window'));
const report = (what) => globalThis.reportTab(mode, what);
const random = (n) => Math.floor(Math.random() * n);

// Chrome wakes a hidden page's timers on whole seconds: so does this tab's loop when hidden.
const sleep =
  document.visibilityState === 'hidden'
    ? (ms) => new Promise((resolve) => setTimeout(resolve, Math.ceil((Date.now() + ms) / 1000) * 1000 - Date.now()))
    : (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const signInBody = () => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ email, password: 'correct horse battery' }),
});

function rotauthClient() {
  const auth = createClient({
    key: 'tabs',
    batchWindowMs: windowMs,
    ...(params.get('recover') === '0' ? {} : { refreshUrl: '/auth/validate_token' }),
    // One refusal is heard in every tab; the tab whose request was refused counts it.
    onSignedOut: ({ reason, elsewhere }) => reason === 'refused' && !elsewhere && report('signout'),
  });
  return {
    async ensureSignedIn() {
      await auth.ready;
      if (auth.session === undefined) await (await auth.fetch('/auth/sign_in', signInBody())).arrayBuffer();
    },
    request: () => auth.fetch('/demo/members_only'),
  };
}

function naiveClient() {
  const KEY = 'naive';
  let credentials = JSON.parse(localStorage.getItem(KEY) ?? 'null');
  const adopt = (response) => {
    const token = response.headers.get('access-token')?.trim();
    if (!token) return;
    credentials = { 'access-token': token, client: response.headers.get('client'), uid: response.headers.get('uid') };
    localStorage.setItem(KEY, JSON.stringify(credentials));
  };
  return {
    async ensureSignedIn() {
      if (credentials !== null) return;
      const response = await fetch('/auth/sign_in', signInBody());
      adopt(response);
      await response.arrayBuffer();
    },
    async request() {
      const response = await fetch('/demo/members_only', { headers: credentials ?? {} });
      if (response.status === 401 && credentials !== null) {
        credentials = null;
        report('signout');
      } else {
        adopt(response);
      }
      return response;
    },
  };
}

const client = mode === 'client' ? rotauthClient() : naiveClient();
report('load');
// Every 2–5 s; with `reload=burst`, at the first burst after that, a millisecond after its
// requests went out, so that a rotating response is lost to the reload.
const reloadAt = role === 'reload' ? Date.now() + 2_000 + random(3_000) : Infinity;
if (role === 'reload' && params.get('reload') !== 'burst') setTimeout(() => location.reload(), reloadAt - Date.now());

async function one() {
  let response;
  try {
    response = await client.request();
    await response.arrayBuffer();
  } catch {
    // A request cut short by this page's own reload: no answer to count.
    return;
  }
  report(response.status);
}

while (Date.now() < until) {
  await client.ensureSignedIn();
  const burst = Promise.all(Array.from({ length: 1 + random(6) }, one));
  if (params.get('reload') === 'burst' && Date.now() >= reloadAt) setTimeout(() => location.reload(), 1);
  await burst;
  // Half the pauses fall inside the window, half after it.
  await sleep(random(2) === 0 ? random(windowMs) : windowMs + random(windowMs));
}
