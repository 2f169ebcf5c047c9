//! Instructions per decision above the floor, counted by `valgrind --tool=callgrind`: the
//! deterministic companion of `benches/decision.rs`, whose times move with the machine's
//! load and with the CPU.
//!
//! Run: `cargo bench -p rotauth --bench instructions` (about a minute; needs `valgrind`).
//! The binary runs itself under callgrind once per path, collecting only inside that
//! path's function (`--toggle-collect`), so each count is the path's inclusive cost, and
//! prints a table: instructions per call, and per call above the floor (two chained
//! compressions, counted the same way). Under valgrind SHA-256 runs in software (it does
//! not emulate SHA-NI), so only the column above the floor compares with the CPU's work:
//! it is everything a decision does besides the two compressions one HMAC cannot avoid.
//! `-- --test` runs each path a few times without valgrind (`.ci/bench.sh`).

#![cfg(not(target_family = "wasm"))]
// Not test code for clippy (its own `main`, no `#[test]`): setup failures panic, as in tests.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss
)]

use std::hint::black_box;
use std::process::{Command, ExitCode};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rotauth::{
    Config, Decision, DecisionKind, KeyId, Keyring, Request, Rotator, Session, Timestamp, Token,
};
use sha2::block_api::compress256;

/// Calls per path under callgrind: enough that setup and the call loop vanish in the mean.
const CALLS: u64 = 20_000;
/// The batch window of the default configuration, in ms.
const WINDOW_MS: u64 = 5_000;
/// The environment variable that names the path a child process runs.
const CHILD: &str = "ROTAUTH_INSTRUCTIONS_PATH";

/// What one path decides from: the rotator, the session, the token both ways, and `now`.
struct Case {
    rotator: Rotator,
    session: Session,
    bytes: [u8; 41],
    text: String,
    now: Timestamp,
}

/// A session three rotations in, its tokens, and the cases of the one-HMAC paths.
fn cases() -> Vec<(&'static str, Case, DecisionKind)> {
    let key = [0x4b; 32];
    let rotator = |config| Rotator::new(Keyring::new(KeyId(1), &key).unwrap(), config);
    let strict = rotator(Config::default());
    let mut now = Timestamp::from_unix_millis(1_735_689_600_000);
    let (mut session, t0) = strict.sign_in(&mut StdRng::seed_from_u64(4), now);
    let mut tokens = vec![t0];
    for _ in 0..3 {
        now = now.saturating_add(std::time::Duration::from_millis(2 * WINDOW_MS));
        let Decision::Rotate { session: s, token } =
            strict.decide(&session, Request::new(tokens.last().unwrap(), now))
        else {
            panic!("setup: expected a rotation");
        };
        session = s;
        tokens.push(token);
    }
    let inside = now.saturating_add(std::time::Duration::from_millis(1_000));
    let mut forged = *tokens[3].as_bytes();
    forged[40] ^= 1;
    let forged = Token::from_bytes(&forged).unwrap();
    let case = |config, token: &Token| Case {
        rotator: rotator(config),
        session: session.clone(),
        bytes: *token.as_bytes(),
        text: token.to_text().as_str().to_owned(),
        now: inside,
    };
    let off = Config::builder().rotate(false).build().unwrap();
    vec![
        (
            "batch_reuse_current",
            case(Config::default(), &tokens[3]),
            DecisionKind::BatchReuse,
        ),
        (
            "batch_reuse_previous",
            case(Config::default(), &tokens[2]),
            DecisionKind::BatchReuse,
        ),
        ("accept", case(off, &tokens[3]), DecisionKind::Accept),
        (
            "reject_forged",
            case(Config::default(), &forged),
            DecisionKind::Reject,
        ),
        (
            "reject_replayed",
            case(Config::default(), &tokens[0]),
            DecisionKind::Reject,
        ),
    ]
}

// One function per measured loop, never inlined, so that `--toggle-collect` finds it. The
// decision is dropped inside: its drop is part of what a host pays.

