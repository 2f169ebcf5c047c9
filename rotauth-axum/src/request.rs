//! What a request presents and what it is answered: the types the loop and the protocols
//! share. The answers themselves ([`Reply`], [`Refusal`], [`BatchToken`]) are rotauth's
//! own, from its request loop ([`rotauth::exchange`]), so that every host says them alike.

use std::fmt;

use rotauth::exchange::{Refusal, Reply};
use rotauth::{ClientId, DecisionKind, Timestamp, Token};
use zeroize::Zeroizing;

use crate::protocol::Forbidden;
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
/// anonymous. Routes without the layer take a [`Rotation`](crate::Rotation) or a
/// [`Check`](crate::Check) instead, which carry one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The session's client id (public: clients send it in the clear).
    pub client_id: ClientId,
    /// The session's user, as given to [`Authenticator::begin_sign_in`](crate::Authenticator::begin_sign_in).
    pub user_id: String,
    /// The user as requests claim it and responses name it (devise's `uid`): the part of
    /// `user_id` that [`Authenticator::uid_in_user_id`](crate::Authenticator::uid_in_user_id)
    /// picks, the whole of it unless set.
    pub uid: String,
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

/// What the request loop came to for one request, without anything secret: for logs and
/// metrics, read with methods rather than by matching on the outcome.
///
/// The [`AuthLayer`](crate::AuthLayer), a [`Rotation`](crate::Rotation) written into a
/// response and an [`AuthRejection`](crate::AuthRejection) rendered as one put it in the
/// response's extensions, so one middleware outside the routes can count every request's
/// decision, whichever way it was authenticated:
///
/// ```
/// use axum::{extract::Request, middleware::Next, response::Response};
/// use rotauth_axum::Decided;
///
/// async fn count(request: Request, next: Next) -> Response {
///     let response = next.run(request).await;
///     if let Some(decided) = response.extensions().get::<Decided>() {
///         if let Some(kind) = decided.decision() {
///             // e.g. metrics::counter!("decisions", "kind" => kind.as_str()).increment(1);
///             let _ = kind;
///         }
///     }
///     response
/// }
/// # let _: axum::Router = axum::Router::new().layer(axum::middleware::from_fn(count));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decided {
    decision: Option<DecisionKind>,
    lost_swaps: usize,
    end: End,
}

/// How a request through the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Served,
    Forbidden(Forbidden),
    Refused(Refusal),
    Unavailable { contention: bool },
}

impl Decided {
    /// A request served after `decision` held, having lost `lost_swaps` compare-and-swaps.
    pub(crate) fn served(decision: DecisionKind, lost_swaps: usize) -> Self {
        Self {
            decision: Some(decision),
            lost_swaps,
            end: End::Served,
        }
    }

    /// A refused request.
    pub(crate) fn refused(refusal: Refusal) -> Self {
        let decision = match refusal {
            Refusal::Rejected(_) => Some(DecisionKind::Reject),
            Refusal::Revoked(_) => Some(DecisionKind::Revoke),
            _ => None,
        };
        Self {
            decision,
            lost_swaps: 0,
            end: End::Refused(refusal),
        }
    }

    /// A request forbidden before its credentials were read.
    pub(crate) fn forbade(why: Forbidden) -> Self {
        Self {
            decision: None,
            lost_swaps: 0,
            end: End::Forbidden(why),
        }
    }

    /// A request answered 503.
    pub(crate) fn unavailable(why: &Unavailable) -> Self {
        Self {
            decision: None,
            lost_swaps: 0,
            end: End::Unavailable {
                contention: matches!(why, Unavailable::Contention),
            },
        }
    }

    /// What rotauth decided: the decision a served request's reply comes from, `Reject` or
    /// `Revoke` for a token it refused (no session for the client id included). `None` when
    /// the request ended before a decision (forbidden, no or malformed credentials, a `uid` that is
    /// not the session's, a corrupt record) or answered 503.
    #[must_use]
    pub fn decision(&self) -> Option<DecisionKind> {
        self.decision
    }

    /// Compare-and-swaps the request lost to other requests of its session before its
    /// decision held (each one loaded and decided again). 0 unless served.
    #[must_use]
    pub fn lost_swaps(&self) -> usize {
        self.lost_swaps
    }

    /// Whether the request was served (its reply written into the response).
    #[must_use]
    pub fn is_served(&self) -> bool {
        matches!(self.end, End::Served)
    }

    /// Why the request was refused, if it was.
    #[must_use]
    pub fn refusal(&self) -> Option<Refusal> {
        match self.end {
            End::Refused(refusal) => Some(refusal),
            End::Served | End::Forbidden(_) | End::Unavailable { .. } => None,
        }
    }

    /// Why the request was forbidden before its credentials were read (403), if it was.
    #[must_use]
    pub fn forbidden(&self) -> Option<Forbidden> {
        match self.end {
            End::Forbidden(why) => Some(why),
            End::Served | End::Refused(_) | End::Unavailable { .. } => None,
        }
    }

    /// Whether the request answered 503 (the store failed, or too many lost swaps).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self.end, End::Unavailable { .. })
    }

    /// Whether the request answered 503 because it lost
    /// [`Authenticator::MAX_ATTEMPTS`](crate::Authenticator::MAX_ATTEMPTS) compare-and-swaps
    /// in a row to other requests of its session (a client flooding one session).
    #[must_use]
    pub fn is_contention(&self) -> bool {
        matches!(self.end, End::Unavailable { contention: true })
    }
}

impl Outcome {
    /// What this outcome came to, for logs and metrics.
    #[must_use]
    pub fn decided(&self) -> Decided {
        match self {
            Self::Served {
                decision,
                lost_swaps,
                ..
            } => Decided::served(*decision, *lost_swaps),
            Self::Refused(refusal) => Decided::refused(*refusal),
            Self::Unavailable(why) => Decided::unavailable(why),
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
    /// Its user as responses name it (see [`Authenticated::uid`]).
    pub uid: String,
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
            .field("uid", &self.uid)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
