//! Sessions made and ended: sign-in begun before the password check, sign-out, and
//! changes of a user's credentials that no session or sign-in outlives.

use std::future::Future;

use rotauth::rand_core::TryCryptoRng;
use rotauth::{ClientId, Timestamp};

use super::Authenticator;
use crate::error::{ChangeError, Error};
use crate::request::SignedIn;
use crate::store::{Record, SessionStore};

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

impl<S: SessionStore> Authenticator<S> {
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
        self.sign_in_with(pending, &mut getrandom::SysRng, self.now())
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
            uid: self.uid_in(&user_id).to_owned(),
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
}
