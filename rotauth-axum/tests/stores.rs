//! The store contract suite: the same scenarios against every store compiled in, plus the
//! load test over real HTTP through the layer.
//!
//! PostgreSQL and Redis need `bash scripts/with-services.sh cargo test -p rotauth-axum
//! --all-features` (or the single-service scripts): their tests fail, naming the script,
//! when the URL is not set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::missing_errors_doc,
    missing_docs
)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::load::{Kind, Load, Shape, check_records};
use common::{Wrapped, default_rotator, rotator, serve, sign_in_at, unique};
use http::Method;
use rotauth::{Config, DecisionKind, RejectReason, ReplayPolicy, Timestamp};
use rotauth_axum::{
    Authenticator, BatchToken, Checked, Credentials, DeviseProtocol, Outcome, Record, Refusal,
    Reply, SessionStore, StoreError, Swap,
};

fn credentials(client_id: rotauth::ClientId, token: &rotauth::Token) -> Credentials {
    Credentials {
        client_id,
        token: token.to_text().as_str().to_owned().into(),
        uid: None,
    }
}

fn after(t: Timestamp, ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(t.unix_millis() + ms)
}

/// One request presenting `token` at `now` (forced when `unbatch`), which must rotate: the
/// new token.
async fn rotated<S: SessionStore>(
    auth: &Authenticator<S>,
    client_id: rotauth::ClientId,
    token: &rotauth::Token,
    now: Timestamp,
    unbatch: bool,
) -> rotauth::Token {
    match auth
        .authenticate(&credentials(client_id, token), now, unbatch)
        .await
    {
        Outcome::Served {
            reply: Reply::NewToken { token, .. },
            ..
        } => token,
        other => panic!("expected a rotation: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The contract

/// 50 tasks present the current token at once, outside the window, in three windows in a
/// row: each time exactly one rotates (one swap wins, one new token), and every other one
/// is served as a batch member without a token, after losing its swap and deciding again.
async fn race<S: SessionStore + Clone>(store: S) {
    const TASKS: usize = 50;
    let wrapped = Wrapped::new(store);
    let auth = Authenticator::new(default_rotator(), wrapped.clone());
    let user = unique("race");
    let t0 = Timestamp::now();
    let signed_in = sign_in_at(&auth, &user, t0).await;
    let client_id = signed_in.client_id;
    let mut token = signed_in.token;
    let mut now = t0;
    let mut lost_total = 0;
    for window in 1..=3u64 {
        now = after(now, common::WINDOW.as_millis() as u64 + 1);
        wrapped.swapped.store(0, Ordering::SeqCst);
        wrapped.lost.store(0, Ordering::SeqCst);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..TASKS {
            let auth = auth.clone();
            let creds = credentials(client_id, &token);
            tasks.spawn(async move { auth.authenticate(&creds, now, false).await });
        }
        let mut new_tokens = Vec::new();
        let mut batch = 0;
        while let Some(outcome) = tasks.join_next().await {
            match outcome.unwrap() {
                Outcome::Served {
                    reply: Reply::NewToken { token, .. },
                    ..
                } => new_tokens.push(token),
                Outcome::Served {
                    reply: Reply::Batch { .. },
                    ..
                } => batch += 1,
                other => panic!("window {window}: unexpected {other:?}"),
            }
        }
        assert_eq!(new_tokens.len(), 1, "window {window}: one new token");
        assert_eq!(
            batch,
            TASKS - 1,
            "window {window}: every other task is a batch member"
        );
        assert_eq!(
            wrapped.swapped.load(Ordering::SeqCst),
            1,
            "window {window}: one swap won"
        );
        let lost = wrapped.lost.load(Ordering::SeqCst);
        assert!(lost < TASKS, "window {window}: {lost} lost swaps");
        lost_total += lost;
        let new = new_tokens.pop().unwrap();
        assert_eq!(new.generation(), token.generation() + 1);
        let stored = wrapped.inner.load(client_id).await.unwrap().unwrap();
        let session = rotauth::Session::decode(stored.record.as_bytes()).unwrap();
        assert_eq!(
            session.generation(),
            window,
            "one new generation per window"
        );
        token = new;
    }
    assert!(
        lost_total > 0,
        "the tasks raced: some lost a swap and decided again"
    );
    eprintln!("race: {lost_total} lost swaps re-decided over 3 windows of {TASKS} tasks");
}

/// Insert, load, compare-and-swap, delete, list, delete a user's sessions but one.
async fn insert_delete_list<S: SessionStore + Clone>(store: S) {
    let rotator = default_rotator();
    let alice = unique("alice");
    let bob = unique("bob");
    let now = Timestamp::now();
    let mut sessions = Vec::new();
    for i in 0..3u64 {
        let (session, _) = rotator
            .try_sign_in(&mut getrandom::SysRng, after(now, i))
            .unwrap();
        store
            .insert(&alice, 0, &Record::from_session(&session))
            .await
            .unwrap();
        sessions.push(session);
    }
    let (bobs, _) = rotator.try_sign_in(&mut getrandom::SysRng, now).unwrap();
    store
        .insert(&bob, 0, &Record::from_session(&bobs))
        .await
        .unwrap();

    let duplicate = store
        .insert(&bob, 0, &Record::from_session(&sessions[0]))
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Duplicate)),
        "{duplicate:?}"
    );

    let loaded = store.load(sessions[0].client_id()).await.unwrap().unwrap();
    assert_eq!(loaded.user_id, alice);
    assert_eq!(
        loaded.record.as_bytes(),
        Record::from_session(&sessions[0]).as_bytes()
    );

    let mut listed: Vec<_> = store
        .list(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.client_id)
        .collect();
    listed.sort();
    let mut expected: Vec<_> = sessions.iter().map(rotauth::Session::client_id).collect();
    expected.sort();
    assert_eq!(listed, expected);
    let summary = store.list(&bob).await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].expires_at, bobs.expires_at());

    // Compare-and-swap: the right version wins once; a stale or missing one loses.
    let rotator_window = rotator.config().batch_window().as_millis() as u64;
    let token = rotator.current_token(&sessions[0]).unwrap();
    let decision = rotator.decide(
        &sessions[0],
        rotauth::Request::new(token.to_text().as_str(), after(now, rotator_window + 10)),
    );
    let next = decision.session_to_store().unwrap().clone();
    let record = Record::from_session(&next);
    let old_version = sessions[0].version();
    assert_ne!(next.version(), old_version);
    assert_eq!(
        store
            .compare_and_swap(old_version + 7, &record)
            .await
            .unwrap(),
        Swap::Lost
    );
    assert_eq!(
        store.compare_and_swap(old_version, &record).await.unwrap(),
        Swap::Swapped
    );
    assert_eq!(
        store.compare_and_swap(old_version, &record).await.unwrap(),
        Swap::Lost
    );
    let loaded = store.load(next.client_id()).await.unwrap().unwrap();
    assert_eq!(loaded.record.version(), next.version());
    assert_eq!(loaded.record.as_bytes(), record.as_bytes());
    let (ghost, _) = rotator.try_sign_in(&mut getrandom::SysRng, now).unwrap();
    assert_eq!(
        store
            .compare_and_swap(ghost.version(), &Record::from_session(&ghost))
            .await
            .unwrap(),
        Swap::Lost,
        "a swap never creates a session"
    );
    assert!(store.load(ghost.client_id()).await.unwrap().is_none());

    // Delete one, then all of alice's but one.
    assert!(store.delete(sessions[1].client_id()).await.unwrap());
    assert!(!store.delete(sessions[1].client_id()).await.unwrap());
    assert!(store.load(sessions[1].client_id()).await.unwrap().is_none());
    assert_eq!(store.list(&alice).await.unwrap().len(), 2);
    let keep = sessions[2].client_id();
    assert_eq!(
        store
            .delete_user_sessions(&alice, Some(keep))
            .await
            .unwrap(),
        1
    );
    let listed = store.list(&alice).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].client_id, keep);
    assert!(store.load(keep).await.unwrap().is_some());
    assert_eq!(
        store.list(&bob).await.unwrap().len(),
        1,
        "other users untouched"
    );
    assert_eq!(store.delete_user_sessions(&alice, None).await.unwrap(), 1);
    assert!(store.list(&alice).await.unwrap().is_empty());
    assert!(store.load(keep).await.unwrap().is_none());
}

