// rotauth's rotator for JavaScript: an ES-module wrapper around the zero-import WebAssembly
// module built from `wasm/` (its exports and buffer layout are documented in
// `wasm/src/lib.rs`). Every entry point of the package (`index.js`, `workerd.js`) re-exports
// this file with a way to load the module.
//
// One WebAssembly instance per rotator: it holds the keyring (each key's HMAC schedule
// precomputed once) and the policy in its linear memory across calls. Records, tokens and
// entropy pass through one fixed buffer in that memory; the module wipes its inputs and the
// stack it used before returning, and this wrapper wipes the outputs as soon as it has
// copied them out.

// Buffer layout: see wasm/src/lib.rs.
const KEY = 0;
const MAX_KEY_LEN = 256;
const RECORD = 256;
const INPUT = 336;
const MAX_INPUT_LEN = 128;
const ENTROPY_LEN = 32;
const TOKEN_OUT = 464;
const BEHIND_OUT = 520;
const KEY_IDS_OUT = 528;
const IO_LEN = 640;

/** Length of a session record in bytes (format 1). */
export const RECORD_LEN = 75;
/** Length of a token's text form. */
export const TOKEN_TEXT_LEN = 55;
/** Shortest key accepted, in bytes. */
export const MIN_KEY_LEN = 32;
/** Most keys a keyring holds at once. */
export const MAX_KEYS = 4;

// `init` flags.
const NO_ROTATION = 1;
const RECOVER = 2;
const REVOKE_ON_REPLAY = 4;
const ABSOLUTE_LIFETIME = 8;
// `decide` flags.
const FORCE_ROTATION = 1;
const NO_SESSION = 2;

const KINDS = ['accept', 'rotate', 'batch_reuse', 'reissue', 'reject', 'revoke'];
const REASONS = [
  undefined,
  'unknown_session',
  'malformed',
  'unknown_key',
  'forged',
  'expired',
  'too_old',
  'replayed',
];
const U64_MAX = (1n << 64n) - 1n;
const DEFAULTS = Object.freeze({
  batchWindowMs: 5_000,
  lifespanMs: 14 * 24 * 60 * 60 * 1_000,
});

/** Every error this package throws: `code` says which, as a stable string. */
export class RotauthError extends Error {
  constructor(code, message) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}
/** A key or key id refused by the keyring: nothing changed. */
export class KeyError extends RotauthError {}
/** A policy refused when the rotator is made. */
export class ConfigError extends RotauthError {}
/** A stored session record that is not one (wrong length, format or impossible fields). */
export class RecordError extends RotauthError {}
/** An argument of the wrong type or range (time, entropy, token, record, options). */
export class InputError extends RotauthError {}

// The module's negative statuses (wasm/src/lib.rs `Status`) as typed errors.
const STATUS = new Map([
  [-1, [KeyError, 'key_too_short', `a key must be at least ${MIN_KEY_LEN} bytes`]],
  [-2, [KeyError, 'key_too_long', `a key must be at most ${MAX_KEY_LEN} bytes`]],
  [-3, [KeyError, 'invalid_key_id', 'a key id must be an integer from 0 to 255']],
  [-4, [KeyError, 'duplicate_key_id', 'another key already has this id']],
  [-5, [KeyError, 'keyring_full', `the keyring already holds ${MAX_KEYS} keys`]],
  [-6, [KeyError, 'unknown_key_id', 'no key with this id in the keyring']],
  [-7, [KeyError, 'removing_primary', 'the primary key cannot be removed; make another primary first']],
  [-10, [ConfigError, 'zero_lifespan', 'lifespan must be longer than zero']],
  [-11, [ConfigError, 'zero_absolute_lifetime', 'absolute lifetime must be longer than zero']],
  [-12, [ConfigError, 'window_longer_than_lifespan', 'batch window must not be longer than the lifespan']],
  [-13, [ConfigError, 'absolute_lifetime_shorter_than_window', 'absolute lifetime must not be shorter than the batch window']],
  [-19, [ConfigError, 'invalid_config', 'the policy is refused']],
  [-20, [RecordError, 'record_length', `a session record is ${RECORD_LEN} bytes`]],
  [-21, [RecordError, 'record_format', 'the session record has an unknown format']],
  [-22, [RecordError, 'record_invalid', 'the session record holds values no decision can produce']],
  [-30, [InputError, 'token_too_long', 'token text too long']],
  [-31, [InputError, 'invalid_entropy', `sign-in needs ${ENTROPY_LEN} bytes of entropy`]],
  [-40, [InputError, 'disposed', 'the rotator has been disposed']],
  [-41, [KeyError, 'key_removed', "the key of the session's current token has been removed"]],
]);

