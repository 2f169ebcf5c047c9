//! A plain one-header protocol for new applications.

use axum::body::Body;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use zeroize::Zeroizing;

use super::{Protocol, authorization, no_store, unauthorized};
use rotauth::exchange::{Refusal, Reply};

use crate::request::{Authenticated, Credentials};

/// The response header carrying the next credentials.
pub(crate) const ROTAUTH_TOKEN: HeaderName = HeaderName::from_static("rotauth-token");

/// A plain protocol for new applications: one request header, one response header.
///
/// - Requests carry `Authorization: Rotauth <client id>.<token>` (the client id is 22
///   characters and the token 55, both base64url, so `.` cannot occur in either, and no
///   blank stands beside it; the scheme name is case-insensitive).
/// - `?unbatch` (any value but `false` or `0`) forces rotation inside the batch window.
/// - A response that carries a token has `Rotauth-Token: <client id>.<token>` (and
///   `Cache-Control: no-store`): the client replaces its credentials with that value,
///   verbatim. A batch response has no `Rotauth-Token`: the client keeps what it has.
/// - A refused request gets 401 `{"errors":["unauthorized"]}` with
///   `WWW-Authenticate: Rotauth`.
///
/// Clients must keep the newest credentials they received: a batch's responses may
/// arrive in any order, but only one of them carries a token.
///
/// ```
/// use rotauth_axum::BearerProtocol;
/// let protocol = BearerProtocol::new();
/// # let _ = protocol;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct BearerProtocol {
    _private: (),
}

impl BearerProtocol {
    /// The authorization scheme.
    pub const SCHEME: &'static str = "Rotauth";

    /// The protocol.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of the `Authorization` header for these credentials (what a client
    /// sends), kept in a wiped buffer.
    #[must_use]
    pub fn authorization(
        client_id: &rotauth::ClientId,
        token: &rotauth::Token,
    ) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{} {client_id}.{}",
            Self::SCHEME,
            token.to_text().as_str()
        ))
    }
}

impl Protocol for BearerProtocol {
    fn credentials(&self, parts: &Parts) -> Result<Credentials, Refusal> {
        let value = authorization(parts).ok_or(Refusal::MissingCredentials)?;
        let (scheme, rest) = value.split_once(' ').ok_or(Refusal::MalformedCredentials)?;
        if !scheme.eq_ignore_ascii_case(Self::SCHEME) {
            return Err(Refusal::MissingCredentials);
        }
        let (client, token) = rest
            .trim()
            .split_once('.')
            .ok_or(Refusal::MalformedCredentials)?;
        // No blank may follow the dot (an RFC 7235 token68 has none), so the token is kept
        // trimmed as `Credentials` promises; one before it fails the client id.
        if token.starts_with(char::is_whitespace) {
            return Err(Refusal::MalformedCredentials);
        }
        let client_id = client.parse().map_err(|_| Refusal::MalformedCredentials)?;
        Ok(Credentials {
            client_id,
            token: Zeroizing::new(token.to_owned()),
            uid: None,
        })
    }

    fn write_reply(&self, who: &Authenticated, reply: &Reply, headers: &mut HeaderMap) {
        let Some(token) = reply.token() else {
            return;
        };
        let value = Zeroizing::new(format!("{}.{}", who.client_id, token.to_text().as_str()));
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(ROTAUTH_TOKEN, value);
            no_store(headers);
        }
    }

    fn refused(&self, _refusal: &Refusal) -> Response<Body> {
        unauthorized(r#"{"errors":["unauthorized"]}"#, Some(Self::SCHEME))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use http::Request;

    use super::*;

    fn parts(authorization: Option<&str>) -> Parts {
        let mut request = Request::builder().uri("/x");
        if let Some(v) = authorization {
            request = request.header("authorization", v);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn reads_client_and_token() {
        let c = BearerProtocol::new()
            .credentials(&parts(Some("rotauth AAAAAAAAAAAAAAAAAAAAAA.tok")))
            .unwrap();
        assert_eq!(c.token.as_str(), "tok");
        assert!(c.uid.is_none());
        assert!(!BearerProtocol::new().force_rotation(&parts(None)));
    }

    #[test]
    fn refuses_what_is_not_its_shape() {
        let p = BearerProtocol::new();
        assert_eq!(
            p.credentials(&parts(None)).unwrap_err(),
            Refusal::MissingCredentials
        );
        assert_eq!(
            p.credentials(&parts(Some("Bearer abc"))).unwrap_err(),
            Refusal::MissingCredentials
        );
        assert_eq!(
            p.credentials(&parts(Some("Rotauth nodot"))).unwrap_err(),
            Refusal::MalformedCredentials
        );
        assert_eq!(
            p.credentials(&parts(Some("Rotauth short.tok")))
                .unwrap_err(),
            Refusal::MalformedCredentials
        );
    }

    #[test]
    fn blanks_around_the_dot_are_malformed() {
        let p = BearerProtocol::new();
        for value in [
            "Rotauth AAAAAAAAAAAAAAAAAAAAAA. tok",
            "Rotauth AAAAAAAAAAAAAAAAAAAAAA.\t  &",
            "Rotauth AAAAAAAAAAAAAAAAAAAAAA .tok",
        ] {
            assert_eq!(
                p.credentials(&parts(Some(value))).unwrap_err(),
                Refusal::MalformedCredentials,
                "{value:?}"
            );
        }
        // Blanks between the scheme and the credentials, and at the end, are not in them.
        let c = p
            .credentials(&parts(Some("Rotauth   AAAAAAAAAAAAAAAAAAAAAA.tok ")))
            .unwrap();
        assert_eq!(c.token.as_str(), "tok");
    }
}
