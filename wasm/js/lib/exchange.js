// One request's loop around the decision, for hosts whose store is asynchronous: rotauth's
// exchange (`rotauth::exchange` in the Rust crate), kept in the rotator's WebAssembly
// instance between the host's awaits and named by a handle. Every rule of the loop is the
// exchange's: the claimed user, what each decision stores, sends or deletes, the batch
// token, the bound on lost compare-and-swaps, reading back a write whose fate a store
// failure left unknown. The host only does the I/O each step asks for.
//
// The step codes are documented in wasm/src/exchanges.rs.
import { fail } from './errors.js';
import {
  BEHIND_OUT,
  EXPECTED_VERSION_OUT,
  EXPIRES_OUT,
  KINDS,
  REASONS,
  VERSION_OUT,
  copyRecord,
  readNumber,
  readU64,
} from './layout.js';

const LOAD = 0;
const STORE = 1;
const DELETE = 2;
const STORE_FAILED = 3;

// What a host reports back (wasm/src/exchanges.rs).
const FOUND = 0;
const MISSING = 1;
const LOAD_FAILED = 2;
const STORED = 0;
const LOST = 1;
const SWAP_FAILED = 2;

const REPLIES = ['new_token', 'batch', 'current', 'same_token'];
const REFUSALS = [undefined, 'user_mismatch', 'rejected', 'revoked', 'corrupt_record'];
const CAUSES = ['store', 'contention'];

const LOAD_STEP = Object.freeze({ kind: 'load' });
const DELETE_STEP = Object.freeze({ kind: 'delete' });
const STORE_FAILED_STEP = Object.freeze({ kind: 'store_failed' });

/**
 * A request's exchange: made by `rotator.exchange(token, now, options)`, driven by the
 * host through its `step`s until one is `{ kind: 'answer' }`. The exchange holds a slot of
 * the rotator's table until its answer; a host that stops before (an exception, an aborted
 * request) calls `close()`, which is harmless after the answer.
 */
export class Exchange {
  #port;
  #handle;
  /** What the host does next: `{ kind: 'load' }` first. */
  step = LOAD_STEP;

  /** Not called directly: use `rotator.exchange(token, now, options)`. */
  constructor(port, handle) {
    this.#port = port;
    this.#handle = handle;
  }

  /**
   * What the load found: the stored record, or `null`/`undefined` when the store has no
   * session for the client id; and whether the user the request claims (devise's `uid`)
   * is the session's. A record that is not one is refused as corrupt by the exchange.
   */
  loaded(record, claimMatches = true) {
    const found = record !== null && record !== undefined;
    return this.#next((port) =>
      port.loaded(this.#handle, found ? FOUND : MISSING, claimMatches === true, found ? record : undefined),
    );
  }

  /** The load failed (the store threw). */
  loadFailed() {
    return this.#next((port) => port.loaded(this.#handle, LOAD_FAILED, false, undefined));
  }

  /** What the compare-and-swap did: `true` stored, `false` lost (another version). */
  swapped(stored) {
    return this.#next((port) => port.exports.exchange_swapped(this.#handle, stored === true ? STORED : LOST));
  }

  /** The compare-and-swap failed without saying whether it wrote (the store threw). */
  swapFailed() {
    return this.#next((port) => port.exports.exchange_swapped(this.#handle, SWAP_FAILED));
  }

  /** The session is deleted (whether or not it was still there). */
  deleted() {
    return this.#next((port) => port.exports.exchange_deleted(this.#handle, 1));
  }

  /** The delete failed (the store threw). */
  deleteFailed() {
    return this.#next((port) => port.exports.exchange_deleted(this.#handle, 0));
  }

  /** After `store_failed`: try again, from a load. */
  retry() {
    return this.#next((port) => port.exports.exchange_retry(this.#handle));
  }

  /** After `store_failed`: answer 503. */
  giveUp() {
    return this.#next((port) => port.exports.exchange_give_up(this.#handle));
  }

  /** Whether the exchange has answered (or was closed). */
  get done() {
    return this.#handle === undefined;
  }

  /** Ends the exchange before its answer and wipes it; nothing after its answer. */
  close() {
    if (this.#handle === undefined) return;
    const handle = this.#handle;
    this.#handle = undefined;
    this.#port.drop(handle);
  }

  [Symbol.dispose ?? Symbol.for('Symbol.dispose')]() {
    this.close();
  }

  #next(call) {
    if (this.#handle === undefined) throw fail(-51);
    const port = this.#port;
    this.step = port.wiped((io, view) => {
      const code = call(port);
      if (code < 0) throw fail(code);
      const step = decode(port, io, view, code);
      if (step.kind === 'answer') this.#handle = undefined;
      return step;
    });
    return this.step;
  }
}

/** The step a step export returned, with what it wrote to the buffer. */
function decode(port, io, view, code) {
  switch (code & 0xf) {
    case LOAD:
      return LOAD_STEP;
    case STORE:
      return {
        kind: 'store',
        // The store's to keep.
        record: copyRecord(io),
        version: readU64(view, VERSION_OUT),
        expectedVersion: readU64(view, EXPECTED_VERSION_OUT),
      };
    case DELETE:
      return DELETE_STEP;
    case STORE_FAILED:
      return STORE_FAILED_STEP;
    default:
      break;
  }
  const detail = (code >> 8) & 0xf;
  let answer;
  switch ((code >> 4) & 0xf) {
    case 0: {
      const reply = REPLIES[(code >> 12) & 0xf] ?? 'batch';
      answer = {
        kind: 'serve',
        decision: KINDS[detail],
        reply,
        token: reply === 'batch' ? undefined : port.token(io),
        expiresAt: readNumber(view, EXPIRES_OUT),
        lostSwaps: (code >> 16) & 0xff,
      };
      break;
    }
    case 1:
      answer = { kind: 'accepted', decision: KINDS[detail] };
      break;
    case 2: {
      const refusal = REFUSALS[detail] ?? 'rejected';
      answer = { kind: 'refuse', refusal };
      if (refusal === 'rejected' || refusal === 'revoked') {
        answer.reason = REASONS[(code >> 12) & 0xff] ?? 'unknown';
        if (answer.reason === 'replayed') answer.behind = readNumber(view, BEHIND_OUT);
      }
      break;
    }
    default:
      answer = { kind: 'unavailable', cause: CAUSES[detail] ?? 'store' };
  }
  return { kind: 'answer', answer };
}
