//! The session record: what a host stores per signed-in client, and its byte encoding.

use core::fmt;

use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroize;

use crate::keyring::KeyId;
use crate::time::Timestamp;

mod client_id;

pub use client_id::{ClientId, ParseClientIdError};

/// The per-session secret that tokens are derived from. Never printed, wiped on drop.
#[derive(Clone)]
pub(crate) struct Seed([u8; Seed::LEN]);

impl Seed {
    pub(crate) const LEN: usize = 16;

    pub(crate) const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    pub(crate) const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    pub(crate) fn as_mut_bytes(&mut self) -> &mut [u8; Self::LEN] {
        &mut self.0
    }
}

impl ConstantTimeEq for Seed {
    fn ct_eq(&self, other: &Self) -> Choice {
        let words = |s: &Self| {
            let (a, b) = s.0.split_at(8);
            let mut x = [0u8; 8];
            let mut y = [0u8; 8];
            x.copy_from_slice(a);
            y.copy_from_slice(b);
            (u64::from_ne_bytes(x), u64::from_ne_bytes(y))
        };
        let (a0, a1) = words(self);
        let (b0, b1) = words(other);
        ((a0 ^ b0) | (a1 ^ b1)).ct_eq(&0)
    }
}

impl PartialEq for Seed {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Seed {}

impl Drop for Seed {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

/// One signed-in session: the record a host stores, keyed by [`ClientId`].
///
/// It holds no token and no token hash, only a random seed that tokens are derived from
/// with the host's key, so a leaked database yields no usable token. Every change made by
/// a decision increments [`version`](Self::version), which hosts compare-and-swap on.
///
/// Not `Copy`, because the seed is wiped on drop; `Debug` leaves the seed out.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub(crate) client_id: ClientId,
    pub(crate) seed: Seed,
    pub(crate) key_id: KeyId,
    pub(crate) generation: u64,
    pub(crate) created_at: Timestamp,
    pub(crate) rotated_at: Timestamp,
    pub(crate) expires_at: Timestamp,
    pub(crate) acknowledged: bool,
    pub(crate) reissued: bool,
    pub(crate) version: u64,
}

impl Session {
    /// Length of the byte encoding.
    pub const ENCODED_LEN: usize = 1 + ClientId::LEN + Seed::LEN + 1 + 8 * 5 + 1;
    /// The encoding format this crate writes, in the first byte.
    pub const FORMAT: u8 = 1;

    /// The session's public id.
    #[must_use]
    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// The key that the current token `T(n)` was made with.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The current generation `n`.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the session was signed in; the absolute lifetime counts from here.
    #[must_use]
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// When the session last moved to a new generation (or was signed in): the batch
    /// window is `[rotated_at, rotated_at + W)`.
    #[must_use]
    pub fn rotated_at(&self) -> Timestamp {
        self.rotated_at
    }

    /// From this instant on, every token of the session is refused.
    #[must_use]
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// Whether the previous token `T(n-1)` can no longer be exchanged for `T(n)`: set when
    /// `T(n)` is presented ("acknowledgement by use"), and from the start of a generation
    /// that a rotation out of a [`reissued`](Self::reissued) one began (a recovery is
    /// granted once). Tracked in [`Mode::Recover`](crate::Mode::Recover) only.
    #[must_use]
    pub fn acknowledged(&self) -> bool {
        self.acknowledged
    }

    /// Whether `T(n)` has been handed out again by a [`Decision::Reissue`](crate::Decision)
    /// in exchange for `T(n-1)`. The rotation out of such a generation starts the next one
    /// [`acknowledged`](Self::acknowledged), so that of two parties holding diverging
    /// tokens at most one stays served. Tracked in [`Mode::Recover`](crate::Mode::Recover)
    /// only.
    #[must_use]
    pub fn reissued(&self) -> bool {
        self.reissued
    }

    /// The compare-and-swap version: incremented by every change a decision makes
    /// (wrapping, so a host compares for equality only).
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A copy with the version incremented: every record a decision hands back is one.
    pub(crate) fn next_version(&self) -> Self {
        let mut next = self.clone();
        next.version = self.version.wrapping_add(1);
        next
    }

