//! devise_token_auth's headers.

use axum::body::Body;
use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use zeroize::Zeroizing;

use super::{Protocol, authorization, header_text, no_store, unauthorized};
use rotauth::exchange::{Refusal, Reply};

use crate::request::{Authenticated, Credentials};

/// The token header.
pub(crate) const ACCESS_TOKEN: HeaderName = HeaderName::from_static("access-token");
/// Always `Bearer`.
const TOKEN_TYPE: HeaderName = HeaderName::from_static("token-type");
/// The client id header.
pub(crate) const CLIENT: HeaderName = HeaderName::from_static("client");
/// The session's expiry, Unix seconds.
pub(crate) const EXPIRY: HeaderName = HeaderName::from_static("expiry");
/// The user's uid.
pub(crate) const UID: HeaderName = HeaderName::from_static("uid");

/// Longest `Authorization` value decoded: five short fields fit in far less, and a bound
/// keeps the decode buffer on the stack.
const MAX_AUTHORIZATION_LEN: usize = 2048;

/// devise_token_auth's protocol, for its clients (ng-token-auth, j-toker,
/// devise-token-auth-client, …).
///
/// - Requests carry `access-token`, `client` and `uid` (`token-type` and `expiry` are
///   ignored), each in its own header or, field by field as devise reads them, in
///   `Authorization: Bearer <base64 of the JSON of the five>`, or, as devise reads
///   `params` when the headers are absent, in the query string (redux-token-auth checks a
///   stored session that way: `GET /auth/validate_token?access-token=…&client=…&uid=…`).
///   Blank values count as absent. Keep query strings out of access logs. The `uid` is
///   the session's user as clients name it: the user id it was signed in with, or the
///   part of it that [`Authenticator::uid_in_user_id`](crate::Authenticator::uid_in_user_id)
///   picks, for apps whose `uid` can change (devise's email) beside a stable id.
/// - `?unbatch` (any value but `false` or `0`) forces rotation inside the batch window.
/// - Responses carry the five headers `access-token`, `token-type: Bearer`, `client`,
///   `expiry` (Unix seconds) and `uid` ([`Authenticated::uid`]), plus `Authorization: Bearer <base64 JSON>` as
///   devise_token_auth ≥ 1.1 sends, and `Cache-Control: no-store`. A batch response
///   carries `access-token: " "` and `expiry: " "`, so that a response arriving after a
///   newer one never carries an older token (unless the authenticator is set to
///   [`BatchToken::Current`](crate::BatchToken::Current)).
/// - A refused request gets 401
///   `{"errors":["You need to sign in or sign up before continuing."]}`.
///
/// ```
/// use rotauth_axum::DeviseProtocol;
/// let protocol = DeviseProtocol::new();
/// # let _ = protocol;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviseProtocol {
    _private: (),
}

impl DeviseProtocol {
    /// The response headers that carry a session to the client: the ones a CORS layer must
    /// expose to scripts of other origins (`Access-Control-Expose-Headers`).
    pub const RESPONSE_HEADERS: [HeaderName; 6] =
        [ACCESS_TOKEN, TOKEN_TYPE, CLIENT, EXPIRY, UID, AUTHORIZATION];

    /// The protocol.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl Protocol for DeviseProtocol {
    fn credentials(&self, parts: &Parts) -> Result<Credentials, Refusal> {
        let headers = &parts.headers;
        // Decoded only when a field is missing from the headers, as most clients send them.
        let bearer = std::cell::OnceCell::new();
        let field = |name: &HeaderName, key: &str| -> Option<String> {
            header_text(headers, name)
                .map(str::to_owned)
                .or_else(|| {
                    bearer
                        .get_or_init(|| authorization(parts).and_then(decode_bearer))
                        .as_ref()
                        .and_then(|json| json.get(key))
                        .and_then(serde_json::Value::as_str)
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                })
                .or_else(|| query_field(parts.uri.query()?, key))
        };
        let token = Zeroizing::new(
            field(&ACCESS_TOKEN, "access-token").ok_or(Refusal::MissingCredentials)?,
        );
        let client = field(&CLIENT, "client").ok_or(Refusal::MissingCredentials)?;
        let uid = field(&UID, "uid").ok_or(Refusal::MissingCredentials)?;
        let client_id = client.parse().map_err(|_| Refusal::MalformedCredentials)?;
        Ok(Credentials {
            client_id,
            token,
            uid: Some(uid),
        })
    }

