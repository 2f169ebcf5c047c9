//! The reference model of the decision (`docs/DESIGN.md`): the decision rules over a plain
//! record, with no HMAC, no encoding and no optimisation. It is the oracle that `tests/properties.rs` and the fuzz
//! target `ops` hold `rotauth` to, so it is written to be checked by reading, not to be fast.
//!
//! Two refinements of the written rules, both forced by the record's invariant
//! `created_at ≤ rotated_at ≤ expires_at` (which `Session::decode` enforces):
//! a rotation never moves `rotated_at` back (`max(now, rotated_at)`: a clock running behind
//! the record is inside the window anyway, so only a forced rotation or `W = 0` meets this),
//! and an expiry capped by the absolute lifetime is never before `rotated_at`.
// The model computes on the small values the tests feed it; no clippy.toml setting covers this.
#![allow(clippy::arithmetic_side_effects)]
#![allow(dead_code, unreachable_pub)] // each test target uses a different part

pub mod check;

/// The rotation policy, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub rotate: bool,
    pub window: u64,
    pub lifespan: u64,
    pub absolute: Option<u64>,
    pub recover: bool,
    pub revoke: bool,
}

/// What the rules read from a session record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub generation: u64,
    pub created_at: u64,
    pub rotated_at: u64,
    pub expires_at: u64,
    /// `T(n-1)` may no longer be exchanged for `T(n)`: `T(n)` has been presented, or the
    /// generation before was reissued (tracked in Recover mode only).
    pub acknowledged: bool,
    /// `T(n)` was handed out again for `T(n-1)` (tracked in Recover mode only).
    pub reissued: bool,
}

/// The presented token, as far as the rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// A token of this session whose MAC verifies, of this generation.
    Genuine(u64),
    /// Wrong length or alphabet.
    Malformed,
    /// A key id the keyring does not hold.
    UnknownKey,
    /// Right shape, wrong MAC: altered, or a token of another session.
    Forged,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    UnknownSession,
    Malformed,
    UnknownKey,
    Forged,
    Expired,
    TooOld,
    Replayed(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accept,
    /// Sends `T(n)` of the new record.
    Rotate,
    BatchReuse,
    /// Sends `T(n)` of the record, which is marked reissued.
    Reissue,
    Reject(Reason),
    /// A rejection that deletes the session.
    Revoke(Reason),
}

impl Record {
    /// A new session at `now`, holding `T(0)`.
    pub fn sign_in(policy: &Policy, now: u64) -> Self {
        Self {
            generation: 0,
            created_at: now,
            rotated_at: now,
            expires_at: expiry(policy, now, now),
            acknowledged: false,
            reissued: false,
        }
    }
}

fn deadline(policy: &Policy, created_at: u64) -> Option<u64> {
    policy.absolute.map(|a| created_at.saturating_add(a))
}

/// `from + lifespan`, capped by the absolute deadline, but never before `from`.
fn expiry(policy: &Policy, created_at: u64, from: u64) -> u64 {
    let sliding = from.saturating_add(policy.lifespan);
    let capped = match deadline(policy, created_at) {
        Some(deadline) => sliding.min(deadline),
        None => sliding,
    };
    capped.max(from)
}

/// The decision for `shown` at `now`, and what the store holds afterwards (`None`: no
/// session, or the session is revoked).
pub fn decide(
    policy: &Policy,
    record: Option<Record>,
    shown: Shown,
    now: u64,
    force: bool,
) -> (Outcome, Option<Record>) {
    let Some(old) = record else {
        return (Outcome::Reject(Reason::UnknownSession), None);
    };
    // A rejection leaves the record as it was.
    let refuse = |reason| (Outcome::Reject(reason), Some(old));
    let g = match shown {
        Shown::Malformed => return refuse(Reason::Malformed),
        Shown::UnknownKey => return refuse(Reason::UnknownKey),
        Shown::Forged => return refuse(Reason::Forged),
        Shown::Genuine(g) => g,
    };
    if deadline(policy, old.created_at).is_some_and(|d| now >= d) {
        return refuse(Reason::TooOld);
    }
    if now >= old.expires_at {
        return refuse(Reason::Expired);
    }
    // Saturating: a clock behind `rotated_at` is age 0, inside the window.
    let in_window = now.saturating_sub(old.rotated_at) < policy.window;

    if g < old.generation {
        let behind = old.generation - g;
        if policy.rotate && behind <= 2 && in_window {
            // A batch member; a forced rotation rotates from any of them.
            if force {
                return match rotate(policy, old, now) {
                    Some(new) => (Outcome::Rotate, Some(new)),
                    None => refuse(Reason::TooOld),
                };
            }
            return (Outcome::BatchReuse, Some(old));
        }
        if policy.rotate && policy.recover && behind == 1 && !old.acknowledged {
            let mut marked = old;
            marked.reissued = true;
            return (Outcome::Reissue, Some(marked));
        }
        let reason = Reason::Replayed(behind);
        if policy.revoke {
            return (Outcome::Revoke(reason), None);
        }
        return (Outcome::Reject(reason), Some(old));
    }

    // g ≥ n. A genuine token from the future: the host lost the write of the rotation that
    // issued it; adopt it as current, with that rotation's window and expiry replayed now.
    let mut new = old;
    if g > old.generation {
        new.generation = g;
        new.acknowledged = false;
        new.reissued = false;
        if policy.rotate {
            new.rotated_at = now.max(old.rotated_at);
            new.expires_at = expiry(policy, new.created_at, new.rotated_at);
        }
    }
    if !policy.rotate {
        return (Outcome::Accept, Some(new));
    }
    let in_window = now.saturating_sub(new.rotated_at) < policy.window;
    if in_window && !force {
        if policy.recover {
            new.acknowledged = true;
        }
        return (Outcome::BatchReuse, Some(new));
    }
    match rotate(policy, new, now) {
        Some(new) => (Outcome::Rotate, Some(new)),
        None => refuse(Reason::TooOld),
    }
}

/// Moves `from` to the next generation with a window opening at `now` (never before the
/// one it ends), or `None` when the generations are used up. After a reissued generation
/// the new one starts acknowledged: a recovery is granted once.
fn rotate(policy: &Policy, from: Record, now: u64) -> Option<Record> {
    let next = from.generation.checked_add(1)?;
    let mut new = from;
    new.generation = next;
    new.acknowledged = from.reissued;
    new.reissued = false;
    new.rotated_at = now.max(from.rotated_at);
    new.expires_at = expiry(policy, new.created_at, new.rotated_at);
    Some(new)
}