    /// The stable byte encoding (format 1, big-endian integers):
    ///
    /// | bytes | field |
    /// |---|---|
    /// | 1 | format = 1 |
    /// | 16 | client id |
    /// | 16 | seed |
    /// | 1 | key id |
    /// | 8 | generation |
    /// | 8 | created_at (Unix ms) |
    /// | 8 | rotated_at (Unix ms) |
    /// | 8 | expires_at (Unix ms) |
    /// | 1 | flags: bit 0 = acknowledged, bit 1 = reissued, others zero |
    /// | 8 | version |
    ///
    /// The result holds the seed, so it is an [`EncodedSession`], which wipes itself when
    /// dropped: store its bytes as a secret and let it go.
    ///
    /// ```
    /// use rotauth::{Config, KeyId, Keyring, Rotator, Session, Timestamp};
    ///
    /// let rotator = Rotator::new(Keyring::new(KeyId(1), &[7; 32])?, Config::default());
    /// let now = Timestamp::from_unix_millis(1_796_083_200_000);
    /// let (session, _t0) = rotator.sign_in(&mut rand::rng(), now);
    ///
    /// // A row keyed by the client id's text, holding the 75 bytes and the version to
    /// // compare-and-swap on (`INSERT INTO sessions VALUES (?, ?, ?)`).
    /// let encoded = session.encode();
    /// let row = (session.client_id().to_string(), encoded.to_vec(), session.version());
    /// drop(encoded); // wiped here; the row's copy is the store's to protect
    ///
    /// // Loading it back decides exactly as the original would.
    /// let loaded = Session::decode(&row.1)?;
    /// assert_eq!(loaded, session);
    /// assert_eq!(loaded.version(), row.2);
    ///
    /// // Anything else is a typed error, never a panic.
    /// assert!(Session::decode(&row.1[..74]).is_err());
    /// # Ok::<(), Box<dyn core::error::Error>>(())
    /// ```
    #[must_use]
    pub fn encode(&self) -> EncodedSession {
        let mut out = [0u8; Self::ENCODED_LEN];
        let (format, rest) = out.split_at_mut(1);
        let (client, rest) = rest.split_at_mut(ClientId::LEN);
        let (seed, rest) = rest.split_at_mut(Seed::LEN);
        let (key, rest) = rest.split_at_mut(1);
        let (generation, rest) = rest.split_at_mut(8);
        let (created, rest) = rest.split_at_mut(8);
        let (rotated, rest) = rest.split_at_mut(8);
        let (expires, rest) = rest.split_at_mut(8);
        let (flags, version) = rest.split_at_mut(1);
        format.copy_from_slice(&[Self::FORMAT]);
        client.copy_from_slice(self.client_id.as_bytes());
        seed.copy_from_slice(&self.seed.0);
        key.copy_from_slice(&[self.key_id.0]);
        generation.copy_from_slice(&self.generation.to_be_bytes());
        created.copy_from_slice(&self.created_at.unix_millis().to_be_bytes());
        rotated.copy_from_slice(&self.rotated_at.unix_millis().to_be_bytes());
        expires.copy_from_slice(&self.expires_at.unix_millis().to_be_bytes());
        flags.copy_from_slice(&[u8::from(self.acknowledged) | u8::from(self.reissued) << 1]);
        version.copy_from_slice(&self.version.to_be_bytes());
        EncodedSession(out)
    }

