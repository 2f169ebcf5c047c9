// What a client may read from a token without the key. A token is
// `key_id ‖ n ‖ MAC` (1 + 8 + 32 bytes) as 55 characters of unpadded base64url, and the
// generation `n` sits in the clear, big-endian, so two tokens of one session are ordered
// by their text alone: the newer is the one with the larger generation. That is what lets
// tabs agree on the newest token without a lock (docs/DESIGN.md, "Tokens are derived").

/** Length of a token as text. */
export const TOKEN_TEXT_LENGTH = 55;

/** The public header of a token: the id of the key it claims and its generation. */
export interface TokenHeader {
  /** The key id, 0–255. */
  readonly keyId: number;
  /** The generation `n`, a u64. */
  readonly generation: bigint;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const SEXTETS = new Map(Array.from(ALPHABET, (c, i) => [c.charCodeAt(0), BigInt(i)]));
/** 12 characters carry 72 bits: the key id and the generation exactly. */
const HEADER_CHARS = 12;
const U64 = (1n << 64n) - 1n;

/**
 * The key id and generation of token text, or `undefined` if the text is not a token:
 * not 55 characters, a character outside base64url, or non-zero trailing bits (55
 * characters hold 330 bits for 328). The text is checked as the server checks it, so a
 * value the server would refuse as malformed never orders above a real token.
 */
export function readToken(text: string): TokenHeader | undefined {
  if (typeof text !== 'string' || text.length !== TOKEN_TEXT_LENGTH) return undefined;
  let header = 0n;
  for (let i = 0; i < TOKEN_TEXT_LENGTH; i += 1) {
    const sextet = SEXTETS.get(text.charCodeAt(i));
    if (sextet === undefined) return undefined;
    if (i < HEADER_CHARS) header = (header << 6n) | sextet;
    else if (i === TOKEN_TEXT_LENGTH - 1 && (sextet & 3n) !== 0n) return undefined;
  }
  return { keyId: Number(header >> 64n), generation: header & U64 };
}

/** The generation of token text, or `undefined` if it is not a token (see `readToken`). */
export function tokenGeneration(text: string): bigint | undefined {
  return readToken(text)?.generation;
}
