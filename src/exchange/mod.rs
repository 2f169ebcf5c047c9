//! The request loop around the decision, as a state machine the host drives with its own
//! I/O: one [`Exchange`] per request. It asks for a load, takes the record, asks for a
//! compare-and-swap or a delete, takes the result, and ends in an [`Answer`]: whom to serve
//! and with which token, or why to refuse or answer 503.
//!
//! Every rule of the loop lives here, so that every host keeps it the same way: the
//! presented token is parsed once; the claimed user is checked before anything is decided;
//! a revocation deletes before it refuses; a decision is stored before its token is
//! answered ("no token is answered that was not stored"), and a write whose fate a store
//! failure left unknown is read back before anything is answered for it; a lost
//! compare-and-swap is
//! decided again, and is then a batch member ("one rotation per window"), except that a
//! forced request is forced again only while the record still has the generation of its
//! first load (a rotation that beat it did what it asked); the lost swaps are bounded
//! ("bounded attempts"); and a batch member is handed the current token only under
//! [`BatchToken::Current`] and only when it holds `T(n)` or `T(n-1)` ("a stale token is
//! never upgraded").
//!
//! ```
//! use rotauth::{Config, KeyId, Keyring, Rotator, Timestamp};
//! use rotauth::exchange::{Answer, Exchange, Loaded, Options, Reply, Step, Swapped};
//!
//! let rotator = Rotator::new(Keyring::new(KeyId(1), &[7u8; 32])?, Config::default());
//! let now = Timestamp::from_unix_millis(1_796_083_200_000);
//! let (mut stored, t0) = rotator.sign_in(&mut rand::rng(), now);
//! let text = t0.to_text();
//!
//! // Ten seconds later, past the window: the request rotates.
//! let later = Timestamp::from_unix_millis(now.unix_millis() + 10_000);
//! let (mut exchange, mut step) = Exchange::new(text.as_str(), later, Options::default());
//! let answer = loop {
//!     step = match step {
//!         Step::Load => exchange.loaded(
//!             &rotator,
//!             Loaded::Found { session: &stored, version: stored.version(), claim_matches: true },
//!         ),
//!         Step::Store { session, expected_version } => {
//!             assert_eq!(expected_version, stored.version()); // the compare-and-swap
//!             stored = session;
//!             exchange.swapped(&rotator, Swapped::Stored)
//!         }
//!         Step::Delete => exchange.deleted(true),
//!         // A host with patience waits here and calls `retry`.
//!         Step::StoreFailed => exchange.give_up(),
//!         Step::Answer(answer) => break answer,
//!     };
//! };
//! match answer {
//!     Answer::Serve { reply: Reply::NewToken { token, .. }, .. } => {
//!         assert_eq!(token.generation(), 1);
//!         assert_eq!(stored.generation(), 1, "stored before it was answered");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), rotauth::KeyError>(())
//! ```

use core::fmt;

use crate::decision::{Decision, DecisionKind, RejectReason, Request};
use crate::rotator::Rotator;
use crate::session::Session;
use crate::time::Timestamp;
use crate::token::{Token, TokenError};

mod answers;
mod options;
mod steps;

pub use answers::{Answer, Refusal, Reply, Unavailable};
pub use options::{BatchToken, Options};
pub use steps::{Loaded, Step, Swapped};

/// The token a batch member holding `held` is sent under [`BatchToken::Current`]: the
/// session's current token `T(n)` (of `kept`, the session as stored) if `held` is `T(n)` or
/// `T(n-1)`, none otherwise (an in-window `T(n-2)` must not be upgraded to a token that
/// outlives the window), and none if `T(n)`'s key has been removed. For hosts that drive
/// the decision without an [`Exchange`].
#[must_use]
pub fn current_for(rotator: &Rotator, kept: &Session, held: &Token) -> Option<Token> {
    if held.generation().saturating_add(1) < kept.generation() {
        return None;
    }
    rotator.current_token(kept)
}

/// One request's loop around the decision. Made by [`Exchange::new`] (decide and store)
/// or [`Exchange::check`] (decide only), driven by the host through [`Step`]s; see the
/// module docs for the rules it keeps and an example host loop.
///
/// `Debug` does not show the presented token.
pub struct Exchange {
    /// The token as sent, parsed once; or why it is not one, which is the refusal once a
    /// session is found (a missing session is refused as such first, as the decision does).
    /// Owned, so that an exchange outlives the request's text: a host whose I/O is
    /// asynchronous keeps exchanges in a table between its steps.
    token: Result<Token, TokenError>,
    now: Timestamp,
    options: Options,
    store: bool,
    /// The generation of the first load: a forced request is forced only while it holds.
    first_generation: Option<u64>,
    lost_swaps: u32,
    /// Writes whose compare-and-swap failed without saying whether it landed, newest
    /// first; a load that finds one of them settles it. Each try after a failure writes at
    /// most once, so a few slots hold every write a patient host makes in practice; beyond
    /// them the oldest is forgotten.
    unconfirmed: [Option<Pending>; UNCONFIRMED],
    waiting: Waiting,
}