    /// Decodes [`encode`](Self::encode)'s output.
    ///
    /// # Errors
    ///
    /// [`DecodeError::WrongLength`] unless `bytes` is exactly [`ENCODED_LEN`](Self::ENCODED_LEN)
    /// long (trailing bytes are an error), [`DecodeError::UnknownFormat`], and
    /// [`DecodeError::InvalidField`] for values no decision can produce:
    /// `created_at > rotated_at`, `rotated_at > expires_at`, a generation 0 that was
    /// rotated (`rotated_at ≠ created_at`) or reissued, and unknown flag bits.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes, Self::ENCODED_LEN)?;
        let format = reader.byte();
        if format != Self::FORMAT {
            return Err(DecodeError::UnknownFormat(format));
        }
        let client_id = ClientId::from_bytes(reader.array());
        let seed = Seed(reader.array());
        let key_id = KeyId(reader.byte());
        let generation = reader.u64();
        let created_at = Timestamp::from_unix_millis(reader.u64());
        let rotated_at = Timestamp::from_unix_millis(reader.u64());
        let expires_at = Timestamp::from_unix_millis(reader.u64());
        let flags = reader.byte();
        let version = reader.u64();
        if created_at > rotated_at {
            return Err(DecodeError::InvalidField("created_at is after rotated_at"));
        }
        if rotated_at > expires_at {
            return Err(DecodeError::InvalidField("rotated_at is after expires_at"));
        }
        if flags & !0b11 != 0 {
            return Err(DecodeError::InvalidField("unknown flag bits"));
        }
        let reissued = flags & 0b10 != 0;
        // Generation 0 is the sign-in's: only a rotation or a fast-forward moves its window,
        // and both leave generation 0; a reissue hands out `T(n)` for `T(n-1)`, which
        // generation 0 has not.
        if generation == 0 && rotated_at != created_at {
            return Err(DecodeError::InvalidField(
                "generation 0 with rotated_at after created_at",
            ));
        }
        if generation == 0 && reissued {
            return Err(DecodeError::InvalidField("generation 0 marked reissued"));
        }
        Ok(Self {
            client_id,
            seed,
            key_id,
            generation,
            created_at,
            rotated_at,
            expires_at,
            acknowledged: flags & 1 == 1,
            reissued,
            version,
        })
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.client_id)
            .field("key_id", &self.key_id)
            .field("generation", &self.generation)
            .field("created_at", &self.created_at)
            .field("rotated_at", &self.rotated_at)
            .field("expires_at", &self.expires_at)
            .field("acknowledged", &self.acknowledged)
            .field("reissued", &self.reissued)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A [`Session`]'s byte encoding, as [`Session::encode`] returns it.
///
/// It holds the seed that every token of the session is derived from, so it is wiped when
/// dropped and `Debug` shows only its length. Read it as bytes (`&encoded`, `as_bytes()`) to
/// store it, and let it drop; decode it with [`Session::decode`].
#[derive(Clone)]
pub struct EncodedSession([u8; Session::ENCODED_LEN]);

impl EncodedSession {
    /// The bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; Session::ENCODED_LEN] {
        &self.0
    }
}

/// Derefs to a slice, so `&encoded` goes wherever bytes do (`Session::decode(&encoded)`).
impl core::ops::Deref for EncodedSession {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for EncodedSession {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for EncodedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncodedSession({} bytes)", self.0.len())
    }
}