/// The user's epoch: a sign-out moves it on and an insert begun before is refused; a
/// rename moves the sessions and the old name's epoch; neither touches other users.
async fn epochs<S: SessionStore + Clone>(store: S) {
    let rotator = default_rotator();
    let (alice, bob) = (unique("alice"), unique("bob"));
    let now = Timestamp::now();
    let record =
        || Record::from_session(&rotator.try_sign_in(&mut getrandom::SysRng, now).unwrap().0);
    assert_eq!(store.epoch(&alice).await.unwrap(), 0, "a new user is at 0");
    store.insert(&alice, 0, &record()).await.unwrap();
    let bobs = store.epoch(&bob).await.unwrap();

    assert_eq!(store.delete_user_sessions(&alice, None).await.unwrap(), 1);
    let moved = store.epoch(&alice).await.unwrap();
    assert_ne!(moved, 0, "a sign-out moves the epoch on");
    let stale = store.insert(&alice, 0, &record()).await;
    assert!(matches!(stale, Err(StoreError::EpochChanged)), "{stale:?}");
    assert!(
        store.list(&alice).await.unwrap().is_empty(),
        "the refused insert wrote nothing"
    );
    assert_eq!(
        store.epoch(&bob).await.unwrap(),
        bobs,
        "other users untouched"
    );
    store.insert(&bob, bobs, &record()).await.unwrap();

    // Rename: the sessions follow, the old name's epoch moves, the new name signs in.
    let first = record();
    store.insert(&alice, moved, &first).await.unwrap();
    store.insert(&alice, moved, &record()).await.unwrap();
    let renamed = unique("alice-renamed");
    let to = store.epoch(&renamed).await.unwrap();
    assert_eq!(store.rename_user(&alice, &renamed).await.unwrap(), 2);
    assert!(store.list(&alice).await.unwrap().is_empty());
    assert_eq!(store.list(&renamed).await.unwrap().len(), 2);
    assert_eq!(
        store
            .load(first.client_id())
            .await
            .unwrap()
            .unwrap()
            .user_id,
        renamed
    );
    let stale = store.insert(&alice, moved, &record()).await;
    assert!(matches!(stale, Err(StoreError::EpochChanged)), "{stale:?}");
    store.insert(&renamed, to, &record()).await.unwrap();
    assert_eq!(store.list(&renamed).await.unwrap().len(), 3);
    assert_eq!(
        store.list(&bob).await.unwrap().len(),
        1,
        "other users untouched"
    );
    // A sign-out keeps the one it is told to keep, and counts what it deleted.
    assert_eq!(
        store
            .delete_user_sessions(&renamed, Some(first.client_id()))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.list(&renamed).await.unwrap()[0].client_id,
        first.client_id()
    );
}

