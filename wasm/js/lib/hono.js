// rotauth for Hono (Node, Deno, Bun, Cloudflare Workers, browsers): a middleware speaking
// devise_token_auth's headers as rotauth's Rust example server does, a session store
// interface with an in-memory store, and the helpers a sign-in and a sign-out route need.
// It imports nothing from Hono at run time: any Hono 4 app takes it. With `protocol:
// 'cookie'` the credentials travel in an httpOnly cookie instead (lib/cookie.js).

import {
  clearCookieHeaders,
  cookieCredentials,
  cookieHeaders,
  cookieSettings,
  cookieUnauthorizedResponse,
  forbiddenResponse,
  screen,
} from './cookie.js';

export {
  COOKIE_DEFAULTS,
  COOKIE_UNAUTHORIZED_BODY,
  cookieCredentials,
  cookieValue,
  forbiddenResponse,
} from './cookie.js';

/** The five devise headers, lowercase. */
export const HEADERS = Object.freeze({
  accessToken: 'access-token',
  tokenType: 'token-type',
  client: 'client',
  expiry: 'expiry',
  uid: 'uid',
});

/** devise's 401 body for a protected route. */
export const UNAUTHORIZED_BODY = Object.freeze({
  errors: ['You need to sign in or sign up before continuing.'],
});

/** The body of a 503, as rotauth's Rust layer answers it. */
export const UNAVAILABLE_BODY = Object.freeze({
  errors: ['Service unavailable, please try again later.'],
});
/** Longest `Authorization` value decoded. */
const MAX_AUTHORIZATION_LEN = 2048;

/**
 * Sessions in a `Map`, for tests, examples and single-process servers. Every method is
 * asynchronous, as a real store's are, so concurrent requests interleave as they would
 * against a database.
 */
export class MemoryStore {
  #sessions = new Map();

  async get(clientId) {
    const stored = this.#sessions.get(clientId);
    return stored === undefined ? undefined : { ...stored, record: stored.record.slice() };
  }

  async insert(clientId, session) {
    if (this.#sessions.has(clientId)) return false;
    this.#sessions.set(clientId, {
      uid: session.uid,
      version: session.version,
      record: session.record.slice(),
    });
    return true;
  }

  async compareAndSwap(clientId, expectedVersion, next) {
    const stored = this.#sessions.get(clientId);
    if (stored === undefined || stored.version !== expectedVersion) return false;
    this.#sessions.set(clientId, {
      uid: stored.uid,
      version: next.version,
      record: next.record.slice(),
    });
    stored.record.fill(0);
    return true;
  }

  async delete(clientId) {
    const stored = this.#sessions.get(clientId);
    if (stored === undefined) return false;
    stored.record.fill(0);
    this.#sessions.delete(clientId);
    return true;
  }

  /** How many sessions are stored. */
  get size() {
    return this.#sessions.size;
  }
}

function text(headers, name) {
  const value = headers.get(name);
  if (value === null) return undefined;
  const trimmed = value.trim();
  return trimmed === '' ? undefined : trimmed;
}

