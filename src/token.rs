//! Derived tokens: `T(n) = key_id ‖ n ‖ HMAC-SHA256(K[key_id], tag ‖ client_id ‖ seed ‖ n)`.

use core::fmt;

use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroize;

use crate::keyring::KeyId;
use crate::mac::{self, MacKey, Tag};
use crate::session::{ClientId, Seed};

/// Length of a token in bytes: key id (1) ‖ generation (8, big-endian) ‖ MAC (32).
pub const TOKEN_LEN: usize = 41;
/// Length of a token as text: base64url without padding.
pub const TOKEN_TEXT_LEN: usize = 55;

/// Domain-separation label of the MAC input, so that no other use of the key can produce a
/// token. The version lets a future format change the input without ambiguity.
const TAG: &[u8; 10] = b"rotauth/t1";
/// `tag ‖ client_id ‖ seed ‖ n`: 50 bytes, inside one SHA-256 block (at most 55).
const MAC_INPUT_LEN: usize = TAG.len() + ClientId::LEN + Seed::LEN + 8;
/// Where the seed sits in the MAC input block: the only secret among its bytes.
const SEED_AT: usize = TAG.len() + ClientId::LEN;

const _: () = assert!(
    MAC_INPUT_LEN <= mac::MAX_MESSAGE,
    "the MAC input must fit one block"
);

/// The bit length of key block plus MAC input, big-endian: the input block's last 8 bytes.
const INPUT_BLOCK_BITS: [u8; 8] = ((64 + MAC_INPUT_LEN as u64) * 8).to_be_bytes();

/// Why presented token text or bytes are not a token. Both map to
/// [`RejectReason::Malformed`](crate::RejectReason::Malformed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not [`TOKEN_TEXT_LEN`] characters (text) or [`TOKEN_LEN`] bytes.
    WrongLength {
        /// The length presented.
        len: usize,
    },
    /// A character outside the base64url alphabet, padding, or non-zero trailing bits.
    BadEncoding,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongLength { len } => write!(
                f,
                "token has length {len}; expected {TOKEN_TEXT_LEN} characters or {TOKEN_LEN} bytes"
            ),
            Self::BadEncoding => f.write_str("token text is not unpadded base64url"),
        }
    }
}

impl core::error::Error for TokenError {}

/// One generation's token: what the client presents and what a rotation hands out.
///
/// The key id and generation are public; the MAC is the secret. `Debug` shows only the
/// public parts, equality is constant time, and the bytes are wiped on drop.
#[derive(Clone)]
pub struct Token([u8; TOKEN_LEN]);

