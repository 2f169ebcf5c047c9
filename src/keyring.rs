//! The host's secret keys, each with a public id, and which one signs new tokens.

use core::fmt;

use zeroize::Zeroize;

use crate::mac::MacKey;

/// The number of keys a [`Keyring`] holds at once: the primary, the one it replaced, and
/// room to stage the next.
pub const MAX_KEYS: usize = 4;

/// The shortest key accepted, in bytes: HMAC-SHA256 keys should carry at least 256 bits.
pub const MIN_KEY_LEN: usize = 32;

/// The public id of a key. It travels in every token, so the host can verify tokens made
/// under an older key while new ones are made under the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u8);

/// Errors from building or changing a [`Keyring`]: caller misuse, found at configuration
/// time rather than mid-request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is shorter than [`MIN_KEY_LEN`] bytes.
    TooShort {
        /// Its length in bytes.
        len: usize,
    },
    /// Another key already has this id.
    DuplicateId(KeyId),
    /// The keyring already holds [`MAX_KEYS`] keys.
    Full,
    /// No key has this id.
    UnknownId(KeyId),
    /// The primary key cannot be removed; make another key primary first.
    RemovingPrimary(KeyId),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(f, "key is {len} bytes; at least {MIN_KEY_LEN} are required")
            }
            Self::DuplicateId(id) => write!(f, "key id {} is already in the keyring", id.0),
            Self::Full => write!(f, "the keyring already holds {MAX_KEYS} keys"),
            Self::UnknownId(id) => write!(f, "no key with id {} in the keyring", id.0),
            Self::RemovingPrimary(id) => {
                write!(
                    f,
                    "key id {} is the primary key and cannot be removed",
                    id.0
                )
            }
        }
    }
}

impl core::error::Error for KeyError {}

/// The host-held secret keys `K` that tokens are derived with, with the HMAC schedule of each precomputed.
///
/// Tokens are verified with the key their id names and new tokens are made with the
/// primary key. To rotate keys without signing anyone out: [`insert`](Self::insert) the new
/// key, [`set_primary`](Self::set_primary) it, and once every session has rotated (or after
/// the token lifespan) [`remove`](Self::remove) the old one. Tokens under a removed key are
/// rejected as [`RejectReason::UnknownKey`](crate::RejectReason::UnknownKey).
///
/// `Debug` shows key ids only.
///
/// # Example: changing keys without logging anyone out
///
/// ```
/// use std::time::Duration;
///
/// use rotauth::{Config, KeyId, Keyring, RejectReason, Request, Rotator, Timestamp};
///
/// let mut now = Timestamp::from_unix_millis(1_796_083_200_000);
/// let keyring = Keyring::new(KeyId(1), b"the first key, at least 32 bytes")?;
/// let mut rotator = Rotator::new(keyring, Config::default());
/// let (session, t0) = rotator.sign_in(&mut rand::rng(), now);
/// assert_eq!(session.key_id(), KeyId(1));
///
/// // Add key 2 and promote it: it makes every new token from now on, and key 1 still
/// // verifies the tokens it made.
/// rotator.keyring_mut().insert(KeyId(2), b"the second key, at least 32 bytes")?;
/// rotator.keyring_mut().set_primary(KeyId(2))?;
/// assert_eq!(rotator.keyring().primary(), KeyId(2));
///
/// // The session signed in under key 1 is still decided: inside its batch window ...
/// now = now.saturating_add(Duration::from_secs(1));
/// assert!(rotator.decide(&session, Request::new(&t0, now)).is_accepted());
/// // ... and after it, where its next rotation moves it onto key 2.
/// now = now.saturating_add(Duration::from_secs(10));
/// let decision = rotator.decide(&session, Request::new(&t0, now));
/// let (Some(session), Some(t1)) = (decision.session_to_store(), decision.token_to_send()) else {
///     panic!("expected a rotation, got {decision:?}");
/// };
/// assert_eq!(session.key_id(), KeyId(2));
/// assert_eq!(t1.key_id(), KeyId(2));
///
/// // Once every session has rotated (or the lifespan has run out), retire key 1.
/// rotator.keyring_mut().remove(KeyId(1))?;
/// now = now.saturating_add(Duration::from_secs(1));
/// assert!(rotator.decide(session, Request::new(t1, now)).is_accepted());
/// // A token made under key 1 now names a key the keyring no longer holds.
/// assert_eq!(
///     rotator.decide(session, Request::new(&t0, now)).reject_reason(),
///     Some(RejectReason::UnknownKey)
/// );
/// # Ok::<(), rotauth::KeyError>(())
/// ```
pub struct Keyring {
    primary: (KeyId, MacKey),
    others: heapless::Vec<(KeyId, MacKey), { MAX_KEYS - 1 }>,
}

impl Keyring {
    /// A keyring with one key, which is primary.
    ///
    /// # Errors
    ///
    /// [`KeyError::TooShort`] if `key` is shorter than [`MIN_KEY_LEN`].
    pub fn new(id: KeyId, key: &[u8]) -> Result<Self, KeyError> {
        Ok(Self {
            primary: (id, checked(key)?),
            others: heapless::Vec::new(),
        })
    }

