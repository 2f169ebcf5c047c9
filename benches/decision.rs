//! Every decision path of rotauth measured against the physical floor (two SHA-256
//! compressions) and against devise_token_auth's bcrypt, in one criterion run.
//!
//! Run: `cargo bench --bench decision`. At the end of a run the binary prints a ratio
//! table read back from criterion's `estimates.json` files; `ROTAUTH_TABLE_ONLY=1 cargo
//! bench --bench decision` prints the table of the last run without measuring again.
//! CI runs `cargo bench --bench decision -- --test` (each benchmark once, no table).
//!
//! Every path is set up so that the decision it measures is the one its name says: the
//! setup asserts the decision's kind before timing it.

#![cfg(not(target_family = "wasm"))]
// Not test code for clippy (its own `main`, no `#[test]`): setup failures panic, as in tests.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use base64ct::{Base64UrlUnpadded, Encoding};
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BatchSize, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use rotauth::{
    ClientId, Config, Decision, DecisionKind, KeyId, Keyring, Mode, RejectReason, Request, Rotator,
    Session, Sessions, Timestamp, Token,
};
use sha2::Sha256;
use sha2::block_api::compress256;

/// A fixed 32-byte key: benchmarks need no secrecy, only a realistic key length.
const KEY: [u8; 32] = [0x4b; 32];
/// Sign-in time of every benchmark session (2025-01-01T00:00:00Z).
const T0: u64 = 1_735_689_600_000;
/// The batch window of the default configuration, in ms.
const WINDOW_MS: u64 = 5_000;
/// The goal for a one-HMAC decision from bytes: at most this many times the chained floor.
const BYTES_GOAL: f64 = 1.25;
/// The goal for the same decision from text: at most this many ns more than from bytes.
const TEXT_GOAL_NS: f64 = 30.0;
/// The goal for malformed text: refused in less than this fraction of the floor.
const MALFORMED_GOAL: f64 = 0.5;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

fn rotator(config: Config) -> Rotator {
    Rotator::new(Keyring::new(KeyId(1), &KEY).unwrap(), config)
}

fn recover() -> Config {
    Config::builder().mode(Mode::Recover).build().unwrap()
}

fn no_rotation() -> Config {
    Config::builder().rotate(false).build().unwrap()
}

/// A session at generation 3, with `T(0)`..`T(3)`, last rotated at `rotated_at`.
struct Chain {
    session: Session,
    tokens: Vec<Token>,
    rotated_at: Timestamp,
}

fn chain(rotator: &Rotator) -> Chain {
    let mut rng = StdRng::seed_from_u64(4);
    let mut now = Timestamp::from_unix_millis(T0);
    let (mut session, token) = rotator.sign_in(&mut rng, now);
    let mut tokens = vec![token];
    for _ in 0..3 {
        now = Timestamp::from_unix_millis(now.unix_millis() + 2 * WINDOW_MS);
        let current = tokens.last().unwrap().clone();
        match rotator.decide(&session, Request::new(&current, now)) {
            Decision::Rotate {
                session: next,
                token,
            } => {
                session = next;
                tokens.push(token);
            }
            other => panic!("setup: expected a rotation, got {other:?}"),
        }
    }
    Chain {
        session,
        tokens,
        rotated_at: now,
    }
}

/// One decision to time: the rotator, the session, what is presented and when.
struct Case {
    rotator: Rotator,
    session: Session,
    bytes: Vec<u8>,
    text: String,
    now: Timestamp,
}

impl Case {
    fn new(rotator: Rotator, session: Session, token: &Token, now: Timestamp) -> Self {
        Self {
            rotator,
            session,
            bytes: token.as_bytes().to_vec(),
            text: token.to_text().as_str().to_owned(),
            now,
        }
    }

    fn decide_bytes(&self) -> Decision {
        self.rotator.decide(
            black_box(&self.session),
            Request::new(black_box(self.bytes.as_slice()), black_box(self.now)),
        )
    }

    fn decide_text(&self) -> Decision {
        self.rotator.decide(
            black_box(&self.session),
            Request::new(black_box(self.text.as_str()), black_box(self.now)),
        )
    }
}

