//! The stories of the devise_token_auth design notes, told against rotauth.

mod common;

use common::{Host, W, ms, rotated};
use rotauth::{Config, Decision, RejectReason, Request, Sessions};

/// "Tokens are invalidated after each request": each response carries the next token.
#[test]
fn token_access_rotates_per_request() {
    let mut host = Host::default_config();
    let (mut session, mut token) = host.sign_in();
    for generation in 1..=5 {
        host.advance(W + 1_000);
        let (next, next_token) = rotated(host.present(&session, &token));
        assert_eq!(next.generation(), generation);
        assert_ne!(next_token, token);
        // The token just used is now invalid outside the window.
        host.advance(W);
        assert_eq!(
            host.present(&next, &token).reject_reason(),
            Some(RejectReason::Replayed { behind: 1 })
        );
        (session, token) = (next, next_token);
        host.advance(0);
    }
}

/// A request with a made-up token fails and changes nothing.
#[test]
fn failed_request_with_a_bogus_token() {
    let mut host = Host::default_config();
    let (session, _) = host.sign_in();
    for bogus in [
        "",
        "bogus",
        "AQAAAAAAAAAAhsGUOIjrAWs5P5TrARlw0VvBW6UezkbEZj6Ytub5X_o",
    ] {
        let decision = host.rotator.decide(&session, Request::new(bogus, host.now));
        assert!(!decision.is_accepted(), "{bogus:?}");
        assert_eq!(decision.session_to_store(), None);
        assert_eq!(decision.token_to_send(), None);
    }
}

/// `$http.get('/a'); $http.get('/b'); $http.get('/c')`: three requests with one token, the
/// host storing each decision's record before deciding the next (as a host with
/// compare-and-swap serialises them). The first rotates; the others are batch members and
/// return no token, so a late response can never hand the client an outdated token.
#[test]
fn batch_requests_share_one_token() {
    let mut host = Host::default_config();
    let (mut stored, token) = host.sign_in();
    host.advance(W);
    let mut sent = vec![];
    for offset in [0, 40, 90] {
        host.advance(offset);
        let decision = host.present(&stored, &token);
        if let Some(record) = decision.session_to_store() {
            stored = record.clone();
        }
        sent.push(decision.token_to_send().cloned());
        assert!(decision.is_accepted());
    }
    assert!(sent[0].is_some());
    assert_eq!(sent[1..], [None, None]);
    assert_eq!(stored.generation(), 1);
    // The client follows the one token it received.
    let newest = sent[0].clone().unwrap();
    host.advance(W);
    assert!(matches!(
        host.present(&stored, &newest),
        Decision::Rotate { .. }
    ));
}

/// `unbatch=true` leaves the batch: the request rotates even inside the window.
#[test]
fn unbatch_forces_rotation() {
    let mut host = Host::default_config();
    let (session, token) = host.sign_in();
    host.advance(10);
    assert_eq!(
        host.present(&session, &token),
        Decision::BatchReuse { updated: None }
    );
    let (next, next_token) = rotated(host.present_unbatched(&session, &token));
    assert_eq!(next.generation(), 1);
    assert_eq!(next.rotated_at(), host.now);
    assert!(host.present(&next, &next_token).is_accepted());
}

/// A batch member that arrives after the window closed is an invalidated token.
#[test]
fn batch_time_out() {
    let mut host = Host::default_config();
    let (session, token) = host.sign_in();
    host.advance(W);
    let (stored, _) = rotated(host.present(&session, &token));
    host.advance(W - 1);
    assert_eq!(
        host.present(&stored, &token),
        Decision::BatchReuse { updated: None }
    );
    host.advance(1);
    assert_eq!(
        host.present(&stored, &token).reject_reason(),
        Some(RejectReason::Replayed { behind: 1 })
    );
}

/// `change_headers_on_each_request = false`: one token for the whole lifespan.
#[test]
fn rotation_switched_off() {
    let config = Config::builder()
        .rotate(false)
        .lifespan(ms(3_600_000))
        .build()
        .unwrap();
    let mut host = Host::new(config);
    let (session, token) = host.sign_in();
    let expires_at = session.expires_at();
    while host.now.saturating_add(ms(W)) < expires_at {
        host.advance(W);
        assert_eq!(
            host.present(&session, &token),
            Decision::Accept { updated: None }
        );
    }
    host.now = expires_at;
    assert_eq!(
        host.present(&session, &token).reject_reason(),
        Some(RejectReason::Expired)
    );
}

/// A password change signs out every other device of the user; the one that changed the
/// password stays signed in.
#[test]
fn password_change_signs_out_other_sessions() {
    let mut host = Host::default_config();
    let mut devices: Sessions = Sessions::new();
    let signed_in: Vec<_> = (0..4)
        .map(|_| devices.sign_in(&host.rotator, &mut host.rng, host.now))
        .collect();
    let keep = &signed_in[2];
    assert_eq!(devices.sign_out_others(&keep.client_id), 3);
    assert_eq!(devices.len(), 1);
    host.advance(W);
    let text = keep.token.to_text();
    let decision = devices.decide(
        &host.rotator,
        &keep.client_id,
        Request::new(text.as_str(), host.now),
    );
    assert!(matches!(decision, Decision::Rotate { .. }));
    for other in signed_in.iter().filter(|s| s.client_id != keep.client_id) {
        let text = other.token.to_text();
        let decision = devices.decide(
            &host.rotator,
            &other.client_id,
            Request::new(text.as_str(), host.now),
        );
        assert_eq!(decision.reject_reason(), Some(RejectReason::UnknownSession));
    }
}
