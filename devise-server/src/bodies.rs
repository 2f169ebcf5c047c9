//! Request bodies: the three the routes take, and how one is read from its `Content-Type`
//! and its bytes.
//!
//! A body is JSON, or `application/x-www-form-urlencoded` (jQuery's default, which j-toker
//! posts), chosen by `Content-Type` as Rails does. Any other `Content-Type`, or none, is
//! refused: a page of another origin may send `text/plain` or no type without a CORS
//! preflight, and when such bodies were read as JSON any site could post JSON sign-ups and
//! sign-ins here from its visitors' browsers without the CORS policy having a say.
//!
//! Everything here is a pure function of the `Content-Type` and the bytes: `app` reads the
//! body off the connection and turns a [`BodyError`] into its response, and the fuzz target
//! `devise_bodies` drives [`parse`] without a server.

use std::fmt;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use zeroize::Zeroizing;

/// Largest request body accepted: sign-up and password bodies are a few hundred bytes.
pub const BODY_LIMIT: usize = 16 * 1024;

/// How a request body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json`, or any `application/*+json`.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// Why a body was not read. Exhaustive: `app` answers each with its own status and message
/// (the `Display` text, which is what the client is told).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// The `Content-Type` is neither JSON nor a form, or there is none: 415.
    UnsupportedContentType,
    /// The body is longer than [`BODY_LIMIT`]: 413.
    TooLarge,
    /// The body does not parse in the encoding its `Content-Type` names: 400.
    Malformed(Encoding),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedContentType => f.write_str(
                "Unsupported Content-Type: send application/json or \
                 application/x-www-form-urlencoded.",
            ),
            Self::TooLarge => write!(f, "Request body too large (limit {BODY_LIMIT} bytes)."),
            Self::Malformed(Encoding::Json) => f.write_str("Malformed JSON in the request body."),
            Self::Malformed(Encoding::Form) => {
                f.write_str("Malformed form data in the request body.")
            }
        }
    }
}

impl std::error::Error for BodyError {}

impl Encoding {
    /// The encoding a `Content-Type` value names (case-insensitive, parameters such as
    /// `; charset=utf-8` allowed): JSON for `application/json` and any `application/*+json`,
    /// a form for `application/x-www-form-urlencoded`.
    ///
    /// # Errors
    ///
    /// [`BodyError::UnsupportedContentType`] for any other value, and for none.
    pub fn of(content_type: Option<&str>) -> Result<Self, BodyError> {
        let media = content_type
            .and_then(|value| value.split(';').next())
            .map(|media| media.trim().to_ascii_lowercase())
            .ok_or(BodyError::UnsupportedContentType)?;
        if media == "application/x-www-form-urlencoded" {
            return Ok(Self::Form);
        }
        let structured_json = media
            .strip_prefix("application/")
            .and_then(|subtype| subtype.strip_suffix("+json"))
            .is_some_and(|name| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            });
        if media == "application/json" || structured_json {
            Ok(Self::Json)
        } else {
            Err(BodyError::UnsupportedContentType)
        }
    }

    /// A body in this encoding, typed. A JSON body that is not an object counts as one with
    /// no fields (devise's "proper data" checks answer it).
    ///
    /// # Errors
    ///
    /// [`BodyError::TooLarge`] beyond [`BODY_LIMIT`] bytes, [`BodyError::Malformed`] when
    /// the bytes do not parse.
    pub fn parse<T: DeserializeOwned + Default>(self, bytes: &[u8]) -> Result<T, BodyError> {
        if bytes.len() > BODY_LIMIT {
            return Err(BodyError::TooLarge);
        }
        let malformed = BodyError::Malformed(self);
        match self {
            Self::Form => serde_urlencoded::from_bytes(bytes).map_err(|_| malformed),
            Self::Json => {
                let value: Value = serde_json::from_slice(bytes).map_err(|_| malformed)?;
                if !value.is_object() {
                    return Ok(T::default());
                }
                serde_json::from_value(value).map_err(|_| malformed)
            }
        }
    }
}