/// Each decision path, with the kind and reason it must produce.
fn cases() -> Vec<(&'static str, Case, DecisionKind, Option<RejectReason>)> {
    let strict = rotator(Config::default());
    let c = chain(&strict);
    let inside = Timestamp::from_unix_millis(c.rotated_at.unix_millis() + 1_000);
    let after = Timestamp::from_unix_millis(c.rotated_at.unix_millis() + 2 * WINDOW_MS);
    let mut forged = *c.tokens[3].as_bytes();
    forged[40] ^= 1;
    let forged = Token::from_bytes(&forged).unwrap();

    let rec = rotator(recover());
    let rc = chain(&rec);
    let rec_after = Timestamp::from_unix_millis(rc.rotated_at.unix_millis() + 2 * WINDOW_MS);

    // Rotation off: the strict chain's record and token under the same key (a chain
    // cannot be built with rotation off).
    let off = rotator(no_rotation());

    let s = || c.session.clone();
    vec![
        (
            "rotate",
            Case::new(rotator(Config::default()), s(), &c.tokens[3], after),
            DecisionKind::Rotate,
            None,
        ),
        (
            "batch_reuse_current",
            Case::new(rotator(Config::default()), s(), &c.tokens[3], inside),
            DecisionKind::BatchReuse,
            None,
        ),
        (
            "batch_reuse_previous",
            Case::new(rotator(Config::default()), s(), &c.tokens[2], inside),
            DecisionKind::BatchReuse,
            None,
        ),
        (
            "accept",
            Case::new(off, s(), &c.tokens[3], inside),
            DecisionKind::Accept,
            None,
        ),
        (
            "reissue",
            Case::new(rec, rc.session.clone(), &rc.tokens[2], rec_after),
            DecisionKind::Reissue,
            None,
        ),
        (
            "reject_forged",
            Case::new(rotator(Config::default()), s(), &forged, inside),
            DecisionKind::Reject,
            Some(RejectReason::Forged),
        ),
        (
            "reject_replayed",
            Case::new(rotator(Config::default()), s(), &c.tokens[0], inside),
            DecisionKind::Reject,
            Some(RejectReason::Replayed { behind: 3 }),
        ),
    ]
}

/// Malformed text tokens: each must be refused before any hashing.
fn malformed(current: &Token) -> Vec<(&'static str, String)> {
    let good = current.to_text().as_str().to_owned();
    let bad_char_last: String = good.chars().take(54).chain(['.']).collect();
    let bad_char_first: String = ['.'].into_iter().chain(good.chars().skip(1)).collect();
    vec![
        ("reject_malformed_short", good[..54].to_owned()),
        ("reject_malformed_long", "A".repeat(4096)),
        ("reject_malformed_char_last", bad_char_last),
        ("reject_malformed_char_first", bad_char_first),
    ]
}

// ---------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------

/// SHA-256 initial state (FIPS 180-4 §5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

