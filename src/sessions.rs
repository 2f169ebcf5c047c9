//! All of one user's sessions in one fixed-capacity value: devise's `tokens` column, or the
//! session table of a device with no database.

use core::fmt;

use rand_core::{CryptoRng, TryCryptoRng};
use zeroize::Zeroize;

use crate::decision::{Decision, RejectReason, Request};
use crate::rotator::Rotator;
use crate::session::{ClientId, DecodeError, Reader, Session};
use crate::time::Timestamp;
use crate::token::Token;

/// Up to `N` sessions of one user (devise's default is 10 devices), without allocation.
///
/// When full, signing in evicts the session that expires first, as devise's
/// `max_number_of_devices` does. `N` must be between 1 and 255, checked at compile time.
///
/// # Example
///
/// ```
/// use rotauth::{Config, KeyId, Keyring, Request, Rotator, Sessions, Timestamp};
///
/// let keyring = Keyring::new(KeyId(1), b"a secret key of at least 32 bytes!")?;
/// let rotator = Rotator::new(keyring, Config::default());
/// let now = Timestamp::from_unix_millis(1_796_083_200_000);
///
/// // One user signs in on a laptop and on a phone (ten sessions fit before eviction).
/// let mut sessions: Sessions = Sessions::new();
/// let laptop = sessions.sign_in(&rotator, &mut rand::rng(), now);
/// let phone = sessions.sign_in(&rotator, &mut rand::rng(), now);
/// assert_eq!(sessions.len(), 2);
/// assert!(phone.evicted.is_none());
///
/// // A request of the phone, decided and applied here: a changed session is stored in
/// // the container, a revoked one removed. Send the client what the decision says.
/// let decision = sessions.decide(&rotator, &phone.client_id, Request::new(&phone.token, now));
/// assert!(decision.is_accepted());
/// assert_eq!(sessions.find(&phone.client_id).map(|s| s.generation()), Some(0));
///
/// // The password is changed on the laptop: every other session is signed out.
/// assert_eq!(sessions.sign_out_others(&laptop.client_id), 1);
/// assert!(sessions.find(&phone.client_id).is_none());
/// assert!(sessions.find(&laptop.client_id).is_some());
///
/// // Stored as one value (devise's `tokens` column). The bytes hold every session's seed:
/// // keep them as a secret, and wipe the buffer when done.
/// let mut buffer = [0u8; Sessions::<10>::MAX_ENCODED_LEN];
/// let len = sessions.encode(&mut buffer)?;
/// assert_eq!(len, sessions.encoded_len());
/// let restored: Sessions = Sessions::decode(buffer.get(..len).unwrap_or_default())?;
/// assert_eq!(restored, sessions);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Sessions<const N: usize = 10> {
    list: heapless::Vec<Session, N>,
}

/// The outcome of [`Sessions::sign_in`].
#[derive(Debug)]
#[must_use = "the token must be sent to the client"]
pub struct SignedIn {
    /// The new session's id, for the `client` header.
    pub client_id: ClientId,
    /// `T(0)`, for the `access-token` header.
    pub token: Token,
    /// The session evicted to make room, if the container was full.
    pub evicted: Option<Session>,
}

/// The buffer given to [`Sessions::encode`] is too small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// The length needed.
    pub needed: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "buffer too small: {} bytes needed", self.needed)
    }
}

impl core::error::Error for BufferTooSmall {}

impl<const N: usize> Default for Sessions<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Sessions<N> {
    const CAPACITY_FITS_ONE_BYTE: () = assert!(N >= 1 && N <= 255, "N must be 1..=255");
    /// The encoding format this crate writes, in the first byte.
    pub const FORMAT: u8 = 1;
    /// The length of the longest encoding: format, count, and `N` sessions.
    pub const MAX_ENCODED_LEN: usize = 2 + N * Session::ENCODED_LEN;

    /// No sessions.
    #[must_use]
    pub const fn new() -> Self {
        let () = Self::CAPACITY_FITS_ONE_BYTE;
        Self {
            list: heapless::Vec::new(),
        }
    }

