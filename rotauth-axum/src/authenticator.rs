//! The request loop: decide, store, answer.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rotauth::rand_core::TryCryptoRng;
use rotauth::{
    ClientId, Decision, DecisionKind, KeyId, Keyring, RejectReason, Rotator, Session, Timestamp,
    Token,
};
use zeroize::Zeroizing;

use crate::store::{Record, SessionStore, StoreError, Swap};

/// The credentials a request presents, as a [`Protocol`](crate::Protocol) read them.
pub struct Credentials {
    /// The session's client id.
    pub client_id: ClientId,
    /// The token as sent (text, trimmed). Checked by rotauth, wiped on drop, never printed.
    pub token: Zeroizing<String>,
    /// The user the client claims to be (devise's `uid`), if the protocol carries one: a
    /// request whose claim differs from the session's user is refused (see
    /// [`Authenticator::uid_in_user_id`] for user ids that carry more than the claim).
    pub uid: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

/// Who an accepted request belongs to. The layer puts it in the request's extensions, and
/// handlers take it as an extractor:
///
/// ```
/// use rotauth_axum::Authenticated;
///
/// async fn me(who: Authenticated) -> String {
///     format!("hello {}", who.user_id)
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(me);
/// ```
///
/// A handler behind the layer always gets one; without the layer in front, extracting it
/// fails with 500 (a server misconfiguration, logged), never with a request served as
/// anonymous.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The session's client id (public: clients send it in the clear).
    pub client_id: ClientId,
    /// The session's user, as given to [`Authenticator::sign_in`].
    pub user_id: String,
}

/// What the response to an accepted request carries. A [`Protocol`](crate::Protocol)
/// writes it into the response headers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Reply {
    /// A new token, already stored: the client must use it from now on.
    NewToken {
        /// The token to send.
        token: Token,
        /// When the session expires unless it rotates first.
        expires_at: Timestamp,
    },
    /// A batch member: no token (devise sends `access-token: " "`). The client keeps the
    /// token it has, and must not replace a newer one with anything from this response.
    Batch {
        /// When the session expires unless it rotates first.
        expires_at: Timestamp,
    },
    /// A batch member under [`BatchToken::Current`]: the session's current token `T(n)`,
    /// which the client may already hold. Sent only to a holder of `T(n)` or `T(n-1)`.
    Current {
        /// `T(n)`.
        token: Token,
        /// When the session expires unless it rotates first.
        expires_at: Timestamp,
    },
    /// Rotation is switched off: the presented token stays valid and is sent back.
    SameToken {
        /// The presented token.
        token: Token,
        /// When the session expires.
        expires_at: Timestamp,
    },
}

impl Reply {
    /// The token the response carries, if any.
    #[must_use]
    pub fn token(&self) -> Option<&Token> {
        match self {
            Self::NewToken { token, .. }
            | Self::Current { token, .. }
            | Self::SameToken { token, .. } => Some(token),
            Self::Batch { .. } => None,
        }
    }

    /// When the session expires unless it rotates first.
    #[must_use]
    pub fn expires_at(&self) -> Timestamp {
        match self {
            Self::NewToken { expires_at, .. }
            | Self::Batch { expires_at }
            | Self::Current { expires_at, .. }
            | Self::SameToken { expires_at, .. } => *expires_at,
        }
    }
}

/// What the response to a batch member carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchToken {
    /// No token ([`Reply::Batch`]; devise sends `access-token: " "`): a response that
    /// arrives after a newer one can never hand the client an older token. For clients
    /// that keep their token when a response carries none (ng-token-auth, vue-auth,
    /// devise-token-auth-client).
    #[default]
    Blank,
    /// The session's current token `T(n)` ([`Reply::Current`]), for clients that take the
    /// token of every response, blank or not (j-toker). Only a holder of `T(n)` or
    /// `T(n-1)` gets it: handing `T(n)` to an in-window `T(n-2)` would upgrade a token
    /// two rotations old to one that outlives the window. Others get [`Reply::Batch`].
    /// The trade-off: a response that overtakes a newer one carries a token one
    /// generation older than the client's, which a strict client then sends (and which
    /// the batch window still accepts for the rest of the window).
    Current,
}