fn baselines<M: Measurement>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group("baseline");
    // The floor: two dependent compressions of one block each (inner, then outer hash),
    // with nothing else. The second starts from the first one's result, as in an HMAC.
    let block = [0x36u8; 64];
    g.bench_function("floor_2x_compress256", |b| {
        b.iter(|| {
            let mut state = black_box(IV);
            compress256(&mut state, core::slice::from_ref(black_box(&block)));
            compress256(&mut state, core::slice::from_ref(&block));
            state
        });
    });
    // The same with each iteration starting from the last one's state: nothing overlaps,
    // so this is the latency of two compressions rather than their cost among others.
    let mut chained = IV;
    g.bench_function("floor_2x_compress256_chained", |b| {
        b.iter(|| {
            compress256(&mut chained, core::slice::from_ref(black_box(&block)));
            compress256(&mut chained, core::slice::from_ref(&block));
            chained
        });
    });
    g.bench_function("compress256", |b| {
        b.iter(|| {
            let mut state = black_box(IV);
            compress256(&mut state, core::slice::from_ref(black_box(&block)));
            state
        });
    });
    // What the obvious code does: the `hmac` crate from a cloned precomputed key schedule,
    // on the 50-byte MAC input of a token.
    let schedule = <Hmac<Sha256> as KeyInit>::new_from_slice(&KEY).unwrap();
    let message = [0x5au8; 50];
    g.bench_function("hmac_crate", |b| {
        b.iter(|| {
            let mut mac = black_box(&schedule).clone();
            mac.update(black_box(&message));
            mac.finalize().into_bytes()
        });
    });
    // `subtle`'s slice comparison of 32 bytes, the obvious constant-time tag check.
    let (x, y) = ([7u8; 32], [7u8; 32]);
    g.bench_function("subtle_ct_eq_32", |b| {
        b.iter(|| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                &black_box(x)[..],
                &black_box(y)[..],
            ))
        });
    });
    // `base64ct` decoding a token's text alone.
    let text = chain(&rotator(Config::default())).tokens[3]
        .to_text()
        .as_str()
        .to_owned();
    g.bench_function("base64ct_decode", |b| {
        b.iter(|| {
            let mut out = [0u8; 41];
            let decoded = Base64UrlUnpadded::decode(black_box(text.as_str()), &mut out).is_ok();
            (out, decoded)
        });
    });
    let bytes = [0x42u8; 41];
    g.bench_function("base64ct_encode", |b| {
        b.iter(|| {
            let mut out = [0u8; 55];
            let ok = Base64UrlUnpadded::encode(black_box(&bytes), &mut out).is_ok();
            (out, ok)
        });
    });
    g.finish();

    // devise_token_auth: `BCrypt::Password.new(hash) == token` on every authenticated
    // request, and `BCrypt::Password.create(new_token)` on every rotated one; the token is
    // `SecureRandom.urlsafe_base64(nil, false)`, 16 random bytes as 22 characters.
    let mut g = c.benchmark_group("bcrypt");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    let token = "q1w2e3r4t5y6u7i8o9p0aZ";
    for cost in [4u32, 10] {
        // Hashed on first use only: a filtered run does not pay 100 ms for it.
        let hash = OnceLock::new();
        if cost == 10 {
            g.measurement_time(Duration::from_secs(8));
        }
        g.bench_function(format!("verify_cost{cost}"), |b| {
            let hash = hash.get_or_init(|| {
                let hash = bcrypt::hash_with_salt(token, cost, [9u8; 16])
                    .unwrap()
                    .format_for_version(bcrypt::Version::TwoA);
                assert!(bcrypt::verify(token, &hash).unwrap());
                hash
            });
            b.iter(|| bcrypt::verify(black_box(token), black_box(hash.as_str())).unwrap());
        });
    }
    g.finish();
}

fn paths<M: Measurement>(c: &mut Criterion<M>) {
    let cases = cases();
    for (name, case, kind, reason) in &cases {
        for decision in [case.decide_bytes(), case.decide_text()] {
            assert_eq!(decision.kind(), *kind, "setup of {name}: {decision:?}");
            assert_eq!(decision.reject_reason(), *reason, "setup of {name}");
        }
    }
    let mut g = c.benchmark_group("bytes");
    for (name, case, _, _) in &cases {
        g.bench_function(*name, |b| b.iter(|| case.decide_bytes()));
    }
    g.finish();
    let mut g = c.benchmark_group("text");
    for (name, case, _, _) in &cases {
        g.bench_function(*name, |b| b.iter(|| case.decide_text()));
    }
    let strict = rotator(Config::default());
    let chain = chain(&strict);
    let now = Timestamp::from_unix_millis(chain.rotated_at.unix_millis() + 1_000);
    for (name, text) in malformed(&chain.tokens[3]) {
        let decision = strict.decide(&chain.session, Request::new(text.as_str(), now));
        assert!(
            matches!(decision.reject_reason(), Some(RejectReason::Malformed(_))),
            "setup of {name}: {decision:?}"
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                strict.decide(
                    black_box(&chain.session),
                    Request::new(black_box(text.as_str()), black_box(now)),
                )
            });
        });
    }
    g.finish();
}

