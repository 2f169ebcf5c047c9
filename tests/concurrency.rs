//! The storage contract under concurrency: a deterministic interleaving scheduler (single-threaded and
//! seeded, so it runs under WASI and Miri) plays N browser tabs sharing one session, each
//! firing bursts of parallel requests like a page load, against hosts that keep the record
//! in (a) a compare-and-swap store and (b) a last-write-wins store.
//!
//! Every request goes through four steps that the scheduler interleaves at random with
//! every other request's steps and with the clock: read the record, decide, write the
//! result (if any), respond. A CAS write that loses re-reads and decides again, as the storage contract
//! tells hosts to. The tabs share one token jar (like `localStorage`) that keeps the newest
//! token any response brought; each burst presents what the jar held when it started.
//!
//! Asserted over every interleaving:
//! - with CAS, exactly one Rotate per generation, and every other request BatchReuse;
//! - with either store, no request of a client that follows its responses is refused;
//! - every token a response sends is accepted by the record the store holds at that moment;
//! - with CAS, no response ever brings a token older than one already delivered.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not reach,
// and test arithmetic on known small values, which no clippy.toml setting covers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rotauth::{
    Config, Decision, KeyId, Keyring, Mode, Request, Rotator, Session, Timestamp, Token,
};

const KEY: [u8; 32] = *b"concurrency test key, 32 bytes!!";
/// 2026-11-29T00:00:00Z.
const START: u64 = 1_796_083_200_000;
/// The default batch window.
const W: u64 = 5_000;
const HOUR: u64 = 3_600_000;
/// Browser tabs sharing the session.
const CLIENTS: usize = 3;
/// Requests in one page load.
const MAX_BURST: usize = 4;

/// Seeds per (store, mode) pair, and episodes (rounds of overlapping bursts) per seed.
/// Miri interprets each HMAC in about half a second.
#[cfg(not(miri))]
const SEEDS: u64 = 1_000;
#[cfg(not(miri))]
const EPISODES: usize = 12;
#[cfg(miri)]
const SEEDS: u64 = 1;
#[cfg(miri)]
const EPISODES: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    CompareAndSwap,
    LastWriteWins,
    /// Last write wins, and one write in eight is lost after the response went out (a
    /// failover, a restored backup): the record regresses and must fast-forward.
    LastWriteWinsLossy,
}

#[derive(Debug)]
enum Stage {
    Read,
    Decide(Session),
    /// The version read, and the decision to store.
    Write(u64, Decision),
    Respond(Decision),
}

struct InFlight {
    client: usize,
    token: Token,
    stage: Stage,
}

#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    episodes: u64,
    requests: u64,
    rotates: u64,
    batch_reuses: u64,
    cas_retries: u64,
    stale_writes: u64,
    lost_writes: u64,
    fast_forwards: u64,
}

impl Stats {
    fn add(&mut self, other: &Self) {
        self.episodes += other.episodes;
        self.requests += other.requests;
        self.rotates += other.rotates;
        self.batch_reuses += other.batch_reuses;
        self.cas_retries += other.cas_retries;
        self.stale_writes += other.stale_writes;
        self.lost_writes += other.lost_writes;
        self.fast_forwards += other.fast_forwards;
    }
}

struct Sim {
    store: Store,
    rotator: Rotator,
    rng: StdRng,
    now: u64,
    record: Session,
    /// The newest token any response delivered, shared by the tabs.
    jar: Token,
    in_flight: Vec<InFlight>,
    /// Bursts each tab still fires this episode, and whether one is in flight.
    bursts_left: [u32; CLIENTS],
    busy: [usize; CLIENTS],
    /// Rotations committed (written and answered), by the generation they created.
    rotations: BTreeMap<u64, u32>,
    episode_rotations: u32,
    stats: Stats,
    seed: u64,
}

impl Sim {
    fn new(store: Store, mode: Mode, seed: u64) -> Self {
        let config = Config::builder().mode(mode).build().unwrap();
        let rotator = Rotator::new(Keyring::new(KeyId(1), &KEY).unwrap(), config);
        let mut rng = StdRng::seed_from_u64(seed);
        let (record, jar) = rotator.sign_in(&mut rng, Timestamp::from_unix_millis(START));
        Self {
            store,
            rotator,
            rng,
            now: START,
            record,
            jar,
            in_flight: Vec::new(),
            bursts_left: [0; CLIENTS],
            busy: [0; CLIENTS],
            rotations: BTreeMap::new(),
            episode_rotations: 0,
            stats: Stats::default(),
            seed,
        }
    }

    fn context(&self) -> String {
        format!(
            "store {:?}, seed {}, now {}, record {:?}",
            self.store, self.seed, self.now, self.record
        )
    }

