//! Whether rotauth's secret comparisons take the same time whatever the secret, measured as
//! dudect does (Reparaz, Balasch and Verbauwhede, "Dude, is my code constant time?", 2017):
//! two classes of input that differ only in where a secret differs, measured one call at a
//! time in a random interleaving of the classes (a new order every run), then Welch's
//! t-test between the two distributions of times, raw and cropped at dudect's 100
//! percentiles. |t| < 4.5 means no leak detected. Each call is timed with `Instant`: the
//! cycle counter needs `unsafe`, which the workspace forbids. Where `Instant` steps in
//! several nanoseconds (10 ns on the benchmark machine), a smaller difference still shows,
//! through the average of many measurements that each start at a random phase of the clock.
//!
//! Run: `cargo bench -p rotauth --bench constant_time` (a few seconds). `CT_MEASUREMENTS`
//! sets the number of measurements per class and comparison (default 1 000 000);
//! `-- --test` measures 1 000 per class and gives no verdict (`.ci/bench.sh` runs every
//! bench in test mode, so that none rots); `-- --gate` applies the CI rule below and exits
//! non-zero if it fails. A secret comparison between 4.5 and the gate's threshold is
//! marked in the table but does not fail the gate.
//!
//! What is compared:
//! - `Rotator::decide` on a forged token whose MAC differs from the right one in its first
//!   byte (class A) or its last (class B), with the same key id, generation and session;
//! - `Session == Session`, the public comparison that reaches the seed's `ConstantTimeEq`:
//!   two records equal but for the first byte of the seed (A) or its last (B);
//! - controls, which must be flagged for the result to mean anything: the same work as the
//!   decision (one HMAC through `Rotator::current_token`) followed by a byte-by-byte
//!   comparison of the MACs that returns at the first difference, and that comparison alone
//!   on seeds; and, for information, the same HMAC followed by `==` on the 32-byte MACs,
//!   which is what naive code writes. That `==` is not flagged, and rightly: rustc compiles
//!   it to two 16-byte vector comparisons with no early exit. The controls therefore
//!   compare byte by byte through `black_box`, a leak of one to two cycles per byte that no
//!   compiler can turn into a wide comparison.
//!
//! The CI rule (`--gate`): a secret comparison fails if its |t|, raw or cropped, is at least
//! `GATE_T` (10, dudect's own failure threshold and more than twice 4.5) in two
//! independent measurements, while its control is flagged (|t| ≥ 4.5) in the run. A control
//! that is not flagged means the machine was too noisy to see a leak: the run says so and
//! passes. Random interleaving spreads the noise of a shared machine over both classes
//! alike, so noise lowers |t| rather than raising it; the second measurement guards
//! against anything transient.

#![cfg(not(target_family = "wasm"))]
// Not test code for clippy (its own `main`, no `#[test]`): setup failures panic, as in tests.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rotauth::{
    Config, Decision, KeyId, Keyring, RejectReason, Request, Rotator, Session, Timestamp, Token,
};

/// The usual threshold: below it, no leak detected.
const T_LEAK: f64 = 4.5;
/// The CI gate's threshold, a wide margin above [`T_LEAK`].
const GATE_T: f64 = 10.0;
/// Measurements per class unless `CT_MEASUREMENTS` says otherwise.
const DEFAULT_MEASUREMENTS: usize = 1_000_000;
/// Measurements per class in `--test` mode.
const TEST_MEASUREMENTS: usize = 1_000;
/// Unrecorded calls before each measurement run: caches, predictors, clock frequency.
const WARM_UP: usize = 10_000;
/// A crop with fewer measurements than this in either class is left out.
const MIN_CROPPED: u64 = 100;
/// Where the MAC starts in a token's 41 bytes (after key id and generation).
const MAC_AT: usize = 9;
/// Where the seed starts in a record's encoding (after format and client id).
const SEED_AT: usize = 17;
/// Length of the seed in a record.
const SEED_LEN: usize = 16;

// ---------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------

/// Times `op` on `n` inputs of each class, in a random order. Before each call the class's
/// input is copied into one slot, outside the timing, so that both classes are read from
/// the same address; then one call is timed with `Instant`.
fn measure<I: Clone, R>(n: usize, inputs: [&I; 2], op: impl Fn(&I) -> R) -> [Vec<u64>; 2] {
    let mut order: Vec<usize> = (0..2 * n).map(|i| i % 2).collect();
    order.shuffle(&mut rand::rng());
    let mut slot = inputs[0].clone();
    for &class in order.iter().cycle().take(WARM_UP) {
        slot.clone_from(inputs[class]);
        black_box(op(black_box(&slot)));
    }
    let mut times = [Vec::with_capacity(n), Vec::with_capacity(n)];
    for &class in &order {
        slot.clone_from(inputs[class]);
        let start = Instant::now();
        let out = black_box(op(black_box(&slot)));
        let elapsed = start.elapsed();
        // Dropped outside the timing, as the input is copied outside it.
        drop(out);
        times[class].push(elapsed.as_nanos() as u64);
    }
    times
}