    fn write_reply(&self, who: &Authenticated, reply: &Reply, headers: &mut HeaderMap) {
        let blank = HeaderValue::from_static(" ");
        let client = who.client_id.to_string();
        let value = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| blank.clone());
        headers.insert(TOKEN_TYPE, HeaderValue::from_static("Bearer"));
        headers.insert(CLIENT, value(&client));
        headers.insert(UID, value(&who.uid));
        let Some(token) = reply.token() else {
            headers.insert(ACCESS_TOKEN, blank.clone());
            headers.insert(EXPIRY, blank);
            return;
        };
        let token = token.to_text();
        let expiry = reply.expires_at().unix_secs().to_string();
        headers.insert(ACCESS_TOKEN, value(token.as_str()));
        headers.insert(EXPIRY, value(&expiry));
        no_store(headers);
        let json = Zeroizing::new(
            serde_json::json!({
                "access-token": token.as_str(),
                "token-type": "Bearer",
                "client": client,
                "expiry": expiry,
                "uid": who.uid,
            })
            .to_string(),
        );
        let mut buf = Zeroizing::new([0u8; 2 * MAX_AUTHORIZATION_LEN]);
        if let Ok(encoded) = Base64::encode(json.as_bytes(), &mut buf[..]) {
            let bearer = Zeroizing::new(format!("Bearer {encoded}"));
            if let Ok(v) = HeaderValue::from_str(&bearer) {
                headers.insert(AUTHORIZATION, v);
            }
        }
    }

    fn refused(&self, _refusal: &Refusal) -> Response<Body> {
        unauthorized(
            r#"{"errors":["You need to sign in or sign up before continuing."]}"#,
            None,
        )
    }
}

