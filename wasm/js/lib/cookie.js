// The cookie transport of the Hono middleware, with the same rules and attributes as
// rotauth-axum's `CookieProtocol`: the credentials in one httpOnly `__Host-` cookie, set
// when a response carries a token, never cleared by a refusal (a late 401 must not wipe
// the cookie a newer response just set) but by a revocation or a sign-out, and CSRF
// screening of unsafe requests before the loop spends a rotation on them.

/** The defaults: cookie names, the double-submit header, `SameSite`. */
export const COOKIE_DEFAULTS = Object.freeze({
  name: '__Host-rotauth',
  csrfName: '__Host-rotauth-csrf',
  csrfHeader: 'x-csrf-token',
  sameSite: 'Lax',
});

/** The body of a refused request in cookie mode. */
export const COOKIE_UNAUTHORIZED_BODY = Object.freeze({ errors: ['unauthorized'] });

const TOKEN_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CLIENT_ID = /^[A-Za-z0-9_-]{22}$/;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * The middleware's cookie and CSRF settings, checked: `cookie: { name, csrfName,
 * sameSite: 'Lax' | 'Strict', doubleSubmit }`, `csrf: { allowedOrigins, allowSameSite,
 * allowUnknownOrigin }`. Every cookie is `Secure` with `Path=/` and no `Domain` (the
 * `__Host-` prefix's rules), whatever its name.
 */
export function cookieSettings(cookie = {}, csrf = {}) {
  const name = cookie.name ?? COOKIE_DEFAULTS.name;
  const csrfName = cookie.csrfName ?? COOKIE_DEFAULTS.csrfName;
  if (!TOKEN_NAME.test(name) || !TOKEN_NAME.test(csrfName) || name === csrfName) {
    throw new TypeError('rotauth(): a cookie name must be a token, and the two names must differ');
  }
  const sameSite = cookie.sameSite ?? COOKIE_DEFAULTS.sameSite;
  if (sameSite !== 'Lax' && sameSite !== 'Strict') {
    throw new TypeError("rotauth(): cookie.sameSite is 'Lax' or 'Strict'");
  }
  return Object.freeze({
    name,
    csrfName,
    sameSite,
    doubleSubmit: cookie.doubleSubmit === true,
    allowedOrigins: Object.freeze((csrf.allowedOrigins ?? []).map((o) => o.trim().replace(/\/+$/, '').toLowerCase())),
    allowSameSite: csrf.allowSameSite === true,
    allowUnknownOrigin: csrf.allowUnknownOrigin === true,
  });
}

const trim = (text) => text.replace(/^[ \t]+|[ \t]+$/g, '');

/**
 * The one value of cookie `name` in `headers` (the `Cookie` header; runtimes join several
 * with `; `): every pair split at its first `=`, name and value trimmed of blanks, the
 * name compared exactly. `undefined` when absent or empty; `null` when the name appears
 * with values that differ, so that a cookie tossed in beside the real one picks nothing.
 */
export function cookieValue(headers, name) {
  const header = headers.get('cookie');
  if (header === null) return undefined;
  let found;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0 || trim(pair.slice(0, eq)) !== name) continue;
    const value = trim(pair.slice(eq + 1));
    if (found !== undefined && found !== value) return null;
    found = value;
  }
  return found === '' ? undefined : found;
}

/**
 * The credentials in the cookie: `{ client, token }`, or `{ refused: 'no_credentials' |
 * 'malformed_credentials' }` (two values of the name that differ, or a value not
 * `<client id>.<token>`).
 */
export function cookieCredentials(headers, settings) {
  const value = cookieValue(headers, settings.name);
  if (value === undefined) return { refused: 'no_credentials' };
  if (value === null) return { refused: 'malformed_credentials' };
  const dot = value.indexOf('.');
  if (dot < 0) return { refused: 'malformed_credentials' };
  const client = value.slice(0, dot);
  const token = value.slice(dot + 1);
  if (!CLIENT_ID.test(client) || /^\s/.test(token)) return { refused: 'malformed_credentials' };
  return { client, token };
}

/** Whether two strings are equal, in a time that depends on their lengths only. */
function constantTimeEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * Why an unsafe request may be forged by another site, or `undefined` to judge it:
 * `Origin` first (the request's own host, or an allowed origin), else `Sec-Fetch-Site`
 * (`same-origin`, `none`, or `same-site` if allowed), else refused unless allowed; then,
 * with `doubleSubmit`, the header equal to the readable cookie and to the session's client
 * id. Reasons: `cross_origin`, `cross_site`, `unknown_origin`, `csrf_token`.
 */
export function screen(request, settings) {
  if (SAFE_METHODS.has(request.method)) return undefined;
  const headers = request.headers;
  const origin = headers.get('origin');
  if (origin !== null) {
    const value = origin.trim();
    const own = /^https?:\/\/(.+)$/.exec(value)?.[1];
    const host = headers.get('host') ?? new URL(request.url).host;
    const allowed =
      (own !== undefined && own.toLowerCase() === host.trim().toLowerCase()) || settings.allowedOrigins.includes(value.toLowerCase());
    if (!allowed) return 'cross_origin';
  } else {
    const site = headers.get('sec-fetch-site')?.trim();
    if (site === undefined || site === '') {
      if (!settings.allowUnknownOrigin) return 'unknown_origin';
    } else if (!(site === 'same-origin' || site === 'none' || (site === 'same-site' && settings.allowSameSite))) {
      return 'cross_site';
    }
  }
  if (settings.doubleSubmit) {
    const sent = headers.get(COOKIE_DEFAULTS.csrfHeader)?.trim() ?? '';
    const cookie = cookieValue(headers, settings.csrfName);
    const client = (cookieValue(headers, settings.name) ?? '').split('.')[0];
    if (sent === '' || typeof cookie !== 'string' || !constantTimeEqual(sent, cookie) || !constantTimeEqual(cookie, client)) {
      return 'csrf_token';
    }
  }
  return undefined;
}

function attributes(settings, httpOnly) {
  return `; Secure${httpOnly ? '; HttpOnly' : ''}; SameSite=${settings.sameSite}`;
}

/**
 * The headers of a response that carries `token` (none for a batch response: the browser
 * keeps what it has): the cookie with `Expires` at the session's expiry, the readable
 * CSRF cookie with `doubleSubmit`, and `Cache-Control: no-store`.
 */
export function cookieHeaders({ clientId, token, expiresAt }, settings) {
  const headers = new Headers();
  if (token === undefined) return headers;
  const expires = new Date(expiresAt).toUTCString();
  headers.append('set-cookie', `${settings.name}=${clientId}.${token}; Path=/; Expires=${expires}${attributes(settings, true)}`);
  if (settings.doubleSubmit) {
    headers.append('set-cookie', `${settings.csrfName}=${clientId}; Path=/; Expires=${expires}${attributes(settings, false)}`);
  }
  headers.set('cache-control', 'no-store');
  return headers;
}

/** The headers that clear both cookies: for sign-out, and for a revoked session. */
export function clearCookieHeaders(settings) {
  const headers = new Headers();
  for (const [name, httpOnly] of [
    [settings.name, true],
    [settings.csrfName, false],
  ]) {
    headers.append('set-cookie', `${name}=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT${attributes(settings, httpOnly)}`);
  }
  return headers;
}

/** The 403 of a request `screen` refused; the cookie stays. */
export function forbiddenResponse(reason) {
  return new Response(JSON.stringify({ errors: ['forbidden'], reason }), {
    status: 403,
    headers: { 'content-type': 'application/json; charset=utf-8' },
  });
}

/** The 401 of a refused request in cookie mode: the cookie stays, unless revoked. */
export function cookieUnauthorizedResponse(result, settings) {
  const headers = result.revoked === true ? clearCookieHeaders(settings) : new Headers();
  headers.set('content-type', 'application/json; charset=utf-8');
  return new Response(JSON.stringify(COOKIE_UNAUTHORIZED_BODY), { status: 401, headers });
}