impl Token {
    /// Parses the byte form.
    ///
    /// # Errors
    ///
    /// [`TokenError::WrongLength`] unless `bytes` is exactly [`TOKEN_LEN`] long. Any key id
    /// and generation parse; whether they are valid is for the decision to say.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        // Copied with `copy_from_slice` rather than `try_into`, whose copy compiles to a
        // `memmove` call: 1.5 KiB of flash on Cortex-M for nothing else.
        if bytes.len() != TOKEN_LEN {
            return Err(TokenError::WrongLength { len: bytes.len() });
        }
        let mut token = [0u8; TOKEN_LEN];
        token.copy_from_slice(bytes);
        Ok(Self(token))
    }

    /// Parses the text form (base64url, no padding), decoding in constant time.
    ///
    /// # Errors
    ///
    /// [`TokenError::WrongLength`] unless `text` is [`TOKEN_TEXT_LEN`] bytes long, checked
    /// before decoding; [`TokenError::BadEncoding`] for anything but canonical base64url.
    pub fn from_text(text: &str) -> Result<Self, TokenError> {
        let Ok(text) = <&[u8; TOKEN_TEXT_LEN]>::try_from(text.as_bytes()) else {
            return Err(TokenError::WrongLength { len: text.len() });
        };
        let mut bytes = [0u8; TOKEN_LEN];
        if base64url::decode(text, &mut bytes) {
            Ok(Self(bytes))
        } else {
            bytes.as_mut_slice().zeroize();
            Err(TokenError::BadEncoding)
        }
    }

    /// The byte form.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; TOKEN_LEN] {
        &self.0
    }

    /// The text form, as sent in devise's `access-token` header.
    #[must_use]
    pub fn to_text(&self) -> TokenText {
        let mut text = heapless::String::new();
        let mut encoded = base64url::encode(&self.0);
        // 55 ASCII characters into a 55-byte string: no push can fail.
        for c in &encoded {
            let _ = text.push(char::from(*c));
        }
        encoded.as_mut_slice().zeroize();
        TokenText(text)
    }

    /// The text form written into `out` as ASCII bytes: for a host that hands it on as
    /// bytes (a WebAssembly module's buffer), without building a [`TokenText`] to wipe
    /// again. In WebAssembly this is about 300 ns less per token than
    /// [`to_text`](Self::to_text). Wiping `out` is the caller's.
    pub fn write_text(&self, out: &mut [u8; TOKEN_TEXT_LEN]) {
        base64url::encode_into(&self.0, out);
    }

    /// The id of the key this token claims to be made with.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        let [id, ..] = self.0;
        KeyId(id)
    }

    /// The generation `n` this token claims to be.
    #[must_use]
    pub fn generation(&self) -> u64 {
        let (_, rest) = self.0.split_at(1);
        let mut n = [0u8; 8];
        n.iter_mut().zip(rest).for_each(|(d, s)| *d = *s);
        u64::from_be_bytes(n)
    }

    /// `T(generation)` of the session with `client_id` and `seed`, under key `key_id`.
    pub(crate) fn derive(
        key: &MacKey,
        key_id: KeyId,
        client_id: &ClientId,
        seed: &Seed,
        generation: u64,
    ) -> Self {
        let mut tag = expected_tag(key, client_id, seed, generation);
        let mut bytes = [0u8; TOKEN_LEN];
        let (head, mac_part) = bytes.split_at_mut(9);
        let (id, n) = head.split_at_mut(1);
        id.copy_from_slice(&[key_id.0]);
        n.copy_from_slice(&generation.to_be_bytes());
        mac_part
            .chunks_exact_mut(4)
            .zip(&tag)
            .for_each(|(chunk, word)| chunk.copy_from_slice(&word.to_be_bytes()));
        tag.as_mut_slice().zeroize();
        Self(bytes)
    }

    /// Whether this token's MAC is the one `key` gives for its generation of this session:
    /// one HMAC and one constant-time comparison of eight words.
    pub(crate) fn verify(&self, key: &MacKey, client_id: &ClientId, seed: &Seed) -> bool {
        let mut expected = expected_tag(key, client_id, seed, self.generation());
        // The MAC is the last 32 bytes of the 41: read in place, as big-endian words.
        let Some(presented) = self.0.last_chunk::<32>() else {
            return false;
        };
        let presented = mac::read_words(presented);
        // Fold the differences into one word, then make one `Choice`: a slice `ct_eq`
        // would build 32 byte-`Choice`s and cost more than half an HMAC.
        let diff = expected
            .iter()
            .zip(presented.iter())
            .fold(0u32, |acc, (e, p)| acc | (e ^ p));
        let equal: Choice = diff.ct_eq(&0);
        // The expected MAC of a generation the host may not have issued yet (`n+1` and
        // beyond): as secret as a token, so it does not outlive the check.
        expected.as_mut_slice().zeroize();
        bool::from(equal)
    }
}

/// The MAC of `tag ‖ client_id ‖ seed ‖ generation`, with the input written straight into
/// its padded block at fixed offsets (a byte-wise copy through chained iterators cost more
/// than one compression).
fn expected_tag(key: &MacKey, client_id: &ClientId, seed: &Seed, generation: u64) -> Tag {
    // Written field by field into a zeroed block: on Cortex-M these stores take less flash
    // than copying a 64-byte template.
    let mut block = [0u8; 64];
    let (tag, fields) = block.split_at_mut(TAG.len());
    let (client, fields) = fields.split_at_mut(ClientId::LEN);
    let (seed_part, fields) = fields.split_at_mut(Seed::LEN);
    let (n, padding) = fields.split_at_mut(8);
    tag.copy_from_slice(TAG);
    client.copy_from_slice(client_id.as_bytes());
    seed_part.copy_from_slice(seed.as_bytes());
    n.copy_from_slice(&generation.to_be_bytes());
    let (marker, length) = padding.split_at_mut(padding.len().saturating_sub(8));
    if let Some(marker) = marker.first_mut() {
        *marker = 0x80;
    }
    length.copy_from_slice(&INPUT_BLOCK_BITS);
    let tag = key.mac_block(&block);
    // Wipe the copy of the seed, the block's only secret (tag, client id, generation and
    // padding are public), rather than all 64 bytes.
    if let Some(seed_copy) = block.get_mut(SEED_AT..SEED_AT + Seed::LEN) {
        seed_copy.zeroize();
    }
    tag
}

