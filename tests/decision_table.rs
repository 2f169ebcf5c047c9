//! Every row of the decision table (`docs/DESIGN.md`), and the rules written around it, one named test each.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not cover.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Host, W, ms, rotated};
use rotauth::{Config, Decision, KeyId, Mode, RejectReason, ReplayPolicy, Request, Token};

fn replayed(behind: u64) -> Decision {
    Decision::Reject {
        reason: RejectReason::Replayed { behind },
    }
}

fn recover() -> Host {
    Host::new(Config::builder().mode(Mode::Recover).build().unwrap())
}

// Row g = n.

#[test]
fn current_token_inside_window_is_batch_reuse() {
    let mut host = Host::default_config();
    let (session, tokens) = host.rotated(3);
    host.advance(W - 1);
    assert_eq!(
        host.present(&session, &tokens[3]),
        Decision::BatchReuse { updated: None }
    );
}

#[test]
fn current_token_after_window_rotates() {
    let mut host = Host::default_config();
    let (session, tokens) = host.rotated(3);
    host.advance(W);
    let (next, token) = rotated(host.present(&session, &tokens[3]));
    assert_eq!(next.generation(), 4);
    assert_eq!(next.rotated_at(), host.now);
    assert_eq!(
        next.expires_at(),
        host.now.saturating_add(host.rotator.config().lifespan())
    );
    assert_eq!(next.created_at(), session.created_at());
    assert_eq!(next.client_id(), session.client_id());
    assert_eq!(next.version(), session.version() + 1);
    assert!(!next.acknowledged());
    assert_eq!(token.generation(), 4);
    assert_eq!(host.rotator.current_token(&next).unwrap(), token);
    // The new token opens a new window.
    assert_eq!(
        host.present(&next, &token),
        Decision::BatchReuse { updated: None }
    );
}

// Row g = n-1.

#[test]
fn previous_token_inside_window_is_batch_reuse() {
    let mut host = Host::default_config();
    let (session, tokens) = host.rotated(3);
    host.advance(W - 1);
    assert_eq!(
        host.present(&session, &tokens[2]),
        Decision::BatchReuse { updated: None }
    );
}

#[test]
fn previous_token_after_window_is_replayed_in_strict_mode() {
    let mut host = Host::default_config();
    let (session, tokens) = host.rotated(3);
    host.advance(W);
    assert_eq!(host.present(&session, &tokens[2]), replayed(1));
}

#[test]
fn previous_token_after_window_reissues_current_in_recover_mode_while_unacknowledged() {
    let mut host = recover();
    let (session, tokens) = host.rotated(3);
    host.advance(W);
    // The reissue is recorded (a recovery is granted once) and T(n) comes back.
    let marked = match host.present(&session, &tokens[2]) {
        Decision::Reissue {
            updated: Some(marked),
            token,
        } => {
            assert_eq!(token, tokens[3]);
            marked
        }
        other => panic!("expected a Reissue that records itself, got {other:?}"),
    };
    assert!(marked.reissued());
    assert!(!marked.acknowledged());
    assert_eq!(marked.generation(), 3);
    assert_eq!(marked.rotated_at(), session.rotated_at());
    assert_eq!(marked.version(), session.version() + 1);
    // The other requests of the same reload recover too; only the first wrote.
    host.advance(60_000);
    assert_eq!(
        host.present(&marked, &tokens[2]),
        Decision::Reissue {
            updated: None,
            token: tokens[3].clone()
        }
    );
}