/// What a change of credentials does to a sign-in that read the old ones: the sign-in is
/// parked in its insert, once before the insert reaches the store and once after, while
/// each way of signing a user out runs to its end. Whatever the order, the sign-in's
/// session does not outlive the change: before, the insert is refused; after, the change
/// deletes (or, for a rename, moves) what it wrote.
async fn sign_in_against_credential_change<S: SessionStore + Clone>(store: S) {
    #[derive(Clone, Copy, Debug)]
    enum Change {
        SignOut,
        Credentials,
        Rename,
    }
    let store = Wrapped::new(store);
    let auth = Authenticator::new(default_rotator(), store.clone());
    for change in [Change::SignOut, Change::Credentials, Change::Rename] {
        for after in [false, true] {
            let user = unique("racing");
            let kept = auth
                .sign_in(auth.begin_sign_in(&user).await.unwrap())
                .await
                .unwrap();
            let pending = auth.begin_sign_in(&user).await.unwrap();
            let (park, arrived, release) = common::Park::new(after);
            *store.park.lock().unwrap() = Some(park);
            let racer = tokio::spawn({
                let auth = auth.clone();
                async move { auth.sign_in(pending).await }
            });
            arrived.wait().await;
            let renamed = unique("renamed");
            match change {
                Change::SignOut => {
                    auth.sign_out_others(&user, Some(kept.client_id))
                        .await
                        .unwrap();
                }
                Change::Credentials => {
                    let ran = auth
                        .change_credentials(&user, Some(kept.client_id), async {
                            Ok::<_, std::convert::Infallible>("changed")
                        })
                        .await
                        .unwrap();
                    assert_eq!(ran.0, "changed");
                }
                Change::Rename => {
                    auth.rename_user(&user, &renamed).await.unwrap();
                }
            }
            release.wait().await;
            let signed_in = racer.await.unwrap();
            let case = format!(
                "{change:?}, insert {}",
                if after { "done" } else { "parked" }
            );
            if after {
                // Stored before the change: the change took it with the others.
                let signed_in = signed_in.unwrap_or_else(|e| panic!("{case}: {e}"));
                let left = store.load(signed_in.client_id).await.unwrap();
                match change {
                    Change::Rename => assert_eq!(left.unwrap().user_id, renamed, "{case}"),
                    _ => assert!(left.is_none(), "{case}: the session outlived the change"),
                }
            } else {
                assert!(
                    matches!(signed_in, Err(rotauth_axum::Error::CredentialsChanged)),
                    "{case}: {signed_in:?}"
                );
            }
            let old_name: Vec<_> = store
                .list(&user)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.client_id)
                .collect();
            match change {
                Change::Rename => assert!(old_name.is_empty(), "{case}: {old_name:?}"),
                _ => assert_eq!(
                    old_name,
                    [kept.client_id],
                    "{case}: only the kept session is left"
                ),
            }
        }
    }
}

/// Real races, no parking: 16 sign-ins begun before a sign-out of their user insert while
/// it runs. None of them may be left (each was either deleted by the sign-out or refused),
/// in every round; the insert and the sign-out really interleave (both outcomes are seen
/// over the rounds on stores that let them, as the counts say).
async fn sign_ins_racing_a_sign_out<S: SessionStore + Clone>(store: S) {
    const SIGN_INS: usize = 16;
    let auth =
        Authenticator::new(default_rotator(), store.clone()).max_sessions_per_user(SIGN_INS + 1);
    let (mut refused, mut stored) = (0, 0);
    for round in 0..10 {
        let user = unique("stampede");
        let mut pending = Vec::new();
        for _ in 0..SIGN_INS {
            pending.push(auth.begin_sign_in(&user).await.unwrap());
        }
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(SIGN_INS + 1));
        let mut racers = Vec::new();
        for (i, pending) in pending.into_iter().enumerate() {
            let (auth, start) = (auth.clone(), std::sync::Arc::clone(&start));
            racers.push(tokio::spawn(async move {
                start.wait().await;
                // Spread the inserts around the sign-out.
                for _ in 0..i % 4 {
                    tokio::task::yield_now().await;
                }
                auth.sign_in(pending).await
            }));
        }
        start.wait().await;
        auth.sign_out_others(&user, None).await.unwrap();
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => stored += 1,
                Err(rotauth_axum::Error::CredentialsChanged) => refused += 1,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        let left = store.list(&user).await.unwrap();
        assert!(
            left.is_empty(),
            "round {round}: {} sessions outlived the sign-out",
            left.len()
        );
    }
    assert_eq!(refused + stored, 10 * SIGN_INS);
    eprintln!("sign-ins racing a sign-out: {refused} refused, {stored} stored then deleted");
}

