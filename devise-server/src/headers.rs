//! devise_token_auth's auth headers: reading credentials, writing the five headers back.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};
use rotauth::{ClientId, Timestamp, Token};
use zeroize::Zeroizing;

/// The token header.
pub const ACCESS_TOKEN: HeaderName = HeaderName::from_static("access-token");
/// Always `Bearer`.
pub const TOKEN_TYPE: HeaderName = HeaderName::from_static("token-type");
/// The client id header.
pub const CLIENT: HeaderName = HeaderName::from_static("client");
/// The session's expiry, Unix seconds.
pub const EXPIRY: HeaderName = HeaderName::from_static("expiry");
/// The user's uid (the email).
pub const UID: HeaderName = HeaderName::from_static("uid");

/// Longest `Authorization` value decoded: five short fields fit in far less, and a bound
/// keeps the decode buffer on the stack.
const MAX_AUTHORIZATION_LEN: usize = 2048;

/// The credentials a request presents.
pub struct Credentials {
    /// As sent (trimmed); checked by rotauth, never logged.
    pub token: Zeroizing<String>,
    /// The `client` header: the session's client id as text.
    pub client: String,
    /// The `uid` header: the user's email.
    pub uid: String,
}

/// The credentials of `headers`: each of `access-token`, `client` and `uid` from its own
/// header, else from `Authorization: Bearer <base64 of the JSON of the five>`, as devise
/// reads them field by field. A blank value counts as absent (devise's batch responses set
/// `access-token: " "`, and clients that store it send it back). Header names are
/// case-insensitive by HTTP; values that are not visible ASCII count as absent.
pub fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(decode_bearer);
    let field = |name: &HeaderName, key: &str| -> Option<String> {
        header_text(headers, name).or_else(|| {
            bearer
                .as_ref()
                .and_then(|json| json.get(key))
                .and_then(serde_json::Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
    };
    Some(Credentials {
        token: Zeroizing::new(field(&ACCESS_TOKEN, "access-token")?),
        client: field(&CLIENT, "client")?,
        uid: field(&UID, "uid")?,
    })
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let text = headers.get(name)?.to_str().ok()?.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The JSON object inside `Bearer <base64>`; strict devise clients send standard padded
/// base64, others the URL-safe or unpadded kinds, so all four are tried.
fn decode_bearer(value: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") || encoded.len() > MAX_AUTHORIZATION_LEN {
        return None;
    }
    let encoded = encoded.trim();
    let mut buf = Zeroizing::new([0u8; MAX_AUTHORIZATION_LEN]);
    let decoded = Base64::decode(encoded, &mut buf[..])
        .ok()
        .map(<[u8]>::to_vec)
        .or_else(|| {
            Base64Unpadded::decode(encoded, &mut buf[..])
                .ok()
                .map(<[u8]>::to_vec)
        })
        .or_else(|| {
            Base64Url::decode(encoded, &mut buf[..])
                .ok()
                .map(<[u8]>::to_vec)
        })
        .or_else(|| {
            Base64UrlUnpadded::decode(encoded, &mut buf[..])
                .ok()
                .map(<[u8]>::to_vec)
        })?;
    let decoded = Zeroizing::new(decoded);
    match serde_json::from_slice(&decoded).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The five headers of an authenticated response. `token: None` is a batch response
/// (`access-token: " "`, `expiry: " "`). Responses that send a token also carry
/// `Authorization: Bearer <base64 JSON>`, as devise_token_auth ≥ 1.1 does.
pub fn auth_headers(client: &ClientId, uid: &str, token: Option<(&Token, Timestamp)>) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(6);
    let blank = HeaderValue::from_static(" ");
    let client_text = client.to_string();
    let (token_text, expiry_text) = match token {
        Some((token, expiry)) => (Some(token.to_text()), Some(expiry.unix_secs().to_string())),
        None => (None, None),
    };
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| blank.clone());
    headers.insert(
        ACCESS_TOKEN,
        token_text
            .as_ref()
            .map_or_else(|| blank.clone(), |t| value(t.as_str())),
    );
    headers.insert(TOKEN_TYPE, HeaderValue::from_static("Bearer"));
    headers.insert(CLIENT, value(&client_text));
    headers.insert(
        EXPIRY,
        expiry_text.as_deref().map_or_else(|| blank.clone(), value),
    );
    headers.insert(UID, value(uid));
    if let (Some(token_text), Some(expiry_text)) = (&token_text, &expiry_text) {
        let json = Zeroizing::new(
            serde_json::json!({
                "access-token": token_text.as_str(),
                "token-type": "Bearer",
                "client": client_text,
                "expiry": expiry_text,
                "uid": uid,
            })
            .to_string(),
        );
        let mut buf = Zeroizing::new([0u8; 2 * MAX_AUTHORIZATION_LEN]);
        if let Ok(encoded) = Base64::encode(json.as_bytes(), &mut buf[..]) {
            let bearer = Zeroizing::new(format!("Bearer {encoded}"));
            if let Ok(v) = HeaderValue::from_str(&bearer) {
                headers.insert(axum::http::header::AUTHORIZATION, v);
            }
        }
    }
    headers
}
