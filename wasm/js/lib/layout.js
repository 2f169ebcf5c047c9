// The module's buffer layout and how to read what it writes there (wasm/src/lib.rs
// documents both). The module writes out every field of a record this package needs; the
// record's own bytes are rotauth's format, never read in JavaScript.

/** Length of a session record in bytes (format 1). */
export const RECORD_LEN = 75;
/** Length of a token's text form. */
export const TOKEN_TEXT_LEN = 55;
/** Shortest key accepted, in bytes. */
export const MIN_KEY_LEN = 32;
/** Most keys a keyring holds at once. */
export const MAX_KEYS = 4;

// Offsets in the buffer.
export const KEY = 0;
export const MAX_KEY_LEN = 256;
export const RECORD = 256;
export const INPUT = 336;
export const MAX_INPUT_LEN = 128;
export const ENTROPY_LEN = 32;
export const TOKEN_OUT = 464;
export const BEHIND_OUT = 520;
export const KEY_IDS_OUT = 528;
export const EXPIRES_OUT = 536;
export const VERSION_OUT = 544;
export const EXPECTED_VERSION_OUT = 552;
export const GENERATION_OUT = 560;
export const CREATED_OUT = 568;
export const ROTATED_OUT = 576;
export const CLIENT_ID_OUT = 584;
export const CLIENT_ID_TEXT_LEN = 22;
export const KEY_ID_OUT = 606;
export const FLAGS_OUT = 607;
export const IO_LEN = 640;

/** Decisions, by their number in the module's interface. */
export const KINDS = ['accept', 'rotate', 'batch_reuse', 'reissue', 'reject', 'revoke'];
/** Reasons for a refusal, by their number in the module's interface. */
export const REASONS = [
  undefined,
  'unknown_session',
  'malformed',
  'unknown_key',
  'forged',
  'expired',
  'too_old',
  'replayed',
];

const TWO_32 = 2 ** 32;

/** A `u64` the module wrote (little-endian) as a `BigInt`, without `BigInt` arithmetic below 2^53. */
export function readU64(view, at) {
  const low = view.getUint32(at, true);
  const high = view.getUint32(at + 4, true);
  return high < 0x200000 ? BigInt(high * TWO_32 + low) : (BigInt(high) << 32n) | BigInt(low);
}

/** A `u64` the module wrote as a `number` (Unix ms; exact below 2^53). */
export function readNumber(view, at) {
  return view.getUint32(at + 4, true) * TWO_32 + view.getUint32(at, true);
}

/** The client id text the module wrote (22 ASCII characters). */
export function readClientId(io) {
  return String.fromCharCode.apply(null, io.subarray(CLIENT_ID_OUT, CLIENT_ID_OUT + CLIENT_ID_TEXT_LEN));
}

/** The public fields of a record, as `record_fields` and `sign_in` write them. */
export function readFields(io, view) {
  const flags = io[FLAGS_OUT];
  return {
    clientId: readClientId(io),
    keyId: io[KEY_ID_OUT],
    generation: readU64(view, GENERATION_OUT),
    createdAt: readNumber(view, CREATED_OUT),
    rotatedAt: readNumber(view, ROTATED_OUT),
    expiresAt: readNumber(view, EXPIRES_OUT),
    acknowledged: (flags & 1) !== 0,
    reissued: (flags & 2) !== 0,
    version: readU64(view, VERSION_OUT),
  };
}


/**
 * Records handed out (`signIn`, `decide`, an exchange's store step) are views into shared
 * 8 KiB blocks rather than an `ArrayBuffer` each: making a view costs a sixth of
 * allocating a buffer of 75 bytes. Each view is the caller's to keep, like a copy; its
 * `.buffer` is the whole block, so pass on the view's bytes (`record`, or `record.buffer`
 * with `record.byteOffset` and `record.byteLength`), as with Node's pooled `Buffer`s.
 */
const BLOCK = 8192;
let block = new ArrayBuffer(BLOCK);
let used = 0;
export function copyRecord(io) {
  if (used + RECORD_LEN > BLOCK) {
    block = new ArrayBuffer(BLOCK);
    used = 0;
  }
  const record = new Uint8Array(block, used, RECORD_LEN);
  used += RECORD_LEN;
  record.set(io.subarray(RECORD, RECORD + RECORD_LEN));
  return record;
}