/// Keys change while the authenticator serves, in the documented three steps, and the
/// census says which sessions are still on the old key: removing it then signs out those
/// and no others. Key ids 7 and 8 are this test's own, so the counts are exact in a store
/// other tests share.
async fn keys_change_while_serving<S: SessionStore + Clone>(store: S) {
    use rotauth::{KeyId, Keyring};
    const OLD: KeyId = KeyId(7);
    const NEW: KeyId = KeyId(8);
    let keyring = |ids: &[KeyId]| {
        let key = |id: KeyId| -> &[u8] {
            if id == OLD {
                b"the old key, at least thirty-two bytes"
            } else {
                b"the new key, at least thirty-two bytes"
            }
        };
        let mut keyring = Keyring::new(ids[0], key(ids[0])).unwrap();
        for &id in &ids[1..] {
            keyring.insert(id, key(id)).unwrap();
        }
        keyring
    };
    let config = *default_rotator().config();
    let auth = Authenticator::new(rotauth::Rotator::new(keyring(&[OLD]), config), store);
    let census = |auth: Authenticator<S>, now| async move {
        let counts = auth.sessions_per_key(now).await.unwrap();
        let on = |id| counts.iter().find(|(k, _)| *k == id).map_or(0, |(_, n)| *n);
        (on(OLD), on(NEW))
    };
    let t0 = Timestamp::now();
    let user = unique("keys");
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let signed_in = sign_in_at(&auth, &user, t0).await;
        sessions.push((signed_in.client_id, signed_in.token));
    }
    assert_eq!(census(auth.clone(), t0).await, (3, 0));

    // 1. Add the new key (on every instance): nothing moves yet.
    auth.set_keyring(keyring(&[OLD, NEW]));
    let (a, a0) = sessions[0].clone();
    let a1 = rotated(&auth, a, &a0, after(t0, 6_000), false).await;
    assert_eq!(a1.key_id(), OLD, "the old key is still primary");
    // 2. Make it primary: each session moves at its next rotation.
    auth.set_keyring(keyring(&[NEW, OLD]));
    let later = after(t0, 12_000);
    let a2 = rotated(&auth, a, &a1, later, false).await;
    assert_eq!(a2.key_id(), NEW);
    let (b, b0) = sessions[1].clone();
    assert_eq!(rotated(&auth, b, &b0, later, false).await.key_id(), NEW);
    assert_eq!(census(auth.clone(), later).await, (1, 2));
    let expired = after(t0, 400 * 24 * 3_600 * 1_000);
    assert_eq!(
        census(auth.clone(), expired).await,
        (0, 0),
        "expired sessions count nowhere"
    );
    // 3. Remove the old key: the one session the census still showed on it is signed
    //    out, the others are not.
    auth.set_keyring(keyring(&[NEW]));
    let later = after(t0, 13_000);
    let (c, c0) = sessions[2].clone();
    assert!(matches!(
        auth.authenticate(&credentials(c, &c0), later, false).await,
        Outcome::Refused(Refusal::Rejected(RejectReason::UnknownKey))
    ));
    assert!(matches!(
        auth.authenticate(&credentials(a, &a2), later, false).await,
        Outcome::Served { .. }
    ));
}

/// Signing in beyond the cap evicts the sessions expiring first; expired ones go first.
async fn per_user_cap<S: SessionStore + Clone>(store: S) {
    let auth = Authenticator::new(default_rotator(), store.clone()).max_sessions_per_user(3);
    let user = unique("cap");
    let now = Timestamp::now();
    let mut clients = Vec::new();
    for i in 0..5u64 {
        let signed_in = sign_in_at(&auth, &user, after(now, i * 1000)).await;
        clients.push(signed_in.client_id);
    }
    let mut listed: Vec<_> = store
        .list(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.client_id)
        .collect();
    listed.sort();
    let mut newest: Vec<_> = clients[2..].to_vec();
    newest.sort();
    assert_eq!(listed, newest, "the two expiring first were evicted");
    for evicted in &clients[..2] {
        assert!(store.load(*evicted).await.unwrap().is_none());
    }
    assert_eq!(
        auth.sign_out_others(&user, Some(clients[4])).await.unwrap(),
        2
    );
    assert!(auth.sign_out(clients[4]).await.unwrap());
    assert!(store.list(&user).await.unwrap().is_empty());
}