#[test]
fn a_recovery_is_granted_once() {
    // Told as two stories with the same steps. Two holders: A holds T(n); B holds T(n-1)
    // and exchanges it for T(n); whoever rotates next leaves the other holding a previous
    // token that can no longer be exchanged. One client: the response carrying T(3) was
    // lost, it recovers T(3), and the response to its next request (T(4)) is lost too: a
    // second loss in a row may log it out.
    let mut host = recover();
    let (session, tokens) = host.rotated(3);
    host.advance(W);
    let marked = host
        .present(&session, &tokens[2])
        .session_to_store()
        .cloned()
        .unwrap();
    host.advance(W);
    let (next, t4) = rotated(host.present(&marked, &tokens[3]));
    assert!(
        next.acknowledged(),
        "the generation after a reissue grants no recovery"
    );
    assert!(!next.reissued());
    host.advance(W);
    assert_eq!(host.present(&next, &tokens[3]), replayed(1));
    // Had the second response arrived, the client would simply go on with T(4), and the
    // generation after that may recover again.
    let (after, _) = rotated(host.present(&next, &t4));
    assert!(!after.acknowledged());
}

#[test]
fn previous_token_after_window_is_replayed_in_recover_mode_once_current_was_used() {
    let mut host = recover();
    let (session, tokens) = host.rotated(3);
    // The client uses T(n) inside the window: acknowledged by use.
    let acknowledged = match host.present(&session, &tokens[3]) {
        Decision::BatchReuse {
            updated: Some(updated),
        } => updated,
        other => panic!("expected a BatchReuse that records the first use, got {other:?}"),
    };
    assert!(acknowledged.acknowledged());
    assert_eq!(acknowledged.version(), session.version() + 1);
    assert_eq!(acknowledged.generation(), session.generation());
    // A second use changes nothing more.
    assert_eq!(
        host.present(&acknowledged, &tokens[3]),
        Decision::BatchReuse { updated: None }
    );
    host.advance(W);
    assert_eq!(host.present(&acknowledged, &tokens[2]), replayed(1));
}

// Row g = n-2.

#[test]
fn last_token_inside_window_is_batch_reuse() {
    let mut host = Host::default_config();
    let (session, tokens) = host.rotated(3);
    assert_eq!(
        host.present(&session, &tokens[1]),
        Decision::BatchReuse { updated: None }
    );
}

#[test]
fn last_token_after_window_is_replayed_in_both_modes() {
    for mut host in [Host::default_config(), recover()] {
        let (session, tokens) = host.rotated(3);
        host.advance(W);
        assert_eq!(host.present(&session, &tokens[1]), replayed(2));
    }
}

// Row g < n-2.

#[test]
fn older_token_inside_window_is_replayed() {
    let mut host = Host::default_config();
    let (session, tokens) = host.rotated(3);
    assert_eq!(host.present(&session, &tokens[0]), replayed(3));
}

#[test]
fn older_token_after_window_is_replayed_at_any_depth() {
    let mut host = Host::default_config();
    let (session, tokens) = host.rotated(12);
    host.advance(W);
    for (generation, token) in tokens.iter().enumerate().take(12) {
        assert_eq!(
            host.present(&session, token),
            replayed(12 - generation as u64)
        );
    }
}

// Row g > n.

#[test]
fn newer_token_inside_window_fast_forwards_as_batch_reuse() {
    let mut host = Host::default_config();
    let (stale, tokens) = host.rotated(2);
    // An unbatched request rotated the session, but the write was lost: the store still
    // holds `stale` while the client holds T(3).
    let (_lost, newer) = rotated(host.present_unbatched(&stale, &tokens[2]));
    match host.present(&stale, &newer) {
        Decision::BatchReuse {
            updated: Some(updated),
        } => {
            assert_eq!(updated.generation(), 3);
            assert_eq!(updated.version(), stale.version() + 1);
            // The lost rotation is replayed now: its window and expiry start here.
            assert_eq!(updated.rotated_at(), host.now);
            assert_eq!(
                updated.expires_at(),
                host.now.saturating_add(host.rotator.config().lifespan())
            );
            assert_eq!(host.rotator.current_token(&updated).unwrap(), newer);
        }
        other => panic!("expected a fast-forward BatchReuse, got {other:?}"),
    }
}

