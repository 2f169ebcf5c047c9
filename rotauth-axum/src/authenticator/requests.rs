//! The loop for one request: rotauth's exchange driven with the store's I/O, riding out
//! a failing store for a while.

use std::time::{Duration, Instant};

use rotauth::exchange::{Answer, Exchange, Loaded, Step, Swapped};
use rotauth::{ClientId, Timestamp};

use super::Authenticator;
use crate::request::{Checked, Credentials, Outcome, Unavailable};
use crate::store::{Record, SessionStore, StoreError, Swap};

impl<S: SessionStore> Authenticator<S> {
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
                    who: self.who(client_id, user_id),
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
                who: self.who(client_id, user_id),
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
                            .is_none_or(|uid| uid == self.uid_in(&stored.user_id));
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
