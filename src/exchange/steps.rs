//! What an exchange asks of its host, and what the host reports back.

use crate::session::Session;

use super::Answer;

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
    /// Load the session by its client id, then call [`Exchange::loaded`](super::Exchange::loaded).
    Load,
    /// Store `session` if the stored version is still `expected_version`, atomically
    /// (compare-and-swap), then call [`Exchange::swapped`](super::Exchange::swapped).
    Store {
        /// The record to store.
        session: Session,
        /// The version it replaces.
        expected_version: u64,
    },
    /// Delete the session (a revocation), then call [`Exchange::deleted`](super::Exchange::deleted).
    Delete,
    /// The store failed. Either wait (a restart, a failover, a network blip may be over
    /// soon) and call [`Exchange::retry`](super::Exchange::retry), which loads again, or call
    /// [`Exchange::give_up`](super::Exchange::give_up), which answers 503. How long to keep trying is the host's
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