/// A query parameter's decoded, trimmed value; blank counts as absent.
fn query_field(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The JSON object inside `Bearer <base64>`; strict devise clients send standard padded
/// base64, others the URL-safe or unpadded kinds, so all four are tried.
fn decode_bearer(value: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let (scheme, encoded) = value.split_once(' ')?;
    let encoded = encoded.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || encoded.len() > MAX_AUTHORIZATION_LEN {
        return None;
    }
    let mut buf = Zeroizing::new([0u8; MAX_AUTHORIZATION_LEN]);
    let len = Base64::decode(encoded, &mut buf[..])
        .map(<[u8]>::len)
        .or_else(|_| Base64Unpadded::decode(encoded, &mut buf[..]).map(<[u8]>::len))
        .or_else(|_| Base64Url::decode(encoded, &mut buf[..]).map(<[u8]>::len))
        .or_else(|_| Base64UrlUnpadded::decode(encoded, &mut buf[..]).map(<[u8]>::len))
        .ok()?;
    match serde_json::from_slice(buf.get(..len)?).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use base64ct::{Base64, Encoding};
    use http::Request;

    use super::*;

    const CLIENT_TEXT: &str = "AAAAAAAAAAAAAAAAAAAAAA";

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().uri("/x?unbatch=true");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn reads_the_three_headers() {
        let c = DeviseProtocol::new()
            .credentials(&parts(&[
                ("access-token", " tok "),
                ("client", CLIENT_TEXT),
                ("uid", "a@b"),
            ]))
            .unwrap();
        assert_eq!(c.token.as_str(), "tok");
        assert_eq!(c.client_id.to_string(), CLIENT_TEXT);
        assert_eq!(c.uid.as_deref(), Some("a@b"));
        assert!(DeviseProtocol::new().force_rotation(&parts(&[])));
    }

    #[test]
    fn reads_authorization_bearer_json_in_any_base64() {
        let json = format!(
            r#"{{"access-token":"tok","client":"{CLIENT_TEXT}","uid":"a@b","token-type":"Bearer"}}"#
        );
        let encoded = Base64::encode_string(json.as_bytes());
        let c = DeviseProtocol::new()
            .credentials(&parts(&[("authorization", &format!("Bearer {encoded}"))]))
            .unwrap();
        assert_eq!(c.token.as_str(), "tok");
        let unpadded = base64ct::Base64UrlUnpadded::encode_string(json.as_bytes());
        let c = DeviseProtocol::new()
            .credentials(&parts(&[("authorization", &format!("bearer {unpadded}"))]))
            .unwrap();
        assert_eq!(c.uid.as_deref(), Some("a@b"));
    }

    #[test]
    fn reads_the_query_string_when_the_headers_are_absent() {
        let p = DeviseProtocol::new();
        let query = |q: &str, headers: &[(&str, &str)]| {
            let mut request = Request::builder().uri(format!("/auth/validate_token?{q}"));
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            request.body(()).unwrap().into_parts().0
        };
        let c = p
            .credentials(&query(
                &format!("access-token=tok&client={CLIENT_TEXT}&uid=ada%2Bx%40example.com"),
                &[],
            ))
            .unwrap();
        assert_eq!(c.token.as_str(), "tok");
        assert_eq!(c.uid.as_deref(), Some("ada+x@example.com"));
        // A header wins over the query, field by field.
        let c = p
            .credentials(&query(
                &format!("access-token=tok&client={CLIENT_TEXT}&uid=q"),
                &[("uid", "h")],
            ))
            .unwrap();
        assert_eq!(c.uid.as_deref(), Some("h"));
        assert_eq!(
            p.credentials(&query("access-token=&client=x&uid=y", &[]))
                .unwrap_err(),
            Refusal::MissingCredentials
        );
    }

    #[test]
    fn blank_or_missing_fields_are_missing_and_bad_client_is_malformed() {
        let p = DeviseProtocol::new();
        assert_eq!(
            p.credentials(&parts(&[
                ("access-token", " "),
                ("client", CLIENT_TEXT),
                ("uid", "a")
            ]))
            .unwrap_err(),
            Refusal::MissingCredentials
        );
        assert_eq!(
            p.credentials(&parts(&[
                ("access-token", "t"),
                ("client", "short"),
                ("uid", "a")
            ]))
            .unwrap_err(),
            Refusal::MalformedCredentials
        );
        assert_eq!(
            p.credentials(&parts(&[("authorization", "Bearer !!!")]))
                .unwrap_err(),
            Refusal::MissingCredentials
        );
    }

    #[test]
    fn a_batch_reply_is_blank_and_carries_no_authorization() {
        let who = Authenticated {
            client_id: CLIENT_TEXT.parse().unwrap(),
            user_id: "7 a@b".to_owned(),
            uid: "a@b".to_owned(),
        };
        let mut headers = HeaderMap::new();
        let reply = Reply::Batch {
            expires_at: rotauth::Timestamp::from_unix_millis(5_000),
        };
        DeviseProtocol::new().write_reply(&who, &reply, &mut headers);
        assert_eq!(headers[ACCESS_TOKEN], " ");
        assert_eq!(headers[EXPIRY], " ");
        assert_eq!(headers[CLIENT], CLIENT_TEXT);
        assert_eq!(headers[UID], "a@b");
        assert_eq!(headers[TOKEN_TYPE], "Bearer");
        assert!(headers.get(AUTHORIZATION).is_none());
        assert!(headers.get(http::header::CACHE_CONTROL).is_none());
    }
}
