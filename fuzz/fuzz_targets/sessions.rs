//! `Sessions` container decoding at several capacities: never panics, only canonical
//! bytes decode, and the container's operations keep it valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotauth::{Sessions, Timestamp};

fn check<const N: usize>(data: &[u8]) {
    let Ok(mut sessions) = Sessions::<N>::decode(data) else {
        return;
    };
    assert!(sessions.len() <= N);
    let mut out = vec![0u8; Sessions::<N>::MAX_ENCODED_LEN];
    let len = sessions.encode(&mut out).ok();
    assert_eq!(
        len.map(|len| &out[..len]),
        Some(data),
        "non-canonical container decoded"
    );

    let ids: Vec<_> = sessions.iter().map(|s| s.client_id()).collect();
    for id in &ids {
        assert!(sessions.find(id).is_some());
    }
    let now = ids
        .first()
        .and_then(|id| sessions.find(id))
        .map_or(Timestamp::EPOCH, |s| s.expires_at());
    let purged = sessions.purge_expired(now);
    assert!(sessions.iter().all(|s| now < s.expires_at()));
    assert_eq!(purged + sessions.len(), ids.len());
    let first = sessions.iter().next().map(|s| s.client_id());
    if let Some(keep) = first {
        sessions.sign_out_others(&keep);
        assert_eq!(sessions.len(), 1);
        assert!(sessions.sign_out(&keep).is_some());
        assert!(sessions.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    check::<1>(data);
    check::<3>(data);
    check::<10>(data);
});
