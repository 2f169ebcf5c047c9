//! Known-answer vectors for `T(n)`, from `tests/vectors/tokens.txt`: computed with Python's
//! `hmac`, independently of this crate, so other implementations can check against them too.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not reach,
// and test arithmetic on known small values, which no clippy.toml setting covers.
#![allow(clippy::unwrap_used, clippy::panic, clippy::arithmetic_side_effects)]

use rotauth::{Config, Decision, KeyId, Keyring, Request, Rotator, Session, Timestamp, Token};

const VECTORS: &str = include_str!("vectors/tokens.txt");

struct Vector {
    key: Vec<u8>,
    key_id: u8,
    client_id: [u8; 16],
    seed: [u8; 16],
    generation: u64,
    token: &'static str,
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors() -> Vec<Vector> {
    VECTORS
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&'static str> = line.split(' ').collect();
            let [key, key_id, client_id, seed, generation, token] = fields[..] else {
                panic!("bad vector line: {line}");
            };
            Vector {
                key: hex(key),
                key_id: key_id.parse().unwrap(),
                client_id: hex(client_id).try_into().unwrap(),
                seed: hex(seed).try_into().unwrap(),
                generation: generation.parse().unwrap(),
                token,
            }
        })
        .collect()
}

/// A stored session with the vector's client id, seed and generation, built through the
/// documented record encoding (`Session::encode`'s table).
fn session(v: &Vector, rotated_at: u64) -> Session {
    let mut record = vec![Session::FORMAT];
    record.extend_from_slice(&v.client_id);
    record.extend_from_slice(&v.seed);
    record.push(v.key_id);
    record.extend_from_slice(&v.generation.to_be_bytes());
    record.extend_from_slice(&rotated_at.to_be_bytes()); // created_at
    record.extend_from_slice(&rotated_at.to_be_bytes()); // rotated_at
    record.extend_from_slice(&u64::MAX.to_be_bytes()); // expires_at
    record.push(0); // flags
    record.extend_from_slice(&0u64.to_be_bytes()); // version
    Session::decode(&record).unwrap()
}

#[test]
fn there_are_vectors_covering_the_edges() {
    let all = vectors();
    assert!(all.len() >= 7);
    assert!(all.iter().any(|v| v.generation == 0));
    assert!(all.iter().any(|v| v.generation == u64::MAX));
    assert!(
        all.iter().any(|v| v.key.len() > 64),
        "a key that HMAC hashes first"
    );
    assert!(all.iter().any(|v| v.key_id == 255));
}

#[test]
fn derived_tokens_match_the_vectors() {
    for v in vectors() {
        let rotator = Rotator::new(
            Keyring::new(KeyId(v.key_id), &v.key).unwrap(),
            Config::default(),
        );
        let token = rotator.current_token(&session(&v, 0)).unwrap();
        assert_eq!(
            token.to_text().as_str(),
            v.token,
            "generation {}",
            v.generation
        );
        assert_eq!(token.key_id(), KeyId(v.key_id));
        assert_eq!(token.generation(), v.generation);
    }
}

#[test]
fn vector_tokens_are_accepted_and_a_changed_seed_rejects_them() {
    for v in vectors() {
        let rotator = Rotator::new(
            Keyring::new(KeyId(v.key_id), &v.key).unwrap(),
            Config::default(),
        );
        let now = Timestamp::from_unix_millis(1_000);
        let stored = session(&v, 1_000);
        let decision = rotator.decide(&stored, Request::new(v.token, now));
        assert_eq!(decision, Decision::BatchReuse { updated: None });

        let mut other = v;
        other.seed[0] ^= 1;
        let decision = rotator.decide(&session(&other, 1_000), Request::new(other.token, now));
        assert_eq!(
            decision.reject_reason(),
            Some(rotauth::RejectReason::Forged)
        );
    }
}

#[test]
fn vector_text_parses_to_its_bytes() {
    for v in vectors() {
        let token = Token::from_text(v.token).unwrap();
        assert_eq!(token.as_bytes()[0], v.key_id);
        assert_eq!(&token.as_bytes()[1..9], &v.generation.to_be_bytes());
        assert_eq!(Token::from_bytes(token.as_bytes()).unwrap(), token);
    }
}
