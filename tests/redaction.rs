//! No secret in any output: every public type that can hold a token, a seed or a key is
//! formatted with `{:?}` (and `{}` where it implements `Display`), and the text is searched
//! for the secrets in every form a formatter could leak them: the token's text, and any four
//! consecutive bytes of a key, a seed or a MAC as decimal or hex.

// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not reach,
// and test arithmetic on known small values, which no clippy.toml setting covers.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

mod common;

use common::{Host, W};
use rotauth::{
    Config, Decision, KeyId, Keyring, Mode, Presented, ReplayPolicy, Request, Rotator, Session,
    Sessions, Token,
};

/// A key whose bytes are all different, so that a window of four never matches by chance.
const KEY: [u8; 32] = [
    0x9e, 0x37, 0x79, 0xb9, 0x7f, 0x4a, 0x7c, 0x15, 0xf3, 0x9c, 0xc0, 0x60, 0x5c, 0xed, 0xc8, 0x34,
    0x10, 0x82, 0x27, 0x6b, 0xf3, 0xa2, 0x72, 0x37, 0x0d, 0xa1, 0xe4, 0x5b, 0x91, 0x6e, 0x2c, 0x08,
];

/// Where the seed sits in `Session::encode` (after format and client id).
const SEED: core::ops::Range<usize> = 17..33;

/// Every rendering of `secret` a formatter could produce, in windows of four bytes:
/// `[a, b, c, d]`-style decimal, and hex in both cases with and without separators.
fn renderings(secret: &[u8]) -> Vec<String> {
    secret
        .windows(4)
        .flat_map(|w| {
            [
                format!("{}, {}, {}, {}", w[0], w[1], w[2], w[3]),
                format!("{:02x}{:02x}{:02x}{:02x}", w[0], w[1], w[2], w[3]),
                format!("{:02X}{:02X}{:02X}{:02X}", w[0], w[1], w[2], w[3]),
                format!("0x{:02x}, 0x{:02x}", w[0], w[1]),
            ]
        })
        .collect()
}

struct Secrets {
    needles: Vec<String>,
}

impl Secrets {
    fn new() -> Self {
        Self {
            needles: renderings(&KEY),
        }
    }

    fn token(&mut self, token: &Token) {
        // The MAC: bytes 9..41. The key id and generation in front are public.
        self.needles.extend(renderings(&token.as_bytes()[9..]));
        // Any 12 characters of the text that cover MAC bits.
        let text = token.to_text();
        let text = text.as_str();
        for start in 12..=text.len() - 12 {
            self.needles.push(text[start..start + 12].to_owned());
        }
    }

    fn session(&mut self, session: &Session) {
        self.needles
            .extend(renderings(&session.encode().as_bytes()[SEED]));
    }

    fn assert_hidden(&self, what: &str, shown: &str) {
        assert!(!shown.is_empty(), "{what} printed nothing");
        for needle in &self.needles {
            assert!(
                !shown.contains(needle.as_str()),
                "{what} shows a secret ({needle:?}) in {shown:?}"
            );
        }
    }
}

#[test]
fn no_public_type_prints_a_token_a_seed_or_a_key() {
    let keyring = Keyring::new(KeyId(1), &KEY).unwrap();
    let config = Config::builder().mode(Mode::Recover).build().unwrap();
    let mut host = Host::new(config);
    host.rotator = Rotator::new(keyring, config);
    let mut secrets = Secrets::new();

    let (session, t0) = host.sign_in();
    secrets.session(&session);
    secrets.token(&t0);
    host.advance(W);
    let rotate = host.present(&session, &t0);
    let (next, t1) = match &rotate {
        Decision::Rotate { session, token } => (session.clone(), token.clone()),
        other => panic!("expected a rotation, got {other:?}"),
    };
    secrets.token(&t1);
    host.advance(W);
    let reissue = host.present(&next, &t0);
    assert!(matches!(reissue, Decision::Reissue { .. }));
    let batch = host.present(&next, &t1);
    let revoking = Rotator::new(
        Keyring::new(KeyId(1), &KEY).unwrap(),
        Config::builder()
            .replay_policy(ReplayPolicy::RevokeSession)
            .build()
            .unwrap(),
    );
    let revoke = revoking.decide(
        &next,
        Request::new(
            &t0,
            host.now.saturating_add(std::time::Duration::from_millis(W)),
        ),
    );
    assert!(matches!(revoke, Decision::Revoke { .. }));

    let text = t1.to_text();
    let bytes = *t1.as_bytes();
    let mut container: Sessions<4> = Sessions::new();
    let signed_in = container.sign_in(&host.rotator, &mut host.rng, host.now);
    secrets.token(&signed_in.token);
    for session in container.iter() {
        secrets.session(session);
    }

    let shown = [
        ("Token", format!("{t1:?}")),
        ("TokenText", format!("{text:?}")),
        (
            "Presented::Text",
            format!("{:?}", Presented::from(text.as_str())),
        ),
        (
            "Presented::Bytes",
            format!("{:?}", Presented::from(&bytes[..])),
        ),
        ("Presented::Token", format!("{:?}", Presented::from(&t1))),
        (
            "Request (text)",
            format!("{:?}", Request::new(text.as_str(), host.now)),
        ),
        (
            "Request (bytes, forced)",
            format!("{:?}", Request::new(&bytes[..], host.now).force_rotation()),
        ),
        (
            "Request (token)",
            format!("{:?}", Request::new(&t1, host.now)),
        ),
        ("Session", format!("{next:?}")),
        ("EncodedSession", format!("{:?}", next.encode())),
        ("Decision::Rotate", format!("{rotate:?}")),
        ("Decision::Reissue", format!("{reissue:?}")),
        ("Decision::BatchReuse", format!("{batch:?}")),
        ("Decision::Revoke", format!("{revoke:?}")),
        (
            "Decision (Display of its reason)",
            format!("{}", revoke.reject_reason().unwrap()),
        ),
        ("Keyring", format!("{:?}", host.rotator.keyring())),
        ("Rotator", format!("{:?}", host.rotator)),
        ("Sessions", format!("{container:?}")),
        ("SignedIn", format!("{signed_in:?}")),
        ("ClientId (Display)", format!("{}", next.client_id())),
    ];
    for (what, text) in &shown {
        secrets.assert_hidden(what, text);
    }

    // The check itself can fail: the secrets are findable where they are meant to be.
    let leaked = format!(
        "{:?} {}",
        &next.encode().as_bytes()[..],
        t1.to_text().as_str()
    );
    assert!(
        secrets
            .needles
            .iter()
            .filter(|n| leaked.contains(n.as_str()))
            .count()
            >= 2
    );
}
