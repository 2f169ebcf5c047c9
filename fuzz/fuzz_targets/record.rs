//! Session record decoding: never panics, only canonical bytes decode, decoded records keep
//! their invariants, and the decision on any decodable record is sound for its own token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotauth::{Config, DecisionKind, KeyId, Keyring, RejectReason, Request, Rotator, Session};

fuzz_target!(|data: &[u8]| {
    let Ok(session) = Session::decode(data) else {
        return;
    };
    assert_eq!(&session.encode()[..], data, "non-canonical record decoded");
    assert!(session.created_at() <= session.rotated_at());
    assert!(session.rotated_at() <= session.expires_at());

    let key = [0x5a; 32];
    let Ok(keyring) = Keyring::new(session.key_id(), &key) else {
        return;
    };
    let rotator = Rotator::new(keyring, Config::default());
    let Some(current) = rotator.current_token(&session) else {
        return;
    };
    // `T(n)` at the start of the window: part of the batch, unless already expired.
    let decision = rotator.decide(&session, Request::new(&current, session.rotated_at()));
    match decision.kind() {
        DecisionKind::BatchReuse => assert!(session.rotated_at() < session.expires_at()),
        DecisionKind::Reject => {
            assert_eq!(decision.reject_reason(), Some(RejectReason::Expired));
            assert_eq!(session.rotated_at(), session.expires_at());
        }
        other => panic!("T(n) in its window decided {other:?}"),
    }
    // Under another key id, the same MAC is unknown.
    let other = if session.key_id() == KeyId(0) {
        KeyId(1)
    } else {
        KeyId(0)
    };
    let Ok(keyring) = Keyring::new(other, &key) else {
        return;
    };
    let rotator = Rotator::new(keyring, Config::default());
    let decision = rotator.decide(&session, Request::new(&current, session.rotated_at()));
    assert_eq!(decision.reject_reason(), Some(RejectReason::UnknownKey));
});