// ---------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------

/// Count, sum and sum of squares of nanosecond times, exact in integers.
#[derive(Clone, Copy, Default)]
struct Moments {
    n: u64,
    sum: u128,
    squares: u128,
}

impl Moments {
    fn add(&mut self, x: u64) {
        self.n += 1;
        self.sum += u128::from(x);
        self.squares += u128::from(x) * u128::from(x);
    }

    fn mean(&self) -> f64 {
        self.sum as f64 / self.n as f64
    }

    /// The unbiased sample variance.
    fn variance(&self) -> f64 {
        let n = u128::from(self.n);
        (n * self.squares - self.sum * self.sum) as f64 / (n * (n - 1)) as f64
    }
}

/// Welch's t between two samples.
fn welch(a: &Moments, b: &Moments) -> f64 {
    let spread = (a.variance() / a.n as f64 + b.variance() / b.n as f64).sqrt();
    let difference = a.mean() - b.mean();
    if spread > 0.0 {
        difference / spread
    } else if difference == 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// What one comparison measured.
struct Outcome {
    per_class: usize,
    medians: [u64; 2],
    raw: f64,
    /// The largest |t| over the crops, and the share of the pooled times kept by that crop.
    cropped: f64,
    kept: f64,
}

impl Outcome {
    /// The larger |t| of the raw and cropped tests.
    fn score(&self) -> f64 {
        self.raw.max(self.cropped)
    }
}

/// Welch's t of the raw times, and the largest over dudect's crops: the times below the
/// pooled percentile `1 − 0.5^(10 k / 100)`, for k = 1..=100 (from 6.7 % to 99.9 % of the
/// times kept), which drop the long tail that interrupts and other processes add.
fn analyse(times: &[Vec<u64>; 2]) -> Outcome {
    let moments = |t: &[u64]| {
        let mut m = Moments::default();
        t.iter().for_each(|x| m.add(*x));
        m
    };
    let (a, b) = (moments(&times[0]), moments(&times[1]));
    let raw = welch(&a, &b).abs();

    let mut pooled: Vec<u64> = times.iter().flatten().copied().collect();
    pooled.sort_unstable();
    let mut sorted = times.clone();
    sorted.iter_mut().for_each(|t| t.sort_unstable());
    let (mut cropped, mut kept) = (0.0f64, 1.0);
    let mut crop = [Moments::default(); 2];
    let mut next = [0usize; 2];
    for k in 1..=100 {
        let share = 1.0 - 0.5f64.powf(f64::from(k) / 10.0);
        let threshold = pooled[(share * (pooled.len() - 1) as f64) as usize];
        for class in 0..2 {
            while next[class] < sorted[class].len() && sorted[class][next[class]] < threshold {
                crop[class].add(sorted[class][next[class]]);
                next[class] += 1;
            }
        }
        if crop.iter().all(|m| m.n >= MIN_CROPPED) {
            let t = welch(&crop[0], &crop[1]).abs();
            if t > cropped {
                (cropped, kept) = (t, share);
            }
        }
    }
    Outcome {
        per_class: times[0].len().min(times[1].len()),
        medians: sorted.each_ref().map(|t| t[t.len() / 2]),
        raw,
        cropped,
        kept,
    }
}

// ---------------------------------------------------------------------------------------
// The comparisons
// ---------------------------------------------------------------------------------------

/// One comparison to measure: what, the two classes, and the measuring run.
struct Comparison<'a> {
    name: &'static str,
    classes: &'static str,
    run: Box<dyn Fn(usize) -> [Vec<u64>; 2] + 'a>,
}

/// What is measured: each of rotauth's secret comparisons with the deliberate leak that
/// shows the measurement can see one (its control), and comparisons shown for information.
struct Checks<'a> {
    /// `[secret, control]`: the secret comparison must not be flagged, its control must.
    pairs: Vec<[Comparison<'a>; 2]>,
    shown: Vec<Comparison<'a>>,
}

/// Byte by byte, returning at the first difference: what constant-time code must not do.
/// Each byte goes through `black_box`, so that the compiler cannot turn the loop into
/// one wide comparison: the per-byte cost is then about a cycle or two, and visible.
#[inline(never)]
fn early_exit_eq(a: &[u8], b: &[u8]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if black_box(*x) != *y {
            return false;
        }
    }
    a.len() == b.len()
}

