//! Derived tokens: `T(n) = key_id ‖ n ‖ HMAC-SHA256(K[key_id], tag ‖ client_id ‖ seed ‖ n)`.

use core::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};
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
        let bytes: [u8; TOKEN_LEN] = bytes
            .try_into()
            .map_err(|_| TokenError::WrongLength { len: bytes.len() })?;
        Ok(Self(bytes))
    }

    /// Parses the text form (base64url, no padding), decoding in constant time.
    ///
    /// # Errors
    ///
    /// [`TokenError::WrongLength`] unless `text` is [`TOKEN_TEXT_LEN`] bytes long, checked
    /// before decoding; [`TokenError::BadEncoding`] for anything but canonical base64url.
    pub fn from_text(text: &str) -> Result<Self, TokenError> {
        if text.len() != TOKEN_TEXT_LEN {
            return Err(TokenError::WrongLength { len: text.len() });
        }
        let mut bytes = [0u8; TOKEN_LEN];
        match Base64UrlUnpadded::decode(text, &mut bytes) {
            Ok(decoded) if decoded.len() == TOKEN_LEN => Ok(Self(bytes)),
            _ => {
                bytes.zeroize();
                Err(TokenError::BadEncoding)
            }
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
        let mut text = [0u8; TOKEN_TEXT_LEN];
        // The buffer has exactly the encoded length, so encoding cannot fail; if it did,
        // the text would be all zero bytes and fail to parse, never a wrong token.
        if Base64UrlUnpadded::encode(&self.0, &mut text).is_err() {
            text.zeroize();
        }
        TokenText(text)
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

    fn mac_bytes(&self) -> [u8; 32] {
        let mut tag = [0u8; 32];
        tag.iter_mut()
            .zip(self.0.iter().skip(9))
            .for_each(|(d, s)| *d = *s);
        tag
    }

    /// `T(generation)` of the session with `client_id` and `seed`, under key `key_id`.
    pub(crate) fn derive(
        key: &MacKey,
        key_id: KeyId,
        client_id: &ClientId,
        seed: &Seed,
        generation: u64,
    ) -> Self {
        let mut tag = [0u8; 32];
        mac::write_words(&mut tag, &expected_tag(key, client_id, seed, generation));
        let mut bytes = [0u8; TOKEN_LEN];
        let (head, mac_part) = bytes.split_at_mut(9);
        let (id, n) = head.split_at_mut(1);
        id.copy_from_slice(&[key_id.0]);
        n.copy_from_slice(&generation.to_be_bytes());
        mac_part.copy_from_slice(&tag);
        tag.zeroize();
        Self(bytes)
    }

    /// Whether this token's MAC is the one `key` gives for its generation of this session:
    /// one HMAC and one constant-time comparison of eight words.
    pub(crate) fn verify(&self, key: &MacKey, client_id: &ClientId, seed: &Seed) -> bool {
        let expected = expected_tag(key, client_id, seed, self.generation());
        let presented = mac::read_words(&self.mac_bytes());
        // Fold the differences into one word, then make one `Choice`: a slice `ct_eq`
        // would build 32 byte-`Choice`s and cost more than half an HMAC.
        let diff = expected
            .iter()
            .zip(presented.iter())
            .fold(0u32, |acc, (e, p)| acc | (e ^ p));
        let equal: Choice = diff.ct_eq(&0);
        bool::from(equal)
    }
}

fn expected_tag(key: &MacKey, client_id: &ClientId, seed: &Seed, generation: u64) -> Tag {
    let mut input = [0u8; MAC_INPUT_LEN];
    let parts: [&[u8]; 4] = [
        TAG,
        client_id.as_bytes(),
        seed.as_bytes(),
        &generation.to_be_bytes(),
    ];
    input
        .iter_mut()
        .zip(parts.into_iter().flatten())
        .for_each(|(d, s)| *d = *s);
    let tag = key.mac(&input);
    input.zeroize();
    tag
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
        self.0.zeroize();
    }
}

/// A token's text form: 55 characters of base64url, wiped on drop, never printed by `Debug`.
#[derive(Clone)]
pub struct TokenText([u8; TOKEN_TEXT_LEN]);

impl TokenText {
    /// The text, ready for a header.
    #[must_use]
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for TokenText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenText { ... }")
    }
}

impl Drop for TokenText {
    fn drop(&mut self) {
        self.0.zeroize();
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
}