    /// One round: every tab fires one or two page loads (the second after the first has
    /// been answered), interleaved at random; the clock moves by less than `W/2` in all.
    fn episode(&mut self) {
        self.stats.episodes += 1;
        self.episode_rotations = 0;
        for left in &mut self.bursts_left {
            *left = self.rng.random_range(1..=2);
        }
        let start = self.now;
        loop {
            let idle: Vec<usize> = (0..CLIENTS)
                .filter(|&c| self.bursts_left[c] > 0 && self.busy[c] == 0)
                .collect();
            let choices = idle.len() + self.in_flight.len();
            if choices == 0 {
                break;
            }
            let choice = self.rng.random_range(0..choices);
            if let Some(&client) = idle.get(choice) {
                self.start_burst(client);
            } else {
                self.step(choice - idle.len());
            }
            if self.rng.random_bool(0.5) {
                let dt = self.rng.random_range(0..=W / 40);
                // Keep every episode shorter than half a window, so that a page load is a
                // batch: its requests are all decided within `W` of each other.
                if self.now + dt < start + W / 2 {
                    self.now += dt;
                }
            }
        }
        if self.store == Store::CompareAndSwap {
            assert!(
                self.episode_rotations <= 1,
                "two rotations in one batch: {}",
                self.context()
            );
        }
    }

    fn start_burst(&mut self, client: usize) {
        self.bursts_left[client] -= 1;
        let size = self.rng.random_range(1..=MAX_BURST);
        self.busy[client] = size;
        for _ in 0..size {
            self.in_flight.push(InFlight {
                client,
                token: self.jar.clone(),
                stage: Stage::Read,
            });
        }
    }

    /// Advances request `index` by one step.
    fn step(&mut self, index: usize) {
        let stage = core::mem::replace(&mut self.in_flight[index].stage, Stage::Read);
        let next = match stage {
            Stage::Read => Stage::Decide(self.record.clone()),
            Stage::Decide(read) => {
                let token = &self.in_flight[index].token;
                let text = token.to_text();
                let now = Timestamp::from_unix_millis(self.now);
                let decision = self.rotator.decide(&read, Request::new(text.as_str(), now));
                assert!(
                    decision.is_accepted(),
                    "a following client was refused: {decision:?}, read {read:?}, presented \
                     generation {}, {}",
                    token.generation(),
                    self.context()
                );
                if token.generation() > read.generation() {
                    self.stats.fast_forwards += 1;
                }
                match decision.session_to_store() {
                    Some(_) => Stage::Write(read.version(), decision),
                    None => Stage::Respond(decision),
                }
            }
            Stage::Write(version, decision) => {
                let new = decision
                    .session_to_store()
                    .expect("a decision to write")
                    .clone();
                match self.store {
                    Store::CompareAndSwap if self.record.version() != version => {
                        // Lost the race: re-read and decide again.
                        self.stats.cas_retries += 1;
                        Stage::Read
                    }
                    Store::CompareAndSwap => {
                        self.record = new;
                        Stage::Respond(decision)
                    }
                    Store::LastWriteWinsLossy if self.rng.random_bool(1.0 / 8.0) => {
                        self.stats.lost_writes += 1;
                        Stage::Respond(decision)
                    }
                    Store::LastWriteWins | Store::LastWriteWinsLossy => {
                        if self.record.version() != version {
                            self.stats.stale_writes += 1;
                        }
                        self.record = new;
                        Stage::Respond(decision)
                    }
                }
            }
            Stage::Respond(decision) => {
                self.respond(index, &decision);
                return;
            }
        };
        self.in_flight[index].stage = next;
    }

    fn respond(&mut self, index: usize, decision: &Decision) {
        let request = self.in_flight.swap_remove(index);
        self.busy[request.client] -= 1;
        self.stats.requests += 1;
        match decision {
            Decision::Rotate { session, .. } => {
                self.stats.rotates += 1;
                self.episode_rotations += 1;
                *self.rotations.entry(session.generation()).or_default() += 1;
            }
            Decision::BatchReuse { .. } => self.stats.batch_reuses += 1,
            other => panic!(
                "neither Rotate nor BatchReuse: {other:?}, {}",
                self.context()
            ),
        }
        if let Some(token) = decision.token_to_send() {
            let now = Timestamp::from_unix_millis(self.now);
            let check = self.rotator.decide(&self.record, Request::new(token, now));
            assert!(
                check.is_accepted(),
                "the store refuses the token just sent: {check:?}, sent generation {}, {}",
                token.generation(),
                self.context()
            );
            if token.generation() > self.jar.generation() {
                self.jar = token.clone();
            } else if self.store == Store::CompareAndSwap {
                assert_eq!(
                    token.generation(),
                    self.jar.generation(),
                    "an outdated token arrived after a newer one: {}",
                    self.context()
                );
            }
        }
    }

