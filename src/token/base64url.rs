//! Constant-time base64url without padding, for exactly the token's lengths: 41 bytes,
//! 55 characters.
//!
//! `base64ct` decodes a token in about 120 ns on the benchmark machine, more than the two
//! SHA-256 compressions of a whole decision. Here decoding is one pass over eight
//! characters at a time, each group held in a `u64` and worked on all eight bytes at once
//! (SWAR: no table indexed by a character, no comparison, no multiplication, no branch):
//! the same range tests that give each character's 6-bit value say whether it is in the
//! alphabet, and the eight values are packed into the group's 48 bits in the register, so
//! no character, value or byte goes through a scratch buffer. The only branch on the data
//! is the final valid/invalid answer, which the caller returns anyway. Encoding is the
//! inverse, one byte at a time.
//!
//! Unit tests check both directions against `base64ct` on every single-byte corruption of
//! tokens and on random input.

use zeroize::Zeroize;

use super::{TOKEN_LEN, TOKEN_TEXT_LEN};

/// 55 characters hold 330 bits for 328: rounded up to whole 4-character groups.
const GROUPS: usize = TOKEN_TEXT_LEN.div_ceil(4);
/// Eight characters (48 bits, six bytes) per decoded group: 56 characters, the last one a
/// zero (`A`) after the token's 55.
const GROUPS_OF_EIGHT: usize = TOKEN_TEXT_LEN.div_ceil(8);
const _: () =
    assert!(TOKEN_TEXT_LEN + 1 == GROUPS_OF_EIGHT * 8 && TOKEN_LEN + 1 == GROUPS_OF_EIGHT * 6);

/// `0x01` in every byte of a `u64`.
const LANES: u64 = 0x0101_0101_0101_0101;
/// `0x80` in every byte: the bit each byte-wide test answers in.
const HIGH: u64 = LANES * 0x80;
/// `0x3f` in every byte: a 6-bit value.
const SIX_BITS: u64 = LANES * 0x3f;

/// `0x80` in each byte of `raised` that is at least `bound`, else `0`. `raised` holds
/// characters with their top bit set (`c | 0x80`), so that subtracting `bound ≤ 0x80`
/// never borrows from the next byte; a character that had its top bit set already is
/// tested as its low seven bits, and refused on that bit by the caller.
#[inline(always)]
fn at_least(raised: u64, bound: u8) -> u64 {
    raised.wrapping_sub(LANES.wrapping_mul(u64::from(bound))) & HIGH
}

/// `0x80` in each byte of `raised` in `low..=high`.
#[inline(always)]
fn within(raised: u64, low: u8, high: u8) -> u64 {
    at_least(raised, low) & !at_least(raised, high.wrapping_add(1))
}

/// `k` in each byte where `flags` has `0x80`, else `0`. Without a multiplication: some
/// cores (Cortex-M3) finish a long multiply sooner for smaller operands, and these flags
/// say which characters the token holds. `0x80 - 0x01` is `0x7f` within each byte, and
/// with the flag `0xff`.
#[inline(always)]
fn times(flags: u64, k: u8) -> u64 {
    let mask = flags.wrapping_sub(flags >> 7) | flags;
    mask & LANES.wrapping_mul(u64::from(k))
}

/// Eight characters (the first in the low byte) to their 48 bits (the first character's
/// six bits highest), and a word that is non-zero unless all eight are in the alphabet.
///
/// On a 64-bit CPU these are a few dozen register operations, inlined into both calls; a
/// 32-bit core does each in two registers, and keeps one copy of them (about 500 bytes
/// of flash on Cortex-M4) for the two calls.
#[cfg_attr(target_pointer_width = "64", inline(always))]
#[cfg_attr(not(target_pointer_width = "64"), inline(never))]
fn group(chars: u64) -> (u64, u64) {
    let raised = chars | HIGH;
    // `| 0x20` folds upper-case letters onto lower-case ones and maps no other character
    // into `a..=z`, so one range tests both.
    let letter = within(raised | LANES.wrapping_mul(0x20), b'a', b'z');
    let digit = within(raised, b'0', b'9');
    let dash = within(raised, b'-', b'-');
    let underscore = within(raised, b'_', b'_');
    let invalid = ((letter | digit | dash | underscore) ^ HIGH) | (chars & HIGH);
    // Value = character + offset, modulo 64. From `-` up the offset is 17 (`-` → 62); it
    // changes at `0` (+4: 52..61), `A` (−65: 0..25), `_` (−32: 63) and `a` (−71:
    // 26..51). Each change, taken modulo 64, is added in the bytes at or past its
    // character; the sum stays below 0x100 in every byte.
    let offset = LANES
        .wrapping_mul(17)
        .wrapping_add(times(at_least(raised, b'0'), 51))
        .wrapping_add(times(at_least(raised, b'A'), 59))
        .wrapping_add(times(at_least(raised, b'_'), 33))
        .wrapping_add(times(at_least(raised, b'a'), 25));
    let values = (chars & SIX_BITS).wrapping_add(offset) & SIX_BITS;
    // Pack: pairs of values into 12 bits (in 16-bit lanes), pairs of those into 24 bits
    // (in 32-bit lanes), and the two halves into 48.
    let pairs = ((values & 0x00ff_00ff_00ff_00ff) << 6) | ((values >> 8) & 0x00ff_00ff_00ff_00ff);
    let quads = ((pairs & 0x0000_ffff_0000_ffff) << 12) | ((pairs >> 16) & 0x0000_ffff_0000_ffff);
    let bits = ((quads & 0x00ff_ffff) << 24) | (quads >> 32);
    (bits, invalid)
}

