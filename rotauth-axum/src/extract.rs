//! Per-route extractors: the request loop run while a handler's arguments are extracted,
//! for routes that are not behind an [`AuthLayer`](crate::AuthLayer), that must not
//! store a rotation (sign-out, account deletion), or that answer a refusal in a shape of
//! their own.

use std::fmt;

use axum::extract::{FromRef, FromRequestParts};
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use http::request::Parts;
use rotauth::exchange::{Refusal, Reply};
use rotauth::{DecisionKind, Timestamp};

use crate::authenticator::Authenticator;
use crate::error::Error;
use crate::protocol::{Forbidden, Protocol};
use crate::request::{Authenticated, Checked, Credentials, Decided, Outcome, Unavailable};
use crate::store::SessionStore;

/// A request authenticated by the rotating loop, as an extractor: its decision is stored,
/// and returning it with the response writes what the reply carries (the next token, or a
/// batch member's blank) into the response's headers, in the protocol's shape.
///
/// It reads the [`Authenticator<S>`] and the protocol `P` from the router's state
/// ([`FromRef`]), and the time from the authenticator ([`Authenticator::now`]). A
/// refused request never reaches the handler: the rejection is an [`AuthRejection`],
/// answered 401 or 503 by the protocol, unless the handler takes
/// `Result<Rotation<S, P>, AuthRejection<P>>` to answer a refusal its own way
/// ([`AuthRejection::refused_with`]).
///
/// ```
/// use axum::{Router, extract::FromRef, routing::get};
/// use rotauth::{Config, KeyId, Keyring, Rotator};
/// use rotauth_axum::{Authenticator, BearerProtocol, MemoryStore, Rotation};
///
/// #[derive(Clone)]
/// struct App {
///     auth: Authenticator<MemoryStore>,
///     protocol: BearerProtocol,
/// }
///
/// // What `#[derive(FromRef)]` (axum's `macros` feature) writes.
/// impl FromRef<App> for Authenticator<MemoryStore> {
///     fn from_ref(app: &App) -> Self {
///         app.auth.clone()
///     }
/// }
/// impl FromRef<App> for BearerProtocol {
///     fn from_ref(app: &App) -> Self {
///         app.protocol
///     }
/// }
///
/// type Session = Rotation<MemoryStore, BearerProtocol>;
///
/// // The rotation is returned with the body: its headers carry the next token.
/// async fn me(session: Session) -> (Session, String) {
///     let user = session.who().user_id.clone();
///     (session, user)
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let rotator = Rotator::new(Keyring::new(KeyId(1), &[7u8; 32])?, Config::default());
/// let app = App { auth: Authenticator::new(rotator, MemoryStore::new()), protocol: BearerProtocol::new() };
/// let router: Router = Router::new().route("/me", get(me)).with_state(app);
/// # Ok(())
/// # }
/// ```
///
/// Use it on routes outside an [`AuthLayer`](crate::AuthLayer): behind one, the request
/// would be decided twice.
///
/// # Security
///
/// The reply's token is stored already: a handler that drops the rotation instead of
/// returning it loses a token the client needs, and the client's next request presents
/// the one before it, a replay once the batch window has passed (Strict mode signs the
/// client out). Dropping a rotation whose reply carries a new token unsent is logged as an
/// error. Return it with every response after it was extracted, error responses included.
pub struct Rotation<S, P> {
    who: Authenticated,
    /// `None` once written into a response.
    reply: Option<Reply>,
    decided: Decided,
    auth: Authenticator<S>,
    protocol: P,
}

impl<S, P> Rotation<S, P> {
    /// Who the request belongs to.
    #[must_use]
    pub fn who(&self) -> &Authenticated {
        &self.who
    }

    /// What the loop decided, for logs and metrics (also put in the response's extensions
    /// when the rotation is written into it).
    #[must_use]
    pub fn decided(&self) -> Decided {
        self.decided
    }
}

impl<S: SessionStore, P: Protocol> Rotation<S, P> {
    /// Moves every session of this request's user to `to`
    /// ([`Authenticator::rename_user`]), and makes this response name the user by its new
    /// uid: for an app whose `uid` changes (devise's email), so that the client takes the
    /// new one from the response that changed it. Returns how many sessions moved.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails; then nothing changed, and the response still
    /// names the user as before.
    pub async fn rename_user(&mut self, to: &str) -> Result<usize, Error> {
        let moved = self.auth.rename_user(&self.who.user_id, to).await?;
        self.who = self.auth.who(self.who.client_id, to.to_owned());
        Ok(moved)
    }
}

impl<S, P: Protocol> IntoResponseParts for Rotation<S, P> {
    type Error = std::convert::Infallible;

    fn into_response_parts(mut self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if let Some(reply) = self.reply.take() {
            self.protocol
                .write_reply(&self.who, &reply, res.headers_mut());
        }
        res.extensions_mut().insert(self.decided);
        Ok(res)
    }
}

