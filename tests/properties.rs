//! The decision against the reference model in `tests/model/`: random operation sequences checked
//! step by step (same decision kind, reject reason, revocation and resulting record), and
//! the named properties, each its own test. Cases: proptest's default (256, or
//! `PROPTEST_CASES`), fewer under Miri.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not reach,
// and test arithmetic on known small values, which no clippy.toml setting covers.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod model;

use model::check::{
    Clock, Fate, Form, Junk, Op, Pick, START, Step, World, diverging_holders, valid,
};
use model::{Outcome, Policy, Reason, Shown};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use rotauth::{Session, Sessions, Token};

const DAY: u64 = 24 * 60 * 60 * 1000;
/// Operations per sequence. Miri runs a step at roughly a second (HMAC interpreted).
#[cfg(not(miri))]
const MAX_OPS: usize = 64;
#[cfg(miri)]
const MAX_OPS: usize = 6;

fn proptest_config() -> ProptestConfig {
    // Failures are turned into named regression tests below rather than persisted files.
    let config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if cfg!(miri) {
        ProptestConfig { cases: 2, ..config }
    } else {
        config
    }
}

// ---- strategies ----

fn policy() -> impl Strategy<Value = Policy> {
    let lifespan = prop_oneof![
        1 => prop::sample::select(vec![1, 5_000, 60_000]),
        3 => prop::sample::select(vec![3_600_000, 14 * DAY, u64::MAX]),
    ];
    let absolute = prop::option::weighted(
        0.3,
        prop::sample::select(vec![1, 10_000, 3_600_000, 30 * DAY, u64::MAX]),
    );
    (
        prop::bool::weighted(0.9),
        prop::sample::select(vec![0, 1, 1_000, 5_000, 60_000]),
        lifespan,
        absolute,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(rotate, window, lifespan, absolute, recover, revoke)| {
            valid(Policy {
                rotate,
                window,
                lifespan,
                absolute,
                recover,
                revoke,
            })
        })
}

/// A policy that keeps sessions alive for the test (lifespan ≥ an hour, no tiny absolute
/// lifetime), with rotation on: for the properties about replays and windows.
fn rotating_policy() -> impl Strategy<Value = Policy> {
    (
        prop::sample::select(vec![1, 1_000, 5_000, 60_000]),
        prop::sample::select(vec![3_600_000, 14 * DAY, u64::MAX]),
        prop::option::weighted(0.2, Just(30 * DAY)),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(window, lifespan, absolute, recover, revoke)| {
            valid(Policy {
                rotate: true,
                window,
                lifespan,
                absolute,
                recover,
                revoke,
            })
        })
}

/// Clock changes scaled to the window, so its edges are hit: zero, `W-1`, `W`, `W+1`,
/// days, huge jumps, and going backwards.
fn clock(window: u64) -> impl Strategy<Value = Clock> {
    let edges = vec![window.saturating_sub(1), window, window.saturating_add(1)];
    prop_oneof![
        3 => Just(Clock::Forward(0)),
        4 => (0..=window.saturating_mul(2)).prop_map(Clock::Forward),
        3 => prop::sample::select(edges).prop_map(Clock::Forward),
        2 => (0..=30 * DAY).prop_map(Clock::Forward),
        1 => any::<u64>().prop_map(Clock::Forward),
        2 => (0..=window.saturating_mul(2)).prop_map(Clock::Back),
        1 => any::<u64>().prop_map(Clock::Back),
        1 => prop::sample::select(vec![0, START, u64::MAX]).prop_map(Clock::To),
    ]
}

