/**
 * rotauth: per-request auth token rotation with batch windows and replay detection
 * (devise_token_auth's model), as a WebAssembly module with no imports.
 *
 * Make one {@link Rotator} per process from your keys and policy; store the `record` of
 * each session in your database, keyed by its client id; call {@link Rotator.decide} on
 * every authenticated request and do what the decision says.
 */

/** Unix milliseconds: a non-negative safe integer, a `bigint` up to 2^64 - 1, or a `Date`. */
export type Millis = number | bigint | Date;

/** One key of the keyring: at least 32 secret bytes, and the public id tokens carry. */
export interface KeyEntry {
  /** 0 to 255. */
  id: number;
  /** 32 to 256 bytes (longer than 64 are hashed first, as HMAC does). */
  key: Uint8Array;
}

/** The keys and the rotation policy. Defaults are devise_token_auth's. */
export interface RotatorOptions {
  /** 1 to 4 keys. */
  keys: KeyEntry[];
  /** The id of the key that signs new tokens. Default: the first key's. */
  primary?: number;
  /** The batch window `W`, in ms (devise's `batch_request_buffer_throttle`). Default 5 000. */
  batchWindowMs?: number | bigint;
  /** The sliding lifespan, in ms (devise's `token_lifespan`). Default 14 days. */
  lifespanMs?: number | bigint;
  /** How long a session may live after sign-in, however often it rotates. Default none. */
  absoluteLifetimeMs?: number | bigint | null;
  /** Rotate on each request outside the window (devise's `change_headers_on_each_request`). Default true. */
  rotate?: boolean;
  /**
   * 'strict' (default): an invalidated token fails outside the batch window. 'recover': a
   * client whose response was lost may exchange `T(n-1)` for `T(n)` once, while `T(n)`
   * was never used.
   */
  mode?: 'strict' | 'recover';
  /** 'reject' (default), or 'revoke_session': a replay tells the host to delete the session. */
  replayPolicy?: 'reject' | 'revoke_session';
}

/** A new session: store `record` under `clientId` (devise's `client`), send `token`. */
export interface SignedIn {
  /**
   * The session record to store (75 bytes; holds the seed: store it as a secret). Yours to
   * keep; a view into a block shared with other records, so pass on its bytes, not its
   * whole `.buffer` (as with Node's pooled `Buffer`s).
   */
  record: Uint8Array;
  /** The session's public id: 22 characters of base64url. */
  clientId: string;
  /** `T(0)`: 55 characters of base64url. */
  token: string;
  /** The record's compare-and-swap version: `0n`. */
  version: bigint;
  /** When the session expires, Unix ms. */
  expiresAt: number;
}

export type DecisionKind = 'accept' | 'rotate' | 'batch_reuse' | 'reissue' | 'reject' | 'revoke';

export type RejectReason =
  | 'unknown_session'
  | 'malformed'
  | 'unknown_key'
  | 'forged'
  | 'expired'
  | 'too_old'
  | 'replayed';

/**
 * What the host must do with a request:
 *
 * - `accept` (rotation off): serve; send the presented token back.
 * - `rotate`: store `record` first (compare-and-swap on the version you read; on a lost
 *   swap, read again and decide again); then serve and send `token`.
 * - `batch_reuse`: serve; send no token (devise: `" "`); store `record` first if present.
 * - `reissue` (recover mode): store `record` first if present; serve and send `token`.
 * - `reject`: 401, no token, store nothing.
 * - `revoke`: 401, no token, delete the session (a replay under 'revoke_session').
 */
export interface Decision {
  kind: DecisionKind;
  /** Whether the request may be served: false for `reject` and `revoke`. */
  accepted: boolean;
  /** Whether the host must delete the session (`kind === 'revoke'`). */
  revoke: boolean;
  /** The record to store before replying, if it changed (a view of its own 75 bytes, as `SignedIn.record`). */
  record?: Uint8Array;
  /** The version of `record`, for the next compare-and-swap. */
  version?: bigint;
  /** The token to send (`rotate`, `reissue`). */
  token?: string;
  /** When the session expires, Unix ms (accepted requests): devise's `expiry`. */
  expiresAt?: number;
  /** Why it was refused. */
  reason?: RejectReason;
  /** On `replayed`: how many generations behind the current one the token is. */
  behind?: number;
}