impl<S, P> Drop for Rotation<S, P> {
    fn drop(&mut self) {
        if let Some(Reply::NewToken { .. }) = self.reply {
            tracing::error!(
                client_id = %self.who.client_id,
                "rotauth: a stored rotation was dropped without being sent; its client's token is now behind"
            );
        }
    }
}

impl<S, P: fmt::Debug> fmt::Debug for Rotation<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotation")
            .field("who", &self.who)
            .field("decided", &self.decided)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl<St, S, P> FromRequestParts<St> for Rotation<S, P>
where
    St: Send + Sync,
    S: SessionStore,
    P: Protocol + FromRef<St>,
    Authenticator<S>: FromRef<St>,
{
    type Rejection = AuthRejection<P>;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let auth = Authenticator::<S>::from_ref(state);
        let (protocol, credentials, unbatch) = presented(P::from_ref(state), parts)?;
        let now = auth.now();
        rotate(auth, protocol, &credentials, now, unbatch).await
    }
}

/// What a request brings to the loop, read through `protocol` in the order every
/// extractor keeps: screened for forgery first (no session is read for a forged
/// request), then its credentials, then whether it asks to unbatch.
fn presented<P: Protocol>(
    protocol: P,
    parts: &Parts,
) -> Result<(P, Credentials, bool), AuthRejection<P>> {
    if let Err(why) = protocol.screen(parts) {
        return Err(AuthRejection::forbidden(protocol, why));
    }
    match protocol.credentials(parts) {
        Ok(credentials) => {
            let unbatch = protocol.force_rotation(parts);
            Ok((protocol, credentials, unbatch))
        }
        Err(refusal) => Err(AuthRejection::refused(protocol, refusal)),
    }
}

/// Runs the rotating loop for `credentials` and wraps what it came to.
async fn rotate<S: SessionStore, P: Protocol>(
    auth: Authenticator<S>,
    protocol: P,
    credentials: &Credentials,
    now: Timestamp,
    unbatch: bool,
) -> Result<Rotation<S, P>, AuthRejection<P>> {
    let outcome = auth.authenticate(credentials, now, unbatch).await;
    let decided = outcome.decided();
    match outcome {
        Outcome::Served { who, reply, .. } => Ok(Rotation {
            who,
            reply: Some(reply),
            decided,
            auth,
            protocol,
        }),
        Outcome::Refused(refusal) => Err(AuthRejection::refused(protocol, refusal)),
        Outcome::Unavailable(why) => Err(AuthRejection::unavailable(protocol, why)),
    }
}

/// A request whose credentials are accepted now, as an extractor, with nothing stored
/// and no token to send ([`Authenticator::check`]): for requests that end the session or
/// the account (sign-out, account deletion), where a rotation would only be thrown away,
/// and for a check before slow work (a password hash) that commits the request's rotation
/// afterwards with [`rotate`](Self::rotate). A replay that the replay policy revokes
/// still deletes its session.
///
/// Like [`Rotation`], it reads the [`Authenticator<S>`] and the protocol `P` from the
/// router's state, and is rejected with an [`AuthRejection`].
///
/// ```
/// use axum::{Router, extract::{FromRef, State}, routing::delete};
/// use rotauth_axum::{Authenticator, BearerProtocol, Check, MemoryStore};
///
/// #[derive(Clone)]
/// struct App {
///     auth: Authenticator<MemoryStore>,
///     protocol: BearerProtocol,
/// }
/// # impl FromRef<App> for Authenticator<MemoryStore> {
/// #     fn from_ref(app: &App) -> Self { app.auth.clone() }
/// # }
/// # impl FromRef<App> for BearerProtocol {
/// #     fn from_ref(app: &App) -> Self { app.protocol }
/// # }
///
/// async fn sign_out(
///     State(app): State<App>,
///     check: Check<MemoryStore, BearerProtocol>,
/// ) -> Result<&'static str, rotauth_axum::Error> {
///     app.auth.sign_out(check.who().client_id).await?;
///     Ok("signed out")
/// }
/// # let _: Router<App> = Router::new().route("/sign_out", delete(sign_out));
/// ```
pub struct Check<S, P> {
    who: Authenticated,
    decision: DecisionKind,
    credentials: Credentials,
    unbatch: bool,
    auth: Authenticator<S>,
    protocol: P,
}

impl<S, P> Check<S, P> {
    /// Who the request belongs to.
    #[must_use]
    pub fn who(&self) -> &Authenticated {
        &self.who
    }

    /// What rotauth decided; not stored (what [`rotate`](Self::rotate) would store may
    /// differ, the session having moved on meanwhile).
    #[must_use]
    pub fn decision(&self) -> DecisionKind {
        self.decision
    }
}