impl Drop for EncodedSession {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

/// Why stored bytes are not a session or a container of sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is not the length its contents require.
    WrongLength {
        /// The length required.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// The format byte is one this version of rotauth does not know.
    UnknownFormat(u8),
    /// A field holds a value no sequence of decisions can produce.
    InvalidField(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongLength { expected, found } => {
                write!(f, "encoded length is {found} bytes; expected {expected}")
            }
            Self::UnknownFormat(format) => write!(f, "unknown encoding format {format}"),
            Self::InvalidField(what) => write!(f, "invalid encoding: {what}"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Reads fixed-size fields from a buffer whose length was checked up front, so no read can
/// run short; a short read would yield zeros rather than panic.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], expected: usize) -> Result<Self, DecodeError> {
        if bytes.len() != expected {
            return Err(DecodeError::WrongLength {
                expected,
                found: bytes.len(),
            });
        }
        Ok(Self { rest: bytes })
    }

    pub(crate) fn array<const L: usize>(&mut self) -> [u8; L] {
        let mut out = [0u8; L];
        let (head, tail) = self.rest.split_at(L.min(self.rest.len()));
        out.iter_mut().zip(head).for_each(|(d, s)| *d = *s);
        self.rest = tail;
        out
    }

    pub(crate) fn byte(&mut self) -> u8 {
        let [b] = self.array();
        b
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }

    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.rest
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
    use std::format;

    pub(crate) fn sample() -> Session {
        Session {
            client_id: ClientId::from_bytes([0x11; 16]),
            seed: Seed([0x22; 16]),
            key_id: KeyId(3),
            generation: 0x0102_0304_0506_0708,
            created_at: Timestamp::from_unix_millis(1_000),
            rotated_at: Timestamp::from_unix_millis(2_000),
            expires_at: Timestamp::from_unix_millis(3_000),
            acknowledged: true,
            reissued: true,
            version: u64::MAX,
        }
    }

    #[test]
    fn encoding_round_trips_and_is_small() {
        assert_eq!(Session::ENCODED_LEN, 75);
        let session = sample();
        let bytes = session.encode();
        assert_eq!(bytes[0], Session::FORMAT);
        assert_eq!(&bytes[33..42], &[3, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Session::decode(&bytes).unwrap(), session);
    }

    #[test]
    fn decode_rejects_bad_input() {
        let bytes = sample().encode();
        for len in [0, 1, Session::ENCODED_LEN - 1] {
            assert_eq!(
                Session::decode(&bytes[..len]),
                Err(DecodeError::WrongLength {
                    expected: 75,
                    found: len
                })
            );
        }
        let mut long = [0u8; 76];
        long[..75].copy_from_slice(&bytes);
        assert!(matches!(
            Session::decode(&long),
            Err(DecodeError::WrongLength { .. })
        ));

        let mut bad = *bytes.as_bytes();
        bad[0] = 2;
        assert_eq!(Session::decode(&bad), Err(DecodeError::UnknownFormat(2)));

        let mut bad = sample();
        bad.rotated_at = Timestamp::from_unix_millis(3_001);
        assert!(matches!(
            Session::decode(&bad.encode()),
            Err(DecodeError::InvalidField(_))
        ));
        let mut bad = sample();
        bad.created_at = Timestamp::from_unix_millis(2_001);
        assert!(matches!(
            Session::decode(&bad.encode()),
            Err(DecodeError::InvalidField(_))
        ));
        let mut bad = *bytes.as_bytes();
        bad[66] = 0b100;
        assert!(matches!(
            Session::decode(&bad),
            Err(DecodeError::InvalidField(_))
        ));
        // Generation 0 is the sign-in's window, never rotated and never reissued.
        let mut first = sample();
        first.generation = 0;
        first.reissued = false;
        first.rotated_at = first.created_at;
        assert!(Session::decode(&first.encode()).is_ok());
        let mut bad = first.clone();
        bad.rotated_at = Timestamp::from_unix_millis(1_001);
        assert!(matches!(
            Session::decode(&bad.encode()),
            Err(DecodeError::InvalidField(_))
        ));
        let mut bad = first;
        bad.reissued = true;
        assert!(matches!(
            Session::decode(&bad.encode()),
            Err(DecodeError::InvalidField(_))
        ));
        let mut bad = *bytes.as_bytes();
        bad[66] = 0b1000_0000;
        assert!(matches!(
            Session::decode(&bad),
            Err(DecodeError::InvalidField(_))
        ));
    }

    #[test]
    fn client_id_text_round_trips() {
        let id = ClientId::from_bytes([0xfb; 16]);
        let text = format!("{id}");
        assert_eq!(text.len(), ClientId::TEXT_LEN);
        let mut out = [0u8; ClientId::TEXT_LEN];
        id.write_text(&mut out);
        assert_eq!(out, text.as_bytes(), "the same text without fmt");
        assert_eq!(text.parse::<ClientId>(), Ok(id));
        assert_eq!("short".parse::<ClientId>(), Err(ParseClientIdError));
        assert_eq!(
            "!!!!!!!!!!!!!!!!!!!!!!".parse::<ClientId>(),
            Err(ParseClientIdError)
        );
    }

    #[test]
    fn debug_leaves_the_seed_out() {
        let shown = format!("{:?}", sample());
        assert_eq!(
            shown,
            "Session { client_id: ClientId(EREREREREREREREREREREQ), key_id: KeyId(3), \
             generation: 72623859790382856, created_at: Timestamp(1000ms), \
             rotated_at: Timestamp(2000ms), expires_at: Timestamp(3000ms), \
             acknowledged: true, reissued: true, version: 18446744073709551615, .. }"
        );
        assert_eq!(
            format!("{:?}", sample().encode()),
            "EncodedSession(75 bytes)"
        );
    }
}
