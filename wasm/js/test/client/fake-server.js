// A server for the client's suite that rotates as rotauth does, because it is rotauth: the
// package's rotator decides and `rotauth/hono`'s `authenticate` runs the request loop, on
// a virtual clock. Around it, a network the test drives: requests or responses can be held
// and let through in any order, and 503s can be served on demand. It speaks both
// protocols: devise's headers as the middleware writes them, and the bearer protocol of
// rotauth-axum (`Authorization: Rotauth <client>.<token>`, `Rotauth-Token` on rotation),
// translated to and from devise's at the edge.

export const T0 = 1_700_000_000_000;
export const ORIGIN = 'http://api.test';
const KEY = new Uint8Array(32).fill(0x5a);

/**
 * Routes: `POST /sign_in?uid=…` (a new session), `GET /data` and `GET /refresh` (protected),
 * `DELETE /sign_out`, `GET /public` (no credentials read or sent).
 */
export async function fakeServer({ rotauth, hono, protocol = 'devise', windowMs = 5_000, echoCurrent = false }) {
  const rotator = await rotauth.createRotator({ keys: [{ id: 1, key: KEY }], batchWindowMs: windowMs });
  const store = new hono.MemoryStore();
  let now = T0;
  const clock = () => now;
  const auth = { rotator, store, clock, echoCurrent };
  /** Every request served: `{ path, token, client, status, kind }` (`token`: the one presented). */
  const log = [];
  /** `Retry-After` values of the next 503s to serve, in order. */
  const unavailable = [];
  /** Held requests or responses: `{ path, release() }`. */
  const parked = [];
  /** Every wait the client asked for. */
  const waits = [];
  const server = {
    protocol,
    windowMs,
    log,
    parked,
    waits,
    unavailable,
    /** `'request'`, `'response'` or `null`: what the network holds back from now on. */
    hold: null,
    now: () => now,
    advance(ms) {
      now += ms;
    },
    /** The client's `sleep`: the virtual clock moves by what it waits. */
    async sleep(ms) {
      waits.push(ms);
      now += ms;
    },
    /** The session's current generation and token, or `undefined` once it is gone. */
    async current(clientId) {
      const stored = await store.get(clientId);
      if (stored === undefined) return undefined;
      return { generation: rotator.inspect(stored.record).generation, token: rotator.currentToken(stored.record) };
    },
    /** Deletes a session, as a sign-out elsewhere or an administrator would. */
    async end(clientId) {
      return store.delete(clientId);
    },
    /** Lets the parked item `i` through (default the oldest). */
    async release(i = 0) {
      const [item] = parked.splice(i, 1);
      await item.release();
    },
    /** Serves the parked request `i` but delivers no response: its page has gone. */
    async drop(i = 0) {
      const [item] = parked.splice(i, 1);
      await item.serve();
    },
    async fetch(request) {
      const path = new URL(request.url).pathname;
      if (server.hold === 'request') {
        return new Promise((resolve, reject) =>
          parked.push({ path, release: () => serve(request).then(resolve, reject), serve: () => serve(request) }),
        );
      }
      const response = await serve(request);
      if (server.hold === 'response') return new Promise((resolve) => parked.push({ path, release: async () => resolve(response) }));
      return response;
    },
  };

  /** The request with devise's credentials, whichever protocol it spoke. */
  async function asDevise(request) {
    if (protocol === 'devise') return request;
    const headers = new Headers();
    const match = /^Rotauth ([^.\s]+)\.(\S+)$/.exec(request.headers.get('authorization') ?? '');
    if (match !== null) {
      // The bearer protocol carries no uid: the session's own stands in for it.
      const stored = await store.get(match[1]);
      headers.set('access-token', match[2]);
      headers.set('client', match[1]);
      headers.set('uid', stored?.uid ?? '-');
    }
    return new Request(request.url, { method: request.method, headers });
  }

  /** devise's response headers, as the protocol writes them. */
  function credentialHeaders(headers) {
    if (protocol === 'devise') return headers;
    const out = new Headers();
    const token = headers.get('access-token')?.trim();
    if (token) {
      out.set('rotauth-token', `${headers.get('client')}.${token}`);
      out.set('cache-control', 'no-store');
    }
    return out;
  }

  const json = (status, body, headers = new Headers()) => {
    headers.set('content-type', 'application/json');
    return new Response(JSON.stringify(body), { status, headers });
  };

  async function serve(request) {
    const url = new URL(request.url);
    const devise = await asDevise(request);
    const entry = {
      path: url.pathname + url.search,
      token: devise.headers.get('access-token') ?? undefined,
      client: devise.headers.get('client') ?? undefined,
    };
    log.push(entry);
    const answer = (status, body, headers, kind) => {
      Object.assign(entry, { status, kind });
      return json(status, body, headers);
    };
    if (url.pathname === '/sign_in' && request.method === 'POST') {
      const { headers } = await hono.startSession({ rotator, store, uid: url.searchParams.get('uid') ?? 'ada', now });
      return answer(200, { signedIn: true }, credentialHeaders(headers), 'sign_in');
    }
    if (url.pathname === '/public') return answer(200, { public: true }, new Headers(), 'public');
    if (url.pathname === '/sign_out' && request.method === 'DELETE') {
      const result = await hono.check(auth, devise);
      const deleted = result.ok && (await store.delete(result.clientId));
      return answer(deleted ? 200 : 404, { success: deleted }, new Headers(), 'sign_out');
    }
    if (url.pathname !== '/data' && url.pathname !== '/refresh') return answer(404, {}, new Headers(), 'none');
    if (unavailable.length > 0) {
      const headers = new Headers();
      const retryAfter = unavailable.shift();
      if (retryAfter !== null) headers.set('retry-after', retryAfter);
      return answer(503, hono.UNAVAILABLE_BODY, headers, 'unavailable');
    }
    const result = await hono.authenticate(auth, devise);
    if (!result.ok) return answer(result.status, hono.UNAUTHORIZED_BODY, new Headers(), result.reason);
    return answer(200, { uid: result.uid }, credentialHeaders(result.headers), result.kind);
  }

  return server;
}

/** Waits, on the real clock, until `condition()` holds (channel messages arrive in a later task). */
export async function until(condition, what, timeoutMs = 3_000) {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
