// How credentials travel, for the two protocols of rotauth's web layer
// (rotauth-axum/src/protocol/): where a request carries them, and where a response
// carries the next token. A response with no token, or a blank one, offers nothing: the
// client keeps what it has.

import type { Session, SessionId } from './session.js';
import { tokenGeneration } from './token.js';

/**
 * `'devise'`: devise_token_auth's headers `access-token`, `client`, `uid` (and
 * `token-type`, `expiry`), both ways; a batch response carries `access-token: " "`.
 * `'bearer'`: `Authorization: Rotauth <client>.<token>` on requests and
 * `Rotauth-Token: <client>.<token>` on responses that rotate; a batch response has none.
 */
export type Protocol = 'devise' | 'bearer';

/** The scheme of the `bearer` protocol's `Authorization` header. */
const SCHEME = 'Rotauth';

/** Credentials a response hands out: a session id and its token. */
export interface Offer extends SessionId {
  readonly token: string;
  readonly expiry?: string | undefined;
}

/** Sets `session`'s credentials on request `headers`. */
export function attach(protocol: Protocol, headers: Headers, session: Session): void {
  if (protocol === 'bearer') {
    headers.set('authorization', `${SCHEME} ${session.client}.${session.token}`);
    return;
  }
  headers.set('access-token', session.token);
  headers.set('token-type', 'Bearer');
  headers.set('client', session.client);
  if (session.uid !== undefined) headers.set('uid', session.uid);
  if (session.expiry !== undefined) headers.set('expiry', session.expiry);
}

const field = (headers: Headers, name: string): string | undefined => {
  const value = headers.get(name)?.trim();
  return value === undefined || value === '' ? undefined : value;
};

/**
 * The credentials response `headers` hand out, or `undefined`: no token, a blank one, or
 * one that is not a rotauth token (its generation could not be compared, so adopting it
 * could move the client backwards).
 */
export function offer(protocol: Protocol, headers: Headers): Offer | undefined {
  if (protocol === 'bearer') {
    const value = field(headers, 'rotauth-token');
    const dot = value?.indexOf('.') ?? -1;
    if (value === undefined || dot <= 0) return undefined;
    const token = value.slice(dot + 1);
    return tokenGeneration(token) === undefined ? undefined : { client: value.slice(0, dot), token };
  }
  const token = field(headers, 'access-token');
  const client = field(headers, 'client');
  if (token === undefined || client === undefined || tokenGeneration(token) === undefined) return undefined;
  return { client, uid: field(headers, 'uid'), token, expiry: field(headers, 'expiry') };
}