export interface DecideOptions {
  /** devise's `unbatch=true`: rotate for any batch member inside the window. */
  unbatch?: boolean;
}

/** The public fields of a stored record. */
export interface SessionInfo {
  clientId: string;
  keyId: number;
  generation: bigint;
  createdAt: number;
  rotatedAt: number;
  expiresAt: number;
  acknowledged: boolean;
  reissued: boolean;
  version: bigint;
}

/**
 * A host's keys and policy, made once by {@link createRotator}: its own WebAssembly
 * instance keeps every key's HMAC schedule, so no call rebuilds one.
 */
export class Rotator {
  private constructor();
  /** Signs a session in. `entropy`: 32 bytes, default `crypto.getRandomValues`. */
  signIn(now: Millis, entropy?: Uint8Array): SignedIn;
  /** Decides one request; `record` is `null` when the host has no session for the client id. */
  decide(record: Uint8Array | null, token: string, now: Millis, options?: DecideOptions): Decision;
  /** The session's current token `T(n)`. */
  currentToken(record: Uint8Array): string;
  /** The public fields of a record, after checking that it decodes. */
  inspect(record: Uint8Array): SessionInfo;
  /**
   * The token a batch member presenting `token` is sent when batch responses carry the
   * current token: `T(n)` to a holder of `T(n)` or `T(n-1)`, `undefined` otherwise.
   */
  batchToken(record: Uint8Array, token: string): string | undefined;
  /** Decisions per request before a 503 (one plus the lost compare-and-swaps allowed). */
  readonly maxAttempts: number;
  /**
   * Starts the request loop of one request: rotauth's exchange, driven by the host with its
   * store's I/O. Throws `ExchangeError('exchanges_full')` when `exchangeCapacity` requests
   * are in flight already (answer 503).
   */
  exchange(token: string, now: Millis, options?: ExchangeOptions): Exchange;
  /** How many exchanges (requests in flight) the rotator holds at once. */
  readonly exchangeCapacity: number;
  /** Adds a key that verifies tokens naming `id`; it signs nothing until made primary. */
  addKey(id: number, key: Uint8Array): void;
  /** Makes `id` the key that signs new tokens; sessions move to it as they rotate. */
  setPrimary(id: number): void;
  /** Removes a key: tokens naming it are refused from now on. */
  removeKey(id: number): void;
  /** The key ids, the primary first. */
  readonly keyIds: number[];
  readonly primaryKeyId: number;
  /** Wipes the instance's memory; every later call throws `InputError('disposed')`. */
  dispose(): void;
  [Symbol.dispose](): void;
}

export interface ExchangeOptions {
  /** devise's `unbatch=true`: rotate for any batch member inside the window. */
  unbatch?: boolean;
  /** Decide only, store nothing and send no token (sign-out, account deletion). */
  check?: boolean;
  /** What a batch member's response carries: nothing (default) or `T(n)` to a holder of `T(n)` or `T(n-1)`. */
  batchToken?: 'blank' | 'current';
  /** Decisions per request before a 503. Default: rotauth's (`maxAttempts`). */
  maxAttempts?: number;
}

/** What the host does next in an exchange. */
export type ExchangeStep =
  | { kind: 'load' }
  /** Compare-and-swap: store `record` (version `version`) if the stored version is still `expectedVersion`. */
  | { kind: 'store'; record: Uint8Array; version: bigint; expectedVersion: bigint }
  | { kind: 'delete' }
  /** The store failed: wait and `retry()`, or `giveUp()`. */
  | { kind: 'store_failed' }
  | { kind: 'answer'; answer: ExchangeAnswer };