/// Constant-time base64url without padding, for exactly the token's lengths: 41 bytes,
/// 55 characters.
///
/// `base64ct` decodes a token in about 90 ns on the benchmark machine: nearly two SHA-256
/// compressions, and four times what a malformed token may cost in all. Here a
/// first branch-free pass folds the validity of all 55 characters into one mask, a second
/// maps each character to its 6-bit value, and the values are then packed. Both passes
/// are byte-wide arithmetic without comparisons, which the compiler vectorises; the only
/// branch on the data is the final valid/invalid answer, which the caller returns anyway.
/// The scratch buffers hold the token's MAC bits, so both directions wipe them.
/// Unit tests check both directions against `base64ct` on every single-byte corruption of
/// tokens and on random input.
mod base64url {
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
}

/// The same as [`Token::from_text`], for `"...".parse::<Token>()`.
impl core::str::FromStr for Token {
    type Err = TokenError;

    fn from_str(text: &str) -> Result<Self, TokenError> {
        Self::from_text(text)
    }
}

impl ConstantTimeEq for Token {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Token {}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("key_id", &self.key_id().0)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        // As a slice: `zeroize` fills a slice in bulk behind an optimisation barrier, but
        // an array element by element with a volatile write each (41 byte stores, on every
        // decision's parsed token).
        self.0.as_mut_slice().zeroize();
    }
}

/// A token's text form: 55 characters of base64url, wiped on drop, never printed by `Debug`.
///
/// Held as a string built from characters rather than bytes checked by
/// `core::str::from_utf8`, whose validation table alone is 256 bytes of flash on Cortex-M.
#[derive(Clone)]
pub struct TokenText(heapless::String<TOKEN_TEXT_LEN>);

impl TokenText {
    /// The text, ready for a header.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for TokenText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenText { ... }")
    }
}

impl Drop for TokenText {
    fn drop(&mut self) {
        // The text always fills the string's whole buffer (55 of 55 bytes), so wiping the
        // `str` wipes every byte, without heapless's `zeroize` feature and its proc macro.
        self.0.as_mut_str().zeroize();
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::arithmetic_side_effects
)]
mod tests {
    extern crate std;
    use super::*;
    use std::{format, string::String};

    fn sample() -> Token {
        let key = MacKey::new(&[1; 32]);
        Token::derive(
            &key,
            KeyId(7),
            &ClientId::from_bytes([2; 16]),
            &Seed::from_bytes([3; 16]),
            300,
        )
    }

    #[test]
    fn layout_and_text_round_trip() {
        let token = sample();
        assert_eq!(token.key_id(), KeyId(7));
        assert_eq!(token.generation(), 300);
        let text = token.to_text();
        assert_eq!(text.as_str().len(), TOKEN_TEXT_LEN);
        assert_eq!(Token::from_text(text.as_str()).unwrap(), token);
        assert_eq!(Token::from_bytes(token.as_bytes()).unwrap(), token);
        let mut written = [0u8; TOKEN_TEXT_LEN];
        token.write_text(&mut written);
        assert_eq!(
            &written,
            text.as_str().as_bytes(),
            "write_text is to_text's bytes"
        );
    }