/// Why a request was refused with 401. For logs and metrics; the response body never says
/// which (it would help an attacker tell a forged token from an expired one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The request carries no credentials.
    MissingCredentials,
    /// The credentials are not in the protocol's shape (a malformed client id, say).
    MalformedCredentials,
    /// No session has this client id (signed out, evicted, expired and purged, revoked).
    UnknownSession,
    /// The request claims another user than the session's (devise's `uid`).
    UserMismatch,
    /// rotauth rejected the token.
    Rejected(RejectReason),
    /// rotauth rejected the token as a replay and the session was deleted.
    Revoked(RejectReason),
    /// The stored record does not decode.
    CorruptRecord,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingCredentials => f.write_str("no credentials"),
            Self::MalformedCredentials => f.write_str("malformed credentials"),
            Self::UnknownSession => f.write_str("no such session"),
            Self::UserMismatch => f.write_str("uid does not match the session"),
            Self::Rejected(reason) => write!(f, "{reason}"),
            Self::Revoked(reason) => write!(f, "{reason}; session revoked"),
            Self::CorruptRecord => f.write_str("stored record is corrupt"),
        }
    }
}

/// Why a request answered 503 without a token.
#[derive(Debug)]
#[non_exhaustive]
pub enum Unavailable {
    /// The store failed.
    Store(StoreError),
    /// [`Authenticator::MAX_ATTEMPTS`] compare-and-swaps in a row were lost to other
    /// requests of the same session.
    Contention,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => write!(f, "{e}"),
            Self::Contention => f.write_str("too many lost compare-and-swaps in a row"),
        }
    }
}

/// The outcome of [`Authenticator::authenticate`].
#[derive(Debug)]
#[must_use]
pub enum Outcome {
    /// Serve the request, then write `reply` into the response. Anything the reply
    /// carries is already stored.
    Served {
        /// Who the request belongs to.
        who: Authenticated,
        /// What the response carries.
        reply: Reply,
        /// What rotauth decided, for logs and metrics.
        decision: DecisionKind,
        /// Compare-and-swaps this request lost to other requests of the same session
        /// before its decision held, for logs and metrics.
        lost_swaps: usize,
    },
    /// Answer 401, send no token. Nothing of the handler runs.
    Refused(Refusal),
    /// Answer 503, send no token. Nothing of the handler runs.
    Unavailable(Unavailable),
}

/// The outcome of [`Authenticator::check`].
#[derive(Debug)]
#[must_use]
pub enum Checked {
    /// The credentials are accepted now; nothing was stored and no token is to be sent.
    Accepted {
        /// Who the request belongs to.
        who: Authenticated,
        /// What rotauth decided, for logs and metrics (what
        /// [`authenticate`](Authenticator::authenticate) would store is not stored).
        decision: DecisionKind,
    },
    /// Answer 401, send no token.
    Refused(Refusal),
    /// Answer 503, send no token.
    Unavailable(Unavailable),
}

/// A new session, stored: send `token` to the client with the sign-in response.
pub struct SignedIn {
    /// The new session's client id.
    pub client_id: ClientId,
    /// Its user.
    pub user_id: String,
    /// `T(0)`, the session's first token. Never printed.
    pub token: Token,
    /// When the session expires unless it rotates first.
    pub expires_at: Timestamp,
}

impl fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedIn")
            .field("client_id", &self.client_id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A sign-in begun with [`Authenticator::begin_sign_in`], before the password (or any
/// other credential) is checked: it holds the user's epoch as it was then, and
/// [`Authenticator::sign_in`] stores the session only if no sign-out of the user came in
/// between.
#[derive(Debug)]
#[must_use = "a sign-in stores nothing until it is passed to Authenticator::sign_in"]
pub struct PendingSignIn {
    user_id: String,
    epoch: u64,
}

impl PendingSignIn {
    /// The user signing in.
    #[must_use]
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
}

/// Why sign-in, sign-out or a credential change failed. Nothing was sent; as a response
/// it is 401 for [`CredentialsChanged`](Self::CredentialsChanged), 503 otherwise.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    Store(StoreError),
    /// The operating system's RNG failed; no session was made.
    Rng,
    /// The user's sessions were signed out (a password change, an account deletion, a
    /// renamed user) after the sign-in began: the credentials it checked may be gone. No
    /// session was made; the client signs in again.
    CredentialsChanged,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => write!(f, "{e}"),
            Self::Rng => f.write_str("the system RNG failed"),
            Self::CredentialsChanged => {
                f.write_str("the user's credentials changed while the sign-in was checked")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(e) => Some(e),
            Self::Rng | Self::CredentialsChanged => None,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EpochChanged => Self::CredentialsChanged,
            other => Self::Store(other),
        }
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        if let Self::CredentialsChanged = self {
            tracing::info!(error = %self, "rotauth: sign-in refused");
            return crate::protocol::json_response(
                http::StatusCode::UNAUTHORIZED,
                r#"{"errors":["unauthorized"]}"#,
            );
        }
        tracing::error!(error = %self, "rotauth: sign-in or sign-out failed");
        crate::protocol::unavailable_response()
    }
}