/// A session past its expiry is refused (or already gone), sends nothing, and is purged by
/// the user's next sign-in.
async fn expired_is_refused<S: SessionStore + Clone>(store: S) {
    let config = Config::builder()
        .batch_window(Duration::from_secs(1))
        .lifespan(Duration::from_secs(2))
        .build()
        .unwrap();
    let auth = Authenticator::new(rotator(config), store.clone());
    let user = unique("expiry");
    let t0 = Timestamp::now();
    let signed_in = sign_in_at(&auth, &user, t0).await;
    let creds = credentials(signed_in.client_id, &signed_in.token);
    match auth.authenticate(&creds, after(t0, 3_000), false).await {
        Outcome::Refused(Refusal::Rejected(
            RejectReason::Expired | RejectReason::UnknownSession,
        )) => {}
        other => panic!("expired session: {other:?}"),
    }
    // Still served just before expiry (from a fresh session).
    let fresh = sign_in_at(&auth, &user, after(t0, 3_000)).await;
    assert!(
        store.load(signed_in.client_id).await.unwrap().is_none(),
        "the expired session was purged by the next sign-in"
    );
    let creds = credentials(fresh.client_id, &fresh.token);
    assert!(matches!(
        auth.authenticate(&creds, after(t0, 4_500), false).await,
        Outcome::Served { .. }
    ));
}

/// An authenticator over `store` whose replay policy revokes the session.
fn revoking<S: SessionStore>(store: S) -> Authenticator<S> {
    let config = Config::builder()
        .batch_window(common::WINDOW)
        .replay_policy(ReplayPolicy::RevokeSession)
        .build()
        .unwrap();
    Authenticator::new(rotator(config), store)
}

/// A replay under the revoke policy deletes the session, and nothing is sent.
async fn revocation<S: SessionStore + Clone>(store: S) {
    let auth = revoking(store.clone());
    let t0 = Timestamp::now();
    let signed_in = sign_in_at(&auth, &unique("revoke"), t0).await;
    let client_id = signed_in.client_id;
    let first = signed_in.token;
    let mut token = first.clone();
    for step in 1..=2u64 {
        token = rotated(&auth, client_id, &token, after(t0, step * 6_000), false).await;
    }
    match auth
        .authenticate(&credentials(client_id, &first), after(t0, 18_000), false)
        .await
    {
        Outcome::Refused(Refusal::Revoked(RejectReason::Replayed { .. })) => {}
        other => panic!("replay: {other:?}"),
    }
    assert!(store.load(client_id).await.unwrap().is_none(), "revoked");
    assert!(matches!(
        auth.authenticate(&credentials(client_id, &token), after(t0, 18_001), false)
            .await,
        Outcome::Refused(Refusal::Rejected(RejectReason::UnknownSession))
    ));
}

/// `check` decides without storing: the record's version stays, the token stays the
/// current one, a forged token is refused, and a revoking replay still deletes.
async fn check_stores_nothing<S: SessionStore + Clone>(store: S) {
    let auth = revoking(store.clone());
    let t0 = Timestamp::now();
    let user = unique("check");
    let signed_in = sign_in_at(&auth, &user, t0).await;
    let client_id = signed_in.client_id;
    let first = credentials(client_id, &signed_in.token);
    let version = store
        .load(client_id)
        .await
        .unwrap()
        .unwrap()
        .record
        .version();
    // Outside the window, where authenticate would rotate.
    match auth.check(&first, after(t0, 6_000)).await {
        Checked::Accepted { who, decision } => {
            assert_eq!(who.user_id, user);
            assert_eq!(decision, DecisionKind::Rotate);
        }
        other => panic!("{other:?}"),
    }
    let stored = store.load(client_id).await.unwrap().unwrap();
    assert_eq!(stored.record.version(), version, "check stored nothing");
    let forged = Credentials {
        token: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            .to_owned()
            .into(),
        ..credentials(client_id, &signed_in.token)
    };
    assert!(matches!(
        auth.check(&forged, after(t0, 6_000)).await,
        Checked::Refused(_)
    ));
    let claimed = Credentials {
        uid: Some("someone else".to_owned()),
        ..credentials(client_id, &signed_in.token)
    };
    assert!(matches!(
        auth.check(&claimed, after(t0, 6_000)).await,
        Checked::Refused(Refusal::UserMismatch)
    ));
    // Two real rotations, then the first token again: a replay, revoked by check too.
    let mut token = signed_in.token.clone();
    for step in 1..=2u64 {
        token = rotated(&auth, client_id, &token, after(t0, step * 6_000), false).await;
    }
    assert!(matches!(
        auth.check(&first, after(t0, 18_000)).await,
        Checked::Refused(Refusal::Revoked(_))
    ));
    assert!(store.load(client_id).await.unwrap().is_none(), "revoked");
}