#[test]
fn newer_token_after_the_stale_window_fast_forwards_into_a_new_window() {
    let mut host = Host::default_config();
    let (stale, tokens) = host.rotated(1);
    host.advance(W);
    let (_lost, newer) = rotated(host.present(&stale, &tokens[1]));
    host.advance(W);
    // The stale record's window is long over, but the lost rotation's is replayed from now:
    // a batch member, not another rotation.
    let Decision::BatchReuse {
        updated: Some(adopted),
    } = host.present(&stale, &newer)
    else {
        panic!("expected a fast-forward batch member");
    };
    assert_eq!(adopted.generation(), 2);
    assert_eq!(adopted.rotated_at(), host.now);
    // Forced, it rotates on from the adopted generation.
    let (next, token) = rotated(host.present_unbatched(&stale, &newer));
    assert_eq!(next.generation(), 3);
    assert_eq!(token.generation(), 3);
}

#[test]
fn newer_token_with_rotation_off_is_accepted_and_adopted() {
    // Rotation was on when the lost write happened, and is off now.
    let mut on = Host::default_config();
    let (stale, tokens) = on.rotated(1);
    on.advance(W);
    let (_lost, newer) = rotated(on.present(&stale, &tokens[1]));
    let off = Host {
        rotator: rotauth::Rotator::new(
            common::keyring(),
            Config::builder().rotate(false).build().unwrap(),
        ),
        now: on.now,
        rng: on.rng,
    };
    match off.present(&stale, &newer) {
        Decision::Accept {
            updated: Some(updated),
        } => assert_eq!(updated.generation(), 2),
        other => panic!("expected Accept with the adopted generation, got {other:?}"),
    }
}

// Before the table: lifetimes.

#[test]
fn expired_session_is_rejected_before_the_table() {
    let mut host = Host::new(Config::builder().lifespan(ms(60_000)).build().unwrap());
    let (session, token) = host.sign_in();
    host.advance(59_999);
    assert!(host.present(&session, &token).is_accepted());
    host.advance(1);
    assert_eq!(host.now, session.expires_at());
    assert_eq!(
        host.present(&session, &token),
        Decision::Reject {
            reason: RejectReason::Expired,
        }
    );
}

#[test]
fn rotation_slides_expiry_and_batch_reuse_never_does() {
    let mut host = Host::new(Config::builder().lifespan(ms(60_000)).build().unwrap());
    let (session, token) = host.sign_in();
    host.advance(W - 1);
    // BatchReuse: no record to store, so nothing can extend the expiry or the window.
    assert_eq!(
        host.present(&session, &token),
        Decision::BatchReuse { updated: None }
    );
    host.advance(1);
    let (next, _) = rotated(host.present(&session, &token));
    assert_eq!(next.expires_at(), host.now.saturating_add(ms(60_000)));
    assert!(next.expires_at() > session.expires_at());
}

#[test]
fn absolute_lifetime_caps_expiry_and_then_rejects() {
    let config = Config::builder()
        .lifespan(ms(60_000))
        .absolute_lifetime(Some(ms(100_000)))
        .build()
        .unwrap();
    let mut host = Host::new(config);
    let (mut session, mut token) = host.sign_in();
    let deadline = session.created_at().saturating_add(ms(100_000));
    for _ in 0..3 {
        host.advance(30_000);
        (session, token) = rotated(host.present(&session, &token));
        assert!(session.expires_at() <= deadline);
    }
    assert_eq!(session.expires_at(), deadline);
    host.advance(9_999);
    assert!(host.present(&session, &token).is_accepted());
    host.advance(1);
    assert_eq!(
        host.present(&session, &token).reject_reason(),
        Some(RejectReason::TooOld)
    );
}

// The rules around the table.

#[test]
fn window_is_half_open_and_anchored_at_the_rotation() {
    let mut host = Host::default_config();
    let (session, token) = host.sign_in();
    for _ in 0..4 {
        host.advance((W - 1) / 4);
        assert_eq!(
            host.present(&session, &token),
            Decision::BatchReuse { updated: None }
        );
    }
    host.advance(W - 4 * ((W - 1) / 4));
    assert_eq!(host.now.millis_since(session.rotated_at()), W);
    assert!(matches!(
        host.present(&session, &token),
        Decision::Rotate { .. }
    ));
}