    /// Adds a key that verifies tokens carrying `id`; it signs nothing until made primary.
    ///
    /// # Errors
    ///
    /// [`KeyError::TooShort`], [`KeyError::DuplicateId`] or [`KeyError::Full`]; the keyring
    /// is unchanged.
    pub fn insert(&mut self, id: KeyId, key: &[u8]) -> Result<(), KeyError> {
        let key = checked(key)?;
        if self.contains(id) {
            return Err(KeyError::DuplicateId(id));
        }
        self.others.push((id, key)).map_err(|_| KeyError::Full)
    }

    /// Makes `id` the key that signs every token from now on.
    ///
    /// # Errors
    ///
    /// [`KeyError::UnknownId`] if no key has this id.
    pub fn set_primary(&mut self, id: KeyId) -> Result<(), KeyError> {
        if id == self.primary.0 {
            return Ok(());
        }
        let other = self
            .others
            .iter_mut()
            .find(|(k, _)| *k == id)
            .ok_or(KeyError::UnknownId(id))?;
        core::mem::swap(&mut self.primary, other);
        Ok(())
    }

    /// Removes a key: tokens carrying its id are rejected from now on.
    ///
    /// # Errors
    ///
    /// [`KeyError::UnknownId`] or [`KeyError::RemovingPrimary`].
    pub fn remove(&mut self, id: KeyId) -> Result<(), KeyError> {
        if id == self.primary.0 {
            return Err(KeyError::RemovingPrimary(id));
        }
        let index = self
            .others
            .iter()
            .position(|(k, _)| *k == id)
            .ok_or(KeyError::UnknownId(id))?;
        drop(self.others.swap_remove(index));
        // `swap_remove` leaves a stale copy of a key schedule behind the length; the removed
        // key's own copy wipes itself on drop, this one would not.
        self.others.spare_capacity_mut().zeroize();
        Ok(())
    }

    /// The id of the key that signs new tokens.
    #[must_use]
    pub fn primary(&self) -> KeyId {
        self.primary.0
    }

    /// Whether a key with this id is present.
    #[must_use]
    pub fn contains(&self, id: KeyId) -> bool {
        self.get(id).is_some()
    }

    /// The ids of all keys, the primary first.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        core::iter::once(&self.primary)
            .chain(&self.others)
            .map(|(id, _)| *id)
    }

    pub(crate) fn get(&self, id: KeyId) -> Option<&MacKey> {
        core::iter::once(&self.primary)
            .chain(&self.others)
            .find(|(k, _)| *k == id)
            .map(|(_, key)| key)
    }

    pub(crate) fn primary_key(&self) -> &MacKey {
        &self.primary.1
    }
}

fn checked(key: &[u8]) -> Result<MacKey, KeyError> {
    if key.len() < MIN_KEY_LEN {
        return Err(KeyError::TooShort { len: key.len() });
    }
    Ok(MacKey::new(key))
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary.0)
            .field(
                "ids",
                &self
                    .ids()
                    .map(|id| id.0)
                    .collect::<heapless::Vec<u8, MAX_KEYS>>(),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::arithmetic_side_effects
)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    const KEY: [u8; 32] = [0x42; 32];

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(
            Keyring::new(KeyId(1), &[0; 31]).unwrap_err(),
            KeyError::TooShort { len: 31 }
        );
        assert_eq!(
            Keyring::new(KeyId(1), &[]).unwrap_err(),
            KeyError::TooShort { len: 0 }
        );
        assert!(Keyring::new(KeyId(1), &KEY).is_ok());
    }

    #[test]
    fn key_lifecycle() {
        let mut ring = Keyring::new(KeyId(1), &KEY).unwrap();
        assert_eq!(
            ring.insert(KeyId(1), &KEY),
            Err(KeyError::DuplicateId(KeyId(1)))
        );
        assert_eq!(
            ring.set_primary(KeyId(2)),
            Err(KeyError::UnknownId(KeyId(2)))
        );
        ring.insert(KeyId(2), &[7; 40]).unwrap();
        ring.set_primary(KeyId(2)).unwrap();
        assert_eq!(ring.primary(), KeyId(2));
        assert_eq!(
            ring.remove(KeyId(2)),
            Err(KeyError::RemovingPrimary(KeyId(2)))
        );
        ring.remove(KeyId(1)).unwrap();
        assert!(!ring.contains(KeyId(1)));
        assert_eq!(ring.remove(KeyId(1)), Err(KeyError::UnknownId(KeyId(1))));
        assert_eq!(ring.ids().collect::<std::vec::Vec<_>>(), [KeyId(2)]);
    }

    #[test]
    fn capacity_is_reported_not_panicked() {
        let mut ring = Keyring::new(KeyId(0), &KEY).unwrap();
        for id in 1..MAX_KEYS as u8 {
            ring.insert(KeyId(id), &KEY).unwrap();
        }
        assert_eq!(ring.insert(KeyId(99), &KEY), Err(KeyError::Full));
        assert_eq!(ring.ids().count(), MAX_KEYS);
    }

    #[test]
    fn debug_shows_ids_only() {
        let ring = Keyring::new(KeyId(3), &KEY).unwrap();
        let shown = format!("{ring:?}");
        assert_eq!(shown, "Keyring { primary: KeyId(3), ids: [3], .. }");
    }
}
