//! The request loop: rotauth's [`Exchange`](rotauth::exchange::Exchange) driven with the store's I/O, and sign-in,
//! sign-out and credential changes around it: the authenticator and its settings here,
//! the loop for one request in `requests`, sessions made and ended in `sign_in`.

mod requests;
mod sign_in;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rotauth::exchange::{BatchToken, Options};
use rotauth::{ClientId, KeyId, Keyring, Rotator, Timestamp};

pub use sign_in::PendingSignIn;

use crate::error::Error;
use crate::request::Authenticated;
#[cfg(doc)]
use crate::request::SignedIn;
use crate::store::SessionStore;

/// rotauth's request loop over a [`SessionStore`], written once: every request of every
/// protocol goes through [`authenticate`](Self::authenticate), every new session through
/// [`begin_sign_in`](Self::begin_sign_in) and [`sign_in`](Self::sign_in), every change of
/// a user's credentials through [`change_credentials`](Self::change_credentials).
///
/// The loop for one request is rotauth's own [`Exchange`](rotauth::exchange::Exchange), which keeps every rule of it
/// (see [`rotauth::exchange`]); the authenticator only does the I/O it asks for:
///
/// 1. load the session by client id (none: 401; a claimed `uid` not its owner's: 401);
/// 2. rotauth decides on the record, the presented token and `now`;
/// 3. a rejection: 401 without a token; a revoking one deletes the session first;
/// 4. a decision with a record to store: compare-and-swap it on the version loaded; on a
///    lost swap go back to 1 (the retry is then part of the batch), at most
///    [`MAX_ATTEMPTS`](Self::MAX_ATTEMPTS) times, then 503;
/// 5. only then is the request served and the token (if any) sent.
///
/// A store error anywhere is 503 without a token. No path hands out a token that is not
/// stored: the [`Reply`](rotauth::exchange::Reply) is made only after the write returned
/// `Ok`.
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
    /// How every request's exchange runs (its `force` is set per request).
    options: Options,
    store_patience: Duration,
    uid_in_user_id: fn(&str) -> &str,
    clock: Clock,
}

/// Where an authenticator reads the time: the wall clock unless set.
type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

impl<S> Clone for Authenticator<S> {
    fn clone(&self) -> Self {
        Self {
            rotator: Arc::clone(&self.rotator),
            store: Arc::clone(&self.store),
            max_sessions_per_user: self.max_sessions_per_user,
            options: self.options,
            store_patience: self.store_patience,
            uid_in_user_id: self.uid_in_user_id,
            clock: Arc::clone(&self.clock),
        }
    }
}

impl<S> fmt::Debug for Authenticator<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .field("options", &self.options)
            .field("store_patience", &self.store_patience)
            .finish_non_exhaustive()
    }
}

impl<S: SessionStore> Authenticator<S> {
    /// Sessions per user unless set otherwise (devise's `max_number_of_devices`).
    pub const MAX_SESSIONS_PER_USER: usize = 10;
    /// Decisions per request unless set otherwise: one plus the swaps a request may lose
    /// (rotauth's [`Options::MAX_ATTEMPTS`], which says why).
    #[allow(clippy::as_conversions, reason = "4 fits every usize")]
    pub const MAX_ATTEMPTS: usize = Options::MAX_ATTEMPTS as usize;
    /// How long a request keeps trying a failing store unless set otherwise: longer than a
    /// database restart or a failover usually takes. See
    /// [`store_patience`](Self::store_patience).
    pub const STORE_PATIENCE: Duration = Duration::from_secs(5);

