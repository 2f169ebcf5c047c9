//! The request loop: rotauth's [`Exchange`] driven with the store's I/O, and sign-in,
//! sign-out and credential changes around it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rotauth::exchange::{Answer, BatchToken, Exchange, Loaded, Options, Step, Swapped};
use rotauth::rand_core::TryCryptoRng;
use rotauth::{ClientId, KeyId, Keyring, Rotator, Timestamp};

use crate::error::{ChangeError, Error};
use crate::request::{Authenticated, Checked, Credentials, Outcome, SignedIn, Unavailable};
use crate::store::{Record, SessionStore, StoreError, Swap};

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

/// rotauth's request loop over a [`SessionStore`], written once: every request of every
/// protocol goes through [`authenticate`](Self::authenticate), every new session through
/// [`begin_sign_in`](Self::begin_sign_in) and [`sign_in`](Self::sign_in), every change of
/// a user's credentials through [`change_credentials`](Self::change_credentials).
///
/// The loop for one request is rotauth's own [`Exchange`], which keeps every rule of it
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
}

impl<S> Clone for Authenticator<S> {
    fn clone(&self) -> Self {
        Self {
            rotator: Arc::clone(&self.rotator),
            store: Arc::clone(&self.store),
            max_sessions_per_user: self.max_sessions_per_user,
            options: self.options,
            store_patience: self.store_patience,
            uid_in_user_id: self.uid_in_user_id,
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
        let exchange = Exchange::new(
            credentials.token.as_str(),
            now,
            self.options.forced(unbatch),
        );
        let client_id = credentials.client_id;
        match self.drive(exchange, credentials).await {
            (
                Answer::Serve {
                    reply,
                    decision,
                    lost_swaps,
                },
                Some(user_id),
                _,
            ) => {
                tracing::debug!(%client_id, decision = decision.as_str(), lost_swaps, "rotauth: served");
                Outcome::Served {
                    who: Authenticated { client_id, user_id },
                    reply,
                    decision,
                    lost_swaps: usize::try_from(lost_swaps).unwrap_or(usize::MAX),
                }
            }
            (Answer::Refuse(refusal), _, _) => Outcome::Refused(refusal),
            (answer, _, failure) => Outcome::Unavailable(unavailable(client_id, &answer, failure)),
        }
    }

    /// Decides whether `credentials` are accepted at `now`, without storing the decision
    /// or sending a token: for requests that end the session or the account (sign-out,
    /// account deletion), where a rotation would only be thrown away, and for checking a
    /// request before slow work whose result is committed later with
    /// [`authenticate`](Self::authenticate). A replay that the policy revokes still
    /// deletes its session.
    pub async fn check(&self, credentials: &Credentials, now: Timestamp) -> Checked {
        let exchange = Exchange::check(credentials.token.as_str(), now);
        let client_id = credentials.client_id;
        match self.drive(exchange, credentials).await {
            (Answer::Accepted { decision }, Some(user_id), _) => Checked::Accepted {
                who: Authenticated { client_id, user_id },
                decision,
            },
            (Answer::Refuse(refusal), _, _) => Checked::Refused(refusal),
            (answer, _, failure) => Checked::Unavailable(unavailable(client_id, &answer, failure)),
        }
    }

    /// Drives `exchange` with the store's I/O to its answer: rotauth keeps every rule of
    /// the loop, this does the loads, compare-and-swaps and deletes it asks for. Also
    /// returns the user of the session as last loaded, and the store's error behind an
    /// answer of 503.
    async fn drive(
        &self,
        (mut exchange, mut step): (Exchange, Step),
        credentials: &Credentials,
    ) -> (Answer, Option<String>, Option<StoreError>) {
        let client_id = credentials.client_id;
        // One keyring for the whole request, even if the keys change meanwhile.
        let rotator = self.rotator.load();
        let (mut user_id, mut failure) = (None, None);
        let mut patience = Patience::new(self.store_patience);
        loop {
            step = match step {
                Step::Load => match self.store.load(client_id).await {
                    Ok(Some(stored)) => {
                        let claim_matches = credentials
                            .uid
                            .as_deref()
                            .is_none_or(|uid| uid == (self.uid_in_user_id)(&stored.user_id));
                        let version = stored.record.version();
                        let session = stored.record.into_session();
                        user_id = Some(stored.user_id);
                        let loaded = Loaded::Found {
                            session: &session,
                            version,
                            claim_matches,
                        };
                        exchange.loaded(&rotator, loaded)
                    }
                    Ok(None) => exchange.loaded(&rotator, Loaded::Missing),
                    Err(StoreError::Corrupt(e)) => {
                        tracing::error!(%client_id, error = %e, "rotauth: stored session record is corrupt; 401");
                        exchange.loaded(&rotator, Loaded::Corrupt)
                    }
                    Err(e) => {
                        failure = Some(e);
                        exchange.loaded(&rotator, Loaded::Failed)
                    }
                },
                Step::Store {
                    session,
                    expected_version,
                } => {
                    let record = Record::from_session(&session);
                    let swapped = match self.store.compare_and_swap(expected_version, &record).await
                    {
                        Ok(Swap::Swapped) => Swapped::Stored,
                        Ok(Swap::Lost) => {
                            tracing::debug!(%client_id, lost_swaps = exchange.lost_swaps(), "rotauth: lost a compare-and-swap; deciding again");
                            Swapped::Lost
                        }
                        Err(e) => {
                            failure = Some(e);
                            Swapped::Failed
                        }
                    };
                    exchange.swapped(&rotator, swapped)
                }
                Step::Delete => match self.store.delete(client_id).await {
                    Ok(_) => {
                        tracing::info!(%client_id, "rotauth: session revoked");
                        exchange.deleted(true)
                    }
                    Err(e) => {
                        failure = Some(e);
                        exchange.deleted(false)
                    }
                },
                Step::StoreFailed => {
                    if patience.wait().await {
                        tracing::debug!(%client_id, error = ?failure, "rotauth: session store failed; trying again");
                        exchange.retry()
                    } else {
                        exchange.give_up()
                    }
                }
                Step::Answer(answer) => return (answer, user_id, failure),
            };
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

    /// Waits before the next try; `false` (at once) when the deadline has passed.
    async fn wait(&mut self) -> bool {
        let left = self.deadline.map_or(Duration::MAX, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            return false;
        }
        tokio::time::sleep(self.pause.min(left)).await;
        self.pause = self.pause.saturating_mul(2).min(Self::LONGEST_PAUSE);
        true
    }
}

/// The 503 of an answer that is neither served nor refused, logged with its cause.
fn unavailable(client_id: ClientId, answer: &Answer, failure: Option<StoreError>) -> Unavailable {
    match (answer, failure) {
        (Answer::Unavailable(rotauth::exchange::Unavailable::Contention), _) => {
            tracing::warn!(%client_id, "rotauth: too many lost compare-and-swaps; 503");
            Unavailable::Contention
        }
        (_, Some(error)) => {
            tracing::warn!(%client_id, %error, "rotauth: session store failed; 503");
            Unavailable::Store(error)
        }
        // An answer the loop should not give here (a served request without a loaded
        // user): no token, nobody logged out.
        (answer, None) => {
            tracing::error!(%client_id, ?answer, "rotauth: unexpected answer; 503");
            Unavailable::Store(StoreError::backend("the request loop answered out of turn"))
        }
    }
}