function fail(status) {
  const [Class, code, message] = STATUS.get(status) ?? [RotauthError, 'internal', `status ${status}`];
  return new Class(code, message);
}

const TWO_32 = 2 ** 32;

/**
 * Milliseconds since the Unix epoch as the module's two `u32` halves (high, low), in
 * `halves`: cheaper across the boundary than a `BigInt`.
 */
const halves = [0, 0];
function splitMillis(value, what) {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) {
    halves[0] = Math.floor(value / TWO_32);
    halves[1] = value >>> 0;
    return halves;
  }
  const big = millis(value, what);
  halves[0] = Number(big >> 32n);
  halves[1] = Number(big & 0xffffffffn);
  return halves;
}

/** A duration in milliseconds (an option) as the module's `u64`. */
function duration(value, what) {
  if (value instanceof Date) throw new InputError('invalid_time', `${what} must be a number of milliseconds`);
  return millis(value, what);
}

/** Milliseconds since the Unix epoch as the module's `u64`. */
function millis(value, what) {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  } else if (typeof value === 'bigint') {
    if (value >= 0n && value <= U64_MAX) return value;
  } else if (value instanceof Date) {
    return millis(value.getTime(), what);
  }
  throw new InputError('invalid_time', `${what} must be Unix milliseconds: a non-negative integer`);
}

/**
 * Writes presented token text into the input area; returns its length. Token text is
 * ASCII; anything else cannot be a token, and is handed over as a byte that no token
 * contains. Text longer than the area is handed over as empty: both are "malformed".
 */
function putToken(io, token) {
  if (token.length > MAX_INPUT_LEN) return 0;
  for (let i = 0; i < token.length; i += 1) {
    const c = token.charCodeAt(i);
    io[INPUT + i] = c < 0x80 ? c : 0xff;
  }
  return token.length;
}

function keyId(id) {
  if (!Number.isInteger(id) || id < 0 || id > 255) throw fail(-3);
  return id;
}

function bytes(value, what) {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new InputError(`invalid_${what}`, `${what} must be a Uint8Array`);
}

