//! The tower layer and the axum extractor.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http::{Request, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticator::Authenticator;
use crate::extract::AuthRejection;
use crate::protocol::Protocol;
use crate::request::{Authenticated, Outcome};
use crate::store::{BoxError, SessionStore};

/// A tower [`Layer`] that authenticates every request with rotauth before the inner
/// service sees it.
///
/// Accepted requests reach the inner service with [`Authenticated`] in their extensions,
/// and the protocol writes the token (if any) into the response afterwards. Refused
/// requests get 401 in the protocol's shape and 503 when the store fails; neither reaches
/// the inner service. Every response it answers or passes on carries
/// [`Decided`](crate::Decided) in its extensions, for logs and metrics. A request is
/// decided at the authenticator's time when it arrives ([`Authenticator::now`]). Works for
/// any tower service answering `http::Response<B>` with an [`http_body::Body`] `B`;
/// responses become [`axum::body::Body`].
///
/// Order matters in a stack: routes added to an axum `Router` after `.layer(..)` are not
/// behind it (put sign-in there), and a CORS layer must be outside this one (added after
/// it), so that preflight `OPTIONS` requests, which carry no credentials, are answered
/// before they reach it.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use rotauth::{Config, KeyId, Keyring, Rotator};
/// use rotauth_axum::{AuthLayer, Authenticated, Authenticator, BearerProtocol, MemoryStore};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let rotator = Rotator::new(Keyring::new(KeyId(1), &[7u8; 32])?, Config::default());
/// let auth = Authenticator::new(rotator, MemoryStore::new());
/// let app: Router = Router::new()
///     .route("/me", get(|who: Authenticated| async move { who.user_id }))
///     .layer(AuthLayer::new(auth, BearerProtocol::new()));
/// # Ok(())
/// # }
/// ```
pub struct AuthLayer<S, P> {
    auth: Authenticator<S>,
    protocol: P,
}

impl<S, P: Clone> Clone for AuthLayer<S, P> {
    fn clone(&self) -> Self {
        Self {
            auth: self.auth.clone(),
            protocol: self.protocol.clone(),
        }
    }
}

impl<S, P: std::fmt::Debug> std::fmt::Debug for AuthLayer<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("auth", &self.auth)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl<S: SessionStore, P: Protocol> AuthLayer<S, P> {
    /// A layer deciding with `auth` and speaking `protocol`, at the authenticator's time
    /// ([`Authenticator::clock`]).
    #[must_use]
    pub fn new(auth: Authenticator<S>, protocol: P) -> Self {
        Self { auth, protocol }
    }
}

impl<I, S, P: Clone> Layer<I> for AuthLayer<S, P> {
    type Service = AuthService<I, S, P>;

    fn layer(&self, inner: I) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
            protocol: self.protocol.clone(),
        }
    }
}

/// The [`Service`] made by [`AuthLayer`].
pub struct AuthService<I, S, P> {
    inner: I,
    auth: Authenticator<S>,
    protocol: P,
}

impl<I: Clone, S, P: Clone> Clone for AuthService<I, S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            auth: self.auth.clone(),
            protocol: self.protocol.clone(),
        }
    }
}

impl<I: std::fmt::Debug, S, P: std::fmt::Debug> std::fmt::Debug for AuthService<I, S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("inner", &self.inner)
            .field("auth", &self.auth)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl<I, S, P, ReqB, ResB> Service<Request<ReqB>> for AuthService<I, S, P>
where
    I: Service<Request<ReqB>, Response = http::Response<ResB>> + Clone + Send + 'static,
    I::Future: Send,
    S: SessionStore,
    P: Protocol,
    ReqB: Send + 'static,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = I::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, I::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        let protocol = self.protocol.clone();
        // The time the request arrived, whatever it waits for after.
        let now = self.auth.now();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            if let Err(why) = protocol.screen(&parts) {
                tracing::debug!(%why, "rotauth: forbidden");
                return Ok(AuthRejection::forbidden(protocol, why).into_response());
            }
            let credentials = match protocol.credentials(&parts) {
                Ok(credentials) => credentials,
                Err(refusal) => {
                    tracing::debug!(%refusal, "rotauth: refused");
                    return Ok(AuthRejection::refused(protocol, refusal).into_response());
                }
            };
            let unbatch = protocol.force_rotation(&parts);
            let outcome = auth.authenticate(&credentials, now, unbatch).await;
            let decided = outcome.decided();
            match outcome {
                Outcome::Served { who, reply, .. } => {
                    parts.extensions.insert(who.clone());
                    let response = inner.call(Request::from_parts(parts, body)).await?;
                    let mut response = response.map(Body::new);
                    protocol.write_reply(&who, &reply, response.headers_mut());
                    response.extensions_mut().insert(decided);
                    Ok(response)
                }
                Outcome::Refused(refusal) => {
                    Ok(AuthRejection::refused(protocol, refusal).into_response())
                }
                Outcome::Unavailable(why) => {
                    Ok(AuthRejection::unavailable(protocol, why).into_response())
                }
            }
        })
    }
}

/// Extracting [`Authenticated`] from a request that did not pass through an
/// [`AuthLayer`]: a server misconfiguration, answered with 500.
#[derive(Clone, Copy, Debug)]
pub struct MissingAuthLayer;

impl std::fmt::Display for MissingAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no AuthLayer in front of a handler that takes Authenticated")
    }
}

impl std::error::Error for MissingAuthLayer {}

impl IntoResponse for MissingAuthLayer {
    fn into_response(self) -> Response {
        tracing::error!("rotauth: {self}");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
    }
}

impl<St: Send + Sync> FromRequestParts<St> for Authenticated {
    type Rejection = MissingAuthLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(MissingAuthLayer)
    }
}

/// `Option<Authenticated>`: `None` on a route without the layer (public routes that
/// personalise when they can).
impl<St: Send + Sync> axum::extract::OptionalFromRequestParts<St> for Authenticated {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &St,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}