fn junk() -> impl Strategy<Value = Junk> {
    prop_oneof![
        any::<u8>().prop_map(Junk::Truncated),
        any::<u8>().prop_map(Junk::Extended),
        (any::<u8>(), any::<u8>()).prop_map(|(at, with)| Junk::BadChar { at, with }),
        Just(Junk::NonCanonical),
        Just(Junk::MultiByte),
        any::<u8>().prop_map(Junk::Bytes),
    ]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        4 => Just(Pick::Current),
        3 => Just(Pick::Previous),
        2 => Just(Pick::Last),
        2 => prop_oneof![0..4u64, any::<u64>()].prop_map(Pick::Older),
        2 => prop_oneof![0..3u64, any::<u64>()].prop_map(Pick::Newer),
        5 => Just(Pick::Received),
        1 => any::<u16>().prop_map(Pick::Flipped),
        1 => Just(Pick::Foreign),
        1 => junk().prop_map(Pick::Malformed),
        1 => Just(Pick::UnknownKey),
    ]
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![3 => Just(Form::Text), 1 => Just(Form::Bytes), 1 => Just(Form::Parsed)]
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        8 => Just(Fate::Delivered),
        1 => Just(Fate::WriteLost),
        1 => Just(Fate::ResponseLost),
    ]
}

/// Any operation, including sign-in, sign-out and reconfiguration mid-sequence.
fn any_op(window: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::SignIn),
        1 => Just(Op::SignOut),
        2 => policy().prop_map(Op::Reconfigure),
        20 => clock(window).prop_map(Op::Clock),
        30 => (pick(), form(), prop::bool::weighted(0.15), fate())
            .prop_map(|(pick, form, force, fate)| Op::Present { pick, form, force, fate }),
    ]
}

fn scenario(policy: impl Strategy<Value = Policy>) -> impl Strategy<Value = (Policy, Vec<Op>)> {
    policy.prop_flat_map(|p| {
        (
            Just(p),
            prop::collection::vec(any_op(p.window), 1..=MAX_OPS),
        )
    })
}

/// A client that presents the newest token it received, whatever the clock does. `fates`
/// says what may happen to a request besides delivery.
fn following(window: u64, fates: Vec<Fate>) -> impl Strategy<Value = Vec<Op>> {
    let present = (
        form(),
        prop::bool::weighted(0.15),
        prop::sample::select(fates),
    )
        .prop_map(|(form, force, fate)| Op::Present {
            pick: Pick::Received,
            form,
            force,
            fate,
        });
    let op = prop_oneof![2 => clock(window).prop_map(Op::Clock), 3 => present];
    prop::collection::vec(op, 1..=MAX_OPS)
}

/// Applies `ops`, calling `each` after every request. A client refused for an unknown
/// session signs in again, as a user answered 401 would.
fn run(world: &mut World, ops: &[Op], mut each: impl FnMut(&World, &Step)) {
    for op in ops {
        if let Some(step) = world.apply(*op) {
            each(world, &step);
            if reason(&step) == Some(Reason::UnknownSession) {
                world.sign_in();
            }
        }
    }
}

fn reason(step: &Step) -> Option<Reason> {
    match step.outcome {
        Outcome::Reject(reason) | Outcome::Revoke(reason) => Some(reason),
        _ => None,
    }
}

/// Runs a client that always presents the newest token it received, asserting that it is
/// refused only once the session has expired or outlived its absolute lifetime, or, in
/// Recover mode, as a replay after two responses carrying tokens were lost in a row (with
/// no new generation received in between: a recovery is granted once).
fn follow_until_expiry(policy: Policy, ops: &[Op], seed: u64) {
    let mut world = World::new(policy, seed);
    let mut lost_in_a_row = 0;
    // Refused for a second loss under RevokeSession: the session is gone, so the next
    // request meets an unknown session and the client signs in again (`run`).
    let mut revoked = false;
    run(&mut world, ops, |_, step| {
        if let Some(reason) = reason(step) {
            let second_loss = lost_in_a_row >= 2 && matches!(reason, Reason::Replayed(_));
            let after_revocation = revoked && reason == Reason::UnknownSession;
            assert!(
                matches!(reason, Reason::Expired | Reason::TooOld)
                    || second_loss
                    || after_revocation,
                "following client refused after {lost_in_a_row} lost responses: {step:?}"
            );
            revoked = second_loss && matches!(step.outcome, Outcome::Revoke(_));
            if after_revocation {
                lost_in_a_row = 0;
            }
        }
        let carried_token = matches!(step.outcome, Outcome::Rotate | Outcome::Reissue);
        match (step.fate, step.outcome) {
            (Fate::ResponseLost, _) if carried_token => lost_in_a_row += 1,
            (_, Outcome::Rotate) => lost_in_a_row = 0,
            _ => {}
        }
    });
}