/// Why [`Authenticator::change_credentials`] failed, and whether the change was made.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChangeError<T, E> {
    /// Signing the user out before the change failed: the change did not run, nothing
    /// changed.
    NotStarted(Error),
    /// The change failed. The user's sessions but the kept one are signed out already.
    Change(E),
    /// The change was made (`T` is its result) and every session from before it is
    /// signed out, but signing out again after it failed: a sign-in that raced the change
    /// may have stored a session. Call [`Authenticator::sign_out_others`] again.
    NotConfirmed(T, Error),
}

impl<T, E: fmt::Display> fmt::Display for ChangeError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotStarted(e) => write!(f, "signing the user out before the change failed: {e}"),
            Self::Change(e) => write!(f, "{e}"),
            Self::NotConfirmed(_, e) => {
                write!(f, "signing the user out after the change failed: {e}")
            }
        }
    }
}

/// rotauth's request loop over a [`SessionStore`], written once: every request of every
/// protocol goes through [`authenticate`](Self::authenticate), every new session through
/// [`begin_sign_in`](Self::begin_sign_in) and [`sign_in`](Self::sign_in), every change of
/// a user's credentials through [`change_credentials`](Self::change_credentials).
///
/// The loop, for one request:
///
/// 1. load the session by client id (none: 401);
/// 2. let rotauth decide on the record, the presented token and `now`;
/// 3. a rejection: 401 without a token; a revoking one deletes the session first;
/// 4. a decision with a record to store: compare-and-swap it on the version loaded; on a
///    lost swap go back to 1 (the retry is then part of the batch), at most
///    [`MAX_ATTEMPTS`](Self::MAX_ATTEMPTS) times, then 503;
/// 5. only then is the request served and the token (if any) sent.
///
/// A store error anywhere sends the request back to 1 after a pause, with the time it
/// arrived, until the store answers or [`store_patience`](Self::store_patience) has passed
/// (then 503 without a token); a write that failed is looked for in the record read back,
/// and if it landed, the request is served as if the write had returned `Ok`. No path
/// hands out a token that is not stored: the [`Reply`] is built only after the write
/// returned `Ok` or was read back.
///
/// Cloning is cheap (the rotator and the store are shared). The keys can change while it
/// serves ([`set_keyring`](Self::set_keyring)): every clone decides with the new ones
/// from then on.
///
/// ```
/// use rotauth::{Config, KeyId, Keyring, Rotator, Timestamp};
/// use rotauth_axum::{Authenticator, Credentials, MemoryStore, Outcome};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keyring = Keyring::new(KeyId(1), &[7u8; 32])?;
/// let rotator = Rotator::new(keyring, Config::default());
/// let auth = Authenticator::new(rotator, MemoryStore::new());
///
/// let pending = auth.begin_sign_in("alice").await?;
/// // ... check alice's password ...
/// let signed_in = auth.sign_in(pending).await?;
/// let credentials = Credentials {
///     client_id: signed_in.client_id,
///     token: signed_in.token.to_text().as_str().to_owned().into(),
///     uid: None,
/// };
/// match auth.authenticate(&credentials, Timestamp::now(), false).await {
///     Outcome::Served { who, .. } => assert_eq!(who.user_id, "alice"),
///     other => panic!("{other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
pub struct Authenticator<S> {
    rotator: Arc<ArcSwap<Rotator>>,
    store: Arc<S>,
    max_sessions_per_user: usize,
    max_attempts: usize,
    store_patience: Duration,
    batch_token: BatchToken,
    uid_in_user_id: fn(&str) -> &str,
}

impl<S> Clone for Authenticator<S> {
    fn clone(&self) -> Self {
        Self {
            rotator: Arc::clone(&self.rotator),
            store: Arc::clone(&self.store),
            max_sessions_per_user: self.max_sessions_per_user,
            max_attempts: self.max_attempts,
            store_patience: self.store_patience,
            batch_token: self.batch_token,
            uid_in_user_id: self.uid_in_user_id,
        }
    }
}

impl<S> fmt::Debug for Authenticator<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .field("max_attempts", &self.max_attempts)
            .field("store_patience", &self.store_patience)
            .field("batch_token", &self.batch_token)
            .finish_non_exhaustive()
    }
}

