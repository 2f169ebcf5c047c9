/**
 * rotauth for Hono: a middleware speaking devise_token_auth's headers, a session store
 * interface with an in-memory store, and helpers for sign-in and sign-out routes.
 */
import type { Context, MiddlewareHandler } from 'hono';
import type { DecisionKind, RejectReason, Rotator } from './index.js';

/** A session as a store keeps it, under its client id. */
export interface StoredSession {
  /** The user's uid (devise: the email); a request must present the same. */
  uid: string;
  /** The compare-and-swap version of `record`. */
  version: bigint;
  /** The session record (a secret: it holds the seed). */
  record: Uint8Array;
}

/**
 * Where sessions live. Every write of a changed record is a compare-and-swap on the
 * version read (`UPDATE … WHERE client_id = ? AND version = ?`, Redis `WATCH`, DynamoDB
 * conditions); a lost swap makes the middleware read and decide again.
 */
export interface SessionStore {
  get(clientId: string): Promise<StoredSession | undefined>;
  /** Stores a new session; false if the client id is taken. */
  insert(clientId: string, session: StoredSession): Promise<boolean>;
  /** Replaces the session if its version is still `expectedVersion`; false otherwise. */
  compareAndSwap(clientId: string, expectedVersion: bigint, next: { record: Uint8Array; version: bigint }): Promise<boolean>;
  /** Deletes the session; false if there was none. */
  delete(clientId: string): Promise<boolean>;
}

/** Sessions in a `Map`: for tests, examples and single-process servers. */
export class MemoryStore implements SessionStore {
  get(clientId: string): Promise<StoredSession | undefined>;
  insert(clientId: string, session: StoredSession): Promise<boolean>;
  compareAndSwap(clientId: string, expectedVersion: bigint, next: { record: Uint8Array; version: bigint }): Promise<boolean>;
  delete(clientId: string): Promise<boolean>;
  readonly size: number;
}

export interface AuthOptions {
  rotator: Rotator;
  store: SessionStore;
  /** Unix ms. Default `Date.now`. */
  clock?: () => number;
  /** Send `T(n)` instead of a blank in batch responses (to holders of `T(n)` or `T(n-1)`). Default false (devise). */
  echoCurrent?: boolean;
  /** How long a request keeps trying a failing store, from its start, in ms. Default 5 000. */
  storePatienceMs?: number;
  /** Decisions per request before a 503 (one plus the lost compare-and-swaps allowed). Default rotauth's. */
  maxAttempts?: number;
  /** How credentials travel: devise's headers (default) or one httpOnly cookie. */
  protocol?: 'devise' | 'cookie';
  /** The cookie transport's cookies. */
  cookie?: CookieOptions;
  /** The cookie transport's screening of unsafe requests another site may have forged. */
  csrf?: CsrfOptions;
}

/** The cookies of the cookie transport; each is `Secure`, `Path=/`, without `Domain`. */
export interface CookieOptions {
  /** The credentials cookie (httpOnly). Default `__Host-rotauth`. */
  name?: string;
  /** The readable double-submit cookie. Default `__Host-rotauth-csrf`. */
  csrfName?: string;
  /** Default `'Lax'`. */
  sameSite?: 'Lax' | 'Strict';
  /** Unsafe requests must carry `X-CSRF-Token` equal to the readable cookie. Default false. */
  doubleSubmit?: boolean;
}

/** Which unsafe requests (not GET, HEAD, OPTIONS) pass, besides those of the request's own origin. */
export interface CsrfOptions {
  /** Origins allowed besides the request's own (`https://admin.example.com`). */
  allowedOrigins?: readonly string[];
  /** Without `Origin`, `Sec-Fetch-Site: same-site` passes. Default false. */
  allowSameSite?: boolean;
  /** A request with neither `Origin` nor `Sec-Fetch-Site` passes (clients that are not browsers). Default false. */
  allowUnknownOrigin?: boolean;
}

/** What `c.var.rotauth` holds in a guarded handler. */
export interface RotauthVariables {
  uid: string;
  clientId: string;
  kind: DecisionKind;
}