/// A request body, typed, from its `Content-Type` value and its bytes: the encoding is
/// checked first, then the length, then the bytes.
///
/// # Errors
///
/// As [`Encoding::of`], then as [`Encoding::parse`].
pub fn parse<T: DeserializeOwned + Default>(
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<T, BodyError> {
    Encoding::of(content_type)?.parse(bytes)
}

/// A text field of a body: a string is kept, any other JSON value counts as absent (as a
/// field devise would not permit).
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// A password field: [`text`], wiped when dropped.
fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Zeroizing<String>>, D::Error> {
    Ok(text(d)?.map(Zeroizing::new))
}

/// `POST /auth`.
#[derive(Default, Deserialize)]
pub struct SignUpBody {
    /// The new account's email.
    #[serde(default, deserialize_with = "text")]
    pub email: Option<String>,
    /// Its password.
    #[serde(default, deserialize_with = "secret")]
    pub password: Option<Zeroizing<String>>,
    /// The password again.
    #[serde(default, deserialize_with = "secret")]
    pub password_confirmation: Option<Zeroizing<String>>,
}

/// `POST /auth/sign_in`.
#[derive(Default, Deserialize)]
pub struct SignInBody {
    /// The account's email.
    #[serde(default, deserialize_with = "text")]
    pub email: Option<String>,
    /// Its password.
    #[serde(default, deserialize_with = "secret")]
    pub password: Option<Zeroizing<String>>,
}

/// `PUT /auth` and `PUT /auth/password`: devise's `account_update` parameters.
#[derive(Default, Deserialize)]
pub struct AccountBody {
    /// A new email.
    #[serde(default, deserialize_with = "text")]
    pub email: Option<String>,
    /// A new password.
    #[serde(default, deserialize_with = "secret")]
    pub password: Option<Zeroizing<String>>,
    /// The new password again.
    #[serde(default, deserialize_with = "secret")]
    pub password_confirmation: Option<Zeroizing<String>>,
    /// The password the account has now.
    #[serde(default, deserialize_with = "secret")]
    pub current_password: Option<Zeroizing<String>>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn the_content_type_names_the_encoding() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/vnd.api+json ",
        ] {
            assert_eq!(Encoding::of(Some(json)), Ok(Encoding::Json), "{json}");
        }
        assert_eq!(
            Encoding::of(Some("application/x-www-form-urlencoded;charset=UTF-8")),
            Ok(Encoding::Form)
        );
        for other in [
            None,
            Some(""),
            Some("text/plain"),
            Some("application/+json"),
            Some("application/a b+json"),
            Some("multipart/form-data; boundary=x"),
        ] {
            assert_eq!(
                Encoding::of(other),
                Err(BodyError::UnsupportedContentType),
                "{other:?}"
            );
        }
    }

    #[test]
    fn the_type_is_checked_before_the_length_and_the_length_before_the_bytes() {
        let long = vec![b' '; BODY_LIMIT + 1];
        assert_eq!(
            parse::<SignInBody>(Some("text/plain"), &long).err(),
            Some(BodyError::UnsupportedContentType)
        );
        assert_eq!(
            parse::<SignInBody>(Some("application/json"), &long).err(),
            Some(BodyError::TooLarge)
        );
        let mut padded = br#"{"email":"a@b"}"#.to_vec();
        padded.resize(BODY_LIMIT, b' ');
        let body: SignInBody = parse(Some("application/json"), &padded).unwrap();
        assert_eq!(body.email.as_deref(), Some("a@b"));
    }

    #[test]
    fn json_fields_are_strings_or_absent() {
        let body: AccountBody = parse(
            Some("application/json"),
            br#"{"email":"a@b","password":7,"current_password":"x","other":[]}"#,
        )
        .unwrap();
        assert_eq!(body.email.as_deref(), Some("a@b"));
        assert!(body.password.is_none());
        assert_eq!(
            body.current_password.as_deref().map(String::as_str),
            Some("x")
        );
        // Not an object: no fields.
        let body: SignUpBody = parse(Some("application/json"), b"[1]").unwrap();
        assert!(body.email.is_none() && body.password.is_none());
        assert_eq!(
            parse::<SignUpBody>(Some("application/json"), b"{").err(),
            Some(BodyError::Malformed(Encoding::Json))
        );
    }

    #[test]
    fn a_form_field_given_twice_is_malformed() {
        let form = Some("application/x-www-form-urlencoded");
        let body: SignInBody = parse(form, b"email=a%40b&password=p+w&x=1&x=2").unwrap();
        assert_eq!(body.email.as_deref(), Some("a@b"));
        assert_eq!(body.password.as_deref().map(String::as_str), Some("p w"));
        assert_eq!(
            parse::<SignInBody>(form, b"email=a&email=b").err(),
            Some(BodyError::Malformed(Encoding::Form))
        );
    }

    #[test]
    fn each_error_says_what_the_client_is_told() {
        assert_eq!(
            BodyError::UnsupportedContentType.to_string(),
            "Unsupported Content-Type: send application/json or \
             application/x-www-form-urlencoded."
        );
        assert_eq!(
            BodyError::TooLarge.to_string(),
            "Request body too large (limit 16384 bytes)."
        );
        assert_eq!(
            BodyError::Malformed(Encoding::Json).to_string(),
            "Malformed JSON in the request body."
        );
        assert_eq!(
            BodyError::Malformed(Encoding::Form).to_string(),
            "Malformed form data in the request body."
        );
    }
}