impl<S: SessionStore> Authenticator<S> {
    /// Sessions per user unless set otherwise (devise's `max_number_of_devices`).
    pub const MAX_SESSIONS_PER_USER: usize = 10;
    /// Decisions per request unless set otherwise: one plus the swaps a request may lose.
    /// Each lost swap means another request of the same session committed in between, and
    /// the retry is then a batch member that stores nothing, so two are normally enough;
    /// the bound keeps a pathological storm from spinning.
    pub const MAX_ATTEMPTS: usize = 4;
    /// How long a request keeps trying a failing store unless set otherwise: see
    /// [`store_patience`](Self::store_patience).
    pub const STORE_PATIENCE: Duration = Duration::from_secs(5);

    /// An authenticator deciding with `rotator` over `store`.
    #[must_use]
    pub fn new(rotator: Rotator, store: S) -> Self {
        Self {
            rotator: Arc::new(ArcSwap::from_pointee(rotator)),
            store: Arc::new(store),
            max_sessions_per_user: Self::MAX_SESSIONS_PER_USER,
            max_attempts: Self::MAX_ATTEMPTS,
            store_patience: Self::STORE_PATIENCE,
            batch_token: BatchToken::Blank,
            uid_in_user_id: |user_id| user_id,
        }
    }

    /// Sets how many sessions a user may hold (at least 1). Signing in beyond it evicts the
    /// sessions that expire first.
    #[must_use]
    pub fn max_sessions_per_user(mut self, max: usize) -> Self {
        self.max_sessions_per_user = max.max(1);
        self
    }

    /// Sets how many decisions one request may take (at least 1) before it answers 503.
    #[must_use]
    pub fn max_attempts(mut self, max: usize) -> Self {
        self.max_attempts = max.max(1);
        self
    }

    /// Sets how long a request keeps trying when the store fails (an error from any of its
    /// calls), counted from the request's start: the request tries again after a pause
    /// (10 ms, doubling up to 250 ms) until the store answers or `patience` has passed, and
    /// only then answers 503. [`STORE_PATIENCE`](Self::STORE_PATIENCE) (5 s) unless set;
    /// zero answers 503 at the first failure.
    ///
    /// Riding out a short outage (a restart, a failover, a network blip) is what keeps
    /// its clients signed in. A request that waits decides with the time it arrived, so the
    /// requests of one burst that waited together are still one batch; and a rotation whose
    /// write failed without saying whether it landed (a timeout, a connection lost before
    /// the acknowledgement) is settled before the answer: the record is read again, and if
    /// it is the one written the rotation's token is sent, otherwise the request decides
    /// again and its next swap, from the same version, makes sure the first write can no
    /// longer land. Answered 503 instead, such a rotation could land unannounced: its
    /// client would keep presenting the token before it, which after the batch window is
    /// a replay (Strict mode), so the client would be signed out.
    ///
    /// What is left: a store that stays unreachable for longer than `patience` while a
    /// write's fate is unknown (set it above the outages the app should ride out, or use
    /// Recover mode, which reissues the lost token once).
    #[must_use]
    pub fn store_patience(mut self, patience: Duration) -> Self {
        self.store_patience = patience;
        self
    }

    /// Sets what a batch member's response carries ([`BatchToken::Blank`] unless set).
    #[must_use]
    pub fn batch_token(mut self, batch_token: BatchToken) -> Self {
        self.batch_token = batch_token;
        self
    }

