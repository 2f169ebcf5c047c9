// One tab of test/tabs.mjs: signs in if it holds no session, then fires bursts of 1–6
// parallel requests at random intervals (some inside the batch window, some after) until
// `until`, and reports every answer to the driver. The host's protocol (`devise`, `bearer`
// or `cookie`), its paths and its sign-in body come in the query string. `mode=client`
// uses rotauth/client; `mode=naive` is the client this package exists to replace: each tab
// keeps its own token in memory and the last response's token goes to localStorage (read
// at page load); `mode=cookie` is a page on the cookie transport: plain `fetch`, the
// browser keeps the cookie. `role=reload` reloads the page every few seconds;
// `role=hidden` runs as a background tab (see tabs.mjs); `recover=0` leaves out the
// client's `refreshUrl`.
import { createClient } from '/lib/client.js';

const params = new URLSearchParams(location.search);
const mode = params.get('mode');
const role = params.get('role');
const protocol = params.get('protocol');
const paths = { signIn: params.get('signIn'), api: params.get('api'), refresh: params.get('refresh') };
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
  body: params.get('credentials'),
});

function rotauthClient() {
  const auth = createClient({
    protocol,
    key: 'tabs',
    batchWindowMs: windowMs,
    ...(params.get('recover') === '0' ? {} : { refreshUrl: paths.refresh }),
    // One refusal is heard in every tab; the tab whose request was refused counts it.
    onSignedOut: ({ reason, elsewhere }) => reason === 'refused' && !elsewhere && report('signout'),
  });
  return {
    async ensureSignedIn() {
      await auth.ready;
      if (auth.session === undefined) await (await auth.fetch(paths.signIn, signInBody())).arrayBuffer();
    },
    request: () => auth.fetch(paths.api),
  };
}

/** The naive client's view of a protocol: the credentials a response hands out, and how a request carries them. */
const naiveWire = {
  devise: {
    offered(response) {
      const token = response.headers.get('access-token')?.trim();
      return token ? { 'access-token': token, client: response.headers.get('client'), uid: response.headers.get('uid') } : undefined;
    },
    headers: (credentials) => credentials,
  },
  bearer: {
    offered(response) {
      const value = response.headers.get('rotauth-token')?.trim();
      return value ? { value } : undefined;
    },
    headers: (credentials) => ({ authorization: `Rotauth ${credentials.value}` }),
  },
};

function naiveClient() {
  const KEY = 'naive';
  const wire = naiveWire[protocol];
  let credentials = JSON.parse(localStorage.getItem(KEY) ?? 'null');
  const adopt = (response) => {
    const offered = wire.offered(response);
    if (offered === undefined) return;
    credentials = offered;
    localStorage.setItem(KEY, JSON.stringify(credentials));
  };
  return {
    async ensureSignedIn() {
      if (credentials !== null) return;
      const response = await fetch(paths.signIn, signInBody());
      adopt(response);
      await response.arrayBuffer();
    },
    async request() {
      const response = await fetch(paths.api, { headers: credentials === null ? {} : wire.headers(credentials) });
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

// The cookie is httpOnly: the page knows only whether it signed in (kept in localStorage,
// so that every tab shares it) and that a 401 means the user must sign in again. Its
// requests bypass the HTTP cache as rotauth/client's do.
function cookieTab() {
  const KEY = 'signed-in';
  return {
    async ensureSignedIn() {
      if (localStorage.getItem(KEY) !== null) return;
      const response = await fetch(paths.signIn, { ...signInBody(), credentials: 'same-origin' });
      if (response.ok) localStorage.setItem(KEY, '1');
      await response.arrayBuffer();
    },
    async request() {
      // `no-store`, as rotauth/client sends: the browser's HTTP cache lets one request to a
      // URL out at a time, and over a slow network a burst would outlast the window.
      const response = await fetch(paths.api, { credentials: 'same-origin', cache: 'no-store' });
      if (response.status === 401 && localStorage.getItem(KEY) !== null) {
        localStorage.removeItem(KEY);
        report('signout');
      }
      return response;
    },
  };
}

const client = { client: rotauthClient, naive: naiveClient, cookie: cookieTab }[mode]();
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