    #[test]
    fn verify_accepts_own_and_refuses_others() {
        let key = MacKey::new(&[1; 32]);
        let (client, seed) = (ClientId::from_bytes([2; 16]), Seed::from_bytes([3; 16]));
        let token = sample();
        assert!(token.verify(&key, &client, &seed));
        assert!(!token.verify(&MacKey::new(&[9; 32]), &client, &seed));
        assert!(!token.verify(&key, &ClientId::from_bytes([4; 16]), &seed));
        assert!(!token.verify(&key, &client, &Seed::from_bytes([4; 16])));
        // Byte 0 is the key id, which picks the key rather than entering the MAC: flipping it
        // is checked in the decision tests (unknown key, or a MAC under another key).
        for byte in 1..TOKEN_LEN {
            let mut bytes = *token.as_bytes();
            bytes[byte] ^= 1;
            let flipped = Token::from_bytes(&bytes).unwrap();
            assert!(
                !flipped.verify(&key, &client, &seed),
                "bit flip in byte {byte} verified"
            );
        }
    }

    #[test]
    fn malformed_text_is_refused() {
        let good = String::from(sample().to_text().as_str());
        assert_eq!(
            Token::from_text(""),
            Err(TokenError::WrongLength { len: 0 })
        );
        assert_eq!(
            Token::from_text(&good[..54]),
            Err(TokenError::WrongLength { len: 54 })
        );
        assert_eq!(
            Token::from_text(&format!("{good}=")),
            Err(TokenError::WrongLength { len: 56 })
        );
        let big = "A".repeat(10 * 1024);
        assert_eq!(
            Token::from_text(&big),
            Err(TokenError::WrongLength { len: 10240 })
        );
        for bad in ['+', '/', '=', ' ', '.', '\0'] {
            let text: String = good.chars().take(54).chain([bad]).collect();
            assert_eq!(
                Token::from_text(&text),
                Err(TokenError::BadEncoding),
                "{bad:?}"
            );
            let text: String = [bad].into_iter().chain(good.chars().skip(1)).collect();
            assert_eq!(
                Token::from_text(&text),
                Err(TokenError::BadEncoding),
                "{bad:?}"
            );
        }
        // 55 characters carry 330 bits for 328: the last two must be zero.
        let last = good.chars().last().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.find(last).unwrap();
        assert_eq!(index & 0b11, 0, "canonical encodings end in two zero bits");
        let noncanonical = alphabet.chars().nth(index | 1).unwrap();
        let text: String = good.chars().take(54).chain([noncanonical]).collect();
        assert_eq!(Token::from_text(&text), Err(TokenError::BadEncoding));
        // A multi-byte character can make the byte length right and the text wrong.
        let text: String = good.chars().take(53).chain(['é']).collect();
        assert_eq!(text.len(), TOKEN_TEXT_LEN);
        assert_eq!(Token::from_text(&text), Err(TokenError::BadEncoding));
        assert_eq!(
            Token::from_bytes(&[0; 40]),
            Err(TokenError::WrongLength { len: 40 })
        );
    }

    #[test]
    fn debug_hides_the_mac() {
        let token = sample();
        let shown = format!("{token:?} {:?}", token.to_text());
        assert_eq!(
            shown,
            "Token { key_id: 7, generation: 300, .. } TokenText { ... }"
        );
    }

    /// Both forms of the fast codec against `base64ct`, the reference codec.
    mod base64url_against_base64ct {
        use super::super::base64url;
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
            base64url::decode(text, &mut out).then_some(out)
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
                let text = base64url::encode(&bytes);
                assert_eq!(text, reference_encode(&bytes), "{bytes:?}");
                assert_eq!(ours(&text), Some(bytes));
            }
        }

        #[test]
        fn decode_matches_on_every_single_byte_corruption() {
            let mut rng = StdRng::seed_from_u64(55);
            let (tokens, position_step, byte_step) =
                if cfg!(miri) { (1, 27, 5) } else { (8, 1, 1) };
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

    #[test]
    fn expected_tag_is_hmac_of_the_documented_input() {
        use hmac::{Hmac, KeyInit, Mac};
        let (client, seed) = ([2u8; 16], [3u8; 16]);
        let mut reference = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&[1; 32]).unwrap();
        reference.update(b"rotauth/t1");
        reference.update(&client);
        reference.update(&seed);
        reference.update(&300u64.to_be_bytes());
        let reference: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(&sample().as_bytes()[9..], &reference);
    }
}
