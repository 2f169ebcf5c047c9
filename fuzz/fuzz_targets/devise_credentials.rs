//! devise_token_auth's credentials read from a request: arbitrary `access-token`,
//! `client`, `uid`, `token-type` and `expiry` headers, an `Authorization` header (raw, or
//! `Bearer` and the base64 of a JSON object in any of the four alphabets) and a query
//! string, built into `http` request parts (inputs `http` refuses to build are skipped).
//! `DeviseProtocol::credentials` never panics and agrees with a plain restatement
//! of its documentation: each field is the first non-blank of its header, its key in the
//! bearer JSON and its query parameter, trimmed; a missing field is `MissingCredentials`, a
//! client id that does not parse `MalformedCredentials`, and no other refusal. An accepted
//! client id prints as the text it was parsed from. `force_rotation` is the documented
//! `unbatch` rule.
//!
//! The seeds in `corpus/devise_credentials/` are inputs the fuzzer found, named after what
//! they reach.
#![no_main]

use arbitrary::Arbitrary;
use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};
use http::request::Parts;
use libfuzzer_sys::fuzz_target;
use rotauth::ClientId;
use rotauth_axum::{DeviseProtocol, Protocol, Refusal};
use serde_json::{Map, Value};

/// The protocol's bound on the `Authorization` value it decodes (private to it): a longer
/// bearer is not read.
const MAX_AUTHORIZATION_LEN: usize = 2048;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    access_token: Option<Text<'a>>,
    client: Option<Text<'a>>,
    uid: Option<Text<'a>>,
    token_type: Option<Text<'a>>,
    expiry: Option<Text<'a>>,
    authorization: Option<Authorization<'a>>,
    query: Option<Query<'a>>,
    /// Further headers, appended after the others (a second `uid`, say).
    extra: Vec<(&'a str, Text<'a>)>,
}

/// A header value or a text inside the bearer JSON or the query.
#[derive(Arbitrary, Debug)]
enum Text<'a> {
    Raw(&'a [u8]),
    /// A well-formed client id, with blanks around it.
    Client {
        id: [u8; 16],
        before: u8,
        after: u8,
    },
}

impl Text<'_> {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Raw(bytes) => bytes.to_vec(),
            Self::Client { id, before, after } => {
                let mut text = blanks(*before);
                text.extend_from_slice(ClientId::from_bytes(*id).to_string().as_bytes());
                text.extend_from_slice(&blanks(*after));
                text
            }
        }
    }

    fn string(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

/// Up to three spaces or tabs.
fn blanks(pattern: u8) -> Vec<u8> {
    (0..pattern % 4)
        .map(|i| {
            if pattern >> (i + 2) & 1 == 0 {
                b' '
            } else {
                b'\t'
            }
        })
        .collect()
}

#[derive(Arbitrary, Debug)]
enum Authorization<'a> {
    Raw(&'a [u8]),
    Bearer {
        scheme: Scheme<'a>,
        alphabet: Alphabet,
        json: Json<'a>,
        spaces: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Scheme<'a> {
    Bearer,
    Lower,
    Upper,
    Other(&'a str),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Alphabet {
    Standard,
    StandardUnpadded,
    Url,
    UrlUnpadded,
}

#[derive(Arbitrary, Debug)]
enum Json<'a> {
    Raw(&'a [u8]),
    Object(Vec<(Key<'a>, JsonValue<'a>)>),
    Other(JsonValue<'a>),
}

#[derive(Arbitrary, Debug)]
enum Key<'a> {
    AccessToken,
    Client,
    Uid,
    TokenType,
    Expiry,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum JsonValue<'a> {
    Text(Text<'a>),
    Number(i64),
    Bool(bool),
    Null,
    Array(Vec<&'a str>),
}

#[derive(Arbitrary, Debug)]
enum Query<'a> {
    Raw(&'a str),
    /// Encoded as a form is.
    Pairs(Vec<(QueryKey<'a>, QueryValue<'a>)>),
}

#[derive(Arbitrary, Debug)]
enum QueryKey<'a> {
    AccessToken,
    Client,
    Uid,
    Unbatch,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum QueryValue<'a> {
    Text(Text<'a>),
    False,
    Zero,
}

impl Key<'_> {
    fn name(&self) -> String {
        match self {
            Self::AccessToken => "access-token".into(),
            Self::Client => "client".into(),
            Self::Uid => "uid".into(),
            Self::TokenType => "token-type".into(),
            Self::Expiry => "expiry".into(),
            Self::Other(name) => (*name).into(),
        }
    }
}

impl JsonValue<'_> {
    fn value(&self) -> Value {
        match self {
            Self::Text(text) => Value::String(text.string()),
            Self::Number(n) => Value::from(*n),
            Self::Bool(b) => Value::Bool(*b),
            Self::Null => Value::Null,
            Self::Array(items) => items.iter().map(|s| Value::from(*s)).collect(),
        }
    }
}

impl Authorization<'_> {
    fn bytes(&self) -> Vec<u8> {
        let (scheme, alphabet, json, spaces) = match self {
            Self::Raw(bytes) => return bytes.to_vec(),
            Self::Bearer {
                scheme,
                alphabet,
                json,
                spaces,
            } => (scheme, alphabet, json, spaces),
        };
        let json = match json {
            Json::Raw(bytes) => bytes.to_vec(),
            Json::Object(fields) => {
                let object: Map<String, Value> =
                    fields.iter().map(|(k, v)| (k.name(), v.value())).collect();
                Value::Object(object).to_string().into_bytes()
            }
            Json::Other(value) => value.value().to_string().into_bytes(),
        };
        let encoded = match alphabet {
            Alphabet::Standard => Base64::encode_string(&json),
            Alphabet::StandardUnpadded => Base64Unpadded::encode_string(&json),
            Alphabet::Url => Base64Url::encode_string(&json),
            Alphabet::UrlUnpadded => Base64UrlUnpadded::encode_string(&json),
        };
        let scheme = match scheme {
            Scheme::Bearer => "Bearer",
            Scheme::Lower => "bearer",
            Scheme::Upper => "BEARER",
            Scheme::Other(s) => s,
        };
        let mut value = scheme.as_bytes().to_vec();
        value.extend(std::iter::repeat_n(b' ', usize::from(spaces % 3) + 1));
        value.extend_from_slice(encoded.as_bytes());
        value
    }
}

impl Query<'_> {
    fn text(&self) -> String {
        match self {
            Self::Raw(text) => (*text).to_owned(),
            Self::Pairs(pairs) => {
                let mut query = form_urlencoded::Serializer::new(String::new());
                for (key, value) in pairs {
                    let key = match key {
                        QueryKey::AccessToken => "access-token",
                        QueryKey::Client => "client",
                        QueryKey::Uid => "uid",
                        QueryKey::Unbatch => "unbatch",
                        QueryKey::Other(name) => name,
                    };
                    let value = match value {
                        QueryValue::Text(text) => text.string(),
                        QueryValue::False => "false".to_owned(),
                        QueryValue::Zero => "0".to_owned(),
                    };
                    query.append_pair(key, &value);
                }
                query.finish()
            }
        }
    }
}

/// The request, or `None` when `http` refuses a header or the URI.
fn parts(input: &Input) -> Option<Parts> {
    let uri = match &input.query {
        Some(query) => format!("/auth/validate_token?{}", query.text()),
        None => "/auth/validate_token".to_owned(),
    };
    let mut request = http::Request::builder().uri(uri);
    let fields = [
        ("access-token", &input.access_token),
        ("client", &input.client),
        ("uid", &input.uid),
        ("token-type", &input.token_type),
        ("expiry", &input.expiry),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            request = request.header(name, value.bytes());
        }
    }
    if let Some(authorization) = &input.authorization {
        request = request.header(http::header::AUTHORIZATION, authorization.bytes());
    }
    for (name, value) in &input.extra {
        request = request.header(*name, value.bytes());
    }
    Some(request.body(()).ok()?.into_parts().0)
}

