//! How an exchange ends: serve with a reply, refuse with a reason, or answer 503.

use core::fmt;

use crate::decision::{DecisionKind, RejectReason};
use crate::time::Timestamp;
use crate::token::Token;

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
    /// ([`Exchange::check`](super::Exchange::check) only).
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
    /// A batch member under [`BatchToken::Current`](super::BatchToken::Current): the session's current token `T(n)`,
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
    /// The request claims another user than the session's (devise's `uid`).
    UserMismatch,
    /// rotauth rejected the token, or there is no session for it
    /// ([`RejectReason::UnknownSession`]: signed out, evicted, expired and purged, revoked).
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
    /// [`Options::max_attempts`](super::Options::max_attempts) compare-and-swaps in a row were lost to other requests of
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