/// Under `BatchToken::Current` a batch member holding `T(n)` or `T(n-1)` gets `T(n)`; one
/// holding `T(n-2)` inside the window is served without a token.
async fn batch_token_current<S: SessionStore + Clone>(store: S) {
    let auth = Authenticator::new(default_rotator(), store).batch_token(BatchToken::Current);
    let t0 = Timestamp::now();
    let signed_in = sign_in_at(&auth, &unique("current"), t0).await;
    let client_id = signed_in.client_id;
    let t = |ms| after(t0, ms);
    let mut tokens = vec![signed_in.token.clone()];
    for step in 1..=2u64 {
        let last = tokens.last().unwrap().clone();
        tokens.push(rotated(&auth, client_id, &last, t(step), true).await);
    }
    let current = tokens[2].clone();
    for (held, expected) in [(2, Some(&current)), (1, Some(&current)), (0, None)] {
        match auth
            .authenticate(&credentials(client_id, &tokens[held]), t(10), false)
            .await
        {
            Outcome::Served {
                reply: Reply::Current { token, .. },
                decision: DecisionKind::BatchReuse,
                ..
            } => assert_eq!(Some(&token), expected, "T({held})"),
            Outcome::Served {
                reply: Reply::Batch { .. },
                decision: DecisionKind::BatchReuse,
                ..
            } => assert_eq!(None, expected, "T({held}) got no token"),
            other => panic!("T({held}): {other:?}"),
        }
    }
}

/// A swap whose acknowledgement is lost (the write landed, the store reported a failure) is
/// read back before the answer, and its token sent: otherwise the client would keep the
/// token before it, which is a replay once the window has passed. A swap that failed
/// without landing is decided again (with the request's time) once the store is back.
/// With no patience the first case answers 503, and the client is then signed out.
async fn unconfirmed_writes<S: SessionStore + Clone>(store: S) {
    let wrapped = Wrapped::new(store);
    let auth = Authenticator::new(default_rotator(), wrapped.clone());
    let t0 = Timestamp::now();
    let signed_in = sign_in_at(&auth, &unique("unconfirmed"), t0).await;
    let client_id = signed_in.client_id;
    let generation = |wrapped: Wrapped<S>| async move {
        let stored = wrapped.inner.load(client_id).await.unwrap().unwrap();
        rotauth::Session::decode(stored.record.as_bytes())
            .unwrap()
            .generation()
    };

    // Landed, acknowledgement lost: the token of the rotation that landed.
    wrapped.lose_acks.store(1, Ordering::SeqCst);
    let t1 = rotated(&auth, client_id, &signed_in.token, after(t0, 6_000), false).await;
    assert_eq!(t1.generation(), 1);
    assert_eq!(generation(wrapped.clone()).await, 1);
    assert_eq!(
        wrapped.lose_acks.load(Ordering::SeqCst),
        0,
        "the ack was lost"
    );

    // Not landed, the store back 100 ms later: decided again and stored.
    wrapped.fail_writes.store(true, Ordering::SeqCst);
    let back = tokio::spawn({
        let fail_writes = std::sync::Arc::clone(&wrapped.fail_writes);
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            fail_writes.store(false, Ordering::SeqCst);
        }
    });
    let t2 = rotated(&auth, client_id, &t1, after(t0, 12_000), false).await;
    back.await.unwrap();
    assert_eq!(t2.generation(), 2);
    assert_eq!(generation(wrapped.clone()).await, 2);

    // Without patience: 503 for a rotation that landed, and the client, holding the token
    // before it, is refused after the window.
    let impatient =
        Authenticator::new(default_rotator(), wrapped.clone()).store_patience(Duration::ZERO);
    wrapped.lose_acks.store(1, Ordering::SeqCst);
    assert!(matches!(
        impatient
            .authenticate(&credentials(client_id, &t2), after(t0, 18_000), false)
            .await,
        Outcome::Unavailable(_)
    ));
    assert_eq!(generation(wrapped.clone()).await, 3, "the rotation landed");
    assert!(matches!(
        impatient
            .authenticate(&credentials(client_id, &t2), after(t0, 24_000), false)
            .await,
        Outcome::Refused(Refusal::Rejected(RejectReason::Replayed { behind: 1 }))
    ));
}

