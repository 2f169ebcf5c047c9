//! The request loop ([`rotauth::exchange`]) under racing requests: several exchanges of one
//! session driven against one simulated compare-and-swap store, their I/O steps interleaved
//! in every order proptest finds. The loop's promises, as properties:
//!
//! - no token is answered that was not stored;
//! - one rotation per window: racers presenting the same token after the window, forced or
//!   not, that all read the record before any stores, get one new token between them;
//! - bounded attempts: no exchange loads more than `max_attempts` times;
//! - a stale token is never upgraded: under `BatchToken::Current`, the current token goes
//!   only to a holder of `T(n)` or `T(n-1)`;
//! - every exchange ends, and a revocation deletes before it refuses;
//! - a write that a store failure left in doubt is never a rotation the client does not
//!   hear of, as long as the host tries again until the store answers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use rotauth::exchange::{
    Answer, BatchToken, Exchange, Loaded, Options, Refusal, Reply, Step, Swapped, Unavailable,
};
use rotauth::{
    Config, KeyId, Keyring, Mode, RejectReason, ReplayPolicy, Rotator, Session, Timestamp, Token,
};

const WINDOW_MS: u64 = 5_000;

fn rotator(mode: Mode, replay: ReplayPolicy) -> Rotator {
    let config = Config::builder()
        .batch_window(Duration::from_millis(WINDOW_MS))
        .mode(mode)
        .replay_policy(replay)
        .build()
        .unwrap();
    Rotator::new(Keyring::new(KeyId(1), &[0x42; 32]).unwrap(), config)
}

fn at(t: Timestamp, ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(t.unix_millis() + ms)
}

/// One session's store: the record and its version, or nothing (deleted); and every
/// generation it ever held, with the session that held it.
struct Store {
    record: Option<Session>,
    held: BTreeMap<u64, Session>,
    stores: usize,
}

impl Store {
    fn swap(&mut self, expected: u64, next: Session) -> Swapped {
        match &self.record {
            Some(current) if current.version() == expected => {
                self.held.insert(next.generation(), next.clone());
                self.record = Some(next);
                self.stores += 1;
                Swapped::Stored
            }
            _ => Swapped::Lost,
        }
    }
}

/// A racer: its exchange, the step it waits on, the token it presents, how often it loaded.
struct Racer<'a> {
    exchange: Exchange,
    step: Option<Step>,
    presented: &'a Token,
    loads: u32,
    answer: Option<Answer>,
}

/// Drives every racer to its answer, the next step taken by the racer `schedule` names
/// (cycling), so that loads, swaps and deletes of different racers interleave. With
/// `race`, every racer first takes its first step (its load), so that all of them read
/// the record before any of them stores: a true race.
fn run(
    rotator: &Rotator,
    store: &mut Store,
    racers: &mut [Racer<'_>],
    schedule: &[usize],
    race: bool,
) {
    let first: Vec<usize> = if race {
        (0..racers.len()).collect()
    } else {
        Vec::new()
    };
    let schedule: Vec<usize> = first.iter().chain(schedule).copied().collect();
    let mut turn = 0usize;
    while racers.iter().any(|r| r.answer.is_none()) {
        let pick = schedule
            .get(turn % schedule.len().max(1))
            .copied()
            .unwrap_or(0);
        turn += 1;
        // The named racer, or the next one still running.
        let i = (0..racers.len())
            .map(|k| (pick + k) % racers.len())
            .find(|&k| racers[k].answer.is_none())
            .unwrap();
        let racer = &mut racers[i];
        let step = racer.step.take().unwrap();
        let next = match step {
            Step::Load => {
                racer.loads += 1;
                let loaded = match &store.record {
                    Some(session) => Loaded::Found {
                        session,
                        version: session.version(),
                        claim_matches: true,
                    },
                    None => Loaded::Missing,
                };
                racer.exchange.loaded(rotator, loaded)
            }
            Step::Store {
                session,
                expected_version,
            } => {
                let swapped = store.swap(expected_version, session);
                racer.exchange.swapped(rotator, swapped)
            }
            Step::Delete => {
                store.record = None;
                racer.exchange.deleted(true)
            }
            // This store never fails.
            Step::StoreFailed => racer.exchange.give_up(),
            Step::Answer(answer) => {
                racer.answer = Some(answer);
                continue;
            }
        };
        racer.step = Some(next);
        assert!(turn < 10_000, "an exchange did not end");
    }
}

/// A session after `rotations` rotations, each after the window, and every token it had.
fn history(rotator: &Rotator, rotations: usize) -> (Session, Vec<Token>, Timestamp) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let t0 = Timestamp::from_unix_millis(1_796_083_200_000);
    let (mut session, token) = rotator.sign_in(&mut rng, t0);
    let mut tokens = vec![token];
    let mut now = t0;
    for _ in 0..rotations {
        now = at(now, WINDOW_MS + 1);
        let decision = rotator.decide(&session, rotauth::Request::new(tokens.last().unwrap(), now));
        let (Some(next), Some(token)) = (decision.session_to_store(), decision.token_to_send())
        else {
            panic!("{decision:?}")
        };
        session = next.clone();
        tokens.push(token.clone());
    }
    (session, tokens, now)
}

