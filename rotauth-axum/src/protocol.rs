//! Wire protocols: how credentials travel in requests and tokens in responses.

use axum::body::Body;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use rotauth::exchange::{Refusal, Reply};

use crate::request::{Authenticated, Credentials, SignedIn};

mod bearer;
mod cookie;
mod csrf;
mod devise;

pub use bearer::BearerProtocol;
pub use cookie::{CookieProtocol, InvalidCookieName, SameSite};
pub use csrf::Forbidden;
pub use devise::DeviseProtocol;

/// How credentials travel in requests and tokens in responses.
///
/// The [`AuthLayer`](crate::AuthLayer) calls [`screen`](Self::screen),
/// [`credentials`](Self::credentials) and [`force_rotation`](Self::force_rotation) on every
/// request, then exactly one of [`write_reply`](Self::write_reply) (after the handler
/// ran), [`forbidden`](Self::forbidden), [`refused`](Self::refused) or
/// [`unavailable`](Self::unavailable). Implement it to speak another client's dialect;
/// [`DeviseProtocol`], [`BearerProtocol`] and [`CookieProtocol`] are the three that ship.
///
/// An implementation must never put a token anywhere but where `write_reply` and
/// [`sign_in_headers`](Self::sign_in_headers) are told to, and never log one.
pub trait Protocol: Clone + Send + Sync + 'static {
    /// Whether the request may be judged at all, before its credentials are read: a
    /// protocol whose credentials the browser attaches by itself (a cookie) refuses a
    /// request another site may have forged here, so that it spends no rotation. By
    /// default every request passes (a header a script must set cannot be forged by
    /// another site).
    ///
    /// # Errors
    ///
    /// [`Forbidden`] says why; the request is then answered by
    /// [`forbidden`](Self::forbidden).
    fn screen(&self, parts: &Parts) -> Result<(), Forbidden> {
        let _ = parts;
        Ok(())
    }

    /// The credentials of a request.
    ///
    /// # Errors
    ///
    /// [`Refusal::MissingCredentials`] when there are none,
    /// [`Refusal::MalformedCredentials`] when they are not in this protocol's shape. The
    /// request is then answered by [`refused`](Self::refused).
    fn credentials(&self, parts: &Parts) -> Result<Credentials, Refusal>;

    /// Whether the request asks for rotation inside the batch window. By default: the
    /// query parameter `unbatch` with any value but `false` or `0` (devise_token_auth
    /// forces on any `params[:unbatch]`; those two are read as the "no" they spell).
    fn force_rotation(&self, parts: &Parts) -> bool {
        parts.uri.query().is_some_and(unbatch_requested)
    }

    /// Writes what an accepted request's response carries into its headers. Called after
    /// the handler ran; everything in `reply` is already stored.
    fn write_reply(&self, who: &Authenticated, reply: &Reply, headers: &mut HeaderMap);

    /// The headers that hand a new session's first token to the client, for the sign-in
    /// response. By default what [`write_reply`](Self::write_reply) writes for a new token.
    fn sign_in_headers(&self, signed_in: &SignedIn) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let who = Authenticated {
            client_id: signed_in.client_id,
            user_id: signed_in.user_id.clone(),
            uid: signed_in.uid.clone(),
        };
        let reply = Reply::NewToken {
            token: signed_in.token.clone(),
            expires_at: signed_in.expires_at,
        };
        self.write_reply(&who, &reply, &mut headers);
        headers
    }

    /// The headers of a sign-out response (sign-out itself is
    /// [`Authenticator::sign_out`](crate::Authenticator::sign_out)). By default none: a
    /// client's script drops the headers it sets by itself. A protocol whose credentials
    /// the browser keeps (a cookie) clears them here.
    fn sign_out_headers(&self) -> HeaderMap {
        HeaderMap::new()
    }

    /// The 401 response to a refused request, in this protocol's shape. It must carry no
    /// token; `refusal` is for logs, not for the body.
    fn refused(&self, refusal: &Refusal) -> Response<Body>;

    /// The 403 response to a request [`screen`](Self::screen) refused. By default
    /// [`Forbidden::body`], `{"errors":["forbidden"],"reason":"…"}`. The credentials were
    /// not judged: it must change nothing the client holds.
    fn forbidden(&self, why: Forbidden) -> Response<Body> {
        json_response(StatusCode::FORBIDDEN, why.body())
    }

    /// The 503 response when the store failed or the request lost too many swaps. By
    /// default `{"errors":["Service unavailable, please try again later."]}` with
    /// `Retry-After: 1`.
    fn unavailable(&self) -> Response<Body> {
        unavailable_response()
    }
}

/// Whether a query string asks to unbatch (see [`Protocol::force_rotation`]).
fn unbatch_requested(query: &str) -> bool {
    query.split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key == "unbatch" && value != "false" && value != "0"
    })
}

pub(crate) fn json_response(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

pub(crate) fn unavailable_response() -> Response<Body> {
    let mut response = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"errors":["Service unavailable, please try again later."]}"#,
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// `Cache-Control: no-store`, for every response that carries a token.
fn no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The trimmed text of a header, `None` when absent, blank or not visible ASCII.
fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let text = headers.get(name)?.to_str().ok()?.trim();
    (!text.is_empty()).then_some(text)
}

/// The `Authorization` header's text, if any.
fn authorization(parts: &Parts) -> Option<&str> {
    header_text(&parts.headers, &AUTHORIZATION)
}

/// A 401 with a `WWW-Authenticate` challenge.
fn unauthorized(body: &'static str, challenge: Option<&'static str>) -> Response<Body> {
    let mut response = json_response(StatusCode::UNAUTHORIZED, body);
    if let Some(challenge) = challenge {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::unbatch_requested;

    #[test]
    fn unbatch_is_any_value_but_false_or_zero() {
        assert!(unbatch_requested("unbatch=true"));
        assert!(unbatch_requested("a=1&unbatch=true"));
        assert!(unbatch_requested("x=1&unbatch=1"));
        assert!(unbatch_requested("unbatch"));
        assert!(!unbatch_requested("unbatch=false"));
        assert!(!unbatch_requested("unbatch=0"));
        assert!(!unbatch_requested("xunbatch=true"));
        assert!(!unbatch_requested(""));
    }
}