/// A token's 55 characters decoded: seven 48-bit groups, bytes `6g..6g + 6` of the token
/// in group `g`, big-endian (the last group's sixth byte is zero). Wiped on drop: they are
/// the token.
pub(super) struct Groups(pub(super) [u64; GROUPS_OF_EIGHT]);

impl Groups {
    /// The token's bytes.
    pub(super) fn to_bytes(&self) -> [u8; TOKEN_LEN] {
        let mut bytes = [0u8; TOKEN_LEN];
        bytes.chunks_mut(6).zip(&self.0).for_each(|(out, group)| {
            out.iter_mut()
                .zip(group.to_be_bytes().iter().skip(2))
                .for_each(|(b, g)| *b = *g);
        });
        bytes
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

/// Decodes `text`; `None` for a character outside the alphabet or non-zero trailing bits,
/// i.e. anything but the canonical encoding. Every character is decoded whatever the
/// others are, so the time does not depend on where text is wrong.
///
/// Inlined on 64-bit CPUs, so that the groups stay in registers rather than being copied
/// out 16 bytes at a time from the 8-byte stores that wrote them (a copy that waits for
/// those stores to leave the store buffer); a 32-bit core keeps one copy, for flash.
#[cfg_attr(target_pointer_width = "64", inline(always))]
pub(super) fn decode(text: &[u8; TOKEN_TEXT_LEN]) -> Option<Groups> {
    let mut groups = [0u64; GROUPS_OF_EIGHT];
    let mut invalid = 0;
    for (group_bits, chunk) in groups.iter_mut().zip(text.chunks_exact(8)) {
        let mut chars = [0u8; 8];
        chars.copy_from_slice(chunk);
        let (bits, bad) = group(u64::from_le_bytes(chars));
        *group_bits = bits;
        invalid |= bad;
    }
    // The last seven characters, read as the last eight shifted down by one, and a zero
    // character: one load rather than seven.
    let last = text.last_chunk::<8>().copied().unwrap_or([0; 8]);
    let (bits, bad) = group((u64::from_le_bytes(last) >> 8) | (u64::from(b'A') << 56));
    // The last character's two low bits fall past the 41st byte, into the low byte of the
    // last group: they must be zero.
    invalid |= bad | (bits & 0xff);
    if let Some(last_group) = groups.last_mut() {
        *last_group = bits;
    }
    let groups = Groups(groups);
    (invalid == 0).then_some(groups)
}

/// `0xff` if `x < bound`, else `0`, for `bound ≤ 128`, without a branch or a
/// comparison: `x - bound` is negative as a signed byte exactly when `x < bound`, or
/// when `x ≥ 128 + bound`, which the `& !x` excludes.
#[inline(always)]
fn below(x: u8, bound: u8) -> u8 {
    let borrow = x.wrapping_sub(bound) & !x;
    // Arithmetic shift: the sign bit spread over the byte.
    (borrow.cast_signed() >> 7).cast_unsigned()
}

/// The character of a 6-bit value (`s < 64`), without a branch: start from `'A' + s`
/// and add the offset of each range that `s` has reached.
#[inline(always)]
fn character(s: u8) -> u8 {
    let at_least = |bound: u8| !below(s, bound);
    s.wrapping_add(b'A')
        .wrapping_add(at_least(26) & 6)
        .wrapping_add(at_least(52) & 0u8.wrapping_sub(75))
        .wrapping_add(at_least(62) & 0u8.wrapping_sub(13))
        .wrapping_add(at_least(63) & 49)
}

/// Encodes 41 bytes as 55 characters.
pub(super) fn encode(bytes: &[u8; TOKEN_LEN]) -> [u8; TOKEN_TEXT_LEN] {
    let mut text = [0u8; TOKEN_TEXT_LEN];
    encode_into(bytes, &mut text);
    text
}

/// Encodes 41 bytes as 55 characters into `text`.
pub(super) fn encode_into(bytes: &[u8; TOKEN_LEN], text: &mut [u8; TOKEN_TEXT_LEN]) {
    let mut padded = [0u8; GROUPS * 3];
    padded.iter_mut().zip(bytes).for_each(|(d, s)| *d = *s);
    let mut values = [0u8; GROUPS * 4];
    values
        .chunks_exact_mut(4)
        .zip(padded.chunks_exact(3))
        .for_each(|(group, b)| {
            if let &[x, y, z] = b {
                let n = u32::from(x) << 16 | u32::from(y) << 8 | u32::from(z);
                let [_, _, _, d] = n.to_be_bytes();
                let [_, _, _, c] = (n >> 6).to_be_bytes();
                let [_, _, _, b] = (n >> 12).to_be_bytes();
                let [_, _, _, a] = (n >> 18).to_be_bytes();
                group.copy_from_slice(&[a & 63, b & 63, c & 63, d & 63]);
            }
        });
    text.iter_mut()
        .zip(&values)
        .for_each(|(t, v)| *t = character(*v));
    padded.as_mut_slice().zeroize();
    values.as_mut_slice().zeroize();
}

/// Both directions against `base64ct`, the reference codec.
#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::arithmetic_side_effects
)]
mod against_base64ct {
    extern crate std;
    use super::*;
    use base64ct::{Base64UrlUnpadded, Encoding};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Miri runs about a thousand times slower: a sample there, the full sweep natively.
    const RANDOM_CASES: usize = if cfg!(miri) { 200 } else { 50_000 };