#[inline(never)]
fn floor_chained(calls: u64) {
    let block = [0x36u8; 64];
    let mut state = [0u32; 8];
    for _ in 0..calls {
        compress256(&mut state, core::slice::from_ref(black_box(&block)));
        compress256(&mut state, core::slice::from_ref(&block));
    }
    black_box(state);
}

#[inline(never)]
fn decide_bytes(case: &Case, calls: u64) {
    for _ in 0..calls {
        let decision = case.rotator.decide(
            black_box(&case.session),
            Request::new(black_box(case.bytes.as_slice()), black_box(case.now)),
        );
        black_box(&decision);
    }
}

#[inline(never)]
fn decide_text(case: &Case, calls: u64) {
    for _ in 0..calls {
        let decision = case.rotator.decide(
            black_box(&case.session),
            Request::new(black_box(case.text.as_str()), black_box(case.now)),
        );
        black_box(&decision);
    }
}

/// Runs `path` (`floor`, or `bytes/<case>` or `text/<case>`) `calls` times.
fn run(path: &str, calls: u64) {
    if path == "floor" {
        return floor_chained(calls);
    }
    let (form, name) = path.split_once('/').unwrap();
    let cases = cases();
    let (_, case, kind) = cases.iter().find(|(n, ..)| *n == name).unwrap();
    for decision in [
        case.rotator
            .decide(&case.session, Request::new(case.bytes.as_slice(), case.now)),
        case.rotator
            .decide(&case.session, Request::new(case.text.as_str(), case.now)),
    ] {
        assert_eq!(decision.kind(), *kind, "setup of {name}: {decision:?}");
    }
    match form {
        "bytes" => decide_bytes(case, calls),
        "text" => decide_text(case, calls),
        _ => panic!("unknown form {form}"),
    }
}

/// The instructions callgrind collected in `path`'s function, from a child run.
fn count(path: &str, function: &str) -> Result<u64, String> {
    let out = std::env::temp_dir().join(format!(
        "rotauth-callgrind-{}-{}.out",
        std::process::id(),
        path.replace('/', "-")
    ));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--quiet")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(format!("--toggle-collect=*{function}*"))
        .arg(std::env::current_exe().map_err(|e| e.to_string())?)
        .env(CHILD, path)
        .status()
        .map_err(|e| format!("valgrind: {e}"))?;
    if !status.success() {
        return Err(format!("valgrind on {path}: {status}"));
    }
    let profile = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&out);
    // `summary: N` (or `totals: N`) is the whole collected cost, instructions first.
    profile
        .lines()
        .find_map(|line| {
            let rest = line
                .strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or_else(|| format!("no summary in callgrind's output for {path}"))
}

fn main() -> ExitCode {
    if let Ok(path) = std::env::var(CHILD) {
        run(&path, CALLS);
        return ExitCode::SUCCESS;
    }
    let names: Vec<&str> = cases().iter().map(|(name, ..)| *name).collect();
    if std::env::args().any(|a| a == "--test") {
        run("floor", 10);
        for name in &names {
            run(&format!("bytes/{name}"), 10);
            run(&format!("text/{name}"), 10);
        }
        return ExitCode::SUCCESS;
    }
    let per_call =
        |path: &str, function: &str| count(path, function).map(|n| n as f64 / CALLS as f64);
    let floor = match per_call("floor", "floor_chained") {
        Ok(floor) => floor,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("## instructions per call (callgrind, {CALLS} calls each; SHA-256 in software)");
    println!();
    println!("floor (two chained compressions): {floor:.0}");
    println!();
    println!("| path | bytes | above floor | text | above floor | text − bytes |");
    println!("|---|---:|---:|---:|---:|---:|");
    for name in names {
        let bytes = per_call(&format!("bytes/{name}"), "decide_bytes");
        let text = per_call(&format!("text/{name}"), "decide_text");
        match (bytes, text) {
            (Ok(bytes), Ok(text)) => println!(
                "| {name} | {bytes:.0} | {:.0} | {text:.0} | {:.0} | {:.0} |",
                bytes - floor,
                text - floor,
                text - bytes
            ),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