/// A store failure in the middle of a request: 503, no token, the record unchanged; also
/// through the layer over HTTP, and at sign-in.
async fn store_failure<S: SessionStore + Clone>(store: S) {
    let wrapped = Wrapped::new(store);
    // A store that stays down: each request tries again for 200 ms, then answers 503.
    let auth = Authenticator::new(default_rotator(), wrapped.clone())
        .store_patience(Duration::from_millis(200));
    let t0 = Timestamp::now();
    let signed_in = sign_in_at(&auth, &unique("fail"), t0).await;
    let creds = credentials(signed_in.client_id, &signed_in.token);
    let before = wrapped
        .inner
        .load(signed_in.client_id)
        .await
        .unwrap()
        .unwrap();

    // The swap of a rotation fails: 503, nothing sent, nothing changed.
    wrapped.fail_writes.store(true, Ordering::SeqCst);
    assert!(matches!(
        auth.authenticate(&creds, after(t0, 6_000), false).await,
        Outcome::Unavailable(_)
    ));
    let unchanged = wrapped
        .inner
        .load(signed_in.client_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged.record.as_bytes(), before.record.as_bytes());
    // The load fails: 503.
    wrapped.fail_writes.store(false, Ordering::SeqCst);
    wrapped.fail_load.store(true, Ordering::SeqCst);
    assert!(matches!(
        auth.authenticate(&creds, after(t0, 6_000), false).await,
        Outcome::Unavailable(_)
    ));
    wrapped.fail_load.store(false, Ordering::SeqCst);
    // The same token still works once the store is back: nobody was logged out.
    assert!(matches!(
        auth.authenticate(&creds, after(t0, 6_000), false).await,
        Outcome::Served {
            reply: Reply::NewToken { .. },
            ..
        }
    ));

    // Through the layer: sign in, then a forced rotation whose write fails.
    let server = serve(auth.clone(), DeviseProtocol::new()).await;
    let user = unique("fail-http");
    let answer = server
        .request(Method::POST, &format!("/sign_in/{user}"), &[])
        .await;
    assert_eq!(answer.status, 200);
    let token = answer.devise_token().unwrap();
    let client = answer.header("client").unwrap().to_owned();
    let token_text = token.to_text();
    let headers = [
        ("access-token", token_text.as_str()),
        ("client", client.as_str()),
        ("uid", user.as_str()),
    ];
    wrapped.fail_writes.store(true, Ordering::SeqCst);
    let answer = server
        .request(Method::GET, "/ping?unbatch=true", &headers)
        .await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert!(answer.header("access-token").is_none(), "no token on 503");
    assert!(answer.header("authorization").is_none());
    assert_eq!(
        server
            .request(Method::POST, &format!("/sign_in/{user}"), &[])
            .await
            .status,
        503,
        "a sign-in whose insert fails sends no token"
    );
    wrapped.fail_writes.store(false, Ordering::SeqCst);
    let answer = server
        .request(Method::GET, "/ping?unbatch=true", &headers)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.devise_token().unwrap().generation(), 1);
}

// ---------------------------------------------------------------------------------------
// Load

const CLIENTS: usize = 50;
const REQUESTS: usize = 200;
const LOAD_WINDOW: Duration = Duration::from_millis(750);

/// 50 clients × 200 requests through the layer over real HTTP with the devise protocol, in
/// the bursts of `common::load` (every third one forced with `unbatch=true`, pauses that
/// let rotations by time happen beside the forced ones). No 401, no 5xx, rotations of both
/// kinds, and afterwards each session has one record whose generation is the newest token
/// its client received.
async fn load<S: SessionStore + Clone>(name: &str, store: S) {
    let config = Config::builder().batch_window(LOAD_WINDOW).build().unwrap();
    let auth = Authenticator::new(rotator(config), store.clone());
    let server = std::sync::Arc::new(serve(auth, DeviseProtocol::new()).await);
    let shape = Shape {
        clients: CLIENTS,
        requests: REQUESTS,
        window: LOAD_WINDOW,
        retry: None,
    };
    let started = Instant::now();
    let report = Load::start(server, shape, &format!("load-{name}"))
        .await
        .completed()
        .await;
    let elapsed = started.elapsed();
    let unauthorized = report.count(Kind::Request, 401);
    let server_errors = report.count(Kind::Request, 503);
    let rotations = check_records(&store, &report).await;
    eprintln!(
        "load[{name}]: {} requests by {CLIENTS} clients in {:.2} s ({:.0} req/s): \
         {unauthorized} x 401, {server_errors} x 5xx, {rotations} rotations ({} of them in bursts \
         without unbatch), {} tokens sent",
        CLIENTS * REQUESTS,
        elapsed.as_secs_f64(),
        (CLIENTS * REQUESTS) as f64 / elapsed.as_secs_f64(),
        report.by_time,
        report.tokens,
    );
    assert_eq!(report.served(), CLIENTS * REQUESTS, "every request served");
    assert_eq!(unauthorized, 0, "no 401");
    assert_eq!(server_errors, 0, "no 5xx");
    assert!(
        rotations > CLIENTS as u64 * 10,
        "rotations happened: {rotations}"
    );
    assert!(
        report.by_time >= CLIENTS,
        "rotations by time happened: {}",
        report.by_time
    );
}

/// A store that answers pings; the same store failing does not.
async fn ping<S: SessionStore + Clone>(store: S) {
    store.ping().await.unwrap();
    let failing = Wrapped::new(store);
    failing.ping().await.unwrap();
    failing.fail_load.store(true, Ordering::SeqCst);
    assert!(matches!(failing.ping().await, Err(StoreError::Backend(_))));
}

// ---------------------------------------------------------------------------------------
// The stores

