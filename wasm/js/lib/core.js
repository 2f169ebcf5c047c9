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

import { fail, InputError } from './errors.js';
import { Exchange } from './exchange.js';
import {
  BEHIND_OUT,
  ENTROPY_LEN,
  EXPIRES_OUT,
  INPUT,
  IO_LEN,
  KEY,
  KEY_IDS_OUT,
  KINDS,
  MAX_INPUT_LEN,
  MAX_KEY_LEN,
  MAX_KEYS,
  REASONS,
  RECORD,
  RECORD_LEN,
  TOKEN_OUT,
  TOKEN_TEXT_LEN,
  VERSION_OUT,
  copyRecord,
  readClientId,
  readFields,
  readNumber,
  readU64,
} from './layout.js';

export { Exchange };
export { ConfigError, ExchangeError, InputError, KeyError, RecordError, RotauthError } from './errors.js';
export { MAX_KEYS, MIN_KEY_LEN, RECORD_LEN, TOKEN_TEXT_LEN } from './layout.js';

// `init` flags.
const NO_ROTATION = 1;
const RECOVER = 2;
const REVOKE_ON_REPLAY = 4;
const ABSOLUTE_LIFETIME = 8;
// `decide` flags.
const FORCE_ROTATION = 1;
const NO_SESSION = 2;
// `exchange_new` flags.
const EXCHANGE_FORCE_ROTATION = 1;
const EXCHANGE_CHECK = 2;
const EXCHANGE_BATCH_CURRENT = 4;

const U64_MAX = (1n << 64n) - 1n;
const DEFAULTS = Object.freeze({
  batchWindowMs: 5_000,
  lifespanMs: 14 * 24 * 60 * 60 * 1_000,
});

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

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Writes presented token text into `input` (the input area); returns its length in bytes.
 * Token text is ASCII; anything else cannot be a token, and its UTF-8 bytes (which no
 * token contains) make the module say "malformed". Text longer than the area is handed
 * over as empty: "malformed" too.
 */