#[test]
fn force_rotation_rotates_every_batch_member_inside_the_window() {
    let mut host = Host::default_config();
    let (session, tokens) = host.rotated(2);
    // devise's `unbatch=true`: T(n), T(n-1) and T(n-2) in the window all move n to n+1.
    for token in &tokens[..=2] {
        let (next, sent) = rotated(host.present_unbatched(&session, token));
        assert_eq!(next.generation(), 3);
        assert_eq!(sent.generation(), 3);
        assert_eq!(next.rotated_at(), host.now);
        assert_eq!(host.rotator.current_token(&next).as_ref(), Some(&sent));
    }
}

#[test]
fn force_rotation_changes_nothing_outside_the_window_or_beyond_the_batch() {
    let mut host = Host::default_config();
    let (session, tokens) = host.rotated(3);
    // T(n-3) is a replay even inside the window.
    assert_eq!(host.present_unbatched(&session, &tokens[0]), replayed(3));
    host.advance(W);
    assert_eq!(host.present_unbatched(&session, &tokens[2]), replayed(1));
    assert_eq!(host.present_unbatched(&session, &tokens[1]), replayed(2));
    // On T(n) after the window it rotates as any request would.
    let (next, _) = rotated(host.present_unbatched(&session, &tokens[3]));
    assert_eq!(next.generation(), 4);
}

#[test]
fn rotation_off_accepts_the_sign_in_token_until_expiry_and_refuses_older() {
    let config = Config::builder()
        .rotate(false)
        .lifespan(ms(600_000))
        .build()
        .unwrap();
    let mut host = Host::new(config);
    let (session, token) = host.sign_in();
    for _ in 0..10 {
        host.advance(59_999);
        assert_eq!(
            host.present(&session, &token),
            Decision::Accept { updated: None }
        );
        assert_eq!(
            host.present_unbatched(&session, &token),
            Decision::Accept { updated: None }
        );
    }
    host.advance(10);
    assert_eq!(
        host.present(&session, &token).reject_reason(),
        Some(RejectReason::Expired)
    );

    // A session that rotated while rotation was on keeps refusing its older tokens.
    let mut on = Host::default_config();
    let (session, tokens) = on.rotated(2);
    let off = Host {
        rotator: rotauth::Rotator::new(common::keyring(), config),
        now: on.now,
        rng: on.rng,
    };
    assert_eq!(off.present(&session, &tokens[1]), replayed(1));
    assert_eq!(
        off.present(&session, &tokens[2]),
        Decision::Accept { updated: None }
    );
}

#[test]
fn revoke_policy_revokes_on_replay_only() {
    let config = Config::builder()
        .replay_policy(ReplayPolicy::RevokeSession)
        .build()
        .unwrap();
    let mut host = Host::new(config);
    let (session, tokens) = host.rotated(3);
    host.advance(W);
    let decision = host.present(&session, &tokens[0]);
    assert_eq!(
        decision,
        Decision::Revoke {
            reason: RejectReason::Replayed { behind: 3 },
        }
    );
    assert!(decision.must_revoke());
    assert_eq!(decision.session_to_store(), None);
    // Not a replay: a forged token never revokes, or anyone could sign a user out.
    let mut forged = *tokens[3].as_bytes();
    forged[40] ^= 1;
    let decision = host
        .rotator
        .decide(&session, Request::new(&forged[..], host.now));
    assert_eq!(
        decision,
        Decision::Reject {
            reason: RejectReason::Forged,
        }
    );
}

#[test]
fn unknown_session_is_rejected() {
    let mut host = Host::default_config();
    let (_, token) = host.sign_in();
    let text = token.to_text();
    assert_eq!(
        host.rotator
            .decide(None, Request::new(text.as_str(), host.now))
            .reject_reason(),
        Some(RejectReason::UnknownSession)
    );
}