    /// How many sessions there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The sessions, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.list.iter()
    }

    /// The session with this client id.
    #[must_use]
    pub fn find(&self, client_id: &ClientId) -> Option<&Session> {
        self.list.iter().find(|s| s.client_id == *client_id)
    }

    /// Signs in a new session, evicting the one that expires first if full.
    pub fn sign_in<R: CryptoRng + ?Sized>(
        &mut self,
        rotator: &Rotator,
        rng: &mut R,
        now: Timestamp,
    ) -> SignedIn {
        let Ok(signed_in) = self.try_sign_in(rotator, rng, now);
        signed_in
    }

    /// [`sign_in`](Self::sign_in) with an RNG that can fail.
    ///
    /// # Errors
    ///
    /// The RNG's error; the container is unchanged.
    pub fn try_sign_in<R: TryCryptoRng + ?Sized>(
        &mut self,
        rotator: &Rotator,
        rng: &mut R,
        now: Timestamp,
    ) -> Result<SignedIn, R::Error> {
        let (session, token) = rotator.try_sign_in(rng, now)?;
        let client_id = session.client_id;
        // A random 128-bit id never collides in practice; if the RNG repeats itself, the
        // new session replaces the old one rather than leaving two with one id.
        let mut evicted = self.sign_out(&client_id);
        if evicted.is_none() && self.list.is_full() {
            evicted = self
                .list
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.expires_at)
                .map(|(index, _)| index)
                .map(|index| self.list.swap_remove(index));
            self.wipe_spare();
        }
        // There is room now: `N ≥ 1` and one session was removed if the list was full.
        let rejected = self.list.push(session).err();
        debug_assert!(rejected.is_none());
        Ok(SignedIn {
            client_id,
            token,
            evicted,
        })
    }

    /// Decides a request of the session `client_id` and applies the result here: a
    /// changed session is stored, a revoked one removed. The host still persists the
    /// container (compare-and-swap on its own version if it is shared) and sends the token.
    pub fn decide(
        &mut self,
        rotator: &Rotator,
        client_id: &ClientId,
        request: Request<'_>,
    ) -> Decision {
        let found = self
            .list
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.client_id == *client_id);
        let Some((index, slot)) = found else {
            return Decision::Reject {
                reason: RejectReason::UnknownSession,
            };
        };
        let decision = rotator.decide(&*slot, request);
        if let Some(session) = decision.session_to_store() {
            slot.clone_from(session);
        }
        if decision.must_revoke() {
            drop(self.list.swap_remove(index));
            self.wipe_spare();
        }
        decision
    }

    /// Signs out one session, returning it.
    pub fn sign_out(&mut self, client_id: &ClientId) -> Option<Session> {
        let index = self.list.iter().position(|s| s.client_id == *client_id)?;
        let session = self.list.swap_remove(index);
        self.wipe_spare();
        Some(session)
    }

    /// Signs out every session but `keep` (after a password change); returns how many.
    pub fn sign_out_others(&mut self, keep: &ClientId) -> usize {
        let before = self.list.len();
        self.list.retain(|s| s.client_id == *keep);
        self.wipe_spare();
        before.saturating_sub(self.list.len())
    }

    /// Removes the sessions expired at `now`; returns how many.
    pub fn purge_expired(&mut self, now: Timestamp) -> usize {
        let before = self.list.len();
        self.list.retain(|s| now < s.expires_at);
        self.wipe_spare();
        before.saturating_sub(self.list.len())
    }

    /// Zeroes the unused slots. Removing a session (`swap_remove`, `retain`) moves the
    /// survivors bytewise and leaves stale copies, seeds included, behind the length; a
    /// removed session's own copy wipes its seed on drop, these would not.
    fn wipe_spare(&mut self) {
        self.list.spare_capacity_mut().zeroize();
    }

    /// The length of [`encode`](Self::encode)'s output for the current contents.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        self.list
            .len()
            .saturating_mul(Session::ENCODED_LEN)
            .saturating_add(2)
    }

    /// Writes format (1 byte), count (1 byte) and each session's encoding into `out`;
    /// returns the length written. [`MAX_ENCODED_LEN`](Self::MAX_ENCODED_LEN) always suffices.
    ///
    /// The output holds every session's seed. The buffer is the caller's, so wiping it is
    /// too: use one that wipes itself (`zeroize::Zeroizing<[u8; N]>`) or zeroize it once
    /// stored.
    ///
    /// # Errors
    ///
    /// [`BufferTooSmall`] if `out` is shorter than [`encoded_len`](Self::encoded_len);
    /// nothing is written then.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let needed = self.encoded_len();
        let Some(out) = out.get_mut(..needed) else {
            return Err(BufferTooSmall { needed });
        };
        let (header, body) = out.split_at_mut(2);
        // `N ≤ 255` is checked at compile time, so the count fits one byte.
        header.copy_from_slice(&[Self::FORMAT, u8::try_from(self.list.len()).unwrap_or(0)]);
        body.chunks_exact_mut(Session::ENCODED_LEN)
            .zip(&self.list)
            .for_each(|(chunk, session)| chunk.copy_from_slice(&session.encode()));
        Ok(needed)
    }

    /// Decodes [`encode`](Self::encode)'s output.
    ///
    /// # Errors
    ///
    /// [`DecodeError::UnknownFormat`]; [`DecodeError::WrongLength`] if the input is not
    /// exactly as long as its count says (trailing bytes are an error); any error of
    /// [`Session::decode`]; [`DecodeError::InvalidField`] for more than `N` sessions or two
    /// with one client id.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let [format, count, ..] = *bytes else {
            return Err(DecodeError::WrongLength {
                expected: 2,
                found: bytes.len(),
            });
        };
        if format != Self::FORMAT {
            return Err(DecodeError::UnknownFormat(format));
        }
        if usize::from(count) > N {
            return Err(DecodeError::InvalidField("more sessions than capacity"));
        }
        let expected = usize::from(count)
            .saturating_mul(Session::ENCODED_LEN)
            .saturating_add(2);
        let mut reader = Reader::new(bytes, expected)?;
        let _header: [u8; 2] = reader.array();
        let mut sessions = Self::new();
        for chunk in reader.remaining().chunks_exact(Session::ENCODED_LEN) {
            let session = Session::decode(chunk)?;
            if sessions.find(&session.client_id).is_some() {
                return Err(DecodeError::InvalidField("two sessions with one client id"));
            }
            sessions
                .list
                .push(session)
                .map_err(|_| DecodeError::InvalidField("more sessions than capacity"))?;
        }
        Ok(sessions)
    }
}

impl<const N: usize> fmt::Debug for Sessions<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.list).finish()
    }
}