fn operations<M: Measurement>(c: &mut Criterion<M>) {
    let rotator = rotator(Config::default());
    let now = Timestamp::from_unix_millis(T0);
    let mut g = c.benchmark_group("ops");
    let mut seeded = StdRng::seed_from_u64(7);
    g.bench_function("sign_in_chacha12", |b| {
        b.iter(|| rotator.sign_in(&mut seeded, black_box(now)));
    });
    let mut os = SysRng;
    g.bench_function("sign_in_os_rng", |b| {
        b.iter(|| rotator.try_sign_in(&mut os, black_box(now)).unwrap());
    });
    let chain = chain(&rotator);
    let token = chain.tokens[3].clone();
    let text = token.to_text().as_str().to_owned();
    g.bench_function("token_to_text", |b| b.iter(|| black_box(&token).to_text()));
    g.bench_function("token_from_text", |b| {
        b.iter(|| Token::from_text(black_box(text.as_str())).unwrap());
    });
    g.bench_function("current_token", |b| {
        b.iter(|| rotator.current_token(black_box(&chain.session)).unwrap());
    });
    // The batch-reuse decision of the `bytes` group, left where it was returned and looked
    // at by reference, as a host's `match` does, instead of moved out by value as
    // criterion's `b.iter` moves every result: what that move of 128 bytes costs.
    let inside = Timestamp::from_unix_millis(chain.rotated_at.unix_millis() + 1_000);
    let bytes = *chain.tokens[3].as_bytes();
    let decision = rotator.decide(&chain.session, Request::new(bytes.as_slice(), inside));
    assert_eq!(
        decision.kind(),
        DecisionKind::BatchReuse,
        "setup: {decision:?}"
    );
    g.bench_function("batch_reuse_in_place", |b| {
        b.iter(|| {
            let decision = rotator.decide(
                black_box(&chain.session),
                Request::new(black_box(bytes.as_slice()), black_box(inside)),
            );
            black_box(&decision);
        });
    });
    let record = chain.session.encode();
    g.bench_function("record_encode", |b| {
        b.iter(|| black_box(&chain.session).encode())
    });
    g.bench_function("record_decode", |b| {
        b.iter(|| Session::decode(black_box(&record)).unwrap());
    });

    // A full `Sessions<10>`: lookup of the last one, and a sign-in that evicts.
    let mut rng = StdRng::seed_from_u64(8);
    let mut full = Sessions::<10>::new();
    let mut last = None;
    for i in 0..10 {
        let at = Timestamp::from_unix_millis(T0 + i);
        last = Some(full.sign_in(&rotator, &mut rng, at));
    }
    let last = last.unwrap();
    let id: ClientId = last.client_id;
    g.bench_function("sessions10_find", |b| {
        b.iter(|| black_box(&full).find(black_box(&id)).is_some());
    });
    let inside = Timestamp::from_unix_millis(T0 + 1_000);
    let last_text = last.token.to_text().as_str().to_owned();
    let mut probe = full.clone();
    let d = probe.decide(&rotator, &id, Request::new(last_text.as_str(), inside));
    assert_eq!(d.kind(), DecisionKind::BatchReuse);
    g.bench_function("sessions10_decide_batch_reuse", |b| {
        b.iter(|| {
            full.decide(
                &rotator,
                black_box(&id),
                Request::new(black_box(last_text.as_str()), black_box(inside)),
            )
        });
    });
    let mut evicting = full.clone();
    let later = Timestamp::from_unix_millis(T0 + 60_000);
    g.bench_function("sessions10_sign_in_evict", |b| {
        b.iter(|| {
            let signed_in = evicting.sign_in(&rotator, &mut rng, black_box(later));
            assert!(signed_in.evicted.is_some());
            signed_in
        });
    });
    g.bench_function("sessions10_encode", |b| {
        let mut out = [0u8; Sessions::<10>::MAX_ENCODED_LEN];
        b.iter(|| black_box(&full).encode(&mut out).unwrap());
    });
    let mut encoded = [0u8; Sessions::<10>::MAX_ENCODED_LEN];
    let len = full.encode(&mut encoded).unwrap();
    g.bench_function("sessions10_decode", |b| {
        b.iter_batched(
            || (),
            |()| Sessions::<10>::decode(black_box(&encoded[..len])).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// `n` sessions signed in at `T0` with their `T(0)` as bytes: about 80 + 41 bytes each.
struct Population {
    sessions: Vec<Session>,
    tokens: Vec<[u8; 41]>,
}

fn population(rotator: &Rotator, n: usize) -> Population {
    let mut rng = StdRng::seed_from_u64(n as u64);
    let now = Timestamp::from_unix_millis(T0);
    let mut sessions = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let (session, token) = rotator.sign_in(&mut rng, now);
        sessions.push(session);
        tokens.push(*token.as_bytes());
    }
    Population { sessions, tokens }
}

/// A stride coprime with every population size used here, so that one pass visits every
/// session once in an order with no locality (as a host's hash-table lookups have).
const STRIDE: usize = 999_983;

fn many_sessions<M: Measurement>(c: &mut Criterion<M>) {
    static SMALL: OnceLock<Population> = OnceLock::new();
    static LARGE: OnceLock<Population> = OnceLock::new();
    let rotator = rotator(Config::default());
    // Every session is presented with its `T(0)` after the window: a rotation each time
    // (pure: the record handed back is dropped, so the next pass rotates again).
    let now = Timestamp::from_unix_millis(T0 + 2 * WINDOW_MS);
    let mut g = c.benchmark_group("many_sessions");
    g.throughput(Throughput::Elements(1));
    for (label, n, cell) in [("1000", 1_000usize, &SMALL), ("1000000", 1_000_000, &LARGE)] {
        for (order, stride) in [("sequential", 1usize), ("strided", STRIDE)] {
            g.bench_function(format!("rotate_{order}_{label}"), |b| {
                // Built on first use only, so a filtered run does not pay for it.
                let pop = cell.get_or_init(|| population(&rotator, n));
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + stride) % n;
                    let decision = rotator.decide(
                        &pop.sessions[i],
                        Request::new(pop.tokens[i].as_slice(), black_box(now)),
                    );
                    debug_assert_eq!(decision.kind(), DecisionKind::Rotate);
                    decision
                });
            });
        }
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// Thread CPU time
// ---------------------------------------------------------------------------------------

/// Criterion's measurement by the CPU time of the benchmarking thread rather than the
/// wall clock: on a machine shared with compilers, time spent descheduled is not counted.
/// `ROTAUTH_BENCH_WALL=1` measures wall-clock time instead.
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = cpu_time::ThreadTime;
    type Value = Duration;

    fn start(&self) -> Self::Intermediate {
        cpu_time::ThreadTime::now()
    }

    fn end(&self, start: Self::Intermediate) -> Self::Value {
        start.elapsed()
    }

    fn add(&self, v1: &Self::Value, v2: &Self::Value) -> Self::Value {
        *v1 + *v2
    }

    fn zero(&self) -> Self::Value {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Self::Value) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanoseconds
    }
}