/// How many unconfirmed writes an exchange remembers.
const UNCONFIRMED: usize = 4;

/// A write to settle: the record written, what its answer sends, what was decided.
struct Pending {
    kept: Session,
    send: Send,
    decision: DecisionKind,
}

/// What the exchange waits for.
enum Waiting {
    Load,
    Swap {
        kept: Session,
        send: Send,
        decision: DecisionKind,
    },
    Delete(RejectReason),
    /// A host's decision to retry or give up after a store failure.
    Retry,
    Done,
}

/// What to send once the decision's record (if any) is stored.
#[derive(Clone)]
enum Send {
    New(Token),
    Same(Token),
    Nothing,
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("now", &self.now)
            .field("options", &self.options)
            .field("lost_swaps", &self.lost_swaps)
            .finish_non_exhaustive()
    }
}

impl Exchange {
    /// An exchange for a request presenting `token` (as sent) at `now`, which stores what
    /// it decides before answering. The first step is always [`Step::Load`].
    pub fn new(token: &str, now: Timestamp, options: Options) -> (Self, Step) {
        (Self::start(token, now, options, true), Step::Load)
    }

    /// An exchange that decides whether the credentials are accepted at `now`, without
    /// storing the decision or sending a token: for requests that end the session or the
    /// account (sign-out, account deletion), where a rotation would only be thrown away,
    /// and for a check before slow work that a full exchange commits later. A replay that
    /// the policy revokes still deletes its session. It answers [`Answer::Accepted`],
    /// never [`Answer::Serve`].
    pub fn check(token: &str, now: Timestamp) -> (Self, Step) {
        (
            Self::start(token, now, Options::default(), false),
            Step::Load,
        )
    }

    fn start(text: &str, now: Timestamp, options: Options, store: bool) -> Self {
        Self {
            token: Token::from_text(text),
            now,
            options: options.max_attempts(options.max_attempts),
            store,
            first_generation: None,
            lost_swaps: 0,
            unconfirmed: [const { None }; UNCONFIRMED],
            waiting: Waiting::Load,
        }
    }

    /// What the load found; decides with `rotator`.
    pub fn loaded(&mut self, rotator: &Rotator, loaded: Loaded<'_>) -> Step {
        if !matches!(self.waiting, Waiting::Load) {
            return self.out_of_turn();
        }
        let (session, version) = match loaded {
            Loaded::Found {
                claim_matches: false,
                ..
            } => return self.end(Answer::Refuse(Refusal::UserMismatch)),
            Loaded::Found {
                session, version, ..
            } => (session, version),
            Loaded::Missing => {
                let reason = RejectReason::UnknownSession;
                return self.end(Answer::Refuse(Refusal::Rejected(reason)));
            }
            Loaded::Corrupt => return self.end(Answer::Refuse(Refusal::CorruptRecord)),
            Loaded::Failed => return self.failed(),
        };
        // A write that failed without saying whether it landed, found in the store: it
        // did, and its answer is the one to give.
        if let Some(pending) = self
            .unconfirmed
            .iter_mut()
            .find(|slot| slot.as_ref().is_some_and(|p| p.kept == *session))
            .and_then(Option::take)
        {
            let reply = self.reply(rotator, &pending.kept, pending.send);
            return self.serve(reply, pending.decision);
        }
        let token = match &self.token {
            Ok(token) => token,
            Err(e) => {
                let reason = RejectReason::Malformed(*e);
                return self.end(Answer::Refuse(Refusal::Rejected(reason)));
            }
        };
        let mut request = Request::new(token, self.now);
        // A forced request that lost its swap to a rotation has had its rotation: the
        // winner moved the session on and sent the new token. Forcing again would rotate
        // a second time and hand the burst two new tokens.
        let first = *self.first_generation.get_or_insert(session.generation());
        if self.options.force && self.store && session.generation() == first {
            request = request.force_rotation();
        }
        let decision = rotator.decide(session, request);
        let kind = decision.kind();
        // Exhaustive on purpose: a new decision (a new duty) must break this build.
        let (to_store, send) = match decision {
            Decision::Reject { reason } => {
                return self.end(Answer::Refuse(Refusal::Rejected(reason)));
            }
            Decision::Revoke { reason } => {
                self.waiting = Waiting::Delete(reason);
                return Step::Delete;
            }
            Decision::Rotate { session, token } => (Some(session), Send::New(token)),
            // Recover mode: `T(n)` again, after storing the mark that spends the recovery.
            Decision::Reissue { updated, token } => (updated, Send::New(token)),
            Decision::BatchReuse { updated } => (updated, Send::Nothing),
            // Rotation off: the presented token stays valid and goes back.
            Decision::Accept { updated } => (
                updated,
                self.token
                    .as_ref()
                    .ok()
                    .cloned()
                    .map_or(Send::Nothing, Send::Same),
            ),
        };
        if !self.store {
            return self.end(Answer::Accepted { decision: kind });
        }
        match to_store {
            Some(next) => {
                self.waiting = Waiting::Swap {
                    kept: next.clone(),
                    send,
                    decision: kind,
                };
                Step::Store {
                    session: next,
                    expected_version: version,
                }
            }
            None => {
                let reply = self.reply(rotator, session, send);
                self.serve(reply, kind)
            }
        }
    }

