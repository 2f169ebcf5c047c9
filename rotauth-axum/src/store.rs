//! The storage contract and the ready-made stores.

use std::fmt;
use std::future::Future;

use rotauth::{ClientId, DecodeError, KeyId, Session, Timestamp};
use zeroize::Zeroizing;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod connections;
pub(crate) mod memory;
#[cfg(feature = "tokio-postgres")]
mod pg_clients;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "tokio-postgres"))]
mod statements;
#[cfg(feature = "tokio-postgres")]
pub(crate) mod tokio_pg;

/// The error type that the backends' errors are boxed into.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One session as a store keeps it: rotauth's encoded record (which holds the session's
/// seed, so it is wiped on drop and never printed) and the session it encodes, from which
/// the fields a store indexes on are read, so that they always agree with the bytes.
#[derive(Clone)]
pub struct Record {
    bytes: Zeroizing<[u8; Session::ENCODED_LEN]>,
    session: Session,
}

impl Record {
    /// The record of `session`.
    #[must_use]
    pub fn from_session(session: &Session) -> Self {
        let encoded = session.encode();
        let mut bytes = Zeroizing::new([0u8; Session::ENCODED_LEN]);
        bytes.copy_from_slice(AsRef::<[u8]>::as_ref(&encoded));
        Self {
            bytes,
            session: session.clone(),
        }
    }

    /// A record read back from storage, decoded once.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when the bytes are not a record rotauth can decode (wrong
    /// length, unknown format, impossible field values).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let session = Session::decode(bytes).map_err(StoreError::Corrupt)?;
        // `decode` takes exactly `ENCODED_LEN` bytes; were that to change, encode afresh.
        if bytes.len() != Session::ENCODED_LEN {
            return Ok(Self::from_session(&session));
        }
        let mut copy = Zeroizing::new([0u8; Session::ENCODED_LEN]);
        copy.copy_from_slice(bytes);
        Ok(Self {
            bytes: copy,
            session,
        })
    }

    /// The encoded record, [`Session::ENCODED_LEN`] bytes: what a store writes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..]
    }

    /// The session's client id: the key a store finds the record by.
    #[must_use]
    pub fn client_id(&self) -> ClientId {
        self.session.client_id()
    }

    /// The key of the session's current token: a session stays on a key until it rotates
    /// under another primary.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        self.session.key_id()
    }

    /// The record's version: what [`SessionStore::compare_and_swap`] compares.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.session.version()
    }

    /// When the session expires unless it rotates first; a store may drop the record from
    /// then on (Redis key expiry, a purge job).
    #[must_use]
    pub fn expires_at(&self) -> Timestamp {
        self.session.expires_at()
    }

    /// The session.
    pub(crate) fn into_session(self) -> Session {
        self.session
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("client_id", &self.client_id())
            .field("version", &self.version())
            .field("expires_at", &self.expires_at())
            .finish_non_exhaustive()
    }
}

/// A session as loaded: its owner and its record.
#[derive(Clone, Debug)]
pub struct StoredSession {
    /// The user the session belongs to, as given to [`SessionStore::insert`].
    pub user_id: String,
    /// The record.
    pub record: Record,
}

/// One of a user's sessions, as listed by [`SessionStore::list`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSummary {
    /// The session's client id.
    pub client_id: ClientId,
    /// When it expires unless it rotates first.
    pub expires_at: Timestamp,
}

/// The result of [`SessionStore::compare_and_swap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Swap {
    /// The stored version was the expected one; the new record is stored.
    Swapped,
    /// The stored version was another one, or the session is gone: nothing was written.
    /// The caller loads again and decides again.
    Lost,
}

/// Why a store could not do what was asked. What the [`Authenticator`](crate::Authenticator)
/// does on each is said on the variant.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed: unreachable, timed out, locked, out of space, schema missing.
    /// The request tries again for up to its patience
    /// ([`Authenticator::store_patience`](crate::Authenticator::store_patience)), then
    /// answers 503 (`Retry-After: 1`) and sends no token; sign-in fails.
    Backend(BoxError),
    /// A stored record does not decode. The request is refused with 401 (the session can
    /// never be served; signing in again makes a new one) and an error is logged.
    Corrupt(DecodeError),
    /// [`SessionStore::insert`] found the client id taken (a 128-bit random id: a broken
    /// RNG or a replayed insert). Sign-in fails and nothing is sent.
    Duplicate,
    /// [`SessionStore::insert`] found the user's epoch moved since the sign-in read it:
    /// the user's sessions were signed out (a password change, an account deletion, a
    /// renamed user) while the sign-in checked the password. Nothing is written; the
    /// sign-in is refused with 401, as if the password had been wrong.
    EpochChanged,
}