/// `bytes` with its byte `at` flipped in the lowest bit.
fn flipped<const N: usize>(bytes: &[u8; N], at: usize) -> [u8; N] {
    let mut out = *bytes;
    out[at] ^= 1;
    out
}

struct Fixture {
    rotator: Rotator,
    session: Session,
    now: Timestamp,
    /// The session's `T(0)` with its first MAC byte flipped, and with its last.
    forged: [Token; 2],
    /// The session's record with the first seed byte flipped, and with the last.
    wrong_seed_records: [Session; 2],
    /// The seed alone, right, and with its first byte flipped and with its last.
    seed: [u8; SEED_LEN],
    wrong_seeds: [[u8; SEED_LEN]; 2],
}

fn fixture() -> Fixture {
    let rotator = Rotator::new(
        Keyring::new(KeyId(1), &[0x4b; 32]).unwrap(),
        Config::default(),
    );
    let now = Timestamp::from_unix_millis(1_735_689_600_000);
    let (session, token) = rotator.sign_in(&mut StdRng::seed_from_u64(4), now);
    let forged = [MAC_AT, token.as_bytes().len() - 1]
        .map(|at| Token::from_bytes(&flipped(token.as_bytes(), at)).unwrap());
    for token in &forged {
        let decision = rotator.decide(&session, Request::new(token, now));
        assert_eq!(
            decision,
            Decision::Reject {
                reason: RejectReason::Forged
            }
        );
    }
    let record: [u8; Session::ENCODED_LEN] = session.encode().as_ref().try_into().unwrap();
    let wrong_seed_records =
        [SEED_AT, SEED_AT + SEED_LEN - 1].map(|at| Session::decode(&flipped(&record, at)).unwrap());
    for other in &wrong_seed_records {
        assert!(session != *other && session.client_id() == other.client_id());
    }
    let seed: [u8; SEED_LEN] = record[SEED_AT..SEED_AT + SEED_LEN].try_into().unwrap();
    let wrong_seeds = [flipped(&seed, 0), flipped(&seed, SEED_LEN - 1)];
    Fixture {
        rotator,
        session,
        now,
        forged,
        wrong_seed_records,
        seed,
        wrong_seeds,
    }
}

fn checks(f: &Fixture) -> Checks<'_> {
    let [first, last] = &f.forged;
    let [seed_first, seed_last] = &f.wrong_seed_records;
    const MAC_CLASSES: &str = "MAC wrong in its first byte / in its last";
    const SEED_CLASSES: &str = "seed wrong in its first byte / in its last";
    // The MAC the decision computes: one HMAC, as `Rotator::decide` does to check a token.
    let expected_mac = move || {
        let expected = f.rotator.current_token(&f.session).unwrap();
        let mut mac = [0u8; 32];
        mac.copy_from_slice(&expected.as_bytes()[MAC_AT..]);
        mac
    };
    Checks {
        pairs: vec![
            [
                Comparison {
                    name: "`Rotator::decide`, forged token (one HMAC, then the MAC check)",
                    classes: MAC_CLASSES,
                    run: Box::new(move |n| {
                        measure(n, [first, last], |t: &Token| {
                            f.rotator.decide(&f.session, Request::new(t, f.now))
                        })
                    }),
                },
                Comparison {
                    name: "control: one HMAC, then an early-exit MAC check",
                    classes: MAC_CLASSES,
                    run: Box::new(move |n| {
                        measure(n, [first, last], |t: &Token| {
                            early_exit_eq(&expected_mac(), &t.as_bytes()[MAC_AT..])
                        })
                    }),
                },
            ],
            [
                Comparison {
                    name: "`Session == Session` (the seed's `ConstantTimeEq`)",
                    classes: SEED_CLASSES,
                    run: Box::new(move |n| {
                        measure(n, [seed_first, seed_last], |s: &Session| f.session == *s)
                    }),
                },
                Comparison {
                    name: "control: an early-exit seed check",
                    classes: SEED_CLASSES,
                    run: Box::new(move |n| {
                        let [first, last] = &f.wrong_seeds;
                        measure(n, [first, last], |s: &[u8; SEED_LEN]| {
                            early_exit_eq(&f.seed, s)
                        })
                    }),
                },
            ],
        ],
        shown: vec![Comparison {
            name: "shown: one HMAC, then `==` on the 32-byte MACs",
            classes: MAC_CLASSES,
            run: Box::new(move |n| {
                measure(n, [first, last], |t: &Token| {
                    expected_mac()[..] == t.as_bytes()[MAC_AT..]
                })
            }),
        }],
    }
}

