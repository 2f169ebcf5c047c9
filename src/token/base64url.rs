//! Constant-time base64url without padding, for exactly the token's lengths: 41 bytes,
//! 55 characters.
//!
//! `base64ct` decodes a token in about 90 ns on the benchmark machine: nearly two SHA-256
//! compressions, and four times what a malformed token may cost in all. Here a
//! first branch-free pass folds the validity of all 55 characters into one mask, a second
//! maps each character to its 6-bit value, and the values are then packed. Both passes
//! are byte-wide arithmetic without comparisons, which the compiler vectorises; the only
//! branch on the data is the final valid/invalid answer, which the caller returns anyway.
//! The scratch buffers hold the token's MAC bits, so both directions wipe them.
//! Unit tests check both directions against `base64ct` on every single-byte corruption of
//! tokens and on random input.

use zeroize::Zeroize;

use super::{TOKEN_LEN, TOKEN_TEXT_LEN};

/// 55 characters hold 330 bits for 328: rounded up to whole 4-character groups.
const GROUPS: usize = TOKEN_TEXT_LEN.div_ceil(4);
const _: () = assert!(TOKEN_TEXT_LEN <= 56 && TOKEN_LEN <= 7 * 6);

/// `0xff` if `x < bound`, else `0`, for `bound ≤ 128`, without a branch or a
/// comparison: `x - bound` is negative as a signed byte exactly when `x < bound`, or
/// when `x ≥ 128 + bound`, which the `& !x` excludes. All byte-wide, so the compiler
/// keeps 16 characters in one SSE2 register.
#[inline(always)]
fn below(x: u8, bound: u8) -> u8 {
    let borrow = x.wrapping_sub(bound) & !x;
    // Arithmetic shift: the sign bit spread over the byte.
    (borrow.cast_signed() >> 7).cast_unsigned()
}

/// `0xff` if `c` is in the alphabet, else `0`. `| 0x20` folds upper-case letters onto
/// lower-case ones and maps no other byte into `a..=z`, so one range covers both.
#[inline(always)]
fn in_alphabet(c: u8) -> u8 {
    below((c | 0x20).wrapping_sub(b'a'), 26)
        | below(c.wrapping_sub(b'0'), 10)
        | below(c ^ b'-', 1)
        | below(c ^ b'_', 1)
}

/// The 6-bit value of an alphabet character (anything for other bytes): the character
/// plus the offset of its range, with all five ranges masked in.
#[inline(always)]
fn value(c: u8) -> u8 {
    let upper = below(c.wrapping_sub(b'A'), 26);
    let lower = below(c.wrapping_sub(b'a'), 26);
    let digit = below(c.wrapping_sub(b'0'), 10);
    let dash = below(c ^ b'-', 1);
    let underscore = below(c ^ b'_', 1);
    let offset = (upper & 0u8.wrapping_sub(b'A'))
        | (lower & 0u8.wrapping_sub(b'a' - 26))
        | (digit & 52u8.wrapping_sub(b'0'))
        | (dash & (62 - b'-'))
        | (underscore & 0u8.wrapping_sub(b'_' - 63));
    c.wrapping_add(offset)
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

/// Decodes `text` into `out`; `false` (with `out` untouched) for a character outside
/// the alphabet or non-zero trailing bits, i.e. anything but the canonical encoding.
///
/// Invalid text returns before the values are packed: whether the text is valid is
/// public (the caller says so), and a malformed token then costs one pass, no hashing.
pub(super) fn decode(text: &[u8; TOKEN_TEXT_LEN], out: &mut [u8; TOKEN_LEN]) -> bool {
    // Validity first, in a pass cheaper than decoding, so that malformed text is
    // refused sooner; a valid token pays for both passes (a few ns).
    let valid = text.iter().fold(0xffu8, |valid, c| valid & in_alphabet(*c));
    // The last character's two low bits fall past the 41st byte: they must be zero.
    let trailing = text.last().map_or(0xff, |c| value(*c) & 0b11);
    if valid != 0xff || trailing != 0 {
        return false;
    }
    // 56 values, the last one zero: seven groups of eight characters.
    let mut values = [0u8; 56];
    values
        .iter_mut()
        .zip(text)
        .for_each(|(v, c)| *v = value(*c));
    // Eight 6-bit values make six bytes.
    let mut packed = [0u8; 7 * 6];
    packed
        .chunks_exact_mut(6)
        .zip(values.chunks_exact(8))
        .for_each(|(bytes, group)| {
            let n = group.iter().fold(0u64, |n, v| (n << 6) | u64::from(*v));
            let [_, _, a, b, c, d, e, f] = n.to_be_bytes();
            bytes.copy_from_slice(&[a, b, c, d, e, f]);
        });
    if let Some(bytes) = packed.first_chunk::<TOKEN_LEN>() {
        out.copy_from_slice(bytes);
    }
    values.as_mut_slice().zeroize();
    packed.as_mut_slice().zeroize();
    true
}

/// Encodes 41 bytes as 55 characters.
pub(super) fn encode(bytes: &[u8; TOKEN_LEN]) -> [u8; TOKEN_TEXT_LEN] {
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
    let mut text = [0u8; TOKEN_TEXT_LEN];
    text.iter_mut()
        .zip(&values)
        .for_each(|(t, v)| *t = character(*v));
    padded.as_mut_slice().zeroize();
    values.as_mut_slice().zeroize();
    text
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
        let mut out = [0u8; TOKEN_LEN];
        decode(text, &mut out).then_some(out)
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