/** How an exchange ends. */
export type ExchangeAnswer =
  /** Serve, sending `token` if any (stored already); `reply` says which token it is. */
  | {
      kind: 'serve';
      decision: DecisionKind;
      reply: 'new_token' | 'batch' | 'current' | 'same_token';
      token?: string;
      expiresAt: number;
      lostSwaps: number;
    }
  /** A check's answer: the credentials are accepted; nothing stored, no token. */
  | { kind: 'accepted'; decision: DecisionKind }
  /** 401, no token. */
  | { kind: 'refuse'; refusal: 'user_mismatch' | 'rejected' | 'revoked' | 'corrupt_record'; reason?: RejectReason; behind?: number }
  /** 503 with `Retry-After`, no token. */
  | { kind: 'unavailable'; cause: 'store' | 'contention' };

/**
 * One request's loop around the decision (rotauth's exchange), made by
 * `rotator.exchange()`: the host does the I/O each `step` asks for and reports it back,
 * until the step is an answer. `close()` an exchange left before its answer.
 */
export class Exchange {
  private constructor();
  /** What the host does next: a load first. */
  readonly step: ExchangeStep;
  /** Whether the exchange has answered or was closed. */
  readonly done: boolean;
  /** What the load found: the record (`null` when there is no session) and whether the claimed user is the session's. */
  loaded(record: Uint8Array | null, claimMatches?: boolean): ExchangeStep;
  loadFailed(): ExchangeStep;
  /** `true`: stored; `false`: lost to another version. */
  swapped(stored: boolean): ExchangeStep;
  /** The compare-and-swap failed without saying whether it wrote. */
  swapFailed(): ExchangeStep;
  deleted(): ExchangeStep;
  deleteFailed(): ExchangeStep;
  retry(): ExchangeStep;
  giveUp(): ExchangeStep;
  /** Ends the exchange before its answer and wipes it. */
  close(): void;
  [Symbol.dispose](): void;
}

/** Makes a rotator. Rejects with a `ConfigError`, `KeyError` or `InputError`. */
export function createRotator(options: RotatorOptions): Promise<Rotator>;

/** Makes a rotator from an already compiled module (`rotauth/rotauth.wasm`). */
export function instantiate(module: WebAssembly.Module, options: RotatorOptions): Promise<Rotator>;

/** The linear memory of a rotator's instance, for audits. */
export function wasmMemory(rotator: Rotator): WebAssembly.Memory;

export const RECORD_LEN: 75;
export const TOKEN_TEXT_LEN: 55;
export const MIN_KEY_LEN: 32;
export const MAX_KEYS: 4;

export type ErrorCode =
  | KeyErrorCode
  | ConfigErrorCode
  | RecordErrorCode
  | InputErrorCode
  | ExchangeErrorCode
  | 'internal';

export type ExchangeErrorCode = 'exchanges_full' | 'unknown_exchange';

export type KeyErrorCode =
  | 'key_too_short'
  | 'key_too_long'
  | 'invalid_key_id'
  | 'duplicate_key_id'
  | 'keyring_full'
  | 'unknown_key_id'
  | 'removing_primary'
  | 'key_removed';

export type ConfigErrorCode =
  | 'zero_lifespan'
  | 'zero_absolute_lifetime'
  | 'window_longer_than_lifespan'
  | 'absolute_lifetime_shorter_than_window'
  | 'invalid_config';

export type RecordErrorCode = 'record_length' | 'record_format' | 'record_invalid';

export type InputErrorCode =
  | 'invalid_time'
  | 'invalid_token'
  | 'invalid_record'
  | 'invalid_entropy'
  | 'invalid_key'
  | 'invalid_option'
  | 'token_too_long'
  | 'disposed';

/** Every error this package throws; nothing changed when one is thrown. */
export class RotauthError extends Error {
  readonly code: ErrorCode;
}
/** A key or key id refused by the keyring. */
export class KeyError extends RotauthError {
  readonly code: KeyErrorCode;
}
/** A policy refused when the rotator is made. */
export class ConfigError extends RotauthError {
  readonly code: ConfigErrorCode;
}
/** A stored record that is not one. */
export class RecordError extends RotauthError {
  readonly code: RecordErrorCode;
}
/** An argument of the wrong type or range. */
export class InputError extends RotauthError {
  readonly code: InputErrorCode;
}
/** An exchange that cannot start (the rotator's table is full: answer 503) or has ended. */
export class ExchangeError extends RotauthError {
  readonly code: ExchangeErrorCode;
}