    /// Sets where a request's claimed `uid` ([`Credentials::uid`]) is found in the user id
    /// a session was signed in with: the whole user id unless set.
    ///
    /// For apps whose `uid` can change while the user stays (devise's email): sign in with
    /// a user id that carries a stable id and the current uid, and pass the function that
    /// returns the uid part. The check stays in the loop, before anything is stored, and
    /// the handler reads both from [`Authenticated::user_id`] without a query:
    ///
    /// ```
    /// # use rotauth::{Config, KeyId, Keyring, Rotator};
    /// # use rotauth_axum::{Authenticator, MemoryStore};
    /// # let rotator = Rotator::new(Keyring::new(KeyId(1), &[7u8; 32]).unwrap(), Config::default());
    /// // Sessions signed in as "42 alice@example.com"; requests claim "alice@example.com".
    /// let auth = Authenticator::new(rotator, MemoryStore::new())
    ///     .uid_in_user_id(|user_id| user_id.split_once(' ').map_or(user_id, |(_, uid)| uid));
    /// # let _ = auth;
    /// ```
    #[must_use]
    pub fn uid_in_user_id(mut self, uid_in_user_id: fn(&str) -> &str) -> Self {
        self.uid_in_user_id = uid_in_user_id;
        self
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The rotator as it is now (a later [`set_keyring`](Self::set_keyring) does not
    /// change this one).
    #[must_use]
    pub fn rotator(&self) -> Arc<Rotator> {
        self.rotator.load_full()
    }

    /// Decides with `keyring` from now on, keeping the configuration: how an operator
    /// changes keys without a restart. Requests already deciding finish with the keys they
    /// started with. To change keys without signing anyone out, on every instance in turn:
    /// add the new key (not primary); once every instance has it, make it primary; once
    /// no session is left on the old key ([`sessions_per_key`](Self::sessions_per_key)) or
    /// the old key's tokens have all expired, remove it.
    pub fn set_keyring(&self, keyring: Keyring) {
        let config = *self.rotator.load().config();
        let ids: Vec<KeyId> = keyring.ids().collect();
        self.rotator.store(Arc::new(Rotator::new(keyring, config)));
        tracing::info!(keys = ?ids, "rotauth: keyring replaced (the first key is primary)");
    }

    /// How many sessions that have not expired at `now` are on each key (the key of their
    /// current token), by key id: a key no live session is on can be removed without
    /// signing anyone out. A scan of the whole store: for a dashboard or an operator, not
    /// for every request.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails.
    pub async fn sessions_per_key(&self, now: Timestamp) -> Result<Vec<(KeyId, u64)>, Error> {
        Ok(self.store.sessions_per_key(now).await?)
    }

    /// Begins signing `user_id` in: call it **before** reading the credentials the
    /// sign-in checks (the password hash), then check them, then pass the result to
    /// [`sign_in`](Self::sign_in). A sign-out of the user in between (a password change,
    /// an account deletion, [`change_credentials`](Self::change_credentials)) makes that
    /// sign-in fail with [`Error::CredentialsChanged`] instead of storing a session the
    /// change was meant to prevent.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails.
    pub async fn begin_sign_in(&self, user_id: &str) -> Result<PendingSignIn, Error> {
        Ok(PendingSignIn {
            epoch: self.store.epoch(user_id).await?,
            user_id: user_id.to_owned(),
        })
    }

    /// Signs a user in now, with the operating system's RNG: see
    /// [`sign_in_with`](Self::sign_in_with).
    ///
    /// # Errors
    ///
    /// As [`sign_in_with`](Self::sign_in_with).
    pub async fn sign_in(&self, pending: PendingSignIn) -> Result<SignedIn, Error> {
        self.sign_in_with(pending, &mut getrandom::SysRng, Timestamp::now())
            .await
    }

    /// Finishes the sign-in `pending` at `now`, drawing the client id and seed from `rng`:
    /// drops the user's expired sessions, evicts the ones expiring first beyond the
    /// per-user cap, then stores the new session, if no sign-out of the user came since
    /// [`begin_sign_in`](Self::begin_sign_in). The token is returned only once it is
    /// stored.
    ///
    /// The cap is kept per sign-in; two sign-ins of one user racing can leave one session
    /// more than the cap until the next sign-in.
    ///
    /// # Errors
    ///
    /// [`Error::CredentialsChanged`] when the user was signed out since the sign-in began
    /// (nothing is stored), [`Error::Store`] when the store fails (some old sessions may be
    /// gone already; the new one is not stored), [`Error::Rng`] when `rng` does.
    pub async fn sign_in_with<R: TryCryptoRng + ?Sized>(
        &self,
        pending: PendingSignIn,
        rng: &mut R,
        now: Timestamp,
    ) -> Result<SignedIn, Error> {
        let PendingSignIn { user_id, epoch } = pending;
        let rotator = self.rotator.load();
        let (session, token) = rotator.try_sign_in(rng, now).map_err(|_| Error::Rng)?;
        let mut live = Vec::new();
        for summary in self.store.list(&user_id).await? {
            if summary.expires_at <= now {
                self.store.delete(summary.client_id).await?;
            } else {
                live.push(summary);
            }
        }
        live.sort_by_key(|s| s.expires_at);
        let excess = live
            .len()
            .saturating_add(1)
            .saturating_sub(self.max_sessions_per_user);
        for evicted in live.iter().take(excess) {
            self.store.delete(evicted.client_id).await?;
            tracing::debug!(client_id = %evicted.client_id, "rotauth: session evicted by the per-user cap");
        }
        self.store
            .insert(&user_id, epoch, &Record::from_session(&session))
            .await?;
        tracing::debug!(client_id = %session.client_id(), "rotauth: signed in");
        Ok(SignedIn {
            client_id: session.client_id(),
            user_id,
            token,
            expires_at: session.expires_at(),
        })
    }

    /// Deletes one session; `false` if it was not there.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails.
    pub async fn sign_out(&self, client_id: ClientId) -> Result<bool, Error> {
        Ok(self.store.delete(client_id).await?)
    }

    /// Signs `user_id` out everywhere but `keep` (everywhere with `None`): deletes the
    /// sessions and fails every sign-in of the user begun before, in one step of the
    /// store. Returns how many sessions were deleted. For an admin's revoke; a change of
    /// the credentials themselves goes through
    /// [`change_credentials`](Self::change_credentials).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails; then nothing changed.
    pub async fn sign_out_others(
        &self,
        user_id: &str,
        keep: Option<ClientId>,
    ) -> Result<usize, Error> {
        Ok(self.store.delete_user_sessions(user_id, keep).await?)
    }

    /// Runs `change`, a change of `user_id`'s credentials (writing a new password hash,
    /// deleting the account), so that no session from before it survives it and no
    /// sign-in begun before it can store one afterwards: signs the user out everywhere
    /// but `keep`, runs `change`, and signs the user out again.
    ///
    /// The first sign-out is what makes a failure safe: when `change` fails, or the
    /// second sign-out does, the old sessions are gone already. The second is what
    /// closes the race: a sign-in that read the old password hash after the first
    /// sign-out began after it, and only the second moves its epoch. Returns `change`'s
    /// result and how many sessions the two sign-outs deleted.
    ///
    /// `change` is a future: it does not run until it is polled, after the first
    /// sign-out.
    ///
    /// # Errors
    ///
    /// [`ChangeError`] says which step failed and whether the change was made.
    pub async fn change_credentials<T, E>(
        &self,
        user_id: &str,
        keep: Option<ClientId>,
        change: impl Future<Output = Result<T, E>>,
    ) -> Result<(T, usize), ChangeError<T, E>> {
        let before = self
            .sign_out_others(user_id, keep)
            .await
            .map_err(ChangeError::NotStarted)?;
        let changed = change.await.map_err(ChangeError::Change)?;
        match self.sign_out_others(user_id, keep).await {
            Ok(after) => Ok((changed, before.saturating_add(after))),
            Err(e) => Err(ChangeError::NotConfirmed(changed, e)),
        }
    }

    /// Moves every session of `from` to `to` and fails every sign-in begun under `from`,
    /// in one step of the store: for user ids that carry something that can change, such
    /// as the email an app keeps in them beside a stable id (see
    /// [`uid_in_user_id`](Self::uid_in_user_id)). Write the change first (so that no new
    /// sign-in finds the old one), then rename. Returns how many sessions moved.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails; then nothing changed.
    pub async fn rename_user(&self, from: &str, to: &str) -> Result<usize, Error> {
        Ok(self.store.rename_user(from, to).await?)
    }

    /// Decides one request presenting `credentials` at `now` (`unbatch`: force rotation
    /// inside the batch window, devise's `?unbatch=true`), storing what the decision says
    /// before returning. See the type docs for the loop.
    pub async fn authenticate(
        &self,
        credentials: &Credentials,
        now: Timestamp,
        unbatch: bool,
    ) -> Outcome {
        let client_id = credentials.client_id;
        let rotator = self.rotator.load();
        let mut patience = Patience::new(self.store_patience);
        let mut first_generation = None;
        let mut lost_swaps = 0;
        // The writes of this request that failed without saying whether they landed, with
        // what each was to send: if the record read back is one of them, it landed.
        let mut unconfirmed: Vec<(Record, Send, DecisionKind)> = Vec::new();
        loop {
            let (user_id, stored) = match self.load(credentials).await {
                Ok(loaded) => loaded,
                Err(denied) => match patience.again(client_id, denied).await {
                    Ok(()) => continue,
                    Err(denied) => return denied.into(),
                },
            };
            if let Some((record, send, kind)) = unconfirmed
                .iter()
                .find(|(record, ..)| record.as_bytes() == stored.as_bytes())
            {
                tracing::debug!(%client_id, "rotauth: a write whose acknowledgement was lost had landed");
                let who = Authenticated { client_id, user_id };
                return self.served(
                    &rotator,
                    credentials,
                    who,
                    record.session(),
                    send.clone(),
                    *kind,
                    lost_swaps,
                );
            }
            let version = stored.version();
            let session = stored.into_session();
            let mut request = rotauth::Request::new(credentials.token.as_str(), now);
            // A forced request that lost its swap to a rotation has had its rotation: the
            // winner moved the session on and sent the new token. Forcing again would
            // rotate a second time and hand the burst two new tokens.
            let first = *first_generation.get_or_insert(session.generation());
            if unbatch && session.generation() == first {
                request = request.force_rotation();
            }
            let decision = rotator.decide(&session, request);
            let kind = decision.kind();
            let (to_store, send) = match self.duties(decision, credentials).await {
                Ok(duties) => duties,
                Err(denied) => match patience.again(client_id, denied).await {
                    Ok(()) => continue,
                    Err(denied) => return denied.into(),
                },
            };
            let kept: &Session = match &to_store {
                Some(next) => {
                    let record = Record::from_session(next);
                    match self.store.compare_and_swap(version, &record).await {
                        Ok(Swap::Swapped) => next,
                        Ok(Swap::Lost) => {
                            lost_swaps = lost_swaps.saturating_add(1);
                            if lost_swaps >= self.max_attempts {
                                tracing::warn!(%client_id, attempts = self.max_attempts, "rotauth: too many lost compare-and-swaps; 503");
                                return Outcome::Unavailable(Unavailable::Contention);
                            }
                            tracing::debug!(%client_id, lost_swaps, "rotauth: lost a compare-and-swap; deciding again");
                            continue;
                        }
                        Err(e) => {
                            // It may have landed: read it back before answering.
                            unconfirmed.push((record, send, kind));
                            let denied = self.store_failed(client_id, e);
                            match patience.again(client_id, denied).await {
                                Ok(()) => continue,
                                Err(denied) => return denied.into(),
                            }
                        }
                    }
                }
                None => &session,
            };
            let who = Authenticated { client_id, user_id };
            return self.served(&rotator, credentials, who, kept, send, kind, lost_swaps);
        }
    }

    /// A served request's outcome, once what it stores is stored.
    #[allow(
        clippy::too_many_arguments,
        reason = "a private step of one loop, named at its two calls"
    )]
    fn served(
        &self,
        rotator: &Rotator,
        credentials: &Credentials,
        who: Authenticated,
        kept: &Session,
        send: Send,
        decision: DecisionKind,
        lost_swaps: usize,
    ) -> Outcome {
        let expires_at = kept.expires_at();
        let reply = match send {
            Send::New(token) => Reply::NewToken { token, expires_at },
            Send::Same(token) => Reply::SameToken { token, expires_at },
            Send::Nothing => self.batch_reply(rotator, credentials, kept),
        };
        tracing::debug!(client_id = %who.client_id, decision = decision.as_str(), lost_swaps, "rotauth: served");
        Outcome::Served {
            who,
            reply,
            decision,
            lost_swaps,
        }
    }