    /// What the compare-and-swap of [`Step::Store`] did.
    pub fn swapped(&mut self, rotator: &Rotator, swapped: Swapped) -> Step {
        let Waiting::Swap {
            kept,
            send,
            decision,
        } = core::mem::replace(&mut self.waiting, Waiting::Load)
        else {
            return self.out_of_turn();
        };
        match swapped {
            Swapped::Stored => {
                let reply = self.reply(rotator, &kept, send);
                self.serve(reply, decision)
            }
            Swapped::Lost => {
                self.lost_swaps = self.lost_swaps.saturating_add(1);
                if self.lost_swaps >= self.options.max_attempts {
                    return self.end(Answer::Unavailable(Unavailable::Contention));
                }
                // Load again and decide again: the retry is then part of the batch.
                Step::Load
            }
            Swapped::Failed => {
                // Remember it, newest first, to settle at the next load.
                self.unconfirmed.rotate_right(1);
                if let Some(slot) = self.unconfirmed.first_mut() {
                    *slot = Some(Pending {
                        kept,
                        send,
                        decision,
                    });
                }
                self.failed()
            }
        }
    }

    /// Whether the delete of [`Step::Delete`] succeeded (`false`: the store failed).
    pub fn deleted(&mut self, deleted: bool) -> Step {
        let Waiting::Delete(reason) = self.waiting else {
            return self.out_of_turn();
        };
        if deleted {
            self.end(Answer::Refuse(Refusal::Revoked(reason)))
        } else {
            self.failed()
        }
    }

    /// After [`Step::StoreFailed`]: try again, from a load (which also settles a write
    /// whose fate was unknown).
    pub fn retry(&mut self) -> Step {
        if !matches!(self.waiting, Waiting::Retry) {
            return self.out_of_turn();
        }
        self.waiting = Waiting::Load;
        Step::Load
    }

    /// After [`Step::StoreFailed`]: answer 503 without a token. A write whose fate is still
    /// unknown may have landed unannounced; a host that gives up only after the outages it
    /// means to ride out keeps that rare (Recover mode reissues such a lost token once).
    pub fn give_up(&mut self) -> Step {
        if !matches!(self.waiting, Waiting::Retry) {
            return self.out_of_turn();
        }
        self.end(Answer::Unavailable(Unavailable::Store))
    }

    /// Compare-and-swaps lost so far.
    #[must_use]
    pub fn lost_swaps(&self) -> u32 {
        self.lost_swaps
    }

    /// The reply once the decision's record is kept: a batch member's under the
    /// [`BatchToken`] policy.
    fn reply(&self, rotator: &Rotator, kept: &Session, send: Send) -> Reply {
        let expires_at = kept.expires_at();
        match send {
            Send::New(token) => Reply::NewToken { token, expires_at },
            Send::Same(token) => Reply::SameToken { token, expires_at },
            Send::Nothing => {
                let current = match (self.options.batch_token, &self.token) {
                    (BatchToken::Current, Ok(held)) => current_for(rotator, kept, held),
                    _ => None,
                };
                match current {
                    Some(token) => Reply::Current { token, expires_at },
                    None => Reply::Batch { expires_at },
                }
            }
        }
    }

    fn serve(&mut self, reply: Reply, decision: DecisionKind) -> Step {
        let lost_swaps = self.lost_swaps;
        self.end(Answer::Serve {
            reply,
            decision,
            lost_swaps,
        })
    }

    fn failed(&mut self) -> Step {
        self.waiting = Waiting::Retry;
        Step::StoreFailed
    }

    fn end(&mut self, answer: Answer) -> Step {
        self.waiting = Waiting::Done;
        Step::Answer(answer)
    }

    /// A result the exchange did not ask for (a host bug): answered as a store failure,
    /// which sends no token and logs no one out.
    fn out_of_turn(&mut self) -> Step {
        self.end(Answer::Unavailable(Unavailable::Store))
    }
}