// ---------------------------------------------------------------------------------------
// The table and the gate
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Test,
    Gate,
}

fn measurements(mode: Mode) -> usize {
    if mode == Mode::Test {
        return TEST_MEASUREMENTS;
    }
    match std::env::var("CT_MEASUREMENTS") {
        Ok(text) => text
            .replace('_', "")
            .parse()
            .ok()
            .filter(|n| *n >= 1_000)
            .unwrap_or_else(|| panic!("CT_MEASUREMENTS={text}: a count of at least 1000")),
        Err(_) => DEFAULT_MEASUREMENTS,
    }
}

/// How a row is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// rotauth's code: must not be flagged.
    Secret,
    /// A deliberate leak: must be flagged, or the measurement cannot see one.
    Control,
    /// Shown for information, with no expectation.
    Shown,
}

fn verdict(role: Role, outcome: &Outcome, mode: Mode) -> &'static str {
    let flagged = outcome.score() >= T_LEAK;
    match (mode, role, flagged) {
        (Mode::Test, _, _) => "(test mode: no verdict)",
        (_, Role::Secret | Role::Shown, false) => "no leak detected",
        (_, Role::Secret, true) => "**leak?** |t| ≥ 4.5",
        (_, Role::Control, true) => "leak detected, as it must be",
        (_, Role::Control, false) => "**not detected**: this run cannot see a leak",
        (_, Role::Shown, true) => "leak detected",
    }
}

fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| String::from("unknown CPU"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        return ExitCode::SUCCESS;
    }
    let mode = if has("--test") {
        Mode::Test
    } else if has("--gate") {
        Mode::Gate
    } else {
        Mode::Full
    };
    let n = measurements(mode);
    let fixture = fixture();
    let checks = checks(&fixture);
    let started = Instant::now();
    let rows: Vec<(Role, &Comparison<'_>)> = checks
        .pairs
        .iter()
        .flat_map(|[secret, control]| [(Role::Secret, secret), (Role::Control, control)])
        .chain(checks.shown.iter().map(|c| (Role::Shown, c)))
        .collect();
    let outcomes: Vec<Outcome> = rows.iter().map(|(_, c)| analyse(&(c.run)(n))).collect();

    println!();
    println!(
        "## rotauth constant-time check (dudect: Welch's t over interleaved classes, one call \
         per measurement; |t| < {T_LEAK} = no leak detected; {}; {} measurements in {:.1} s)",
        machine(),
        2 * n * rows.len(),
        started.elapsed().as_secs_f64(),
    );
    println!();
    println!(
        "| compared | class A / class B | per class | median A / B | \\|t\\| raw | \\|t\\| cropped \
         (largest of 100 crops, share kept) | verdict |"
    );
    println!("|---|---|---:|---:|---:|---:|---|");
    for ((role, c), o) in rows.iter().zip(&outcomes) {
        println!(
            "| {} | {} | {} | {} / {} ns | {:.2} | {:.2} ({:.1} %) | {} |",
            c.name,
            c.classes,
            o.per_class,
            o.medians[0],
            o.medians[1],
            o.raw,
            o.cropped,
            100.0 * o.kept,
            verdict(*role, o, mode),
        );
    }
    println!();
    if mode != Mode::Gate {
        return ExitCode::SUCCESS;
    }
    // `rows` holds each pair as two consecutive rows, secret first.
    let failed = checks
        .pairs
        .iter()
        .zip(outcomes.chunks_exact(2))
        .map(|([secret, _], pair)| gate(secret, &pair[0], &pair[1], n))
        .fold(false, |failed, fails| failed | fails);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The CI rule of the module docs for one secret comparison and its control: whether it
/// fails, that is measures `GATE_T` or more twice while its control is flagged.
fn gate(secret: &Comparison<'_>, outcome: &Outcome, control: &Outcome, n: usize) -> bool {
    let (name, score, seen) = (secret.name, outcome.score(), control.score());
    if seen < T_LEAK {
        println!(
            "gate: {name}: inconclusive, its control was not detected (|t| = {seen:.2}): passing"
        );
        return false;
    }
    if score < GATE_T {
        println!("gate: {name}: pass (|t| = {score:.2} < {GATE_T}; control {seen:.2})");
        return false;
    }
    let again = analyse(&(secret.run)(n)).score();
    if again < GATE_T {
        println!(
            "gate: {name}: pass (|t| = {score:.2} ≥ {GATE_T}, then {again:.2} measured again)"
        );
        return false;
    }
    println!(
        "gate: {name}: **fail**: |t| = {score:.2}, then {again:.2} measured again, both ≥ {GATE_T}, \
         with its control detected (|t| = {seen:.2})"
    );
    true
}