    /// Decides whether `credentials` are accepted at `now`, without storing the decision
    /// or sending a token: for requests that end the session or the account (sign-out,
    /// account deletion), where a rotation would only be thrown away, and for checking a
    /// request before slow work whose result is committed later with
    /// [`authenticate`](Self::authenticate). A replay that the policy revokes still
    /// deletes its session.
    pub async fn check(&self, credentials: &Credentials, now: Timestamp) -> Checked {
        let mut patience = Patience::new(self.store_patience);
        let (user_id, session) = loop {
            match self.load(credentials).await {
                Ok((user_id, stored)) => break (user_id, stored.into_session()),
                Err(denied) => match patience.again(credentials.client_id, denied).await {
                    Ok(()) => {}
                    Err(denied) => return denied.into(),
                },
            }
        };
        let decision = self.rotator.load().decide(
            &session,
            rotauth::Request::new(credentials.token.as_str(), now),
        );
        let kind = decision.kind();
        match self.duties(decision, credentials).await {
            Ok(_) => Checked::Accepted {
                who: Authenticated {
                    client_id: credentials.client_id,
                    user_id,
                },
                decision: kind,
            },
            Err(denied) => denied.into(),
        }
    }

    /// The record of `credentials`'s session with its user, if the claimed user (if any) is
    /// its owner.
    async fn load(&self, credentials: &Credentials) -> Result<(String, Record), Denied> {
        let client_id = credentials.client_id;
        let stored = match self.store.load(client_id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return Err(Denied::Refused(Refusal::UnknownSession)),
            Err(e) => return Err(self.store_failed(client_id, e)),
        };
        if credentials
            .uid
            .as_deref()
            .is_some_and(|uid| uid != (self.uid_in_user_id)(&stored.user_id))
        {
            return Err(Denied::Refused(Refusal::UserMismatch));
        }
        Ok((stored.user_id, stored.record))
    }

