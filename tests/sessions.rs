//! One user's sessions in a fixed-capacity container (devise's `tokens` column).

mod common;

use common::{Host, W, ms};
use rotauth::{Config, Decision, RejectReason, Request, Sessions};

#[test]
fn full_container_evicts_the_session_expiring_first() {
    let mut host = Host::default_config();
    let mut sessions: Sessions<3> = Sessions::new();
    let mut ids = vec![];
    for _ in 0..3 {
        ids.push(sessions.sign_in(&host.rotator, &mut host.rng, host.now));
        host.advance(1_000);
    }
    // The oldest session rotates, so the second one now expires first.
    host.advance(W);
    let text = ids[0].token.to_text();
    let decision = sessions.decide(
        &host.rotator,
        &ids[0].client_id,
        Request::new(text.as_str(), host.now),
    );
    assert!(matches!(decision, Decision::Rotate { .. }));
    assert_eq!(sessions.find(&ids[0].client_id).unwrap().generation(), 1);

    let fourth = sessions.sign_in(&host.rotator, &mut host.rng, host.now);
    assert_eq!(
        fourth.evicted.as_ref().unwrap().client_id(),
        ids[1].client_id
    );
    assert_eq!(sessions.len(), 3);
    assert!(sessions.find(&ids[1].client_id).is_none());
    assert!(sessions.find(&fourth.client_id).is_some());
}

#[test]
fn default_capacity_is_ten_devices() {
    let mut host = Host::default_config();
    let mut sessions: Sessions = Sessions::new();
    for i in 0..12 {
        let signed_in = sessions.sign_in(&host.rotator, &mut host.rng, host.now);
        assert_eq!(signed_in.evicted.is_some(), i >= 10);
        host.advance(1);
    }
    assert_eq!(sessions.len(), 10);
}

#[test]
fn sign_out_one() {
    let mut host = Host::default_config();
    let mut sessions: Sessions<4> = Sessions::new();
    let a = sessions.sign_in(&host.rotator, &mut host.rng, host.now);
    let b = sessions.sign_in(&host.rotator, &mut host.rng, host.now);
    assert_eq!(
        sessions.sign_out(&a.client_id).unwrap().client_id(),
        a.client_id
    );
    assert!(sessions.sign_out(&a.client_id).is_none());
    assert_eq!(sessions.len(), 1);
    assert!(sessions.find(&b.client_id).is_some());
}

#[test]
fn purge_removes_expired_sessions_only() {
    let mut host = Host::new(Config::builder().lifespan(ms(60_000)).build().unwrap());
    let mut sessions: Sessions<4> = Sessions::new();
    let old = sessions.sign_in(&host.rotator, &mut host.rng, host.now);
    host.advance(30_000);
    let young = sessions.sign_in(&host.rotator, &mut host.rng, host.now);
    host.advance(29_999);
    assert_eq!(sessions.purge_expired(host.now), 0);
    host.advance(1);
    assert_eq!(sessions.purge_expired(host.now), 1);
    assert!(sessions.find(&old.client_id).is_none());
    assert!(sessions.find(&young.client_id).is_some());
}

#[test]
fn decide_applies_rotation_and_revocation_in_place() {
    let config = Config::builder()
        .replay_policy(rotauth::ReplayPolicy::RevokeSession)
        .build()
        .unwrap();
    let mut host = Host::new(config);
    let mut sessions: Sessions<2> = Sessions::new();
    let signed_in = sessions.sign_in(&host.rotator, &mut host.rng, host.now);
    let id = signed_in.client_id;
    let first = signed_in.token.to_text();
    host.advance(W);
    let decision = sessions.decide(&host.rotator, &id, Request::new(first.as_str(), host.now));
    let stored = sessions.find(&id).unwrap();
    assert_eq!(Some(stored), decision.session_to_store());
    host.advance(W);
    let decision = sessions.decide(&host.rotator, &id, Request::new(first.as_str(), host.now));
    assert!(decision.must_revoke());
    assert!(sessions.find(&id).is_none());
    let decision = sessions.decide(&host.rotator, &id, Request::new(first.as_str(), host.now));
    assert_eq!(decision.reject_reason(), Some(RejectReason::UnknownSession));
}

#[test]
fn encoding_round_trips_at_every_fill_level() {
    let mut host = Host::default_config();
    let mut sessions: Sessions<4> = Sessions::new();
    let mut buffer = [0u8; Sessions::<4>::MAX_ENCODED_LEN];
    for _ in 0..=4 {
        let len = sessions.encode(&mut buffer).unwrap();
        assert_eq!(len, sessions.encoded_len());
        assert_eq!(Sessions::<4>::decode(&buffer[..len]).unwrap(), sessions);
        let _ = sessions.sign_in(&host.rotator, &mut host.rng, host.now);
    }
    assert_eq!(Sessions::<4>::MAX_ENCODED_LEN, 2 + 4 * 75);
}