/// Formats nanoseconds as criterion's wall-clock formatter does (which is private).
struct Nanoseconds;

impl ValueFormatter for Nanoseconds {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e-3, "µs")
        } else if typical < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per_iteration = match *throughput {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => n,
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n,
            Throughput::Bits(n) => n,
        } as f64;
        let (factor, unit) = if per_iteration * 1e9 / typical < 1e6 {
            (1e-3, "K/s")
        } else {
            (1e-6, "M/s")
        };
        values
            .iter_mut()
            .for_each(|v| *v = per_iteration * 1e9 / *v * factor);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn run<M: Measurement>(mut c: Criterion<M>) {
    baselines(&mut c);
    paths(&mut c);
    operations(&mut c);
    many_sessions(&mut c);
    c.final_summary();
}

// ---------------------------------------------------------------------------------------
// The ratio table
// ---------------------------------------------------------------------------------------

fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("criterion")
}

/// The median of `group/name` in ns from criterion's last run, and whether it was
/// measured by this process (rather than left from an earlier, possibly filtered, run).
fn median(group: &str, name: &str, started: SystemTime) -> Option<(f64, bool)> {
    let path = criterion_dir()
        .join(group)
        .join(name)
        .join("new")
        .join("estimates.json");
    let json = std::fs::read_to_string(&path).ok()?;
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|modified| modified >= started);
    // `{"mean":{...},"median":{"confidence_interval":{...},"point_estimate":N,...},...}`
    let rest = &json[json.find("\"median\"")?..];
    let rest = &rest[rest.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = rest.find([',', '}'])?;
    Some((rest[..end].trim().parse().ok()?, fresh))
}

