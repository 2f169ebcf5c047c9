//! The cookie protocol's credentials read from a request: arbitrary `Cookie` headers, one
//! or several, some made of pairs shaped as `__Host-rotauth=<client id>.<token>` among
//! others, with blanks, duplicates and the name's case varied, built into `http` request
//! parts (inputs `http` refuses to build are skipped). `CookieProtocol::credentials`
//! never panics and agrees with a plain restatement of its documentation: every pair of
//! every `Cookie` header split at its first `=`, name and value trimmed of blanks, the
//! name compared exactly; two values of the name that differ are `MalformedCredentials`,
//! none or an empty one `MissingCredentials`, a value not `<client id>.<token>` (a blank
//! after the dot included) `MalformedCredentials`, and no other refusal; accepted
//! credentials carry no uid, a client id that prints as the text it was parsed from, and a
//! trimmed token. What `CookieProtocol::cookie_header` writes, and the `name=value` of the
//! `Set-Cookie` a rotation writes, read back as the same credentials.
//!
//! The seeds in `corpus/cookie_credentials/` are inputs the fuzzer found, named after what
//! they reach.
#![no_main]

use arbitrary::Arbitrary;
use http::request::Parts;
use libfuzzer_sys::fuzz_target;
use rotauth::exchange::Reply;
use rotauth::{ClientId, TOKEN_LEN, Timestamp, Token};
use rotauth_axum::{Authenticated, CookieProtocol, Protocol, Refusal};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    headers: Vec<Header<'a>>,
    /// A client id and token for the round trips.
    client: [u8; 16],
    token: [u8; TOKEN_LEN],
    expires_at: u64,
}

#[derive(Arbitrary, Debug)]
enum Header<'a> {
    Raw(&'a [u8]),
    Pairs(Vec<Pair<'a>>),
}

#[derive(Arbitrary, Debug)]
struct Pair<'a> {
    name: Name<'a>,
    /// Blanks before the name, around the `=`, and after the value.
    blanks: [u8; 4],
    value: Value<'a>,
    /// Whether the pair has no `=` at all.
    bare: bool,
}

#[derive(Arbitrary, Debug)]
enum Name<'a> {
    Ours,
    Lower,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Value<'a> {
    Valid([u8; 16], &'a str),
    Raw(&'a str),
}

/// Up to three spaces or tabs.
fn blanks(pattern: u8) -> String {
    (0..pattern % 4)
        .map(|i| {
            if pattern >> (i + 2) & 1 == 0 {
                ' '
            } else {
                '\t'
            }
        })
        .collect()
}

impl Header<'_> {
    fn bytes(&self) -> Vec<u8> {
        let pairs = match self {
            Self::Raw(bytes) => return bytes.to_vec(),
            Self::Pairs(pairs) => pairs,
        };
        let pairs: Vec<String> = pairs
            .iter()
            .map(|pair| {
                let name = match pair.name {
                    Name::Ours => CookieProtocol::NAME,
                    Name::Lower => "__host-rotauth",
                    Name::Other(name) => name,
                };
                let value = match pair.value {
                    Value::Valid(id, token) => format!("{}.{token}", ClientId::from_bytes(id)),
                    Value::Raw(text) => text.to_owned(),
                };
                let [before, left, right, end] = pair.blanks.map(blanks);
                let eq = if pair.bare { "" } else { "=" };
                format!("{before}{name}{left}{eq}{right}{value}{end}")
            })
            .collect();
        pairs.join(";").into_bytes()
    }
}

fn parts(cookies: &[Vec<u8>]) -> Option<Parts> {
    let mut request = http::Request::builder().uri("/me");
    for value in cookies {
        request = request.header(http::header::COOKIE, value.as_slice());
    }
    Some(request.body(()).ok()?.into_parts().0)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().take_while(|b| is_blank(b)).count();
    let rest = &bytes[start..];
    let end = rest.len() - rest.iter().rev().take_while(|b| is_blank(b)).count();
    &rest[..end]
}

/// What the documentation promises: (client id text, token), or the refusal.
fn expected(parts: &Parts) -> Result<(String, String), Refusal> {
    let mut values: Vec<&[u8]> = Vec::new();
    for header in parts.headers.get_all(http::header::COOKIE) {
        for pair in header.as_bytes().split(|&b| b == b';') {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if trim(&pair[..eq]) == CookieProtocol::NAME.as_bytes() {
                values.push(trim(&pair[eq + 1..]));
            }
        }
    }
    let Some(first) = values.first() else {
        return Err(Refusal::MissingCredentials);
    };
    if values.iter().any(|value| value != first) {
        return Err(Refusal::MalformedCredentials);
    }
    if first.is_empty() {
        return Err(Refusal::MissingCredentials);
    }
    let value = std::str::from_utf8(first).map_err(|_| Refusal::MalformedCredentials)?;
    let (client, token) = value.split_once('.').ok_or(Refusal::MalformedCredentials)?;
    if client.parse::<ClientId>().is_err() || token.trim() != token {
        return Err(Refusal::MalformedCredentials);
    }
    Ok((client.to_owned(), token.to_owned()))
}

fuzz_target!(|input: Input| {
    let protocol = CookieProtocol::new();
    let headers: Vec<Vec<u8>> = input.headers.iter().map(Header::bytes).collect();
    if let Some(parts) = parts(&headers) {
        match (protocol.credentials(&parts), expected(&parts)) {
            (Ok(credentials), Ok((client, token))) => {
                assert_eq!(credentials.client_id.to_string(), client);
                assert_eq!(credentials.token.as_str(), token);
                assert_eq!(credentials.token.trim(), credentials.token.as_str());
                assert_eq!(credentials.uid, None);
            }
            (Err(refusal), Err(expected)) => assert_eq!(refusal, expected),
            (got, expected) => panic!("read {got:?}, documented {expected:?}"),
        }
    }

    // What a browser sends back, from what it was given, reads back as it.
    let client_id = ClientId::from_bytes(input.client);
    let Ok(token) = Token::from_bytes(&input.token) else {
        return;
    };
    let value = protocol.cookie_header(&client_id, &token);
    let sent = parts(&[value.as_bytes().to_vec()]).expect("a sendable header");
    let credentials = protocol.credentials(&sent).expect("credentials read back");
    assert_eq!(credentials.client_id, client_id);
    assert_eq!(credentials.token.as_str(), token.to_text().as_str());

    let who = Authenticated {
        client_id,
        user_id: "u".to_owned(),
        uid: "u".to_owned(),
    };
    let reply = Reply::NewToken {
        token,
        expires_at: Timestamp::from_unix_millis(input.expires_at),
    };
    let mut written = http::HeaderMap::new();
    protocol.write_reply(&who, &reply, &mut written);
    let set = written[http::header::SET_COOKIE]
        .to_str()
        .expect("visible ASCII");
    let cookie = set.split(';').next().expect("a pair");
    let sent = parts(&[cookie.as_bytes().to_vec()]).expect("a sendable header");
    assert_eq!(
        protocol
            .credentials(&sent)
            .expect("the set cookie reads back")
            .client_id,
        client_id
    );
});
