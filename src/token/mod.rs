//! Derived tokens: `T(n) = key_id ‖ n ‖ HMAC-SHA256(K[key_id], tag ‖ client_id ‖ seed ‖ n)`.

use core::fmt;

use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroize;

use crate::keyring::KeyId;
use crate::mac::{self, MacKey, Tag};
use crate::session::{ClientId, Seed};

mod base64url;
mod claim;

pub(crate) use claim::Claim;

/// Length of a token in bytes: key id (1) ‖ generation (8, big-endian) ‖ MAC (32).
pub const TOKEN_LEN: usize = 41;
/// Length of a token as text: base64url without padding.
pub const TOKEN_TEXT_LEN: usize = 55;
/// Where the MAC starts in a token's bytes, after the key id and the generation.
const MAC_AT: usize = 9;

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
        // Copied with `copy_from_slice` rather than `*bytes`, whose copy compiles to a
        // `memmove` call: 1.5 KiB of flash on Cortex-M for nothing else.
        exact_bytes(bytes).map(|bytes| {
            let mut token = [0u8; TOKEN_LEN];
            token.copy_from_slice(bytes);
            Self(token)
        })
    }

    /// Parses the text form (base64url, no padding), decoding in constant time.
    ///
    /// # Errors
    ///
    /// [`TokenError::WrongLength`] unless `text` is [`TOKEN_TEXT_LEN`] bytes long, checked
    /// before decoding; [`TokenError::BadEncoding`] for anything but canonical base64url.
    pub fn from_text(text: &str) -> Result<Self, TokenError> {
        decode_text(text).map(|groups| Self(groups.to_bytes()))
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
        key_id_of(&self.0)
    }

    /// The generation `n` this token claims to be.
    #[must_use]
    pub fn generation(&self) -> u64 {
        generation_of(&self.0)
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
        let (head, mac_part) = bytes.split_at_mut(MAC_AT);
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
}

/// Byte 0 of a token: the key id.
fn key_id_of(bytes: &[u8; TOKEN_LEN]) -> KeyId {
    let [id, ..] = *bytes;
    KeyId(id)
}

/// Bytes 1..9 of a token: the generation, big-endian.
fn generation_of(bytes: &[u8; TOKEN_LEN]) -> u64 {
    let mut n = [0u8; 8];
    n.iter_mut()
        .zip(bytes.iter().skip(1))
        .for_each(|(d, s)| *d = *s);
    u64::from_be_bytes(n)
}

/// The byte form's rule: exactly [`TOKEN_LEN`] bytes.
fn exact_bytes(bytes: &[u8]) -> Result<&[u8; TOKEN_LEN], TokenError> {
    <&[u8; TOKEN_LEN]>::try_from(bytes).map_err(|_| TokenError::WrongLength { len: bytes.len() })
}

/// The text form's rules: exactly [`TOKEN_TEXT_LEN`] bytes, checked before decoding, then
/// canonical base64url.
fn decode_text(text: &str) -> Result<base64url::Groups, TokenError> {
    let Ok(text) = <&[u8; TOKEN_TEXT_LEN]>::try_from(text.as_bytes()) else {
        return Err(TokenError::WrongLength { len: text.len() });
    };
    base64url::decode(text).ok_or(TokenError::BadEncoding)
}

/// The MAC of `tag ‖ client_id ‖ seed ‖ generation`, with the input written straight into
/// its padded block at fixed offsets (a byte-wise copy through chained iterators cost more
/// than one compression). Inlined on 64-bit CPUs, as [`MacKey::mac_block`] is.
#[cfg_attr(target_pointer_width = "64", inline)]
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
        let text = token.to_text();
        for claim in [
            Claim::read(token.as_bytes()),
            Claim::from_bytes(token.as_bytes()).unwrap(),
            Claim::from_text(text.as_str()).unwrap(),
        ] {
            assert!(claim.verify(&key, &client, &seed));
            assert!(!claim.verify(&MacKey::new(&[9; 32]), &client, &seed));
            assert!(!claim.verify(&key, &ClientId::from_bytes([4; 16]), &seed));
            assert!(!claim.verify(&key, &client, &Seed::from_bytes([4; 16])));
        }
        // Byte 0 is the key id, which picks the key rather than entering the MAC: flipping it
        // is checked in the decision tests (unknown key, or a MAC under another key).
        for byte in 1..TOKEN_LEN {
            for bit in 0..8 {
                let mut bytes = *token.as_bytes();
                bytes[byte] ^= 1 << bit;
                let flipped = Token::from_bytes(&bytes).unwrap();
                for claim in [
                    Claim::read(&bytes),
                    Claim::from_text(flipped.to_text().as_str()).unwrap(),
                ] {
                    assert!(
                        !claim.verify(&key, &client, &seed),
                        "flip of bit {bit} in byte {byte} verified"
                    );
                }
            }
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