impl<S: SessionStore, P: Protocol> Check<S, P> {
    /// Runs the rotating loop for the same credentials now, storing its decision, as a
    /// [`Rotation`] extracted at this point would: after the slow work the check came
    /// before. `force` rotates inside the batch window even if the request did not ask
    /// (`?unbatch`), for a response that must carry a token (a changed `uid`).
    ///
    /// # Errors
    ///
    /// An [`AuthRejection`] when the session was refused meanwhile (signed out, or
    /// rotated past the token by another request of the session) or the store fails.
    pub async fn rotate(self, force: bool) -> Result<Rotation<S, P>, AuthRejection<P>> {
        let Self {
            credentials,
            unbatch,
            auth,
            protocol,
            ..
        } = self;
        let now = auth.now();
        rotate(auth, protocol, &credentials, now, unbatch || force).await
    }
}

impl<S, P: fmt::Debug> fmt::Debug for Check<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("who", &self.who)
            .field("decision", &self.decision)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl<St, S, P> FromRequestParts<St> for Check<S, P>
where
    St: Send + Sync,
    S: SessionStore,
    P: Protocol + FromRef<St>,
    Authenticator<S>: FromRef<St>,
{
    type Rejection = AuthRejection<P>;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let auth = Authenticator::<S>::from_ref(state);
        let (protocol, credentials, unbatch) = presented(P::from_ref(state), parts)?;
        match auth.check(&credentials, auth.now()).await {
            Checked::Accepted { who, decision } => Ok(Self {
                who,
                decision,
                credentials,
                unbatch,
                auth,
                protocol,
            }),
            Checked::Refused(refusal) => Err(AuthRejection::refused(protocol, refusal)),
            Checked::Unavailable(why) => Err(AuthRejection::unavailable(protocol, why)),
        }
    }
}

/// Why [`Rotation`] or [`Check`] did not extract: the request was forbidden before its
/// credentials were read (403, [`Protocol::forbidden`]: a cookie protocol's CSRF checks),
/// refused (401 in the protocol's shape, [`Protocol::refused`]) or the store failed or the request lost too
/// many swaps (503 with `Retry-After`, [`Protocol::unavailable`]). No token either way.
///
/// As a response it is the protocol's; a route that answers a refusal in a shape of its
/// own (a 404 for a sign-out, a body of its own) takes `Result<_, AuthRejection<P>>` and
/// calls [`refused_with`](Self::refused_with), which keeps the protocol's 503. Either way
/// the response carries [`Decided`] in its extensions. `Display` says why, for logs.
pub struct AuthRejection<P> {
    protocol: P,
    why: Why,
}

/// Why a request was not accepted.
enum Why {
    Forbidden(Forbidden),
    Refused(Refusal),
    Unavailable(Unavailable),
}

impl<P: Protocol> AuthRejection<P> {
    pub(crate) fn refused(protocol: P, refusal: Refusal) -> Self {
        Self {
            protocol,
            why: Why::Refused(refusal),
        }
    }

    pub(crate) fn forbidden(protocol: P, why: Forbidden) -> Self {
        Self {
            protocol,
            why: Why::Forbidden(why),
        }
    }

    pub(crate) fn unavailable(protocol: P, why: Unavailable) -> Self {
        Self {
            protocol,
            why: Why::Unavailable(why),
        }
    }

    /// What the loop came to, for logs and metrics.
    #[must_use]
    pub fn decided(&self) -> Decided {
        match &self.why {
            Why::Forbidden(why) => Decided::forbade(*why),
            Why::Refused(refusal) => Decided::refused(*refusal),
            Why::Unavailable(why) => Decided::unavailable(why),
        }
    }

    /// `refused` when the request was refused, the protocol's 403 or 503 otherwise (a
    /// forbidden request had its credentials not judged, and the client must try a 503
    /// again with the token it has, where `refused` might tell it to sign in again).
    /// `refused` must not carry a token.
    pub fn refused_with(self, refused: impl IntoResponse) -> Response {
        let decided = self.decided();
        let mut response = match self.why {
            Why::Refused(_) => refused.into_response(),
            Why::Forbidden(why) => self.protocol.forbidden(why),
            Why::Unavailable(_) => self.protocol.unavailable(),
        };
        response.extensions_mut().insert(decided);
        response
    }
}

impl<P: Protocol> IntoResponse for AuthRejection<P> {
    fn into_response(self) -> Response {
        let decided = self.decided();
        let mut response = match &self.why {
            Why::Refused(refusal) => self.protocol.refused(refusal),
            Why::Forbidden(why) => self.protocol.forbidden(*why),
            Why::Unavailable(_) => self.protocol.unavailable(),
        };
        response.extensions_mut().insert(decided);
        response
    }
}

impl<P> fmt::Display for AuthRejection<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.why {
            Why::Forbidden(why) => write!(f, "{why}"),
            Why::Refused(refusal) => write!(f, "{refusal}"),
            Why::Unavailable(why) => write!(f, "{why}"),
        }
    }
}

impl<P> fmt::Debug for AuthRejection<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("AuthRejection");
        match &self.why {
            Why::Forbidden(why) => d.field("forbidden", why),
            Why::Refused(refusal) => d.field("refused", refusal),
            Why::Unavailable(why) => d.field("unavailable", why),
        };
        d.finish_non_exhaustive()
    }
}

impl<P> std::error::Error for AuthRejection<P> {}
