//! What a request presents and what it is answered: the types the loop and the protocols
//! share. The answers themselves ([`Reply`], [`Refusal`], [`BatchToken`]) are rotauth's
//! own, from its request loop ([`rotauth::exchange`]), so that every host says them alike.

use std::fmt;

use rotauth::exchange::{Refusal, Reply};
use rotauth::{ClientId, DecisionKind, Timestamp, Token};
use zeroize::Zeroizing;

use crate::store::StoreError;

/// The credentials a request presents, as a [`Protocol`](crate::Protocol) read them.
pub struct Credentials {
    /// The session's client id.
    pub client_id: ClientId,
    /// The token as sent (text, trimmed). Checked by rotauth, wiped on drop, never printed.
    pub token: Zeroizing<String>,
    /// The user the client claims to be (devise's `uid`), if the protocol carries one: a
    /// request whose claim differs from the session's user is refused (see
    /// [`Authenticator::uid_in_user_id`](crate::Authenticator::uid_in_user_id) for user ids that carry more than the claim).
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
    /// The session's user, as given to [`Authenticator::begin_sign_in`](crate::Authenticator::begin_sign_in).
    pub user_id: String,
}

/// Why a request answered 503 without a token.
#[derive(Debug)]
#[non_exhaustive]
pub enum Unavailable {
    /// The store failed.
    Store(StoreError),
    /// [`Authenticator::MAX_ATTEMPTS`](crate::Authenticator::MAX_ATTEMPTS) compare-and-swaps in a row were lost to other
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

/// The outcome of [`Authenticator::authenticate`](crate::Authenticator::authenticate).
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

/// The outcome of [`Authenticator::check`](crate::Authenticator::check).
#[derive(Debug)]
#[must_use]
pub enum Checked {
    /// The credentials are accepted now; nothing was stored and no token is to be sent.
    Accepted {
        /// Who the request belongs to.
        who: Authenticated,
        /// What rotauth decided, for logs and metrics (what
        /// [`authenticate`](crate::Authenticator::authenticate) would store is not stored).
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
