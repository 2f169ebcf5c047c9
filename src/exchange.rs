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
use crate::token::Token;

/// What the response to a batch member carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchToken {
    /// No token ([`Reply::Batch`]; devise sends `access-token: " "`): a response that
    /// arrives after a newer one can never hand the client an older token. For clients
    /// that keep their token when a response carries none.
    #[default]
    Blank,
    /// The session's current token `T(n)` ([`Reply::Current`]), for clients that take the
    /// token of every response, blank or not (devise's j-toker). Only a holder of `T(n)` or
    /// `T(n-1)` gets it: handing `T(n)` to an in-window `T(n-2)` would upgrade a token two
    /// rotations old to one that outlives the window. Others get [`Reply::Batch`].
    Current,
}

/// How an exchange runs: set once per host, except `force`, per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// The request asks to rotate inside the batch window (devise's `unbatch=true`).
    pub force: bool,
    /// What a batch member's response carries.
    pub batch_token: BatchToken,
    /// Decisions per request, at least 1: one plus the compare-and-swaps a request may
    /// lose before it answers 503.
    pub max_attempts: u32,
}

impl Options {
    /// Decisions per request unless set otherwise. Each lost swap means another request of
    /// the same session committed in between, and the retry is then a batch member that
    /// stores nothing, so two are normally enough; the bound keeps a pathological storm
    /// from spinning.
    pub const MAX_ATTEMPTS: u32 = 4;

    /// With `force` set (devise's `unbatch=true`).
    #[must_use]
    pub fn forced(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// With `batch_token` set.
    #[must_use]
    pub fn batch_token(mut self, batch_token: BatchToken) -> Self {
        self.batch_token = batch_token;
        self
    }

    /// With `max_attempts` set (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            force: false,
            batch_token: BatchToken::Blank,
            max_attempts: Self::MAX_ATTEMPTS,
        }
    }
}

/// What the host does next.
#[derive(Debug)]
#[must_use = "an exchange goes on only when the host does what the step asks"]
#[allow(
    clippy::exhaustive_enums,
    reason = "each step is a duty: a new one must break hosts at compile time"
)]
#[allow(
    clippy::large_enum_variant,
    reason = "a step is moved once per I/O; boxing would allocate, and the core never does"
)]
pub enum Step {
    /// Load the session by its client id, then call [`Exchange::loaded`].
    Load,
    /// Store `session` if the stored version is still `expected_version`, atomically
    /// (compare-and-swap), then call [`Exchange::swapped`].
    Store {
        /// The record to store.
        session: Session,
        /// The version it replaces.
        expected_version: u64,
    },
    /// Delete the session (a revocation), then call [`Exchange::deleted`].
    Delete,
    /// The store failed. Either wait (a restart, a failover, a network blip may be over
    /// soon) and call [`Exchange::retry`], which loads again, or call
    /// [`Exchange::give_up`], which answers 503. How long to keep trying is the host's
    /// to choose: the exchange has no clock. A request that tries again still decides with
    /// the time it arrived, so the requests of one burst stay one batch.
    StoreFailed,
    /// The exchange is over.
    Answer(Answer),
}

/// What the host's load found.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Loaded<'s> {
    /// The session, its stored version, and whether the user the request claims (devise's
    /// `uid`) is its owner (`true` when the request claims no one).
    Found {
        /// The stored session.
        session: &'s Session,
        /// Its stored version, which a compare-and-swap compares.
        version: u64,
        /// Whether the claimed user, if any, is the session's.
        claim_matches: bool,
    },
    /// No session has the client id.
    Missing,
    /// A record is stored but does not decode.
    Corrupt,
    /// The store failed.
    Failed,
}

/// What the host's compare-and-swap did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Swapped {
    /// The record is stored.
    Stored,
    /// The stored version was another one, or the session is gone: nothing was written.
    Lost,
    /// The store failed, and whether it wrote is unknown (a timeout, a connection lost
    /// before the acknowledgement). The exchange remembers the write: if a later load finds
    /// exactly that record, the write landed and its token is answered, rather than leaving
    /// a rotation the client never hears of (whose token before it would then be a replay
    /// after the window).
    Failed,
}

/// How an exchange ends.
#[derive(Clone, Debug)]
#[allow(
    clippy::exhaustive_enums,
    reason = "each answer is a duty: a new one must break hosts at compile time"
)]
#[allow(
    clippy::large_enum_variant,
    reason = "an answer is made once per request; boxing would allocate"
)]
pub enum Answer {
    /// Serve the request and send `reply`; what it carries is stored.
    Serve {
        /// What the response carries.
        reply: Reply,
        /// What rotauth decided, for logs and metrics.
        decision: DecisionKind,
        /// Compare-and-swaps lost to other requests of the same session before the
        /// decision held, for logs and metrics.
        lost_swaps: u32,
    },
    /// The credentials are accepted; nothing was stored and no token is to be sent
    /// ([`Exchange::check`] only).
    Accepted {
        /// What rotauth decided (and a full exchange would have stored).
        decision: DecisionKind,
    },
    /// Answer 401, send no token.
    Refuse(Refusal),
    /// Answer 503 (with `Retry-After`), send no token.
    Unavailable(Unavailable),
}

/// What the response to an accepted request carries.
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

/// Why a request was refused with 401. For logs and metrics; a response body never says
/// which (it would help an attacker tell a forged token from an expired one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The request carries no credentials (read by the host's protocol).
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// The store failed.
    Store,
    /// [`Options::max_attempts`] compare-and-swaps in a row were lost to other requests of
    /// the same session.
    Contention,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store => f.write_str("the session store failed"),
            Self::Contention => f.write_str("too many lost compare-and-swaps in a row"),
        }
    }
}

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
pub struct Exchange<'a> {
    /// The token as sent, for a decision when it does not parse (the decision then says
    /// why), and parsed once otherwise.
    text: &'a str,
    token: Option<Token>,
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

impl fmt::Debug for Exchange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("now", &self.now)
            .field("options", &self.options)
            .field("lost_swaps", &self.lost_swaps)
            .finish_non_exhaustive()
    }
}

impl<'a> Exchange<'a> {
    /// An exchange for a request presenting `token` (as sent) at `now`, which stores what
    /// it decides before answering. The first step is always [`Step::Load`].
    pub fn new(token: &'a str, now: Timestamp, options: Options) -> (Self, Step) {
        (Self::start(token, now, options, true), Step::Load)
    }

    /// An exchange that decides whether the credentials are accepted at `now`, without
    /// storing the decision or sending a token: for requests that end the session or the
    /// account (sign-out, account deletion), where a rotation would only be thrown away,
    /// and for a check before slow work that a full exchange commits later. A replay that
    /// the policy revokes still deletes its session. It answers [`Answer::Accepted`],
    /// never [`Answer::Serve`].
    pub fn check(token: &'a str, now: Timestamp) -> (Self, Step) {
        (
            Self::start(token, now, Options::default(), false),
            Step::Load,
        )
    }

    fn start(text: &'a str, now: Timestamp, options: Options, store: bool) -> Self {
        Self {
            text,
            token: Token::from_text(text).ok(),
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
            Loaded::Missing => return self.end(Answer::Refuse(Refusal::UnknownSession)),
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
        let mut request = match &self.token {
            Some(token) => Request::new(token, self.now),
            None => Request::new(self.text, self.now),
        };
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
                self.token.clone().map_or(Send::Nothing, Send::Same),
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
                    (BatchToken::Current, Some(held)) => current_for(rotator, kept, held),
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
