//! What a presented token claims, read where it lies: the key id that picks the key, the
//! generation, and the MAC that must be that generation's.
//!
//! A decision reads these from the host's bytes, or from the decoded groups of the
//! text, rather than first copying them into a [`Token`](super::Token): the copy, its
//! wipe, and the re-reading of a field written a moment before (which a CPU cannot
//! forward from the narrower stores of the copy) cost more than reading them in place.

use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroize;

use super::base64url::Groups;
use super::{MAC_AT, TOKEN_LEN, TokenError, expected_tag};
use crate::keyring::KeyId;
use crate::mac::MacKey;
use crate::session::{ClientId, Seed};

/// A presented token's fields. The MAC is held as four 64-bit words, each two of the
/// MAC's big-endian 32-bit words in the order SHA-256's state holds them (see
/// [`word_pair`]), and wiped on drop; the key id and generation are public.
pub(crate) struct Claim {
    key_id: KeyId,
    generation: u64,
    mac: [u64; 4],
}

impl Claim {
    /// The fields of a token's byte form, after the length check of
    /// [`Token::from_bytes`](super::Token::from_bytes).
    ///
    /// # Errors
    ///
    /// [`TokenError::WrongLength`] unless `bytes` is [`TOKEN_LEN`] long.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        super::exact_bytes(bytes).map(Self::read)
    }

    /// The fields of a token's text form, after the checks of
    /// [`Token::from_text`](super::Token::from_text).
    ///
    /// # Errors
    ///
    /// [`TokenError::WrongLength`] or [`TokenError::BadEncoding`].
    pub(crate) fn from_text(text: &str) -> Result<Self, TokenError> {
        super::decode_text(text).map(|groups| Self::from_groups(&groups))
    }

    /// The fields of `bytes`, read at their offsets.
    pub(crate) fn read(bytes: &[u8; TOKEN_LEN]) -> Self {
        let mut mac = [0u64; 4];
        mac.iter_mut()
            .zip(bytes.get(MAC_AT..).unwrap_or_default().chunks_exact(8))
            .for_each(|(word, chunk)| {
                let mut be = [0u8; 8];
                be.copy_from_slice(chunk);
                *word = word_pair_of_bytes(u64::from_be_bytes(be));
            });
        Self {
            key_id: super::key_id_of(bytes),
            generation: super::generation_of(bytes),
            mac,
        }
    }

    /// The fields of the decoded text, from the seven 48-bit groups (token bytes `6g..6g +
    /// 6` in group `g`) by shifts: byte 0 is the key id, bytes 1..9 the generation,
    /// bytes 9..41 the MAC.
    fn from_groups(groups: &Groups) -> Self {
        const LOW_24: u64 = (1 << 24) - 1;
        const LOW_40: u64 = (1 << 40) - 1;
        let [g0, g1, g2, g3, g4, g5, g6] = groups.0;
        let [_, _, key_id, ..] = g0.to_be_bytes();
        Self {
            key_id: KeyId(key_id),
            generation: ((g0 & LOW_40) << 24) | (g1 >> 24),
            mac: [
                ((g1 & LOW_24) << 40) | (g2 >> 8),
                (g2 << 56) | (g3 << 8) | (g4 >> 40),
                ((g4 & LOW_40) << 24) | (g5 >> 24),
                ((g5 & LOW_24) << 40) | (g6 >> 8),
            ]
            .map(word_pair_of_bytes),
        }
    }

    /// The id of the key this token claims to be made with.
    pub(crate) fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The generation `n` this token claims to be.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the MAC is the one `key` gives for this generation of the session: one HMAC,
    /// then the four words' differences folded into one word and that word compared with
    /// zero as one `Choice` (a slice `ct_eq` would build 32 byte-`Choice`s and cost more
    /// than half an HMAC).
    #[inline]
    pub(crate) fn verify(&self, key: &MacKey, client_id: &ClientId, seed: &Seed) -> bool {
        let mut expected = expected_tag(key, client_id, seed, self.generation);
        let diff = self
            .mac
            .iter()
            .zip(expected.chunks_exact(2))
            .fold(0u64, |diff, (presented, words)| {
                diff | (presented ^ word_pair(words))
            });
        let equal: Choice = diff.ct_eq(&0);
        // The expected MAC of a generation the host may not have issued yet (`n+1` and
        // beyond): as secret as a token, so it does not outlive the check.
        expected.as_mut_slice().zeroize();
        bool::from(equal)
    }
}

/// Two consecutive state words as one 64-bit word, the first in the low half: on a
/// little-endian CPU, one load of the two.
fn word_pair(words: &[u32]) -> u64 {
    words
        .iter()
        .rev()
        .fold(0u64, |pair, word| (pair << 32) | u64::from(*word))
}

/// [`word_pair`] of the two words in 8 bytes of the MAC read as one big-endian number.
fn word_pair_of_bytes(big_endian: u64) -> u64 {
    big_endian.rotate_left(32)
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.mac.as_mut_slice().zeroize();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    extern crate std;
    use super::super::Token;
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn fields(claim: &Claim) -> (KeyId, u64, [u64; 4]) {
        (claim.key_id, claim.generation, claim.mac)
    }

    #[test]
    fn text_and_bytes_claim_the_same_fields() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut cases = std::vec![[0u8; TOKEN_LEN], [0xff; TOKEN_LEN]];
        // One set bit at each position: a field read from the wrong offset or shifted by
        // the wrong amount moves it.
        for bit in 0..TOKEN_LEN * 8 {
            let mut bytes = [0u8; TOKEN_LEN];
            bytes[bit / 8] = 0x80 >> (bit % 8);
            cases.push(bytes);
        }
        for _ in 0..1_000 {
            let mut bytes = [0u8; TOKEN_LEN];
            rng.fill_bytes(&mut bytes);
            cases.push(bytes);
        }
        for bytes in cases {
            let token = Token::from_bytes(&bytes).unwrap();
            let read = Claim::read(&bytes);
            assert_eq!(read.key_id, token.key_id());
            assert_eq!(read.generation, token.generation());
            let mut mac = [0u8; 32];
            mac.chunks_exact_mut(8)
                .zip(read.mac)
                .for_each(|(out, word)| out.copy_from_slice(&word.rotate_right(32).to_be_bytes()));
            assert_eq!(mac[..], bytes[9..]);
            let decoded = Claim::from_text(token.to_text().as_str()).unwrap();
            assert_eq!(fields(&decoded), fields(&read), "{bytes:?}");
        }
    }

    #[test]
    fn malformed_input_is_the_token_parsers_error() {
        assert_eq!(
            Claim::from_bytes(&[0; 40]).err(),
            Token::from_bytes(&[0; 40]).err()
        );
        let texts = [
            std::string::String::new(),
            "A".repeat(54),
            "A".repeat(55),
            ".".repeat(55),
            std::format!("{}B", "A".repeat(54)),
        ];
        for text in &texts {
            assert_eq!(
                Claim::from_text(text).err(),
                Token::from_text(text).err(),
                "{text}"
            );
        }
    }
}