    /// An authenticator deciding with `rotator` over `store`.
    #[must_use]
    pub fn new(rotator: Rotator, store: S) -> Self {
        Self {
            rotator: Arc::new(ArcSwap::from_pointee(rotator)),
            store: Arc::new(store),
            max_sessions_per_user: Self::MAX_SESSIONS_PER_USER,
            options: Options::default(),
            store_patience: Self::STORE_PATIENCE,
            uid_in_user_id: |user_id| user_id,
            clock: Arc::new(Timestamp::now),
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
        self.options = self
            .options
            .max_attempts(u32::try_from(max).unwrap_or(u32::MAX));
        self
    }

    /// Sets how long a request keeps trying when the store fails, counted from the
    /// request's start: it tries again after a pause (10 ms, doubling up to 250 ms) until
    /// the store answers or `patience` has passed, and only then answers 503.
    ///
    /// Riding out a short outage (a restart, a failover, a network blip) is what keeps
    /// clients signed in through it: the request still decides with the time it arrived,
    /// so a burst that waited together stays one batch; and a rotation whose write failed
    /// without saying whether it landed is read back before anything is answered, so its
    /// token is sent if it did. Answered 503 instead, such a rotation could land
    /// unannounced, and the client's token before it would be a replay after the window
    /// (Strict mode). Set it above the outages the app should ride out; every request
    /// waiting holds its connection meanwhile.
    #[must_use]
    pub fn store_patience(mut self, patience: Duration) -> Self {
        self.store_patience = patience;
        self
    }

    /// Sets what a batch member's response carries ([`BatchToken::Blank`] unless set).
    #[must_use]
    pub fn batch_token(mut self, batch_token: BatchToken) -> Self {
        self.options = self.options.batch_token(batch_token);
        self
    }

    /// Sets where a request's claimed `uid` ([`Credentials::uid`](crate::Credentials::uid)) is found in the user id
    /// a session was signed in with: the whole user id unless set.
    ///
    /// For apps whose `uid` can change while the user stays (devise's email): sign in with
    /// a user id that carries a stable id and the current uid, and pass the function that
    /// returns the uid part. The check stays in the loop, before anything is stored; the
    /// handler reads both from [`Authenticated::user_id`] without a query, and the
    /// protocol sends the uid part back ([`Authenticated::uid`], [`SignedIn::uid`]). When
    /// the uid changes, [`rename_user`](Self::rename_user) moves the sessions, and
    /// [`Rotation::rename_user`](crate::Rotation::rename_user) also makes the response
    /// carry the new uid:
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

    /// Sets where the time of every decision and sign-in is read: [`Timestamp::now`]
    /// unless set. The [`AuthLayer`](crate::AuthLayer), the extractors and
    /// [`sign_in`](Self::sign_in) read it through [`now`](Self::now); methods that take a
    /// `now` use the one given.
    ///
    /// For tests that move time on (a virtual clock), and for apps that keep one clock
    /// for everything they decide:
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::sync::atomic::{AtomicU64, Ordering};
    /// # use rotauth::{Config, KeyId, Keyring, Rotator, Timestamp};
    /// # use rotauth_axum::{Authenticator, MemoryStore};
    /// # let rotator = Rotator::new(Keyring::new(KeyId(1), &[7u8; 32]).unwrap(), Config::default());
    /// let millis = Arc::new(AtomicU64::new(1_000));
    /// let clock = Arc::clone(&millis);
    /// let auth = Authenticator::new(rotator, MemoryStore::new())
    ///     .clock(move || Timestamp::from_unix_millis(clock.load(Ordering::Relaxed)));
    /// millis.store(6_000, Ordering::Relaxed);
    /// assert_eq!(auth.now(), Timestamp::from_unix_millis(6_000));
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The time now, as the [`clock`](Self::clock) says.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// The part of `user_id` a request claims (see [`uid_in_user_id`](Self::uid_in_user_id)).
    pub(crate) fn uid_in<'a>(&self, user_id: &'a str) -> &'a str {
        (self.uid_in_user_id)(user_id)
    }

    /// Who a request of `client_id`'s session, signed in as `user_id`, belongs to.
    pub(crate) fn who(&self, client_id: ClientId, user_id: String) -> Authenticated {
        Authenticated {
            client_id,
            uid: self.uid_in(&user_id).to_owned(),
            user_id,
        }
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
}
