// What a client knows of its session, and the order that decides which of two such
// values is the newer. Every tab keeps the greatest value it has seen and writes only a
// value greater than the stored one, so tabs converge on the newest without a lock: the
// order is total, and each step moves up it.

import { tokenGeneration } from './token.js';

/** Who a session is: its client id (devise's `client`) and, for devise, its `uid`. */
export interface SessionId {
  /** The session's public client id. */
  readonly client: string;
  /** The user's uid (devise only). */
  readonly uid?: string | undefined;
}

/** A live session: the newest token this client knows, and where it comes from. */
export interface Session extends SessionId {
  /** The token the next request presents. Secret: never log it. */
  readonly token: string;
  /** devise's `expiry` (Unix seconds, as the server sent it). */
  readonly expiry?: string | undefined;
  /** When the session was signed in, by the clock of the tab that signed it in (Unix ms). */
  readonly since: number;
}

/** Why a session ended. */
export type EndReason = 'refused' | 'signed_out';

/**
 * A session that ended: no token, only the public id, so that a tab that has not heard of
 * the end yet cannot write the session back.
 */
export interface EndedSession extends SessionId {
  readonly since: number;
  readonly ended: EndReason;
}

/** What a client knows: a live session, an ended one, or nothing yet. */
export type Known = Session | EndedSession;

/** Whether `known` is live. */
export function isLive(known: Known | undefined): known is Session {
  return known !== undefined && !('ended' in known);
}

/**
 * Whether `a` and `b` name the same session: the same client id and, when both carry one,
 * the same uid. Generations are comparable only within one session, whichever key made
 * each token (a rotation moves a session to the primary key).
 */
export function sameSession(a: SessionId, b: SessionId): boolean {
  return a.client === b.client && (a.uid === undefined || b.uid === undefined || a.uid === b.uid);
}

/**
 * Whether `candidate` supersedes `held`. Within one session: an end beats every token,
 * and a token beats one of a lower generation (an equal one changes nothing). Between
 * sessions: the later sign-in wins (client id, then uid, break a tie so that every tab
 * picks the same one). Anything beats nothing; nothing beats nothing.
 */
export function newer(candidate: Known | undefined, held: Known | undefined): boolean {
  if (candidate === undefined) return false;
  if (held === undefined) return true;
  if (!sameSession(candidate, held)) {
    if (candidate.since !== held.since) return candidate.since > held.since;
    if (candidate.client !== held.client) return candidate.client > held.client;
    return (candidate.uid ?? '') > (held.uid ?? '');
  }
  if (!isLive(held)) return false;
  if (!isLive(candidate)) return true;
  return (tokenGeneration(candidate.token) ?? -1n) > (tokenGeneration(held.token) ?? -1n);
}

/** The session ended, for `reason`. */
export function ended(session: Session, reason: EndReason): EndedSession {
  const { client, uid, since } = session;
  return uid === undefined ? { client, since, ended: reason } : { client, uid, since, ended: reason };
}

/** The stored and broadcast form: versioned JSON. */
export function encode(known: Known): string {
  return JSON.stringify({ v: 1, ...known });
}

const text = (value: unknown): value is string => typeof value === 'string' && value !== '';
const optionalText = (value: unknown): value is string | undefined => value === undefined || text(value);

/**
 * The value `encode` wrote, or `undefined` for anything else: storage and messages are
 * input (another version of this code, a user's devtools, a broken store), and a value that
 * does not parse must never displace a good one, nor throw.
 */
export function decode(value: unknown): Known | undefined {
  if (typeof value !== 'string') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== 'object') return undefined;
  const { v, client, uid, since, token, expiry, ended: end } = parsed as Record<string, unknown>;
  if (v !== 1 || !text(client) || !optionalText(uid) || typeof since !== 'number' || !Number.isFinite(since)) {
    return undefined;
  }
  const id = uid === undefined ? { client, since } : { client, uid, since };
  if (end === 'refused' || end === 'signed_out') return { ...id, ended: end };
  if (end !== undefined || !text(token) || tokenGeneration(token) === undefined || !optionalText(expiry)) return undefined;
  return expiry === undefined ? { ...id, token } : { ...id, token, expiry };
}