function putToken(input, token) {
  if (token.length > MAX_INPUT_LEN) return 0;
  const { read, written } = encoder.encodeInto(token, input);
  return read === token.length ? written : 0;
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
  #input;
  #tokenOut;
  #view;
  #disposed = false;

  /** Not called directly: use `createRotator(options)`. */
  constructor(token, instance, init) {
    if (token !== CREATE) throw new InputError('invalid_option', 'use createRotator(options)');
    this.#exports = instance.exports;
    this.#port.exports = instance.exports;
    this.#attach();
    memories.set(this, instance.exports.memory);
    this.#init(...init);
  }

  #attach() {
    const base = this.#exports.io_buffer();
    this.#io = new Uint8Array(this.#exports.memory.buffer, base, IO_LEN);
    this.#input = this.#io.subarray(INPUT, INPUT + MAX_INPUT_LEN);
    this.#tokenOut = this.#io.subarray(TOKEN_OUT, TOKEN_OUT + TOKEN_TEXT_LEN);
    this.#view = new DataView(this.#exports.memory.buffer, base, IO_LEN);
  }

  /** The shared buffer; re-attached should the memory ever be replaced. */
  #buffer() {
    if (this.#disposed) throw fail(-40);
    if (this.#io.byteLength === 0) this.#attach();
    return this.#io;
  }

  /**
   * Runs `work(io, view)` on the I/O area and wipes, whatever happens, where secrets pass:
   * the record, the token text in and the token out (the module wipes the inputs too;
   * the fields it writes beside them are public). Calls that hand in a key wipe it all.
   */
  #wiped(work) {
    const io = this.#buffer();
    try {
      return work(io, this.#view);
    } finally {
      io.fill(0, RECORD, TOKEN_OUT + TOKEN_TEXT_LEN);
    }
  }

  #wipedAll(work) {
    const io = this.#buffer();
    try {
      return work(io, this.#view);
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
    this.#wipedAll((io) => {
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
      return {
        record: copyRecord(io),
        clientId: readClientId(io),
        token: this.#token(io),
        version: readU64(this.#view, VERSION_OUT),
        expiresAt: readNumber(this.#view, EXPIRES_OUT),
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
    // One pass, one crossing, no closure: this is the call a host makes on every request.
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
      if (data.length !== RECORD_LEN) throw fail(-20);
    }
    const io = this.#buffer();
    try {
      if (data !== undefined) io.set(data, RECORD);
      const r = this.#exports.decide(data === undefined ? 0 : RECORD_LEN, putToken(this.#input, token), high, low, flags);
      if (r < 0) throw fail(r);
      const kind = KINDS[r & 0xf];
      const accepted = kind !== 'reject' && kind !== 'revoke';
      const view = this.#view;
      // Every decision has the same fields (`undefined` where they do not apply), so that
      // the engine sees one shape.
      const decision = {
        kind,
        accepted,
        revoke: kind === 'revoke',
        record: undefined,
        version: undefined,
        token: undefined,
        // The expiry of the record in effect: the new one if written, else the one passed in.
        expiresAt: accepted ? readNumber(view, EXPIRES_OUT) : undefined,
        reason: accepted ? undefined : (REASONS[(r >> 8) & 0xff] ?? 'unknown'),
        behind: undefined,
      };
      if (r & 0x10) {
        decision.record = copyRecord(io);
        decision.version = readU64(view, VERSION_OUT);
      }
      if (r & 0x20) decision.token = this.#token();
      if (decision.reason === 'replayed') {
        decision.behind = Math.min(readNumber(view, BEHIND_OUT), Number.MAX_SAFE_INTEGER);
      }
      return decision;
    } finally {
      io.fill(0, RECORD, TOKEN_OUT + TOKEN_TEXT_LEN);
    }
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
      const status = this.#exports.batch_token(RECORD_LEN, putToken(this.#input, token));
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

  /**
   * Starts the request loop of one request presenting `token` at `now`: rotauth's
   * exchange, which the host drives with its store's I/O (see `Exchange`). Options:
   * `unbatch` (devise's `unbatch=true`), `check` (decide only, store nothing: sign-out,
   * account deletion), `batchToken` (`'blank'`, default, or `'current'`: what a batch
   * member's response carries), `maxAttempts` (decisions per request before a 503;
   * default rotauth's). Throws `ExchangeError('exchanges_full')` when `exchangeCapacity`
   * requests are in flight already: answer 503.
   */
  exchange(token, now, options) {
    const [high, low] = splitMillis(now, 'now');
    if (typeof token !== 'string') {
      throw new InputError('invalid_token', 'the presented token must be a string');
    }
    const batchToken = options?.batchToken ?? 'blank';
    if (batchToken !== 'blank' && batchToken !== 'current') {
      throw new InputError('invalid_option', "batchToken must be 'blank' or 'current'");
    }
    const maxAttempts = options?.maxAttempts ?? 0;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 0 || maxAttempts > 0xffff_ffff) {
      throw new InputError('invalid_option', "maxAttempts must be a non-negative integer (0: rotauth's bound)");
    }
    const flags =
      (options?.unbatch === true ? EXCHANGE_FORCE_ROTATION : 0) |
      (options?.check === true ? EXCHANGE_CHECK : 0) |
      (batchToken === 'current' ? EXCHANGE_BATCH_CURRENT : 0);
    const handle = this.#wiped((io) => this.#exports.exchange_new(putToken(this.#input, token), high, low, flags, maxAttempts));
    if (handle < 0) throw fail(handle);
    return new Exchange(this.#port, handle);
  }

  /** How many exchanges (requests in flight) the rotator holds at once. */
  get exchangeCapacity() {
    return this.#exports.exchange_capacity();
  }

  /** What an `Exchange` reaches of its rotator. */
  #port = {
    exports: undefined,
    wiped: (work) => this.#wiped(work),
    token: (io) => this.#token(io),
    loaded: (handle, found, claimMatches, record) => {
      let len = 0;
      // Anything but a record's bytes is handed over as no bytes: the exchange refuses it
      // as a corrupt record.
      if (record instanceof ArrayBuffer) record = new Uint8Array(record);
      if (ArrayBuffer.isView(record) && record.byteLength === RECORD_LEN) {
        this.#io.set(new Uint8Array(record.buffer, record.byteOffset, RECORD_LEN), RECORD);
        len = RECORD_LEN;
      }
      return this.#exports.exchange_loaded(handle, found, claimMatches ? 1 : 0, len);
    },
    drop: (handle) => {
      if (!this.#disposed) this.#exports.exchange_drop(handle);
    },
  };

  /** The public fields of a stored record (client id, generation, times, version). */
  inspect(record) {
    const data = bytes(record, 'record');
    return this.#wiped((io, view) => {
      this.#putRecord(io, data);
      const status = this.#exports.record_fields(RECORD_LEN);
      if (status < 0) throw fail(status);
      return readFields(io, view);
    });
  }

  /** Adds a key that verifies tokens naming `id`; it signs nothing until made primary. */
  addKey(id, key) {
    keyId(id);
    this.#wipedAll((io) => {
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

  /** The token text at `TOKEN_OUT` (ASCII, so UTF-8 decoding is the fastest way to a string). */
  #token() {
    return decoder.decode(this.#tokenOut);
  }
}
