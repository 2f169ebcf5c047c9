//! Recover mode grants a recovery once: two parties holding diverging tokens of one
//! session take turns in the order and at the times libFuzzer chooses, and at most one of
//! them may still be served two generations past the divergence (`diverging_holders` in
//! `tests/model/check.rs`, also run by `tests/properties.rs`).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/model/mod.rs"]
mod model;

use model::Policy;
use model::check::diverging_holders;

#[derive(Arbitrary, Debug)]
struct Input {
    window: u16,
    lifespan: u64,
    absolute: Option<u64>,
    revoke: bool,
    seed: u64,
    rotations: u8,
    /// Which party presents next (`true`: the one left with the older token) and how
    /// long after the window it does.
    turns: Vec<(bool, u32)>,
}

fuzz_target!(|input: Input| {
    let policy = Policy {
        rotate: true,
        window: u64::from(input.window),
        lifespan: input.lifespan,
        absolute: input.absolute,
        recover: true,
        revoke: input.revoke,
    };
    let turns: Vec<(bool, u64)> = input
        .turns
        .iter()
        .take(64)
        .map(|&(party, extra)| (party, u64::from(extra)))
        .collect();
    diverging_holders(policy, input.seed, u64::from(input.rotations), &turns);
});
