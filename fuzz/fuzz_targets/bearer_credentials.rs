//! The plain protocol's credentials read from a request: arbitrary `Authorization` headers
//! (some shaped as `Rotauth <client id>.<token>` with blanks and case varied) and query
//! strings, built into `http` request parts (inputs `http` refuses to build are skipped).
//! `BearerProtocol::credentials` never panics and agrees with a plain restatement of its
//! documentation: no `Authorization` or another scheme is `MissingCredentials`, anything
//! else not in the shape (a blank beside the dot included) is `MalformedCredentials`, and
//! no other refusal; accepted
//! credentials carry no uid, a client id that prints as the text it was parsed from, and a
//! token kept trimmed. What `BearerProtocol::authorization` writes reads back as the same
//! credentials.
//!
//! The seeds in `corpus/bearer_credentials/` are inputs the fuzzer found, named after what
//! they reach.
#![no_main]

use arbitrary::Arbitrary;
use http::request::Parts;
use libfuzzer_sys::fuzz_target;
use rotauth::{ClientId, TOKEN_LEN, Token};
use rotauth_axum::{BearerProtocol, Protocol, Refusal};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    authorization: Option<Authorization<'a>>,
    /// A second `Authorization` header, after the first.
    second: Option<&'a [u8]>,
    query: Option<&'a str>,
    /// A client id and token for the round trip through `BearerProtocol::authorization`.
    client: [u8; 16],
    token: [u8; TOKEN_LEN],
}

#[derive(Arbitrary, Debug)]
enum Authorization<'a> {
    Raw(&'a [u8]),
    Shaped {
        scheme: Scheme<'a>,
        /// Blanks between the scheme and the client id, around the dot, and at the end.
        blanks: [u8; 4],
        client: Client<'a>,
        dot: bool,
        token: &'a str,
    },
}

#[derive(Arbitrary, Debug)]
enum Scheme<'a> {
    Rotauth,
    Lower,
    Upper,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Client<'a> {
    Valid([u8; 16]),
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

impl Authorization<'_> {
    fn bytes(&self) -> Vec<u8> {
        let (scheme, blanks_at, client, dot, token) = match self {
            Self::Raw(bytes) => return bytes.to_vec(),
            Self::Shaped {
                scheme,
                blanks,
                client,
                dot,
                token,
            } => (scheme, blanks, client, dot, token),
        };
        let scheme = match scheme {
            Scheme::Rotauth => "Rotauth",
            Scheme::Lower => "rotauth",
            Scheme::Upper => "ROTAUTH",
            Scheme::Other(s) => s,
        };
        let client = match client {
            Client::Valid(id) => ClientId::from_bytes(*id).to_string(),
            Client::Raw(text) => (*text).to_owned(),
        };
        let [before, around, after, end] = blanks_at.map(blanks);
        let dot = if *dot { "." } else { "" };
        format!("{scheme} {before}{client}{around}{dot}{after}{token}{end}").into_bytes()
    }
}

fn parts(authorization: &[Vec<u8>], query: Option<&str>) -> Option<Parts> {
    let uri = match query {
        Some(query) => format!("/me?{query}"),
        None => "/me".to_owned(),
    };
    let mut request = http::Request::builder().uri(uri);
    for value in authorization {
        request = request.header(http::header::AUTHORIZATION, value.as_slice());
    }
    Some(request.body(()).ok()?.into_parts().0)
}

/// What the documentation promises: (client id text, token), or the refusal.
fn expected(parts: &Parts) -> Result<(String, String), Refusal> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(Refusal::MissingCredentials)?;
    let (scheme, rest) = value.split_once(' ').ok_or(Refusal::MalformedCredentials)?;
    if !scheme.eq_ignore_ascii_case("rotauth") {
        return Err(Refusal::MissingCredentials);
    }
    let (client, token) = rest
        .trim()
        .split_once('.')
        .ok_or(Refusal::MalformedCredentials)?;
    // No blank beside the dot: a token68 has none.
    if client.parse::<ClientId>().is_err() || token.trim() != token {
        return Err(Refusal::MalformedCredentials);
    }
    Ok((client.to_owned(), token.to_owned()))
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

fuzz_target!(|input: Input| {
    let protocol = BearerProtocol::new();
    let headers: Vec<Vec<u8>> = input
        .authorization
        .iter()
        .map(Authorization::bytes)
        .chain(input.second.map(<[u8]>::to_vec))
        .collect();
    if let Some(parts) = parts(&headers, input.query) {
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
        assert_eq!(protocol.force_rotation(&parts), unbatch(&parts));
    }

    // What a client sends, from the credentials it was given, reads back as them.
    let client_id = ClientId::from_bytes(input.client);
    let Ok(token) = Token::from_bytes(&input.token) else {
        return;
    };
    let value = BearerProtocol::authorization(&client_id, &token);
    let parts = parts(&[value.as_bytes().to_vec()], None).expect("a sendable header");
    let credentials = protocol.credentials(&parts).expect("credentials read back");
    assert_eq!(credentials.client_id, client_id);
    assert_eq!(credentials.token.as_str(), token.to_text().as_str());
});
