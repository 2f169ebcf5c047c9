// What the proxy of test/tabs.mjs reads off the wire, per protocol: the session and token
// generation a request presents, and the one a response hands out. The generation sits in
// the clear in a token's text (key id, then the generation as a big-endian u64), so the
// proxy can order tokens without the key, as the client does.

const TOKEN_LENGTH = 55;
const COOKIE = '__Host-rotauth';

/** The generation of token text, or undefined if it is not a token. */
export function generation(token) {
  if (typeof token !== 'string' || token.length !== TOKEN_LENGTH) return undefined;
  return Buffer.from(token.slice(0, 12), 'base64url').readBigUInt64BE(1);
}

/** `<client>.<token>` as `{ client, generation }`, or undefined. */
function dotted(value) {
  const text = value?.trim() ?? '';
  const dot = text.indexOf('.');
  if (dot <= 0) return undefined;
  const g = generation(text.slice(dot + 1));
  return g === undefined ? undefined : { client: text.slice(0, dot), generation: g };
}

const first = (value) => (Array.isArray(value) ? value[0] : value);

/** The value of cookie `name` among `Cookie` header text, or undefined. */
function cookieValue(header, name) {
  for (const pair of (header ?? '').split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * What request `headers` (Node's lowercase object) present under `protocol`
 * (`devise`, `bearer` or `cookie`): `{ client, generation }`, or undefined.
 */
export function presented(protocol, headers) {
  if (protocol === 'bearer') {
    const auth = first(headers.authorization) ?? '';
    return auth.startsWith('Rotauth ') ? dotted(auth.slice('Rotauth '.length)) : undefined;
  }
  if (protocol === 'cookie') return dotted(cookieValue(first(headers.cookie), COOKIE));
  const client = first(headers.client);
  const g = generation(first(headers['access-token'])?.trim());
  return client === undefined || g === undefined ? undefined : { client, generation: g };
}

/** What response `headers` (same shape; `set-cookie` an array) hand out, or undefined. */
export function handedOut(protocol, headers) {
  if (protocol === 'bearer') return dotted(first(headers['rotauth-token']));
  if (protocol === 'cookie') {
    const cookies = [headers['set-cookie'] ?? []].flat();
    for (const cookie of cookies) {
      const value = cookieValue(cookie.split(';')[0], COOKIE);
      if (value !== undefined) return dotted(value);
    }
    return undefined;
  }
  return presented('devise', headers);
}