proptest! {
    #![proptest_config(proptest_config())]

    /// The differential test: every request of every sequence decides as the model does.
    #[test]
    fn implementation_matches_model_step_by_step(
        (policy, ops) in scenario(policy()),
        seed in any::<u64>(),
    ) {
        let mut world = World::new(policy, seed);
        run(&mut world, &ops, |_, _| {});
        report("implementation_matches_model_step_by_step", &world);
    }

    /// No false logout (Strict): a client that always presents the newest token it got is
    /// refused only once the session has expired, even when the host loses writes.
    #[test]
    fn following_client_is_never_rejected_before_expiry_in_strict_mode(
        (policy, ops) in policy().prop_flat_map(|mut p| {
            p.recover = false;
            (Just(p), following(p.window, vec![Fate::Delivered, Fate::WriteLost]))
        }),
        seed in any::<u64>(),
    ) {
        follow_until_expiry(policy, &ops, seed);
    }

    /// No false logout (Recover): the same, and responses may also be lost, because
    /// Recover mode reissues `T(n)` to a client that never received it; a second loss in a
    /// row may log the client out.
    #[test]
    fn following_client_is_never_rejected_before_expiry_in_recover_mode(
        (policy, ops) in policy().prop_flat_map(|mut p| {
            p.recover = true;
            let fates = vec![Fate::Delivered, Fate::WriteLost, Fate::ResponseLost];
            (Just(p), following(p.window, fates))
        }),
        seed in any::<u64>(),
    ) {
        follow_until_expiry(policy, &ops, seed);
    }

    /// A token with a flipped bit, or another session's token, is refused as forged in
    /// every state, and the refusal changes nothing.
    #[test]
    fn forged_and_foreign_tokens_are_always_rejected(
        (policy, ops) in scenario(policy()),
        attacks in prop::collection::vec(
            (prop_oneof![any::<u16>().prop_map(Pick::Flipped), Just(Pick::Foreign)], form(), any::<bool>()),
            MAX_OPS,
        ),
        seed in any::<u64>(),
    ) {
        let mut world = World::new(policy, seed);
        for (op, (pick, form, force)) in ops.iter().zip(attacks) {
            // Each legitimate operation is followed by an attack on the state it left.
            world.apply(*op);
            let step = world.present(pick, form, force, Fate::Delivered);
            assert_eq!(step.shown, Shown::Forged);
            if step.before.is_some() {
                assert_eq!(
                    step.outcome,
                    Outcome::Reject(Reason::Forged),
                    "{step:?}"
                );
            } else {
                assert_eq!(step.outcome, Outcome::Reject(Reason::UnknownSession));
            }
            assert_eq!(step.after, step.before, "a forged token changed the record: {step:?}");
        }
    }

    /// A token older than `n-2`, or `n-1`/`n-2` outside the window in Strict mode (and in
    /// Recover mode unless `T(n)` is unacknowledged and it is `n-1`), is refused as replayed;
    /// with RevokeSession the session is gone afterwards.
    #[test]
    fn replays_are_rejected_and_revocation_removes_the_session(
        (policy, ops, delay) in rotating_policy().prop_flat_map(|p| {
            let fates = vec![Fate::Delivered];
            (Just(p), following(p.window, fates), clock(p.window))
        }),
        rotations in 1..6u64,
        behind in prop_oneof![1..4u64, 4..100u64],
        seed in any::<u64>(),
    ) {
        let mut world = World::new(policy, seed);
        for _ in 0..rotations {
            let step = world.present(Pick::Received, Form::Text, true, Fate::Delivered);
            assert_eq!(step.outcome, Outcome::Rotate);
        }
        run(&mut world, &ops, |_, _| {});
        world.apply(Op::Clock(delay));
        let Some(record) = world.model() else { return Ok(()) };
        let behind = behind.min(record.generation);
        prop_assume!(behind >= 1);
        let now = world.now;
        let live = now < record.expires_at
            && policy.absolute.is_none_or(|a| now < record.created_at.saturating_add(a));
        let in_window = now.saturating_sub(record.rotated_at) < policy.window;
        let replay = behind >= 3
            || (!in_window && (!policy.recover || behind == 2 || record.acknowledged));
        let step = world.present(Pick::Generation(record.generation - behind), Form::Text, false, Fate::Delivered);
        if live && replay {
            let expected = if policy.revoke {
                Outcome::Revoke(Reason::Replayed(behind))
            } else {
                Outcome::Reject(Reason::Replayed(behind))
            };
            assert_eq!(step.outcome, expected, "{step:?}");
            if policy.revoke {
                assert!(world.store().is_none());
                assert!(world.container().find(&world.client_id()).is_none());
                let after = world.present(Pick::Current, Form::Text, false, Fate::Delivered);
                assert_eq!(after.outcome, Outcome::Reject(Reason::UnknownSession));
            } else {
                assert_eq!(step.after, step.before);
            }
        }
    }

    /// Recover mode grants a recovery once: when two parties hold diverging tokens (one
    /// `T(n)`, the other `T(n-1)`, as after a stolen response), each presenting the newest
    /// token it received more than `W` after the last request, at most one of them is
    /// still served once the session is two generations past the divergence.
    #[test]
    fn diverging_holders_are_not_both_served_two_generations_later(
        policy in rotating_policy().prop_map(|mut p| { p.recover = true; p }),
        turns in prop::collection::vec((any::<bool>(), 0..3_000u64), 1..MAX_OPS),
        rotations in 0..4u64,
        seed in any::<u64>(),
    ) {
        diverging_holders(policy, seed, rotations, &turns);
    }

    /// The window `[rotated_at, rotated_at + W)` moves only on Rotate (or on a fast-forward,
    /// which replays a rotation whose write was lost), and no token is served without a
    /// rotation once the window is over: a BatchReuse happens only inside it, an Accept only
    /// with rotation off, a Reissue only in Recover mode for `T(n-1)` while `T(n)` is
    /// unacknowledged.
    #[test]
    fn window_moves_only_on_rotate(
        (policy, ops) in scenario(policy()),
        seed in any::<u64>(),
    ) {
        let mut world = World::new(policy, seed);
        run(&mut world, &ops, |world, step| {
            let (Some(before), Some(after)) = (step.before, step.after) else { return };
            let policy = world.policy;
            let age = step.now.saturating_sub(before.rotated_at);
            match step.outcome {
                Outcome::Rotate => {
                    assert!(age >= policy.window || step.force, "{step:?}");
                    assert_eq!(after.rotated_at, step.now.max(before.rotated_at), "{step:?}");
                }
                Outcome::BatchReuse if after.generation > before.generation => {
                    // A fast-forward: the lost rotation's window opens now.
                    assert!(policy.rotate, "{step:?}");
                    assert_eq!(after.rotated_at, step.now.max(before.rotated_at), "{step:?}");
                    assert!(step.now.saturating_sub(after.rotated_at) < policy.window, "{step:?}");
                }
                other => {
                    assert_eq!(after.rotated_at, before.rotated_at, "{step:?}");
                    assert_eq!(after.expires_at, before.expires_at, "{step:?}");
                    match other {
                        Outcome::BatchReuse => assert!(policy.rotate && age < policy.window, "{step:?}"),
                        Outcome::Accept => assert!(!policy.rotate, "{step:?}"),
                        Outcome::Reissue => {
                            assert!(policy.recover && !before.acknowledged, "{step:?}");
                            assert_eq!(step.shown, Shown::Genuine(before.generation - 1), "{step:?}");
                            assert!(after.reissued, "{step:?}");
                        }
                        _ => {}
                    }
                }
            }
        });
    }

    /// The same inputs give the same decision: twice on one host, and on a second host
    /// with the same key and policy reading a decoded copy of the record.
    #[test]
    fn decisions_are_deterministic(
        (policy, ops) in scenario(policy()),
        seed in any::<u64>(),
    ) {
        let mut world = World::new(policy, seed);
        world.check_determinism = true;
        run(&mut world, &ops, |_, _| {});
    }

    /// Every record a sequence reaches, alone and in the container, encodes and decodes
    /// back to itself.
    #[test]
    fn every_reachable_record_round_trips(
        (policy, ops) in scenario(policy()),
        seed in any::<u64>(),
    ) {
        let mut world = World::new(policy, seed);
        let mut buffer = [0u8; Sessions::<4>::MAX_ENCODED_LEN];
        for op in &ops {
            world.apply(*op);
            if let Some(session) = world.store() {
                let bytes = session.encode();
                assert_eq!(Session::decode(&bytes).as_ref(), Ok(session));
            }
            let container = world.container();
            let len = container.encode(&mut buffer).unwrap();
            assert_eq!(len, container.encoded_len());
            assert_eq!(Sessions::<4>::decode(&buffer[..len]).as_ref(), Ok(container));
        }
    }

    /// Decoding arbitrary bytes never panics, and whatever decodes is canonical: it
    /// encodes back to exactly the bytes it came from.
    #[test]
    fn decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_decoders(&bytes);
    }

    /// The same, for valid encodings with a few bytes changed (random bytes rarely get
    /// past the length and format checks).
    #[test]
    fn decoding_mutated_records_never_panics(
        (policy, ops) in scenario(policy()),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        seed in any::<u64>(),
    ) {
        let mut world = World::new(policy, seed);
        run(&mut world, &ops, |_, _| {});
        let mut buffer = [0u8; Sessions::<4>::MAX_ENCODED_LEN];
        let len = world.container().encode(&mut buffer).unwrap();
        let mut container = buffer[..len].to_vec();
        let mut record = world
            .store()
            .map_or_else(|| vec![1u8; Session::ENCODED_LEN], |s| s.encode().to_vec());
        for (at, value) in edits {
            let i = at.index(container.len());
            container[i] = value;
            let i = at.index(record.len());
            record[i] = value;
        }
        check_decoders(&container);
        check_decoders(&record);
    }

    /// Token text of the right length in (nearly) the right alphabet parses only if it is
    /// canonical base64url, and then round-trips.
    #[test]
    fn token_text_parses_only_canonically(
        chars in prop::collection::vec(
            prop::sample::select(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= é".chars().collect::<Vec<_>>()
            ),
            50..=60,
        ),
    ) {
        let text: String = chars.into_iter().collect();
        check_token_text(&text);
    }
}