#[test]
fn token_of_another_session_or_with_a_changed_mac_is_forged() {
    let mut host = Host::default_config();
    let (session, token) = host.sign_in();
    let (_, other_token) = host.sign_in();
    assert_eq!(
        host.present(&session, &other_token).reject_reason(),
        Some(RejectReason::Forged)
    );
    for byte in 1..rotauth::TOKEN_LEN {
        let mut bytes = *token.as_bytes();
        bytes[byte] ^= 0x80;
        let decision = host
            .rotator
            .decide(&session, Request::new(&bytes[..], host.now));
        assert_eq!(
            decision.reject_reason(),
            Some(RejectReason::Forged),
            "byte {byte}"
        );
    }
}

#[test]
fn key_rotation_moves_sessions_to_the_primary_and_retired_keys_are_unknown() {
    let mut host = Host::default_config();
    let (session, token) = host.sign_in();
    assert_eq!(session.key_id(), KeyId(1));
    // A token relabelled with a key id the host does not have.
    let mut relabelled = *token.as_bytes();
    relabelled[0] = 9;
    assert_eq!(
        host.rotator
            .decide(&session, Request::new(&relabelled[..], host.now))
            .reject_reason(),
        Some(RejectReason::UnknownKey)
    );

    let keyring = host.rotator.keyring_mut();
    keyring.insert(KeyId(2), &[0x77; 48]).unwrap();
    keyring.set_primary(KeyId(2)).unwrap();
    // Relabelled to the new key, the MAC no longer verifies.
    relabelled[0] = 2;
    assert_eq!(
        host.rotator
            .decide(&session, Request::new(&relabelled[..], host.now))
            .reject_reason(),
        Some(RejectReason::Forged)
    );
    // The old token still works; the next rotation moves the session to key 2.
    host.advance(W);
    let (next, next_token) = rotated(host.present(&session, &token));
    assert_eq!(next.key_id(), KeyId(2));
    assert_eq!(next_token.key_id(), KeyId(2));

    // Retiring key 1: its tokens are unknown, the moved session is unaffected.
    host.rotator.keyring_mut().remove(KeyId(1)).unwrap();
    assert_eq!(
        host.present(&session, &token).reject_reason(),
        Some(RejectReason::UnknownKey)
    );
    assert_eq!(
        host.present(&next, &next_token),
        Decision::BatchReuse { updated: None }
    );
}

#[test]
fn text_bytes_and_parsed_tokens_decide_alike() {
    let mut host = Host::default_config();
    let (session, tokens) = host.rotated(2);
    for advance in [0, W] {
        host.advance(advance);
        for token in &tokens {
            let text = token.to_text();
            let by_text = host
                .rotator
                .decide(&session, Request::new(text.as_str(), host.now));
            let by_bytes = host
                .rotator
                .decide(&session, Request::new(&token.as_bytes()[..], host.now));
            let parsed: Token = Token::from_text(text.as_str()).unwrap();
            let by_token = host
                .rotator
                .decide(&session, Request::new(&parsed, host.now));
            assert_eq!(by_text, by_bytes);
            assert_eq!(by_text, by_token);
        }
    }
}

#[test]
fn generation_exhaustion_is_too_old_not_a_panic() {
    let mut host = Host::default_config();
    let (session, _) = host.sign_in();
    let mut bytes = *session.encode().as_bytes();
    // generation field: offset 34, 8 bytes big-endian.
    bytes[34..42].copy_from_slice(&u64::MAX.to_be_bytes());
    let exhausted = rotauth::Session::decode(&bytes).unwrap();
    let last = host.rotator.current_token(&exhausted).unwrap();
    assert_eq!(
        host.present(&exhausted, &last),
        Decision::BatchReuse { updated: None }
    );
    host.advance(W);
    assert_eq!(
        host.present(&exhausted, &last).reject_reason(),
        Some(RejectReason::TooOld)
    );
}