/// One `#[tokio::test]` per scenario for a store made by `$make`.
macro_rules! contract {
    ($name:literal, $make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn race_of_50() {
            super::race($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn insert_delete_list() {
            super::insert_delete_list($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn epochs() {
            super::epochs($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sign_in_against_credential_change() {
            super::sign_in_against_credential_change($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sign_ins_racing_a_sign_out() {
            super::sign_ins_racing_a_sign_out($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn keys_change_while_serving() {
            super::keys_change_while_serving($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn per_user_cap() {
            super::per_user_cap($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn expired_is_refused() {
            super::expired_is_refused($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn revocation() {
            super::revocation($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn check_stores_nothing() {
            super::check_stores_nothing($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn batch_token_current() {
            super::batch_token_current($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn store_failure() {
            super::store_failure($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn unconfirmed_writes() {
            super::unconfirmed_writes($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn ping() {
            super::ping($make).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn load_50_clients_x_200_requests() {
            super::load($name, $make).await;
        }
    };
}

mod memory {
    use rotauth_axum::MemoryStore;

    contract!("memory", MemoryStore::new());
}

/// A forced request (`unbatch`) and a plain one race after the window: both read
/// generation n and decide Rotate, one swap wins. The loser decides again and is a batch
/// member, even when it is the forced one: the winner's rotation did what it asked, and
/// forcing again would rotate a second time and hand the burst two new tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_request_that_lost_its_race_is_not_forced_again() {
    for round in 0..20 {
        let store = Wrapped::new(rotauth_axum::MemoryStore::new());
        let auth = Authenticator::new(default_rotator(), store.clone());
        let t0 = Timestamp::now();
        let signed_in = sign_in_at(&auth, &unique("forced"), t0).await;
        *store.meet.lock().unwrap() = Some((2, std::sync::Arc::new(tokio::sync::Barrier::new(2))));
        let now = after(t0, common::WINDOW.as_millis() as u64 + 1);
        let creds = credentials(signed_in.client_id, &signed_in.token);
        let (forced, plain) = tokio::join!(
            auth.authenticate(&creds, now, true),
            auth.authenticate(&creds, now, false),
        );
        let new_tokens = [forced, plain]
            .into_iter()
            .filter(|outcome| {
                matches!(
                    outcome,
                    Outcome::Served {
                        reply: Reply::NewToken { .. },
                        ..
                    }
                )
            })
            .count();
        assert_eq!(new_tokens, 1, "round {round}: one rotation per race");
    }
}

/// With `uid_in_user_id`, a request claims the uid part of the user id: the session of
/// "42 ada@example.com" serves "ada@example.com" and refuses every other claim, the whole
/// user id included, before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uid_is_checked_against_its_part_of_the_user_id() {
    let store = rotauth_axum::MemoryStore::new();
    let auth = Authenticator::new(default_rotator(), store.clone())
        .uid_in_user_id(|user_id| user_id.split_once(' ').map_or(user_id, |(_, uid)| uid));
    let t0 = Timestamp::now();
    let signed_in = sign_in_at(&auth, "42 ada@example.com", t0).await;
    let claiming = |uid: &str| Credentials {
        uid: Some(uid.to_owned()),
        ..credentials(signed_in.client_id, &signed_in.token)
    };
    let version = |store: &rotauth_axum::MemoryStore| {
        let store = store.clone();
        async move {
            store
                .load(signed_in.client_id)
                .await
                .unwrap()
                .unwrap()
                .record
                .version()
        }
    };
    let before = version(&store).await;
    for wrong in ["bob@example.com", "42 ada@example.com", "42", ""] {
        assert!(
            matches!(
                auth.authenticate(&claiming(wrong), after(t0, 6_000), true)
                    .await,
                Outcome::Refused(Refusal::UserMismatch)
            ),
            "{wrong:?}"
        );
    }
    assert_eq!(
        version(&store).await,
        before,
        "a refused claim stored nothing"
    );
    match auth
        .authenticate(&claiming("ada@example.com"), after(t0, 6_000), false)
        .await
    {
        Outcome::Served {
            who,
            reply: Reply::NewToken { .. },
            ..
        } => assert_eq!(who.user_id, "42 ada@example.com"),
        other => panic!("{other:?}"),
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use rotauth_axum::SessionStore as _;

    contract!("sqlite", super::common::stores::sqlite().await);

    /// The SQL stores' ping reads both of their tables: a missing one fails it, as a
    /// readiness check must.
    #[tokio::test]
    async fn ping_fails_without_a_table() {
        for drop in [
            "DROP TABLE rotauth_sessions",
            "DROP TABLE rotauth_user_epochs",
        ] {
            let store = super::common::stores::sqlite().await;
            store.ping().await.unwrap();
            sqlx::query(drop).execute(store.pool()).await.unwrap();
            assert!(store.ping().await.is_err(), "{drop}");
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    contract!("postgres", super::common::stores::postgres().await);
}

#[cfg(feature = "tokio-postgres")]
mod tokio_postgres {
    contract!(
        "tokio-postgres",
        super::common::stores::tokio_postgres().await
    );
}

#[cfg(feature = "redis")]
mod redis {
    contract!("redis", super::common::stores::redis().await);
}