    /// A decision's duties: refuse, or revoke (delete the session) and refuse, or the
    /// record to store and what to send once it is stored. The match is exhaustive on
    /// purpose: a new decision (a new duty) must break this build, not fall into a default.
    async fn duties(
        &self,
        decision: Decision,
        credentials: &Credentials,
    ) -> Result<(Option<Session>, Send), Denied> {
        let client_id = credentials.client_id;
        match decision {
            Decision::Reject { reason } => {
                tracing::debug!(%client_id, %reason, "rotauth: refused");
                Err(Denied::Refused(Refusal::Rejected(reason)))
            }
            Decision::Revoke { reason } => match self.store.delete(client_id).await {
                Ok(_) => {
                    tracing::info!(%client_id, %reason, "rotauth: session revoked");
                    Err(Denied::Refused(Refusal::Revoked(reason)))
                }
                Err(e) => Err(self.store_failed(client_id, e)),
            },
            Decision::Rotate { session, token } => Ok((Some(session), Send::New(token))),
            // Recover mode: `T(n)` again, after storing the mark that spends the recovery.
            Decision::Reissue { updated, token } => Ok((updated, Send::New(token))),
            Decision::BatchReuse { updated } => Ok((updated, Send::Nothing)),
            // Rotation off: the presented token stays valid and goes back. It parsed, or
            // the decision would not have accepted it; if it somehow does not, send none.
            Decision::Accept { updated } => Ok((
                updated,
                Token::from_text(credentials.token.as_str()).map_or(Send::Nothing, Send::Same),
            )),
        }
    }

