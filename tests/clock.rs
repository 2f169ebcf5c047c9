//! Time as hosts really supply it: stepped back, at zero, at the end of `u64`.

mod common;

use common::{Host, W, keyring, rotated};
use rotauth::{Config, Decision, RejectReason, Request, Rotator, Timestamp};

#[test]
fn clock_going_backwards_counts_as_inside_the_window() {
    let mut host = Host::default_config();
    let (session, tokens) = host.rotated(3);
    host.now = Timestamp::from_unix_millis(host.now.unix_millis() - 3_600_000);
    for token in &tokens[1..] {
        assert_eq!(
            host.present(&session, token),
            Decision::BatchReuse { updated: None }
        );
    }
    assert_eq!(
        host.present(&session, &tokens[0]).reject_reason(),
        Some(RejectReason::Replayed { behind: 3 })
    );
}

#[test]
fn forced_rotation_with_a_clock_behind_never_moves_the_window_back() {
    let mut host = Host::default_config();
    let (session, tokens) = host.rotated(1);
    host.now = Timestamp::from_unix_millis(host.now.unix_millis() - 60_000);
    let (next, token) = rotated(host.present_unbatched(&session, &tokens[1]));
    assert_eq!(next.rotated_at(), session.rotated_at());
    assert!(next.created_at() <= next.rotated_at() && next.rotated_at() <= next.expires_at());
    // The record stays decodable: its invariants hold.
    assert_eq!(rotauth::Session::decode(&next.encode()).unwrap(), next);
    assert!(host.present(&next, &token).is_accepted());
}

#[test]
fn sign_in_and_decide_at_time_zero() {
    let rotator = Rotator::new(keyring(), Config::default());
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let (session, token) = rotator.sign_in(&mut rng, Timestamp::EPOCH);
    assert_eq!(session.created_at(), Timestamp::EPOCH);
    let text = token.to_text();
    let decision = rotator.decide(&session, Request::new(text.as_str(), Timestamp::EPOCH));
    assert_eq!(decision, Decision::BatchReuse { updated: None });
    let later = Timestamp::from_unix_millis(W);
    let (next, _) = rotated(rotator.decide(&session, Request::new(text.as_str(), later)));
    assert_eq!(next.rotated_at(), later);
}

#[test]
fn the_end_of_time_expires_everything_without_overflow() {
    let rotator = Rotator::new(keyring(), Config::default());
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(2);
    let (session, token) = rotator.sign_in(&mut rng, Timestamp::MAX);
    // The lifespan saturates at the end of time, where the session is already expired.
    assert_eq!(session.expires_at(), Timestamp::MAX);
    let text = token.to_text();
    let decision = rotator.decide(&session, Request::new(text.as_str(), Timestamp::MAX));
    assert_eq!(decision.reject_reason(), Some(RejectReason::Expired));

    // A session signed in earlier and presented at `u64::MAX`: expired, not a panic.
    let (session, token) = rotator.sign_in(&mut rng, Timestamp::from_unix_millis(u64::MAX - 10));
    let text = token.to_text();
    assert!(
        rotator
            .decide(
                &session,
                Request::new(text.as_str(), Timestamp::from_unix_millis(u64::MAX - 5))
            )
            .is_accepted()
    );
    let decision = rotator.decide(&session, Request::new(text.as_str(), Timestamp::MAX));
    assert_eq!(decision.reject_reason(), Some(RejectReason::Expired));
}

#[test]
fn absolute_lifetime_near_the_end_of_time_saturates() {
    let config = Config::builder()
        .absolute_lifetime(Some(core::time::Duration::MAX))
        .build()
        .unwrap();
    let rotator = Rotator::new(keyring(), config);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
    let start = Timestamp::from_unix_millis(u64::MAX - W * 3);
    let (session, token) = rotator.sign_in(&mut rng, start);
    let text = token.to_text();
    let later = Timestamp::from_unix_millis(u64::MAX - W);
    let (next, _) = rotated(rotator.decide(&session, Request::new(text.as_str(), later)));
    assert_eq!(next.expires_at(), Timestamp::MAX);
}