/// The properties every interleaving keeps.
fn check(
    rotator: &Rotator,
    store: &Store,
    racers: &[Racer<'_>],
    options: Options,
    replay: ReplayPolicy,
) {
    for racer in racers {
        assert!(racer.loads <= options.max_attempts, "{} loads", racer.loads);
        match racer.answer.as_ref().unwrap() {
            Answer::Serve { reply, .. } => {
                if let Some(token) = reply.token() {
                    // The token is one the store held: the session of that generation.
                    let held = store.held.get(&token.generation()).unwrap_or_else(|| {
                        panic!("generation {} was never stored", token.generation())
                    });
                    assert_eq!(
                        rotator.current_token(held).as_ref(),
                        Some(token),
                        "a token of no stored session"
                    );
                }
                if let Reply::Current { token, .. } = reply {
                    assert!(
                        token.generation() <= racer.presented.generation() + 1,
                        "T({}) handed to a holder of T({})",
                        token.generation(),
                        racer.presented.generation()
                    );
                }
            }
            Answer::Refuse(Refusal::Revoked(_)) => {
                assert_eq!(replay, ReplayPolicy::RevokeSession);
                assert!(store.record.is_none(), "revoked but not deleted");
            }
            Answer::Refuse(_) | Answer::Unavailable(_) => {}
            Answer::Accepted { .. } => panic!("a full exchange never answers Accepted"),
        }
    }
}

fn options_strategy() -> impl Strategy<Value = Options> {
    (any::<bool>(), 1u32..=4).prop_map(|(current, attempts)| {
        Options::default()
            .batch_token(if current {
                BatchToken::Current
            } else {
                BatchToken::Blank
            })
            .max_attempts(attempts)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Racers holding any of the session's last tokens, at any moment around the window,
    /// forced or not, in any mode and policy, in any interleaving.
    #[test]
    fn every_interleaving_keeps_the_loops_promises(
        rotations in 0usize..4,
        racers in prop::collection::vec((0usize..4, any::<bool>()), 1..6),
        offset in prop::sample::select(vec![0u64, 1, WINDOW_MS - 1, WINDOW_MS, WINDOW_MS + 1, 3 * WINDOW_MS]),
        recover in any::<bool>(),
        revoke in any::<bool>(),
        options in options_strategy(),
        schedule in prop::collection::vec(0usize..6, 1..40),
    ) {
        let mode = if recover { Mode::Recover } else { Mode::Strict };
        let replay = if revoke { ReplayPolicy::RevokeSession } else { ReplayPolicy::Reject };
        let rotator = rotator(mode, replay);
        let (session, tokens, last) = history(&rotator, rotations);
        let texts: Vec<_> = tokens.iter().map(Token::to_text).collect();
        let now = at(last, offset);
        let mut store = Store { record: Some(session.clone()), held: BTreeMap::new(), stores: 0 };
        for (generation, token) in tokens.iter().enumerate() {
            let _ = token;
            store.held.insert(generation as u64, history(&rotator, generation).0);
        }
        let mut all: Vec<Racer<'_>> = racers
            .iter()
            .map(|&(back, force)| {
                let index = tokens.len() - 1 - back.min(tokens.len() - 1);
                let (exchange, step) = Exchange::new(texts[index].as_str(), now, options.forced(force));
                Racer { exchange, step: Some(step), presented: &tokens[index], loads: 0, answer: None }
            })
            .collect();
        run(&rotator, &mut store, &mut all, &schedule, false);
        check(&rotator, &store, &all, options, replay);
    }

    /// Racers presenting the current token after the window, some forced, all reading the
    /// record before any stores: exactly one new token between them, whatever the
    /// interleaving after that, unless one gave up (503) first. (A forced request that
    /// *first* reads the record after a burst-mate's rotation rotates again, as the design
    /// says; clients force with one request at a time.)
    #[test]
    fn racers_with_one_token_after_the_window_rotate_once(
        rotations in 0usize..3,
        forced in prop::collection::vec(any::<bool>(), 2..8),
        options in options_strategy(),
        schedule in prop::collection::vec(0usize..8, 1..60),
    ) {
        let rotator = rotator(Mode::Strict, ReplayPolicy::Reject);
        let (session, tokens, last) = history(&rotator, rotations);
        let text = tokens.last().unwrap().to_text();
        let now = at(last, WINDOW_MS + 1);
        let mut store = Store { record: Some(session), held: BTreeMap::new(), stores: 0 };
        for generation in 0..tokens.len() {
            store.held.insert(generation as u64, history(&rotator, generation).0);
        }
        let mut all: Vec<Racer<'_>> = forced
            .iter()
            .map(|&force| {
                let (exchange, step) = Exchange::new(text.as_str(), now, options.forced(force));
                Racer { exchange, step: Some(step), presented: tokens.last().unwrap(), loads: 0, answer: None }
            })
            .collect();
        run(&rotator, &mut store, &mut all, &schedule, true);
        check(&rotator, &store, &all, options, ReplayPolicy::Reject);
        let new_tokens = all
            .iter()
            .filter(|r| matches!(r.answer, Some(Answer::Serve { reply: Reply::NewToken { .. }, .. })))
            .count();
        let gave_up = all
            .iter()
            .any(|r| matches!(r.answer, Some(Answer::Unavailable(Unavailable::Contention))));
        prop_assert!(new_tokens <= 1, "{new_tokens} new tokens");
        prop_assert!(new_tokens == 1 || gave_up, "no racer rotated");
        prop_assert_eq!(store.stores, 1, "one rotation stored");
    }
}

/// What the flaky store does at one of its calls.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Answers.
    None,
    /// Fails without writing.
    Fails,
    /// Writes, then fails (the acknowledgement is lost).
    WritesThenFails,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        2 => Just(Fault::None),
        1 => Just(Fault::Fails),
        1 => Just(Fault::WritesThenFails),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// One request at a time against a store whose calls fail, before or after writing, as
    /// `faults` says; the host tries again `patience` times, then gives up. Whatever
    /// happens, a served client holds the stored session's current token (a rotation that
    /// landed is never unannounced), and one the host gave up on holds a token the record
    /// still accepts, unless the host gave up while a write was in doubt.
    #[test]
    fn a_failing_store_never_signs_a_served_client_out(
        requests in prop::collection::vec((prop::sample::select(vec![1u64, WINDOW_MS + 1]), any::<bool>()), 1..6),
        faults in prop::collection::vec(fault(), 0..24),
        patience in 0usize..8,
    ) {
        let rotator = rotator(Mode::Strict, ReplayPolicy::Reject);
        let (session, tokens, mut now) = history(&rotator, 0);
        let mut store = Store { record: Some(session), held: BTreeMap::new(), stores: 0 };
        let mut held = tokens[0].clone();
        let mut faults = faults.into_iter();
        let mut next_fault = move || faults.next().unwrap_or(Fault::None);
        for (wait, force) in requests {
            now = at(now, wait);
            let text = held.to_text();
            let (mut exchange, mut step) = Exchange::new(text.as_str(), now, Options::default().forced(force));
            let (mut tries, mut in_doubt) = (0, false);
            let answer = loop {
                step = match step {
                    Step::Load => match next_fault() {
                        Fault::None => {
                            let current = store.record.clone().unwrap();
                            let loaded = Loaded::Found { session: &current, version: current.version(), claim_matches: true };
                            exchange.loaded(&rotator, loaded)
                        }
                        _ => exchange.loaded(&rotator, Loaded::Failed),
                    },
                    Step::Store { session, expected_version } => match next_fault() {
                        Fault::None => {
                            in_doubt = false;
                            let swapped = store.swap(expected_version, session);
                            exchange.swapped(&rotator, swapped)
                        }
                        Fault::Fails => {
                            in_doubt = true;
                            exchange.swapped(&rotator, Swapped::Failed)
                        }
                        Fault::WritesThenFails => {
                            in_doubt = true;
                            let _ = store.swap(expected_version, session);
                            exchange.swapped(&rotator, Swapped::Failed)
                        }
                    },
                    Step::Delete => panic!("nothing is revoked here"),
                    Step::StoreFailed if tries < patience => {
                        tries += 1;
                        exchange.retry()
                    }
                    Step::StoreFailed => exchange.give_up(),
                    Step::Answer(answer) => break answer,
                };
            };
            let record = store.record.clone().unwrap();
            let current = rotator.current_token(&record).unwrap();
            match answer {
                Answer::Serve { reply, .. } => {
                    if let Some(token) = reply.token() {
                        held = token.clone();
                    }
                    prop_assert_eq!(
                        &current,
                        &held,
                        "a served client does not hold the stored session's token"
                    );
                }
                Answer::Unavailable(Unavailable::Store) if in_doubt => {
                    // The documented residue: given up while a write was in doubt. The
                    // client goes on with its old token; resync it for the next request.
                    held = current;
                }
                Answer::Unavailable(_) => prop_assert_eq!(
                    &current,
                    &held,
                    "a 503 without a write in doubt changed the token"
                ),
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}

/// The steps of each kind of request, one at a time.
#[test]
fn each_path_asks_for_what_it_needs() {
    let rotator = rotator(Mode::Strict, ReplayPolicy::RevokeSession);
    let (session, tokens, last) = history(&rotator, 3);
    let found = Loaded::Found {
        session: &session,
        version: session.version(),
        claim_matches: true,
    };
    let texts: Vec<_> = tokens.iter().map(Token::to_text).collect();

    // A batch member stores nothing and is served without a token.
    let (mut exchange, step) = Exchange::new(texts[3].as_str(), at(last, 1), Options::default());
    assert!(matches!(step, Step::Load));
    assert!(matches!(
        exchange.loaded(&rotator, found),
        Step::Answer(Answer::Serve {
            reply: Reply::Batch { .. },
            ..
        })
    ));
    // A replay under RevokeSession deletes first, and a failed delete is a 503.
    let (mut exchange, _) = Exchange::new(
        texts[1].as_str(),
        at(last, WINDOW_MS + 1),
        Options::default(),
    );
    assert!(matches!(exchange.loaded(&rotator, found), Step::Delete));
    assert!(matches!(exchange.deleted(false), Step::StoreFailed));
    assert!(matches!(
        exchange.give_up(),
        Step::Answer(Answer::Unavailable(Unavailable::Store))
    ));
    // A claim of another user is refused before anything is decided.
    let (mut exchange, _) = Exchange::new(texts[3].as_str(), at(last, 1), Options::default());
    let claimed = Loaded::Found {
        session: &session,
        version: session.version(),
        claim_matches: false,
    };
    assert!(matches!(
        exchange.loaded(&rotator, claimed),
        Step::Answer(Answer::Refuse(Refusal::UserMismatch))
    ));
    // A check decides without asking to store.
    let (mut exchange, _) = Exchange::check(texts[3].as_str(), at(last, WINDOW_MS + 1));
    assert!(matches!(
        exchange.loaded(&rotator, found),
        Step::Answer(Answer::Accepted { .. })
    ));
    // Text that is no token is refused as malformed; no session, or a corrupt one, is a 401.
    let (mut exchange, _) = Exchange::new("not a token", last, Options::default());
    assert!(matches!(
        exchange.loaded(&rotator, found),
        Step::Answer(Answer::Refuse(Refusal::Rejected(RejectReason::Malformed(
            _
        ))))
    ));
    // Without a session the text is not looked at: unknown session, as the decision says.
    let (mut exchange, _) = Exchange::new("not a token", last, Options::default());
    assert!(matches!(
        exchange.loaded(&rotator, Loaded::Missing),
        Step::Answer(Answer::Refuse(Refusal::Rejected(
            RejectReason::UnknownSession
        )))
    ));
    // The exchange owns what it needs of the text: a host may drop the request's text
    // and drive the exchange later (an asynchronous host keeps it in a table).
    let text = texts[3].as_str().to_owned();
    let (mut exchange, _) = Exchange::new(&text, at(last, WINDOW_MS + 1), Options::default());
    drop(text);
    assert!(matches!(
        exchange.loaded(&rotator, found),
        Step::Store { .. }
    ));
    for loaded in [Loaded::Missing, Loaded::Corrupt] {
        let (mut exchange, _) = Exchange::new(texts[3].as_str(), last, Options::default());
        let Step::Answer(answer) = exchange.loaded(&rotator, loaded) else {
            panic!()
        };
        assert!(matches!(
            answer,
            Answer::Refuse(
                Refusal::Rejected(RejectReason::UnknownSession) | Refusal::CorruptRecord
            )
        ));
    }
    // A rotation asks to store, and answers only after the store said so; a failed swap
    // is a 503 without the token.
    let (mut exchange, _) = Exchange::new(
        texts[3].as_str(),
        at(last, WINDOW_MS + 1),
        Options::default(),
    );
    let Step::Store {
        expected_version, ..
    } = exchange.loaded(&rotator, found)
    else {
        panic!()
    };
    assert_eq!(expected_version, session.version());
    assert!(matches!(
        exchange.swapped(&rotator, Swapped::Failed),
        Step::StoreFailed
    ));
    assert!(matches!(
        exchange.give_up(),
        Step::Answer(Answer::Unavailable(Unavailable::Store))
    ));
    // A failing store asks the host to retry or give up; retrying loads again.
    let (mut exchange, _) = Exchange::new(texts[3].as_str(), last, Options::default());
    assert!(matches!(
        exchange.loaded(&rotator, Loaded::Failed),
        Step::StoreFailed
    ));
    assert!(matches!(exchange.retry(), Step::Load));
    // Results out of turn are a host bug: answered as a store failure, never served.
    let (mut exchange, _) = Exchange::new(texts[3].as_str(), last, Options::default());
    assert!(matches!(
        exchange.swapped(&rotator, Swapped::Stored),
        Step::Answer(Answer::Unavailable(Unavailable::Store))
    ));
}