    /// Time between page loads: inside the window, at its edge, after it, much later, or
    /// on a clock that went back a little.
    fn pause(&mut self) {
        let dt = match self.rng.random_range(0..6) {
            0 => self.rng.random_range(0..W),
            1 => W,
            2 => self.rng.random_range(W..2 * W),
            3 => self.rng.random_range(2 * W..HOUR),
            4 => self.rng.random_range(HOUR..24 * HOUR),
            _ => {
                self.now -= self.rng.random_range(0..W / 2);
                0
            }
        };
        self.now += dt;
    }

    fn run(mut self) -> Stats {
        for _ in 0..EPISODES {
            self.pause();
            self.episode();
        }
        if self.store == Store::CompareAndSwap {
            let n = self.record.generation();
            let expected: BTreeMap<u64, u32> = (1..=n).map(|g| (g, 1)).collect();
            assert_eq!(
                self.rotations,
                expected,
                "one Rotate per generation: {}",
                self.context()
            );
        }
        self.stats
    }
}

/// Runs `SEEDS` seeds (or `ROTAUTH_SIM_SEEDS`, for a longer local run); with
/// `ROTAUTH_SIM_STATS` set, prints the totals.
fn simulate(store: Store, mode: Mode) -> Stats {
    let seeds = std::env::var("ROTAUTH_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS);
    let mut total = Stats::default();
    for seed in 0..seeds {
        total.add(&Sim::new(store, mode, seed).run());
    }
    assert_eq!(total.episodes, seeds * EPISODES as u64);
    if std::env::var_os("ROTAUTH_SIM_STATS").is_some() {
        eprintln!("{store:?} {mode:?} {seeds} seeds: {total:?}");
    }
    // Miri's one short run may not reach a rotation; the full runs must reach both kinds.
    assert!(
        cfg!(miri) || (total.rotates > 0 && total.batch_reuses > 0),
        "{total:?}"
    );
    assert!(total.requests > 0);
    total
}

#[test]
fn compare_and_swap_store_strict() {
    let stats = simulate(Store::CompareAndSwap, Mode::Strict);
    assert!(
        cfg!(miri) || stats.cas_retries > 0,
        "no race was ever lost: {stats:?}"
    );
}

#[test]
fn compare_and_swap_store_recover() {
    simulate(Store::CompareAndSwap, Mode::Recover);
}

#[test]
fn last_write_wins_store_strict() {
    let stats = simulate(Store::LastWriteWins, Mode::Strict);
    assert!(
        cfg!(miri) || stats.stale_writes > 0,
        "no write was ever stale: {stats:?}"
    );
}

#[test]
fn last_write_wins_store_recover() {
    let stats = simulate(Store::LastWriteWins, Mode::Recover);
    assert!(
        cfg!(miri) || stats.fast_forwards > 0,
        "no record ever regressed: {stats:?}"
    );
}

#[test]
fn lossy_last_write_wins_store_strict() {
    let stats = simulate(Store::LastWriteWinsLossy, Mode::Strict);
    assert!(
        cfg!(miri) || stats.fast_forwards > 0,
        "no record ever regressed: {stats:?}"
    );
}

#[test]
fn lossy_last_write_wins_store_recover() {
    simulate(Store::LastWriteWinsLossy, Mode::Recover);
}

/// Lost writes in a row within one window: each fast-forward replays the lost rotation's
/// window from `now`, so the batch stays a batch and its late requests still get in. (With
/// the stale record's window kept instead, each fast-forward rotated again and a late
/// request of the first page load ended three generations behind, refused as a replay.)
#[test]
fn lost_writes_in_a_row_refuse_no_request_of_the_batch() {
    let rotator = Rotator::new(Keyring::new(KeyId(1), &KEY).unwrap(), Config::default());
    let at = |ms| Timestamp::from_unix_millis(START + ms);
    let (stored, t0) = rotator.sign_in(&mut StdRng::seed_from_u64(1), at(0));
    // Page load 1, after the window: rotates to 1; the write is lost.
    let Decision::Rotate { token: t1, .. } = rotator.decide(&stored, Request::new(&t0, at(W)))
    else {
        panic!("expected a rotation");
    };
    // Page load 2 with T(1), against the stale record: a fast-forward whose window opens
    // now, so a batch member; its write is lost too.
    let second = rotator.decide(&stored, Request::new(&t1, at(W + 1)));
    let Decision::BatchReuse {
        updated: Some(adopted),
    } = &second
    else {
        panic!("expected a fast-forward batch member, got {second:?}");
    };
    assert_eq!(adopted.generation(), 1);
    assert_eq!(adopted.rotated_at(), at(W + 1));
    // Page load 3 with T(1) again: the same, and this write lands.
    let Decision::BatchReuse {
        updated: Some(stored),
    } = rotator.decide(&stored, Request::new(&t1, at(W + 2)))
    else {
        panic!("expected a fast-forward batch member");
    };
    // A request of page load 1, still in flight with T(0), is one behind, inside the window.
    let late = rotator.decide(&stored, Request::new(&t0, at(W + 3)));
    assert_eq!(late, Decision::BatchReuse { updated: None });
}