impl StoreError {
    /// A backend failure from any error type.
    pub fn backend(error: impl Into<BoxError>) -> Self {
        Self::Backend(error.into())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Backend(e) => write!(f, "session store failed: {e}"),
            Self::Corrupt(e) => write!(f, "stored session record is corrupt: {e}"),
            Self::Duplicate => f.write_str("a session with this client id already exists"),
            Self::EpochChanged => {
                f.write_str("the user's sessions were signed out since this sign-in began")
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(e) => Some(&**e),
            Self::Corrupt(e) => Some(e),
            Self::Duplicate | Self::EpochChanged => None,
        }
    }
}

/// Where sessions live: rotauth's storage contract.
///
/// A store keeps, per client id, the user id and the encoded [`Record`]; it finds a user's
/// sessions by user id. It never interprets a record beyond what [`Record`] exposes. Per
/// user id it also keeps an **epoch**, a counter that every "sign out this user" moves on,
/// so that a sign-in that began before the user's credentials changed cannot store its
/// session after they did.
///
/// # What a store must guarantee
///
/// 1. **Compare-and-swap is atomic.** [`compare_and_swap`](Self::compare_and_swap) writes
///    only if the stored version still equals `expected_version`, in one indivisible step
///    (`UPDATE … WHERE client_id = ? AND version = ?`, a Lua script in Redis). Of any number
///    of concurrent swaps from the same version, at most one returns [`Swap::Swapped`].
///    This is what makes "exactly one rotation per batch window" hold across requests,
///    threads and servers.
/// 2. **A write is durable before the call returns `Ok`.** The authenticator sends a token
///    only after the write that makes it valid returned; a store that acknowledges before
///    the write is visible to the next [`load`](Self::load) breaks the chain.
/// 3. **A failure is an `Err`, never a silent success.** When unsure whether a write
///    happened (a timeout, a connection lost before the acknowledgement), return
///    [`StoreError::Backend`]: the request then reads the record back, serves itself if
///    the write landed, and otherwise decides again, so that its next swap, from the same
///    version, settles which write counts. A write that landed unannounced would leave
///    its client a token behind, which Strict mode refuses once the batch window has
///    passed.
/// 4. **Reads are not older than acknowledged writes** to the same client id (read your
///    writes). A store that lags (a replica) is safe but serves more batch reuses and
///    fast-forwards.
/// 5. A store may forget a session from its [`Record::expires_at`] on (key expiry, a purge);
///    it must not forget it earlier.
/// 6. **The epoch orders sign-ins against sign-outs.** [`insert`](Self::insert) writes only
///    if the user's epoch still equals the one [`epoch`](Self::epoch) returned, and
///    [`delete_user_sessions`](Self::delete_user_sessions) and
///    [`rename_user`](Self::rename_user) move the epoch on and delete (or move) the
///    sessions as one atomic step against every insert: an insert that began before such
///    a step is either deleted (moved) by it or refused with [`StoreError::EpochChanged`],
///    never left behind. A store keeps a user's epoch for as long as a sign-in may hold
///    it, in practice forever (one small row or key per user id ever signed in).
///
/// # What the authenticator does with the results
///
/// - `Ok(None)` from `load`, or [`Swap::Lost`] with nothing left to load: 401.
/// - [`Swap::Lost`]: load again and decide again (the retry is then part of the batch), at
///   most [`Authenticator::MAX_ATTEMPTS`](crate::Authenticator::MAX_ATTEMPTS) times in all,
///   then 503 without a token.
/// - [`StoreError::Backend`]: load again (a failed write may have landed: the request is
///   served if the record read back is the one it wrote) and decide again, after a pause,
///   until the request's patience
///   ([`Authenticator::store_patience`](crate::Authenticator::store_patience)) has
///   passed; then 503 without a token, `Retry-After: 1`.
/// - [`StoreError::Corrupt`]: 401, logged as an error.
/// - A revoking rejection calls [`delete`](Self::delete); if that fails it is tried again
///   as above, and the answer is 503 once the patience has passed.
/// - [`StoreError::EpochChanged`] from `insert`: the sign-in fails with
///   [`Error::CredentialsChanged`](crate::Error::CredentialsChanged).
///
/// The methods return `impl Future + Send` so that stores can be used from any tokio task;
/// implement them with `async fn`.
pub trait SessionStore: Send + Sync + 'static {
    /// The session of `client_id`, or `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails, [`StoreError::Corrupt`] when the
    /// stored bytes do not decode.
    fn load(
        &self,
        client_id: ClientId,
    ) -> impl Future<Output = Result<Option<StoredSession>, StoreError>> + Send;

    /// The epoch of `user_id`: 0 for a user never signed out. A store that needs a place
    /// to lock for [`insert`](Self::insert) (a row) may create it here.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails.
    fn epoch(&self, user_id: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Stores a new session of `user_id`, if the user's epoch is still `epoch` (see the
    /// trait docs: atomically against [`delete_user_sessions`](Self::delete_user_sessions)
    /// and [`rename_user`](Self::rename_user)).
    ///
    /// # Errors
    ///
    /// [`StoreError::EpochChanged`] if the epoch moved, [`StoreError::Duplicate`] if the
    /// client id exists (nothing is written in either case), [`StoreError::Backend`] when
    /// the backend fails.
    fn insert(
        &self,
        user_id: &str,
        epoch: u64,
        record: &Record,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces the record of `record.client_id()` if its stored version is still
    /// `expected_version`, atomically (see the trait docs).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails.
    fn compare_and_swap(
        &self,
        expected_version: u64,
        record: &Record,
    ) -> impl Future<Output = Result<Swap, StoreError>> + Send;

    /// Deletes the session; `false` if it was not there.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails.
    fn delete(&self, client_id: ClientId) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The sessions of `user_id`, in no particular order. Sessions past their expiry may
    /// or may not be listed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails.
    fn list(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<SessionSummary>, StoreError>> + Send;

    /// Moves the epoch of `user_id` on and deletes every session of the user except
    /// `keep` (all of them when `keep` is `None`), as one atomic step: "sign out
    /// everywhere" after a password change, an account deletion, an admin's revoke.
    /// Returns how many sessions were deleted.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails; then nothing changed.
    fn delete_user_sessions(
        &self,
        user_id: &str,
        keep: Option<ClientId>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Moves every session of `from` to `to` and moves the epoch of `from` on, as one
    /// atomic step: for user ids that carry something that can change (an email), so that
    /// the sessions follow the change and no sign-in begun under the old id stores a
    /// session after it. Returns how many sessions moved.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails; then nothing changed.
    fn rename_user(
        &self,
        from: &str,
        to: &str,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// How many sessions that have not expired at `now` are on each key
    /// ([`Record::key_id`]), by key id, in no particular order and without zero counts. A
    /// scan of every session, in bounded memory (a page at a time): for an operator
    /// deciding whether an old key can go, not for requests. Records that do not decode
    /// are skipped.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails.
    fn sessions_per_key(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<(KeyId, u64)>, StoreError>> + Send;

    /// Whether the store answers and holds what it needs (its tables): for a readiness
    /// check, which bounds its time. By default a [`load`](Self::load) of a client id no
    /// session has; the SQL stores read a row at most from each of their tables.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async {
            self.load(ClientId::from_bytes([0; 16]))
                .await
                .map(drop)
                .or_else(|e| match e {
                    // Answered: a record that does not decode is still a store that works.
                    StoreError::Corrupt(_) => Ok(()),
                    other => Err(other),
                })
        }
    }
}

/// Counts sessions per key, for [`SessionStore::sessions_per_key`].
#[derive(Default)]
pub(crate) struct KeyCensus(Vec<(KeyId, u64)>);

impl KeyCensus {
    /// Counts `record` if it is live at `now`.
    pub(crate) fn count(&mut self, record: &Record, now: Timestamp) {
        if record.expires_at() <= now {
            return;
        }
        let key = record.key_id();
        match self.0.iter_mut().find(|(id, _)| *id == key) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.0.push((key, 1)),
        }
    }

    /// Counts the bytes of a stored record, skipping what does not decode.
    #[cfg(any(
        feature = "sqlite",
        feature = "postgres",
        feature = "tokio-postgres",
        feature = "redis"
    ))]
    pub(crate) fn count_bytes(&mut self, bytes: &[u8], now: Timestamp) {
        if let Ok(record) = Record::from_bytes(bytes) {
            self.count(&record, now);
        }
    }

    pub(crate) fn into_counts(self) -> Vec<(KeyId, u64)> {
        self.0
    }
}

/// Converts a version to the signed 64-bit integer SQL databases store.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "tokio-postgres"))]
pub(crate) fn sql_int(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::backend("version or timestamp beyond i64"))
}

/// Reads a client id stored as its 16 bytes.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "tokio-postgres"))]
pub(crate) fn client_id_from_bytes(bytes: &[u8]) -> Result<ClientId, StoreError> {
    <[u8; ClientId::LEN]>::try_from(bytes)
        .map(ClientId::from_bytes)
        .map_err(|_| StoreError::backend("stored client id is not 16 bytes"))
}
