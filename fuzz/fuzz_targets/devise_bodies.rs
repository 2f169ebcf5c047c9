//! The devise server's request bodies: arbitrary `Content-Type` values and bytes into each
//! of the three bodies its routes take. `devise_server::bodies::parse` never panics; a
//! `Content-Type` that is neither JSON nor a form is refused whatever the bytes, and one
//! that is keeps its encoding with any parameters or case; more than `BODY_LIMIT` bytes are
//! refused; any JSON object is read, its string fields verbatim and any other value as
//! absent; any JSON that is not an object reads as no fields; and a form reads each field
//! as its one value, refusing a field given twice.
//!
//! The seeds in `corpus/devise_bodies/` are inputs the fuzzer found, named after what
//! they reach.
#![no_main]

use arbitrary::Arbitrary;
use devise_server::bodies::{
    self, AccountBody, BODY_LIMIT, BodyError, Encoding, SignInBody, SignUpBody,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    content_type: ContentType<'a>,
    body: Body<'a>,
    /// Pads the body past the limit with spaces (which leave JSON valid).
    oversize: bool,
}

#[derive(Arbitrary, Debug)]
enum ContentType<'a> {
    None,
    Raw(&'a str),
    Json {
        suffix: Option<&'a str>,
        params: &'a str,
    },
    Form {
        params: &'a str,
    },
}

impl ContentType<'_> {
    fn text(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Raw(text) => Some((*text).to_owned()),
            Self::Json { suffix, params } => Some(match suffix {
                Some(name) => format!("application/{name}+json{params}"),
                None => format!("application/json{params}"),
            }),
            Self::Form { params } => Some(format!("application/x-www-form-urlencoded{params}")),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Body<'a> {
    Raw(&'a [u8]),
    Object(Vec<(Key<'a>, Field<'a>)>),
    Form(Vec<(Key<'a>, &'a str)>),
}

#[derive(Arbitrary, Debug)]
enum Key<'a> {
    Email,
    Password,
    PasswordConfirmation,
    CurrentPassword,
    Other(&'a str),
}

impl Key<'_> {
    fn name(&self) -> &str {
        match self {
            Self::Email => "email",
            Self::Password => "password",
            Self::PasswordConfirmation => "password_confirmation",
            Self::CurrentPassword => "current_password",
            Self::Other(name) => name,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Field<'a> {
    Text(&'a str),
    Number(f64),
    Bool(bool),
    Null,
    Array(Vec<&'a str>),
}

impl Field<'_> {
    fn value(&self) -> Value {
        match self {
            Self::Text(text) => Value::from(*text),
            Self::Number(n) => Value::from(*n),
            Self::Bool(b) => Value::Bool(*b),
            Self::Null => Value::Null,
            Self::Array(items) => items.iter().map(|s| Value::from(*s)).collect(),
        }
    }
}

impl Body<'_> {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Raw(bytes) => bytes.to_vec(),
            Self::Object(fields) => {
                // Written by hand so that a key may occur twice.
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{}", Value::from(k.name()), v.value()))
                    .collect();
                format!("{{{}}}", fields.join(",")).into_bytes()
            }
            Self::Form(pairs) => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (k, v) in pairs {
                    form.append_pair(k.name(), v);
                }
                form.finish().into_bytes()
            }
        }
    }
}

/// A body type's fields, by name, as read.
trait Fields: DeserializeOwned + Default {
    const NAMES: &'static [&'static str];
    fn fields(&self) -> Vec<Option<&str>>;
}

impl Fields for SignUpBody {
    const NAMES: &'static [&'static str] = &["email", "password", "password_confirmation"];
    fn fields(&self) -> Vec<Option<&str>> {
        vec![
            self.email.as_deref(),
            self.password.as_ref().map(|s| s.as_str()),
            self.password_confirmation.as_ref().map(|s| s.as_str()),
        ]
    }
}

impl Fields for SignInBody {
    const NAMES: &'static [&'static str] = &["email", "password"];
    fn fields(&self) -> Vec<Option<&str>> {
        vec![
            self.email.as_deref(),
            self.password.as_ref().map(|s| s.as_str()),
        ]
    }
}

impl Fields for AccountBody {
    const NAMES: &'static [&'static str] = &[
        "email",
        "password",
        "password_confirmation",
        "current_password",
    ];
    fn fields(&self) -> Vec<Option<&str>> {
        vec![
            self.email.as_deref(),
            self.password.as_ref().map(|s| s.as_str()),
            self.password_confirmation.as_ref().map(|s| s.as_str()),
            self.current_password.as_ref().map(|s| s.as_str()),
        ]
    }
}

/// What the fields of a body in `encoding` read as, by the module's documentation, or the
/// error.
fn expected<T: Fields>(encoding: Encoding, bytes: &[u8]) -> Result<Vec<Option<String>>, BodyError> {
    if bytes.len() > BODY_LIMIT {
        return Err(BodyError::TooLarge);
    }
    let malformed = BodyError::Malformed(encoding);
    match encoding {
        Encoding::Json => {
            let value: Value = serde_json::from_slice(bytes).map_err(|_| malformed)?;
            Ok(T::NAMES
                .iter()
                .map(|name| value.get(name).and_then(Value::as_str).map(str::to_owned))
                .collect())
        }
        Encoding::Form => {
            let pairs: Vec<_> = form_urlencoded::parse(bytes).collect();
            T::NAMES
                .iter()
                .map(|name| {
                    let mut values = pairs.iter().filter(|(k, _)| k == name);
                    let first = values.next().map(|(_, v)| v.clone().into_owned());
                    match values.next() {
                        Some(_) => Err(malformed),
                        None => Ok(first),
                    }
                })
                .collect()
        }
    }
}

fn check<T: Fields>(content_type: Option<&str>, bytes: &[u8]) {
    let got = bodies::parse::<T>(content_type, bytes);
    let encoding = match Encoding::of(content_type) {
        Ok(encoding) => encoding,
        Err(e) => {
            assert_eq!(e, BodyError::UnsupportedContentType);
            assert_eq!(got.err(), Some(e));
            return;
        }
    };
    // Parameters and case change nothing.
    let content_type = content_type.unwrap_or_default();
    assert_eq!(
        Encoding::of(Some(&format!(
            "{};charset=utf-8",
            content_type.to_ascii_uppercase()
        ))),
        Ok(encoding)
    );
    if let Some((media, _)) = content_type.split_once(';') {
        assert_eq!(Encoding::of(Some(media)), Ok(encoding));
    }
    let got = got.map(|body| {
        body.fields()
            .into_iter()
            .map(|f| f.map(str::to_owned))
            .collect::<Vec<_>>()
    });
    assert_eq!(got, expected::<T>(encoding, bytes), "{content_type}");
}

fuzz_target!(|input: Input| {
    let content_type = input.content_type.text();
    let mut bytes = input.body.bytes();
    if input.oversize {
        bytes.resize(BODY_LIMIT + 1, b' ');
    }
    let content_type = content_type.as_deref();
    check::<SignUpBody>(content_type, &bytes);
    check::<SignInBody>(content_type, &bytes);
    check::<AccountBody>(content_type, &bytes);
});