/// A header's text: the first value, trimmed; absent when missing, blank or not visible
/// ASCII.
fn header(parts: &Parts, name: &str) -> Option<String> {
    let text = parts.headers.get(name)?.to_str().ok()?.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The JSON object of `Authorization: Bearer <base64>`, in any of the four base64 kinds.
fn bearer(parts: &Parts) -> Option<Map<String, Value>> {
    let value = header(parts, "authorization")?;
    let (scheme, encoded) = value.split_once(' ')?;
    let encoded = encoded.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || encoded.len() > MAX_AUTHORIZATION_LEN {
        return None;
    }
    let json = Base64::decode_vec(encoded)
        .or_else(|_| Base64Unpadded::decode_vec(encoded))
        .or_else(|_| Base64Url::decode_vec(encoded))
        .or_else(|_| Base64UrlUnpadded::decode_vec(encoded))
        .ok()?;
    match serde_json::from_slice(&json).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The first query parameter named `key`, decoded and trimmed; absent when blank.
fn query(parts: &Parts, key: &str) -> Option<String> {
    let query = parts.uri.query()?;
    let (_, value) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key)?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// A field: its header, else its key in the bearer JSON, else its query parameter.
fn field(parts: &Parts, bearer: Option<&Map<String, Value>>, name: &str) -> Option<String> {
    header(parts, name)
        .or_else(|| {
            let text = bearer?.get(name)?.as_str()?.trim();
            (!text.is_empty()).then(|| text.to_owned())
        })
        .or_else(|| query(parts, name))
}

/// What the documentation promises: (token, client id text, uid), or the refusal.
fn expected(parts: &Parts) -> Result<(String, String, String), Refusal> {
    let bearer = bearer(parts);
    let field = |name| field(parts, bearer.as_ref(), name).ok_or(Refusal::MissingCredentials);
    let token = field("access-token")?;
    let client = field("client")?;
    let uid = field("uid")?;
    if client.parse::<ClientId>().is_err() {
        return Err(Refusal::MalformedCredentials);
    }
    Ok((token, client, uid))
}

/// `unbatch` with any value but `false` or `0`.
fn unbatch(parts: &Parts) -> bool {
    parts.uri.query().is_some_and(|query| {
        query.split('&').any(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            key == "unbatch" && value != "false" && value != "0"
        })
    })
}

fn is_trimmed(text: &str) -> bool {
    !text.is_empty() && text.trim() == text
}

fuzz_target!(|input: Input| {
    let Some(parts) = parts(&input) else {
        return;
    };
    let protocol = DeviseProtocol::new();
    let got = protocol.credentials(&parts);
    match (&got, expected(&parts)) {
        (Ok(credentials), Ok((token, client, uid))) => {
            assert_eq!(credentials.token.as_str(), token);
            assert_eq!(credentials.client_id.to_string(), client);
            assert_eq!(credentials.uid.as_deref(), Some(uid.as_str()));
            assert!(is_trimmed(&credentials.token));
            assert!(credentials.uid.as_deref().is_some_and(is_trimmed));
        }
        (Err(refusal), Err(expected)) => assert_eq!(*refusal, expected),
        (got, expected) => panic!("read {got:?}, documented {expected:?}"),
    }
    assert_eq!(protocol.force_rotation(&parts), unbatch(&parts));
});