export type AuthResult =
  | { ok: true; uid: string; clientId: string; kind: DecisionKind; headers?: Headers; lostSwaps?: number }
  | { ok: false; status: 403; reason: 'cross_origin' | 'cross_site' | 'unknown_origin' | 'csrf_token' }
  | {
      ok: false;
      status: 401 | 503;
      reason:
        | RejectReason
        | 'no_credentials'
        | 'malformed_credentials'
        | 'unknown_session'
        | 'user_mismatch'
        | 'corrupt_record'
        | 'store_failed'
        | 'store_conflict'
        | 'exchanges_full';
      revoked?: boolean;
    };

export interface MiddlewareOptions extends AuthOptions {
  /** The response for a refused request. Default: 401 with devise's body. */
  onUnauthorized?: (c: Context, result: Extract<AuthResult, { ok: false }>) => Response | Promise<Response>;
}

/** The middleware: 401 when refused, else `c.var.rotauth` and the devise headers on the response. */
export function rotauth(options: MiddlewareOptions): MiddlewareHandler<{ Variables: { rotauth: RotauthVariables } }>;

/** Decides one request, storing the decision before anything is sent. */
export function authenticate(options: AuthOptions, request: Request): Promise<AuthResult>;

/** Whether a request's credentials are accepted, storing nothing (sign-out, account deletion). */
export function check(options: AuthOptions, request: Request): Promise<AuthResult>;

/** How long a request keeps trying a failing store unless set otherwise, in ms. */
export const STORE_PATIENCE_MS: 5000;

/** The 503 of a request the store could not serve: no token, `Retry-After: 1`. */
export function unavailableResponse(): Response;

export const UNAVAILABLE_BODY: Readonly<{ errors: string[] }>;

/** Signs `uid` in: stores a new session and returns the headers that carry `T(0)` (devise's, or the `Set-Cookie` in cookie mode). */
export function startSession(
  options: { rotator: Rotator; store: SessionStore; uid: string; now?: number } & Pick<AuthOptions, 'protocol' | 'cookie' | 'csrf'>,
): Promise<{ clientId: string; headers: Headers }>;

/** Why a request may be forged by another site, in cookie mode (for a sign-in route); `undefined` to go on. */
export function screenRequest(
  options: Pick<AuthOptions, 'protocol' | 'cookie' | 'csrf'>,
  request: Request,
): 'cross_origin' | 'cross_site' | 'unknown_origin' | 'csrf_token' | undefined;

/** The headers of a sign-out response in cookie mode: they clear both cookies. */
export function signOutHeaders(options?: Pick<AuthOptions, 'cookie' | 'csrf'>): Headers;

/** The one value of a cookie; `null` when its name appears with values that differ. */
export function cookieValue(headers: Headers, name: string): string | null | undefined;

/** The cookie transport's credentials, or why there are none. */
export function cookieCredentials(
  headers: Headers,
  settings: { name: string },
): { client: string; token: string; refused?: undefined } | { refused: 'no_credentials' | 'malformed_credentials' };

/** The 403 of a request that may be forged: `{ errors: ['forbidden'], reason }`. */
export function forbiddenResponse(reason: string): Response;

export const COOKIE_DEFAULTS: Readonly<{ name: string; csrfName: string; csrfHeader: string; sameSite: 'Lax' }>;
export const COOKIE_UNAUTHORIZED_BODY: Readonly<{ errors: string[] }>;

/** The credentials of a request (headers, else `Authorization: Bearer <base64 JSON>`, else the query string of `url`). */
export function credentials(headers: Headers, url?: string): { token: string; client: string; uid: string } | undefined;

/** devise's `unbatch` query parameter. */
export function unbatch(url: string): boolean;

/** The five devise headers; no `token` is a batch response (blank token and expiry). */
export function deviseHeaders(fields: { clientId: string; uid: string; token?: string; expiresAt?: number }): Headers;

export const HEADERS: Readonly<{ accessToken: 'access-token'; tokenType: 'token-type'; client: 'client'; expiry: 'expiry'; uid: 'uid' }>;
export const UNAUTHORIZED_BODY: Readonly<{ errors: string[] }>;

/** The environment type of apps that use the middleware. */
export type RotauthEnv = { Variables: { rotauth: RotauthVariables } };

declare module 'hono' {
  interface ContextVariableMap {
    /** Set by the rotauth middleware for the handlers it guards. */
    rotauth: RotauthVariables;
  }
}
