//! Operation sequences replayed against rotauth and the reference model of
//! `tests/model/`, asserting after every request that both decided the same (kind, reason,
//! revocation, stored record, token sent) — the same checks as `tests/properties.rs`, with
//! libFuzzer choosing the sequence.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/model/mod.rs"]
mod model;

use model::check::{Clock, Fate, Form, Junk, Op, Pick, START, World};
use model::{Outcome, Policy, Reason};

#[derive(Arbitrary, Debug)]
struct Input {
    policy: FuzzPolicy,
    seed: u64,
    check_determinism: bool,
    ops: Vec<FuzzOp>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct FuzzPolicy {
    rotate: bool,
    window: u32,
    lifespan: u64,
    absolute: Option<u64>,
    recover: bool,
    revoke: bool,
}

impl FuzzPolicy {
    fn policy(self) -> Policy {
        Policy {
            rotate: self.rotate,
            window: u64::from(self.window),
            lifespan: self.lifespan,
            absolute: self.absolute,
            recover: self.recover,
            revoke: self.revoke,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzOp {
    SignIn,
    SignOut,
    /// Small steps, to land on the window's edges.
    Forward(u16),
    ForwardFar(u64),
    Back(u16),
    BackFar(u64),
    At(bool),
    Present {
        pick: FuzzPick,
        form: u8,
        force: bool,
        fate: u8,
    },
    Reconfigure(FuzzPolicy),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzPick {
    Current,
    Previous,
    Last,
    Older(u64),
    Newer(u64),
    Received,
    Generation(u64),
    Flipped(u16),
    Foreign,
    Truncated(u8),
    Extended(u8),
    BadChar(u8, u8),
    NonCanonical,
    MultiByte,
    Bytes(u8),
    UnknownKey,
}

fn pick(p: FuzzPick) -> Pick {
    match p {
        FuzzPick::Current => Pick::Current,
        FuzzPick::Previous => Pick::Previous,
        FuzzPick::Last => Pick::Last,
        FuzzPick::Older(k) => Pick::Older(k),
        FuzzPick::Newer(k) => Pick::Newer(k),
        FuzzPick::Received => Pick::Received,
        FuzzPick::Generation(g) => Pick::Generation(g),
        FuzzPick::Flipped(bit) => Pick::Flipped(bit),
        FuzzPick::Foreign => Pick::Foreign,
        FuzzPick::Truncated(k) => Pick::Malformed(Junk::Truncated(k)),
        FuzzPick::Extended(k) => Pick::Malformed(Junk::Extended(k)),
        FuzzPick::BadChar(at, with) => Pick::Malformed(Junk::BadChar { at, with }),
        FuzzPick::NonCanonical => Pick::Malformed(Junk::NonCanonical),
        FuzzPick::MultiByte => Pick::Malformed(Junk::MultiByte),
        FuzzPick::Bytes(len) => Pick::Malformed(Junk::Bytes(len)),
        FuzzPick::UnknownKey => Pick::UnknownKey,
    }
}

fn op(op: FuzzOp) -> Op {
    match op {
        FuzzOp::SignIn => Op::SignIn,
        FuzzOp::SignOut => Op::SignOut,
        FuzzOp::Forward(ms) => Op::Clock(Clock::Forward(u64::from(ms))),
        FuzzOp::ForwardFar(ms) => Op::Clock(Clock::Forward(ms)),
        FuzzOp::Back(ms) => Op::Clock(Clock::Back(u64::from(ms))),
        FuzzOp::BackFar(ms) => Op::Clock(Clock::Back(ms)),
        FuzzOp::At(end) => Op::Clock(Clock::To(if end { u64::MAX } else { START })),
        FuzzOp::Present {
            pick: p,
            form,
            force,
            fate,
        } => Op::Present {
            pick: pick(p),
            form: match form % 3 {
                0 => Form::Text,
                1 => Form::Bytes,
                _ => Form::Parsed,
            },
            force,
            fate: match fate % 8 {
                0 => Fate::WriteLost,
                1 => Fate::ResponseLost,
                _ => Fate::Delivered,
            },
        },
        FuzzOp::Reconfigure(policy) => Op::Reconfigure(policy.policy()),
    }
}

fuzz_target!(|input: Input| {
    let mut world = World::new(input.policy.policy(), input.seed);
    world.check_determinism = input.check_determinism;
    // Long sequences add little that short ones do not, and slow every run down.
    for fuzz_op in input.ops.into_iter().take(256) {
        if let Some(step) = world.apply(op(fuzz_op)) {
            // A client refused for an unknown session signs in again.
            if step.outcome == Outcome::Reject(Reason::UnknownSession) {
                world.sign_in();
            }
        }
    }
});