/// With `ROTAUTH_PROP_STATS` set, prints what a case decided (kinds: accept, rotate,
/// batch_reuse, reissue, reject), to see that the strategies reach every row.
fn report(test: &str, world: &World) {
    if std::env::var_os("ROTAUTH_PROP_STATS").is_some() {
        let counts = &world.counts;
        eprintln!(
            "stats {test} {} {:?} {:?}",
            counts.requests, counts.kinds, counts.reasons
        );
    }
}

fn check_token_text(text: &str) {
    if let Ok(token) = Token::from_text(text) {
        assert_eq!(token.to_text().as_str(), text, "non-canonical text parsed");
        assert_eq!(Token::from_bytes(token.as_bytes()).as_ref(), Ok(&token));
    }
}

fn check_decoders(bytes: &[u8]) {
    if let Ok(session) = Session::decode(bytes) {
        assert_eq!(&session.encode()[..], bytes);
        assert!(session.created_at() <= session.rotated_at());
        assert!(session.rotated_at() <= session.expires_at());
    }
    fn container<const N: usize>(bytes: &[u8]) {
        if let Ok(sessions) = Sessions::<N>::decode(bytes) {
            assert!(sessions.len() <= N);
            let mut out = vec![0u8; Sessions::<N>::MAX_ENCODED_LEN];
            let len = sessions.encode(&mut out).unwrap();
            assert_eq!(&out[..len], bytes);
        }
    }
    container::<1>(bytes);
    container::<4>(bytes);
    container::<10>(bytes);
    if let Ok(token) = Token::from_bytes(bytes) {
        assert_eq!(&token.as_bytes()[..], bytes);
    }
    check_token_text(&String::from_utf8_lossy(bytes));
}