    fn reference_decode(text: &[u8; TOKEN_TEXT_LEN]) -> Option<[u8; TOKEN_LEN]> {
        let mut out = [0u8; TOKEN_LEN];
        match Base64UrlUnpadded::decode(text, &mut out) {
            Ok(decoded) if decoded.len() == TOKEN_LEN => Some(out),
            _ => None,
        }
    }

    fn ours(text: &[u8; TOKEN_TEXT_LEN]) -> Option<[u8; TOKEN_LEN]> {
        decode(text).map(|groups| groups.to_bytes())
    }

    fn reference_encode(bytes: &[u8; TOKEN_LEN]) -> [u8; TOKEN_TEXT_LEN] {
        let mut text = [0u8; TOKEN_TEXT_LEN];
        Base64UrlUnpadded::encode(bytes, &mut text).unwrap();
        text
    }

    #[test]
    fn encode_matches_on_edge_and_random_bytes() {
        let mut rng = StdRng::seed_from_u64(41);
        let mut cases = std::vec![[0u8; TOKEN_LEN], [0xff; TOKEN_LEN]];
        cases.extend((0..=255u8).map(|b| [b; TOKEN_LEN]));
        for _ in 0..RANDOM_CASES / 2 {
            let mut bytes = [0u8; TOKEN_LEN];
            rng.fill_bytes(&mut bytes);
            cases.push(bytes);
        }
        for bytes in cases {
            let text = encode(&bytes);
            assert_eq!(text, reference_encode(&bytes), "{bytes:?}");
            assert_eq!(ours(&text), Some(bytes));
        }
    }

    #[test]
    fn decode_matches_on_every_single_byte_corruption() {
        let mut rng = StdRng::seed_from_u64(55);
        let (tokens, position_step, byte_step) = if cfg!(miri) { (1, 27, 5) } else { (8, 1, 1) };
        for _ in 0..tokens {
            let mut bytes = [0u8; TOKEN_LEN];
            rng.fill_bytes(&mut bytes);
            let good = reference_encode(&bytes);
            for position in (0..TOKEN_TEXT_LEN).step_by(position_step) {
                for byte in (0..=255u8).step_by(byte_step) {
                    let mut text = good;
                    text[position] = byte;
                    assert_eq!(
                        ours(&text),
                        reference_decode(&text),
                        "byte {byte:#04x} at {position}"
                    );
                }
            }
        }
    }

    #[test]
    fn decode_matches_on_random_text() {
        let mut rng = StdRng::seed_from_u64(56);
        // Mostly alphabet characters, so that many inputs are valid, plus the
        // characters of neighbouring alphabets and arbitrary bytes.
        let pool: std::vec::Vec<u8> =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                .repeat(6)
                .into_iter()
                .chain(*b"+/=.@[`{:")
                .collect();
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..RANDOM_CASES {
            let mut text = [0u8; TOKEN_TEXT_LEN];
            for c in &mut text {
                let r = rng.next_u32() as usize;
                *c = if r & 63 == 0 {
                    (r >> 8) as u8
                } else {
                    pool[(r >> 8) % pool.len()]
                };
            }
            let expected = reference_decode(&text);
            assert_eq!(ours(&text), expected, "{text:?}");
            if expected.is_some() {
                valid += 1
            } else {
                invalid += 1
            }
        }
        assert!(
            valid > RANDOM_CASES / 100 && invalid > RANDOM_CASES / 100,
            "{valid} valid, {invalid} invalid"
        );
    }
}