function decodeBase64(encoded) {
  const standard = encoded.replaceAll('-', '+').replaceAll('_', '/');
  const padded = standard + '='.repeat((4 - (standard.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}

function bearer(headers) {
  const value = headers.get('authorization');
  if (value === null || value.length > MAX_AUTHORIZATION_LEN) return undefined;
  const [scheme, encoded] = value.trim().split(/\s+/, 2);
  if (scheme?.toLowerCase() !== 'bearer' || encoded === undefined) return undefined;
  try {
    const json = JSON.parse(decodeBase64(encoded));
    return json !== null && typeof json === 'object' && !Array.isArray(json) ? json : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The credentials of a request: `access-token`, `client` and `uid`, each from its own
 * header, else from `Authorization: Bearer <base64 of the JSON of the five>`, else from the
 * query string (as devise reads `params`; `url` optional). A blank value counts as absent
 * (devise's batch responses carry `access-token: " "`). `undefined` if one is missing.
 */
export function credentials(headers, url) {
  const json = bearer(headers);
  let query;
  const field = (name) => {
    const own = text(headers, name);
    if (own !== undefined) return own;
    const value = json?.[name];
    if (typeof value === 'string' && value.trim() !== '') return value.trim();
    if (url === undefined) return undefined;
    query ??= new URL(url).searchParams;
    const param = query.get(name)?.trim();
    return param === undefined || param === '' ? undefined : param;
  };
  const token = field(HEADERS.accessToken);
  const client = field(HEADERS.client);
  const uid = field(HEADERS.uid);
  if (token === undefined || client === undefined || uid === undefined) return undefined;
  return { token, client, uid };
}

/** devise's `unbatch` query parameter: any value but `false` or `0` forces rotation. */
export function unbatch(url) {
  const params = new URL(url).searchParams;
  if (!params.has('unbatch')) return false;
  return params.getAll('unbatch').some((value) => value !== 'false' && value !== '0');
}

/**
 * The devise headers of an authenticated response. `token === undefined` is a batch
 * response: `access-token: " "` and `expiry: " "`. A response that sends a token also
 * carries `Authorization: Bearer <base64 JSON>` and `Cache-Control: no-store`.
 */
export function deviseHeaders({ clientId, uid, token, expiresAt }) {
  const headers = new Headers();
  const expiry = token === undefined ? ' ' : String(Math.floor(expiresAt / 1000));
  headers.set(HEADERS.accessToken, token ?? ' ');
  headers.set(HEADERS.tokenType, 'Bearer');
  headers.set(HEADERS.client, clientId);
  headers.set(HEADERS.expiry, expiry);
  headers.set(HEADERS.uid, uid);
  if (token !== undefined) {
    const json = JSON.stringify({
      'access-token': token,
      'token-type': 'Bearer',
      client: clientId,
      expiry,
      uid,
    });
    headers.set('authorization', `Bearer ${btoa(json)}`);
    headers.set('cache-control', 'no-store');
  }
  return headers;
}

/** The cookie settings of `options` in cookie mode, else `undefined` (devise's headers). */
function cookieMode(options) {
  const protocol = options.protocol ?? 'devise';
  if (protocol === 'devise') return undefined;
  if (protocol !== 'cookie') throw new TypeError("rotauth(): `protocol` is 'devise' or 'cookie'");
  return cookieSettings(options.cookie, options.csrf);
}

/**
 * Signs `uid` in: a new session in `store`, and the headers that carry `T(0)` (devise's,
 * or with `protocol: 'cookie'` the `Set-Cookie`). Returns `{ clientId, headers }`.
 */
export async function startSession(options) {
  const { rotator, store, uid, now = Date.now() } = options;
  const cookie = cookieMode(options);
  for (;;) {
    const signedIn = rotator.signIn(now);
    const { record, clientId, token, version, expiresAt } = signedIn;
    if (await store.insert(clientId, { uid, version, record })) {
      const fields = { clientId, uid, token, expiresAt };
      return { clientId, headers: cookie === undefined ? deviseHeaders(fields) : cookieHeaders(fields, cookie) };
    }
    // A client id already taken (2^-128): draw again.
  }
}

/**
 * Why a request may be forged by another site (`cross_origin`, `cross_site`,
 * `unknown_origin`, `csrf_token`), or `undefined`: the middleware's screening in cookie
 * mode, for a sign-in route to call before it checks a password (login CSRF). Answer a
 * reason with `forbiddenResponse(reason)`.
 */
export function screenRequest(options, request) {
  const cookie = cookieMode(options);
  return cookie === undefined ? undefined : screen(request, cookie);
}

/**
 * The headers of a sign-out response in cookie mode: they clear both cookies (`options`
 * as the middleware's, for the cookie names and attributes).
 */
export function signOutHeaders(options = {}) {
  return clearCookieHeaders(cookieSettings(options.cookie, options.csrf));
}

/**
 * Decides one request, storing the decision first: reads its devise credentials (or, with
 * `protocol: 'cookie'`, screens an unsafe request for forgery, answering 403 with its
 * `reason`, then reads the cookie) and drives
 * rotauth's exchange for it (`rotator.exchange`), doing the loads, compare-and-swaps and
 * deletes it asks for. Every rule of the loop is the exchange's: the claimed `uid` (the
 * middleware only says whether it is the stored session's), what each decision stores,
 * sends or deletes, the batch token, the bound on lost compare-and-swaps, reading back a
 * write whose fate a store failure left unknown. A store that fails is tried again, after
 * a pause that doubles from 10 ms to 250 ms, for `storePatienceMs` (default 5 000) from
 * the request's start; the request still decides with the time it arrived.
 *
 * Returns `{ ok: true, uid, clientId, kind, headers, lostSwaps }` to serve (send
 * `headers`), or `{ ok: false, reason, status }` to refuse (401) or to answer 503
 * (`store_failed`, `store_conflict`, `exchanges_full`) without a token.
 */
export async function authenticate(options, request) {
  return decideRequest(options, request, true);
}

/**
 * Whether a request's credentials are accepted, storing nothing and sending no token: for
 * sign-out and account deletion. A replay that the policy revokes still deletes its
 * session. Returns `{ ok: true, uid, clientId, kind }` or a refusal as `authenticate`.
 */
export async function check(options, request) {
  return decideRequest(options, request, false);
}

/** How long a request keeps trying a failing store unless set otherwise, in ms. */
export const STORE_PATIENCE_MS = 5_000;

const UNAVAILABLE = Object.freeze({
  store: Object.freeze({ ok: false, status: 503, reason: 'store_failed' }),
  contention: Object.freeze({ ok: false, status: 503, reason: 'store_conflict' }),
  full: Object.freeze({ ok: false, status: 503, reason: 'exchanges_full' }),
});

async function decideRequest(options, request, commit) {
  const { rotator, store, clock = Date.now, echoCurrent = false, maxAttempts } = options;
  const cookie = cookieMode(options);
  let presented;
  if (cookie === undefined) {
    presented = credentials(request.headers, request.url);
    if (presented === undefined) return { ok: false, status: 401, reason: 'no_credentials' };
  } else {
    // Before the credentials are read: a forged request spends no rotation.
    const forbidden = screen(request, cookie);
    if (forbidden !== undefined) return { ok: false, status: 403, reason: forbidden };
    presented = cookieCredentials(request.headers, cookie);
    if (presented.refused !== undefined) return { ok: false, status: 401, reason: presented.refused };
  }
  const client = presented.client;
  // The cookie names no user: the response names the stored session's.
  let storedUid = presented.uid;
  let exchange;
  try {
    exchange = rotator.exchange(presented.token, clock(), {
      unbatch: commit && unbatch(request.url),
      check: !commit,
      batchToken: echoCurrent ? 'current' : 'blank',
      maxAttempts,
    });
  } catch (error) {
    if (error?.code === 'exchanges_full') return UNAVAILABLE.full;
    throw error;
  }
  const patience = new Patience(options.storePatienceMs ?? STORE_PATIENCE_MS);
  try {
    let step = exchange.step;
    for (;;) {
      switch (step.kind) {
        case 'load': {
          let stored;
          try {
            stored = await store.get(client);
          } catch {
            step = exchange.loadFailed();
            break;
          }
          // devise finds the user by `uid`, then the token among that user's clients.
          if (stored !== undefined && presented.uid === undefined) storedUid = stored.uid;
          step =
            stored === undefined
              ? exchange.loaded(null)
              : exchange.loaded(stored.record, presented.uid === undefined || stored.uid === presented.uid);
          break;
        }
        case 'store': {
          let swapped;
          try {
            // The store may keep this very array: it is not wiped here.
            swapped = await store.compareAndSwap(client, step.expectedVersion, { record: step.record, version: step.version });
          } catch {
            step = exchange.swapFailed();
            break;
          }
          step = exchange.swapped(swapped === true);
          break;
        }
        case 'delete':
          try {
            await store.delete(client);
          } catch {
            step = exchange.deleteFailed();
            break;
          }
          step = exchange.deleted();
          break;
        case 'store_failed':
          step = (await patience.wait()) ? exchange.retry() : exchange.giveUp();
          break;
        default:
          return result(step.answer, { client, uid: storedUid }, cookie);
      }
    }
  } finally {
    // Nothing after an answer; an exception from the store's code or an aborted request
    // frees the exchange here.
    exchange.close();
  }
}

/** The middleware's result for the exchange's answer. */
function result(answer, presented, cookie) {
  const { uid, client } = presented;
  switch (answer.kind) {
    case 'serve':
      return {
        ok: true,
        uid,
        clientId: client,
        kind: answer.decision,
        lostSwaps: answer.lostSwaps,
        headers: (cookie === undefined ? deviseHeaders : cookieHeaders)(
          { clientId: client, uid, token: answer.token, expiresAt: answer.expiresAt },
          cookie,
        ),
      };
    case 'accepted':
      return { ok: true, uid, clientId: client, kind: answer.decision };
    case 'refuse':
      switch (answer.refusal) {
        case 'rejected':
        case 'revoked':
          return { ok: false, status: 401, reason: answer.reason, revoked: answer.refusal === 'revoked' };
        default:
          return { ok: false, status: 401, reason: answer.refusal };
      }
    default:
      return answer.cause === 'contention' ? UNAVAILABLE.contention : UNAVAILABLE.store;
  }
}

/**
 * How long one request keeps trying a failing store: until a deadline set when it began,
 * with a pause before each try that doubles up to a bound (as rotauth's Rust layer does).
 */
class Patience {
  static FIRST_PAUSE_MS = 10;
  static LONGEST_PAUSE_MS = 250;
  #deadline;
  #pause = Patience.FIRST_PAUSE_MS;

  constructor(patienceMs) {
    this.#deadline = performance.now() + Math.max(0, Number(patienceMs) || 0);
  }

  /** Waits before the next try; `false` (at once) when the deadline has passed. */
  async wait() {
    const left = this.#deadline - performance.now();
    if (!(left > 0)) return false;
    await new Promise((resolve) => setTimeout(resolve, Math.min(this.#pause, left)));
    this.#pause = Math.min(this.#pause * 2, Patience.LONGEST_PAUSE_MS);
    return true;
  }
}

/** The 503 of a request the store could not serve: no token, `Retry-After: 1`. */
export function unavailableResponse() {
  return new Response(JSON.stringify(UNAVAILABLE_BODY), {
    status: 503,
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'retry-after': '1',
      'cache-control': 'no-store',
    },
  });
}

/**
 * The middleware: authenticates every request it guards, answers 401 with devise's body
 * (or `onUnauthorized(c, result)`) when refused, and otherwise sets `c.var.rotauth`
 * (`{ uid, clientId, kind }`) for the handler and the devise headers on its response.
 *
 * Options: `rotator`, `store` (a `SessionStore`), `clock` (Unix ms, default `Date.now`),
 * `echoCurrent` (send `T(n)` instead of a blank in batch responses), `storePatienceMs`
 * (how long a request keeps trying a failing store; default 5 000), `maxAttempts`
 * (decisions per request before a 503; default rotauth's), `onUnauthorized`, and for the
 * cookie transport `protocol: 'cookie'` with `cookie: { name, csrfName, sameSite,
 * doubleSubmit }` and `csrf: { allowedOrigins, allowSameSite, allowUnknownOrigin }`
 * (lib/cookie.js): a request that may be forged answers 403 `{ errors: ['forbidden'],
 * reason }`, a refused one 401 `{ errors: ['unauthorized'] }` that clears the cookie only
 * when the session was revoked.
 */
export function rotauth(options) {
  const { rotator, store } = options ?? {};
  if (rotator === undefined || store === undefined) {
    throw new TypeError('rotauth(): `rotator` and `store` are required');
  }
  // Checked once, so that a bad setting fails at start-up.
  const cookie = cookieMode(options);
  return async (c, next) => {
    const result = await authenticate(options, c.req.raw);
    if (!result.ok) {
      if (result.status === 503) return unavailableResponse();
      if (result.status === 403) return forbiddenResponse(result.reason);
      const refused = options.onUnauthorized?.(c, result);
      if (refused !== undefined) return refused;
      return cookie === undefined ? c.json(UNAUTHORIZED_BODY, 401) : cookieUnauthorizedResponse(result, cookie);
    }
    c.set('rotauth', { uid: result.uid, clientId: result.clientId, kind: result.kind });
    await next();
    // `Set-Cookie` is appended, each one: the handler's cookies stay beside ours.
    const copy = (headers) => {
      for (const [name, value] of result.headers) {
        if (name === 'set-cookie') headers.append(name, value);
        else headers.set(name, value);
      }
    };
    try {
      copy(c.res.headers);
    } catch {
      // A response with immutable headers (e.g. one passed through from `fetch`): copy it.
      c.res = new Response(c.res.body, c.res);
      copy(c.res.headers);
    }
  };
}
