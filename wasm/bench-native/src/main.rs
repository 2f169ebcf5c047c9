//! Times the decisions of `wasm/js/bench/bench.mjs` in the native crate, in the same run:
//! `decide` on the current token inside the batch window (batch reuse) and on the current
//! token after it (rotate), against one session made with the same key and policy. Prints
//! one JSON object of nanoseconds of thread CPU time per decision (the median of several
//! rounds), so that other processes on a shared machine do not inflate it.

use cpu_time::ThreadTime;
use std::hint::black_box;

use rotauth::rand_core::{TryCryptoRng, TryRng};
use rotauth::{Config, DecisionKind, KeyId, Keyring, Request, Rotator, Timestamp};

const T0: u64 = 1_700_000_000_000;
const ROUNDS: usize = 15;
const ITERATIONS: u32 = 200_000;

/// Fixed sign-in bytes: the benchmark needs a session, not secrecy.
struct Fixed(u8);

impl TryRng for Fixed {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(u32::from(self.0))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(u64::from(self.0))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.fill(self.0);
        Ok(())
    }
}

impl TryCryptoRng for Fixed {}

fn median_ns(mut run: impl FnMut() -> DecisionKind, expected: DecisionKind) -> f64 {
    assert_eq!(run(), expected);
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = ThreadTime::now();
            for _ in 0..ITERATIONS {
                black_box(run());
            }
            start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn main() {
    let keyring = Keyring::new(KeyId(1), &[0x42; 32]).expect("a 32-byte key");
    let rotator = Rotator::new(keyring, Config::default());
    let Ok((session, token)) = rotator.try_sign_in(&mut Fixed(7), Timestamp::from_unix_millis(T0));
    let text = token.to_text();
    let batch = median_ns(
        || {
            let request = Request::new(
                black_box(text.as_str()),
                Timestamp::from_unix_millis(T0 + 1),
            );
            rotator.decide(black_box(&session), request).kind()
        },
        DecisionKind::BatchReuse,
    );
    let rotate = median_ns(
        || {
            let request = Request::new(
                black_box(text.as_str()),
                Timestamp::from_unix_millis(T0 + 5_000),
            );
            rotator.decide(black_box(&session), request).kind()
        },
        DecisionKind::Rotate,
    );
    println!("{{\"batch_reuse_ns\": {batch:.1}, \"rotate_ns\": {rotate:.1}}}");
}