    /// A batch member's reply under the [`BatchToken`] policy, from the session as kept.
    fn batch_reply(&self, rotator: &Rotator, credentials: &Credentials, kept: &Session) -> Reply {
        let expires_at = kept.expires_at();
        let current = match self.batch_token {
            BatchToken::Blank => None,
            BatchToken::Current => Token::from_text(credentials.token.as_str())
                .ok()
                .filter(|presented| presented.generation().saturating_add(1) >= kept.generation())
                .and_then(|_| rotator.current_token(kept)),
        };
        match current {
            Some(token) => Reply::Current { token, expires_at },
            None => Reply::Batch { expires_at },
        }
    }

    fn store_failed(&self, client_id: ClientId, error: StoreError) -> Denied {
        match error {
            StoreError::Corrupt(e) => {
                tracing::error!(%client_id, error = %e, "rotauth: stored session record is corrupt; 401");
                Denied::Refused(Refusal::CorruptRecord)
            }
            other => {
                tracing::debug!(%client_id, error = %other, "rotauth: session store failed");
                Denied::Unavailable(Unavailable::Store(other))
            }
        }
    }
}

/// How long one request keeps trying a failing store: until a deadline set when it began,
/// with a pause before each try that doubles up to a bound.
struct Patience {
    deadline: Option<Instant>,
    pause: Duration,
}

impl Patience {
    const FIRST_PAUSE: Duration = Duration::from_millis(10);
    const LONGEST_PAUSE: Duration = Duration::from_millis(250);

    fn new(patience: Duration) -> Self {
        Self {
            // A patience beyond what `Instant` can hold waits without a deadline.
            deadline: Instant::now().checked_add(patience),
            pause: Self::FIRST_PAUSE,
        }
    }

    /// After `denied`: `Ok` once it is time to try again, if it was the store that failed
    /// and the deadline allows another try; otherwise the denial, to answer.
    async fn again(&mut self, client_id: ClientId, denied: Denied) -> Result<(), Denied> {
        if !matches!(denied, Denied::Unavailable(Unavailable::Store(_))) {
            return Err(denied);
        }
        let left = match self.deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        };
        if left.is_zero() {
            if let Denied::Unavailable(why) = &denied {
                tracing::warn!(%client_id, error = %why, "rotauth: session store failed; 503");
            }
            return Err(denied);
        }
        tokio::time::sleep(self.pause.min(left)).await;
        self.pause = self.pause.saturating_mul(2).min(Self::LONGEST_PAUSE);
        Ok(())
    }
}

/// Why a request is not served: the two answers without a token.
enum Denied {
    Refused(Refusal),
    Unavailable(Unavailable),
}

impl From<Denied> for Outcome {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Refused(refusal) => Self::Refused(refusal),
            Denied::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

impl From<Denied> for Checked {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Refused(refusal) => Self::Refused(refusal),
            Denied::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

/// What to send once the decision's record (if any) is stored.
#[derive(Clone)]
enum Send {
    New(Token),
    Same(Token),
    Nothing,
}