function readU64(view, at) {
  return (BigInt(view.getUint32(at)) << 32n) | BigInt(view.getUint32(at + 4));
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
function base64url(data) {
  let out = '';
  let i = 0;
  for (; i + 3 <= data.length; i += 3) {
    const n = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    out += B64URL[n >> 18] + B64URL[(n >> 12) & 63] + B64URL[(n >> 6) & 63] + B64URL[n & 63];
  }
  const rest = data.length - i;
  if (rest === 1) {
    const n = data[i] << 16;
    out += B64URL[n >> 18] + B64URL[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (data[i] << 16) | (data[i + 1] << 8);
    out += B64URL[n >> 18] + B64URL[(n >> 12) & 63] + B64URL[(n >> 6) & 63];
  }
  return out;
}

/**
 * The public fields of a session record, read from its bytes (format 1, big-endian). The
 * record must already have been checked by the module.
 */
function fields(record) {
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
  const flags = record[66];
  return {
    clientId: base64url(record.subarray(1, 17)),
    keyId: record[33],
    generation: readU64(view, 34),
    createdAt: Number(readU64(view, 42)),
    rotatedAt: Number(readU64(view, 50)),
    expiresAt: Number(readU64(view, 58)),
    acknowledged: (flags & 1) !== 0,
    reissued: (flags & 2) !== 0,
    version: readU64(view, 67),
  };
}

function expiresAt(record) {
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
  return view.getUint32(58) * TWO_32 + view.getUint32(62);
}

/** The record's version, without `BigInt` arithmetic while it is below 2^53. */
function version(view, at) {
  const high = view.getUint32(at);
  return high < 0x200000 ? BigInt(high * TWO_32 + view.getUint32(at + 4)) : readU64(view, at);
}

function policyFlags(options) {
  const { rotate = true, mode = 'strict', replayPolicy = 'reject' } = options;
  if (typeof rotate !== 'boolean') throw new InputError('invalid_option', 'rotate must be a boolean');
  if (mode !== 'strict' && mode !== 'recover') {
    throw new InputError('invalid_option', "mode must be 'strict' or 'recover'");
  }
  if (replayPolicy !== 'reject' && replayPolicy !== 'revoke_session') {
    throw new InputError('invalid_option', "replayPolicy must be 'reject' or 'revoke_session'");
  }
  return (
    (rotate ? 0 : NO_ROTATION) |
    (mode === 'recover' ? RECOVER : 0) |
    (replayPolicy === 'revoke_session' ? REVOKE_ON_REPLAY : 0)
  );
}

const CREATE = Symbol('create');
const memories = new WeakMap();

/**
 * The linear memory of a rotator's WebAssembly instance, for audits: between calls it holds
 * the key schedules and zeroes, never a key, a seed, a record or a token.
 */
export function wasmMemory(rotator) {
  const memory = memories.get(rotator);
  if (memory === undefined) throw new InputError('invalid_option', 'not a rotator');
  return memory;
}

/**
 * Makes a rotator: its own WebAssembly instance of `module`, holding the keyring and the
 * policy. Used by the package's entry points, which supply the compiled module.
 */
export async function instantiate(module, options) {
  if (options === null || typeof options !== 'object') {
    throw new InputError('invalid_option', 'options must be an object');
  }
  const keys = options.keys;
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > MAX_KEYS) {
    throw new InputError('invalid_option', `keys must be an array of 1 to ${MAX_KEYS} { id, key }`);
  }
  for (const entry of keys) {
    if (entry === null || typeof entry !== 'object') {
      throw new InputError('invalid_option', 'each key must be { id, key }');
    }
    keyId(entry.id);
    bytes(entry.key, 'key');
  }
  const primary = options.primary ?? keys[0].id;
  if (!keys.some((entry) => entry.id === primary)) throw fail(-6);
  const flags = policyFlags(options);
  const window = duration(options.batchWindowMs ?? DEFAULTS.batchWindowMs, 'batchWindowMs');
  const lifespan = duration(options.lifespanMs ?? DEFAULTS.lifespanMs, 'lifespanMs');
  const absolute = options.absoluteLifetimeMs ?? null;
  const absoluteMs = absolute === null ? 0n : duration(absolute, 'absoluteLifetimeMs');

  const instance = await WebAssembly.instantiate(module, {});
  const first = keys.find((entry) => entry.id === primary);
  const rotator = new Rotator(CREATE, instance, [
    flags | (absolute === null ? 0 : ABSOLUTE_LIFETIME),
    window,
    lifespan,
    absoluteMs,
    first,
  ]);
  for (const entry of keys) {
    if (entry !== first) rotator.addKey(entry.id, entry.key);
  }
  return rotator;
}

/**
 * A host's keys and rotation policy, made once; signs sessions in and decides requests.
 * Holds no session: records live in the host's store and are passed in on every call.
 */
export class Rotator {
  #exports;
  #io;
  #view;
  #disposed = false;
  #codes = new Array(TOKEN_TEXT_LEN).fill(0);

  /** Not called directly: use `createRotator(options)`. */
  constructor(token, instance, init) {
    if (token !== CREATE) throw new InputError('invalid_option', 'use createRotator(options)');
    this.#exports = instance.exports;
    this.#attach();
    memories.set(this, instance.exports.memory);
    this.#init(...init);
  }

  #attach() {
    const base = this.#exports.io_buffer();
    this.#io = new Uint8Array(this.#exports.memory.buffer, base, IO_LEN);
    this.#view = new DataView(this.#exports.memory.buffer, base, IO_LEN);
  }

  /** The shared buffer; re-attached should the memory ever be replaced. */
  #buffer() {
    if (this.#disposed) throw fail(-40);
    if (this.#io.byteLength === 0) this.#attach();
    return this.#io;
  }

  /** Runs `work(io)` on the I/O area, wiped afterwards whatever happens. */
  #wiped(work) {
    const io = this.#buffer();
    try {
      return work(io);
    } finally {
      io.fill(0);
    }
  }

  /** Puts a stored record into the I/O area. */
  #putRecord(io, data) {
    if (data.length !== RECORD_LEN) throw fail(-20);
    io.set(data, RECORD);
  }

  #putKey(io, key) {
    const data = bytes(key, 'key');
    if (data.length > MAX_KEY_LEN) throw fail(-2);
    io.set(data, KEY);
    return data.length;
  }

  #init(flags, window, lifespan, absolute, { id, key }) {
    this.#wiped((io) => {
      const len = this.#putKey(io, key);
      const status = this.#exports.init(flags, window, lifespan, absolute, len, id);
      if (status < 0) throw fail(status);
    });
  }

  /**
   * Signs a session in at `now`: draws its client id and seed from `entropy` (32 bytes;
   * default `crypto.getRandomValues`). Store `record` under `clientId`, send `token`.
   */
  signIn(now, entropy) {
    const [high, low] = splitMillis(now, 'now');
    let random;
    if (entropy === undefined) {
      random = crypto.getRandomValues(new Uint8Array(ENTROPY_LEN));
    } else {
      random = bytes(entropy, 'entropy');
      if (random.length !== ENTROPY_LEN) throw fail(-31);
    }
    return this.#wiped((io) => {
      io.set(random, INPUT);
      if (entropy === undefined) random.fill(0);
      const status = this.#exports.sign_in(high, low);
      if (status < 0) throw fail(status);
      const record = io.slice(RECORD, RECORD + RECORD_LEN);
      return {
        record,
        clientId: base64url(record.subarray(1, 17)),
        token: this.#token(io),
        version: 0n,
        expiresAt: expiresAt(record),
      };
    });
  }

  /**
   * Decides one request: `record` as stored (or `null` if the host has none for the
   * client id), the token text as presented, `now`, and `unbatch` (devise's
   * `unbatch=true`: rotate for a batch member). Store `record` (compare-and-swap on the
   * version read) before replying with `token`; on `revoke`, delete the session.
   */
  decide(record, token, now, options) {
    const [high, low] = splitMillis(now, 'now');
    if (typeof token !== 'string') {
      throw new InputError('invalid_token', 'the presented token must be a string');
    }
    let flags = options?.unbatch === true ? FORCE_ROTATION : 0;
    let data;
    if (record === null || record === undefined) {
      flags |= NO_SESSION;
    } else {
      data = bytes(record, 'record');
    }
    return this.#wiped((io) => {
      let recordLen = 0;
      if (data !== undefined) {
        this.#putRecord(io, data);
        recordLen = RECORD_LEN;
      }
      const tokenLen = putToken(io, token);
      const r = this.#exports.decide(recordLen, tokenLen, high, low, flags);
      if (r < 0) throw fail(r);
      const kind = KINDS[r & 0xf];
      const decision = { kind, accepted: kind !== 'reject' && kind !== 'revoke', revoke: kind === 'revoke' };
      if (r & 0x10) {
        decision.record = io.slice(RECORD, RECORD + RECORD_LEN);
        decision.version = version(this.#view, RECORD + 67);
      }
      if (r & 0x20) decision.token = this.#token(io);
      if (decision.accepted) {
        // The record in effect is at RECORD: the new one if written, else the one passed in.
        decision.expiresAt = this.#view.getUint32(RECORD + 58) * TWO_32 + this.#view.getUint32(RECORD + 62);
      } else {
        decision.reason = REASONS[(r >> 8) & 0xff] ?? 'unknown';
        if (decision.reason === 'replayed') {
          const behind = this.#view.getBigUint64(BEHIND_OUT, true);
          decision.behind = behind > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(behind);
        }
      }
      return decision;
    });
  }

  /** The session's current token `T(n)`, for hosts that echo it in batch responses. */
  currentToken(record) {
    const data = bytes(record, 'record');
    return this.#wiped((io) => {
      this.#putRecord(io, data);
      const status = this.#exports.current_token(RECORD_LEN);
      if (status < 0) throw fail(status);
      return this.#token(io);
    });
  }

  /**
   * The token a batch member presenting `token` is sent when batch responses carry the
   * current token: `T(n)` of `record` to a holder of `T(n)` or `T(n-1)`, `undefined` to
   * anyone else (an in-window `T(n-2)` is never upgraded to a token that outlives the
   * window). The rule is rotauth's (`exchange::current_for`), not this wrapper's.
   */
  batchToken(record, token) {
    const data = bytes(record, 'record');
    if (typeof token !== 'string') {
      throw new InputError('invalid_token', 'the presented token must be a string');
    }
    return this.#wiped((io) => {
      this.#putRecord(io, data);
      const status = this.#exports.batch_token(RECORD_LEN, putToken(io, token));
      if (status < 0) throw fail(status);
      return status === 0 ? this.#token(io) : undefined;
    });
  }

  /**
   * How many decisions one request may take before it answers 503 (one plus the
   * compare-and-swaps it may lose): rotauth's bound, the same in every host.
   */
  get maxAttempts() {
    return this.#exports.max_attempts();
  }

  /** The public fields of a stored record (client id, generation, times, version). */
  inspect(record) {
    const data = bytes(record, 'record');
    this.#wiped((io) => {
      this.#putRecord(io, data);
      const status = this.#exports.check_record(RECORD_LEN);
      if (status < 0) throw fail(status);
    });
    return fields(data);
  }

  /** Adds a key that verifies tokens naming `id`; it signs nothing until made primary. */
  addKey(id, key) {
    keyId(id);
    this.#wiped((io) => {
      const len = this.#putKey(io, key);
      const status = this.#exports.insert_key(len, id);
      if (status < 0) throw fail(status);
    });
  }

  /** Makes `id` the key that signs every new token; sessions move to it as they rotate. */
  setPrimary(id) {
    keyId(id);
    this.#buffer();
    const status = this.#exports.set_primary(id);
    if (status < 0) throw fail(status);
  }

  /** Removes a key: tokens naming it are refused from now on. */
  removeKey(id) {
    keyId(id);
    this.#buffer();
    const status = this.#exports.remove_key(id);
    if (status < 0) throw fail(status);
  }

  /** The key ids, the primary first. */
  get keyIds() {
    return this.#wiped((io) => {
      const count = this.#exports.key_ids();
      if (count < 0) throw fail(count);
      return Array.from(io.subarray(KEY_IDS_OUT, KEY_IDS_OUT + count));
    });
  }

  /** The id of the key that signs new tokens. */
  get primaryKeyId() {
    return this.keyIds[0];
  }

  /** Wipes the instance's memory (the key schedules) and makes every later call throw. */
  dispose() {
    if (this.#disposed) return;
    new Uint8Array(this.#exports.memory.buffer).fill(0);
    this.#disposed = true;
  }

  [Symbol.dispose ?? Symbol.for('Symbol.dispose')]() {
    this.dispose();
  }

  /** The token text at `TOKEN_OUT` (a plain array of char codes is the fastest route to a string). */
  #token(io) {
    const codes = this.#codes;
    for (let i = 0; i < TOKEN_TEXT_LEN; i += 1) codes[i] = io[TOKEN_OUT + i];
    const out = String.fromCharCode.apply(null, codes);
    codes.fill(0);
    return out;
  }
}