fn print_table(started: SystemTime) {
    let get = |group: &str, name: &str| median(group, name, started);
    let Some((floor, _)) = get("baseline", "floor_2x_compress256") else {
        println!(
            "ratio table: no criterion results under {}",
            criterion_dir().display()
        );
        return;
    };
    let mut stale = false;
    let mut cell = |v: Option<(f64, bool)>| -> Option<f64> {
        let (ns, fresh) = v?;
        stale |= !fresh;
        Some(ns)
    };
    let bcrypt10 = cell(get("bcrypt", "verify_cost10"));
    let bcrypt4 = cell(get("bcrypt", "verify_cost4"));
    let fmt = |ns: f64| {
        if ns >= 1e6 {
            format!("{:.1} ms", ns / 1e6)
        } else if ns >= 1e4 {
            format!("{:.1} µs", ns / 1e3)
        } else {
            format!("{ns:.1} ns")
        }
    };

    let latency = cell(get("baseline", "floor_2x_compress256_chained")).unwrap_or(f64::NAN);
    let met = |ok: bool| if ok { "met" } else { "**not met**" };

    println!();
    println!(
        "## rotauth ratio table (medians of thread CPU time; floor = two SHA-256 \
         compressions = {floor:.1} ns; chained floor = the same two, the second fed by the \
         first as in an HMAC = {latency:.1} ns)"
    );
    println!();
    println!(
        "Goals: a one-HMAC decision from bytes within {BYTES_GOAL} × the chained floor; the \
         same from text within {TEXT_GOAL_NS} ns of the bytes; malformed text refused in \
         under {MALFORMED_GOAL} × the floor. Rows with two HMACs are shown against twice the \
         floors, without a goal."
    );
    println!();
    println!(
        "| path | bytes | ÷ floor | ÷ chained floor | bytes goal | bytes | text | \
         text − bytes | text goal | text |"
    );
    println!("|---|---:|---:|---:|---|---|---:|---:|---|---|");
    for (name, hmacs) in [
        ("rotate", 2.0),
        ("batch_reuse_current", 1.0),
        ("batch_reuse_previous", 1.0),
        ("accept", 1.0),
        ("reissue", 2.0),
        ("reject_forged", 1.0),
        ("reject_replayed", 1.0),
    ] {
        let bytes = cell(get("bytes", name));
        let text = cell(get("text", name));
        let (Some(bytes), Some(text)) = (bytes, text) else {
            println!("| {name} | – | | | | | – | | | |");
            continue;
        };
        // Rotate and Reissue need two HMACs: their floors are twice the floors.
        let (floor_n, latency_n) = (hmacs * floor, hmacs * latency);
        let (bytes_goal, bytes_met, text_goal, text_met) = if hmacs > 1.0 {
            ("–".to_owned(), "", "–".to_owned(), "")
        } else {
            (
                format!("≤ {BYTES_GOAL} × chained floor"),
                met(bytes <= BYTES_GOAL * latency_n),
                format!("≤ bytes + {TEXT_GOAL_NS} ns"),
                met(text - bytes <= TEXT_GOAL_NS),
            )
        };
        println!(
            "| {name} | {} | {:.2} | {:.2} | {bytes_goal} | {bytes_met} | {} | {:+.1} ns | \
             {text_goal} | {text_met} |",
            fmt(bytes),
            bytes / floor_n,
            bytes / latency_n,
            fmt(text),
            text - bytes,
        );
    }
    for name in [
        "reject_malformed_short",
        "reject_malformed_long",
        "reject_malformed_char_last",
        "reject_malformed_char_first",
    ] {
        if let Some(text) = cell(get("text", name)) {
            println!(
                "| {name} | | | | | | {} | | < {MALFORMED_GOAL} × floor ({:.2}) | {} |",
                fmt(text),
                text / floor,
                met(text < MALFORMED_GOAL * floor),
            );
        }
    }

    println!();
    println!("| baseline or operation | median | ÷ floor |");
    println!("|---|---:|---:|");
    let rows: [(&str, &str); 26] = [
        ("baseline", "floor_2x_compress256"),
        ("baseline", "floor_2x_compress256_chained"),
        ("baseline", "compress256"),
        ("baseline", "hmac_crate"),
        ("baseline", "subtle_ct_eq_32"),
        ("baseline", "base64ct_decode"),
        ("baseline", "base64ct_encode"),
        ("bcrypt", "verify_cost4"),
        ("bcrypt", "verify_cost10"),
        ("ops", "sign_in_chacha12"),
        ("ops", "sign_in_os_rng"),
        ("ops", "token_to_text"),
        ("ops", "token_from_text"),
        ("ops", "current_token"),
        ("ops", "batch_reuse_in_place"),
        ("ops", "record_encode"),
        ("ops", "record_decode"),
        ("ops", "sessions10_find"),
        ("ops", "sessions10_decide_batch_reuse"),
        ("ops", "sessions10_sign_in_evict"),
        ("ops", "sessions10_encode"),
        ("ops", "sessions10_decode"),
        ("many_sessions", "rotate_sequential_1000"),
        ("many_sessions", "rotate_sequential_1000000"),
        ("many_sessions", "rotate_strided_1000"),
        ("many_sessions", "rotate_strided_1000000"),
    ];
    for (group, name) in rows {
        if let Some(ns) = cell(get(group, name)) {
            println!("| {group}/{name} | {} | {:.2} |", fmt(ns), ns / floor);
        }
    }

    println!();
    println!("| devise_token_auth ÷ rotauth | ratio | target |");
    println!("|---|---:|---|");
    let text_of = |name: &str| get("text", name).map(|(ns, _)| ns);
    for (label, devise, rotauth) in [
        (
            "check: bcrypt cost 10 verify ÷ batch_reuse_current (text)",
            bcrypt10,
            text_of("batch_reuse_current"),
        ),
        (
            "rotated request: 2 × bcrypt cost 10 ÷ rotate (text) + token_to_text",
            bcrypt10.map(|ns| 2.0 * ns),
            text_of("rotate")
                .zip(get("ops", "token_to_text"))
                .map(|(r, (e, _))| r + e),
        ),
        (
            "check: bcrypt cost 4 verify ÷ batch_reuse_current (text)",
            bcrypt4,
            text_of("batch_reuse_current"),
        ),
    ] {
        if let (Some(d), Some(r)) = (devise, rotauth) {
            let met = if label.contains("cost 10") {
                if d / r >= 100_000.0 {
                    "≥ 100 000 ×: yes"
                } else {
                    "≥ 100 000 ×: **no**"
                }
            } else {
                ""
            };
            println!("| {label} | {:.0} × | {met} |", d / r);
        }
    }

    println!();
    println!(
        "sizes: Decision {} B, Session {} B in memory, Session::ENCODED_LEN {} B (target ≤ 96), \
         Token {} B, Sessions<10> {} B (encoded ≤ {} B)",
        size_of::<Decision>(),
        size_of::<Session>(),
        Session::ENCODED_LEN,
        size_of::<Token>(),
        size_of::<Sessions<10>>(),
        Sessions::<10>::MAX_ENCODED_LEN,
    );
    if stale {
        println!(
            "(some figures are from an earlier run: run the whole bench for one consistent table)"
        );
    }
}

fn main() {
    let started = SystemTime::now();
    if std::env::var_os("ROTAUTH_TABLE_ONLY").is_some() {
        print_table(SystemTime::UNIX_EPOCH);
        return;
    }
    let c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    if std::env::var_os("ROTAUTH_BENCH_WALL").is_some() {
        run(c.configure_from_args());
    } else {
        run(c.with_measurement(ThreadCpu).configure_from_args());
    }
    let args: Vec<String> = std::env::args().collect();
    let measuring = !args
        .iter()
        .any(|a| matches!(a.as_str(), "--test" | "--list" | "--profile-time"));
    if measuring {
        print_table(started);
    }
}
