//! The request loop for a host whose I/O is asynchronous: rotauth's
//! [`Exchange`](rotauth::exchange::Exchange), one per request, kept here between the host's
//! steps and named by a handle.
//!
//! A JavaScript server has many requests in flight at once, each awaiting its store, and
//! the exchange of each must live from one await to the next. It lives in this instance's
//! memory rather than in the host's: it holds the session records and tokens of the
//! request, and the rules that drive it stay in rotauth, the same as in every other host.
//! The table is bounded (no allocator): a host that asks for more exchanges than it holds
//! gets [`Status::ExchangesFull`], which it answers with 503, as it would a store that
//! cannot keep up.
//!
//! Every step export returns the next [`Step`] packed in an `i32` (see [`step_code`]),
//! with what it carries written to the buffer. An answer ends the exchange and frees its
//! slot; a host that leaves an exchange before its answer frees it with `exchange_drop`.

use core::mem::MaybeUninit;

use rotauth::exchange::{
    Answer, BatchToken, Exchange, Loaded, Options, Refusal, Reply, Step, Swapped, Unavailable,
};
use rotauth::{DecisionKind, Rotator, Session, Timestamp};

use crate::{
    EXPECTED_VERSION_OUT, EXPIRES_OUT, INPUT, MAX_INPUT_LEN, RECORD, RECORD_LEN, State, Status,
    millis, presented, reason_code, session, status, wipe, wiped, write_record, write_token,
    write_u64,
};

/// How many exchanges one instance holds at once: the requests of one rotator whose store
/// I/O is in flight. About 700 bytes each.
pub(crate) const CAPACITY: usize = 256;

/// `exchange_new` flag: rotate even inside the batch window (devise's `unbatch=true`).
const FORCE_ROTATION: u32 = 1;
/// `exchange_new` flag: decide only, store nothing ([`Exchange::check`]).
const CHECK: u32 = 2;
/// `exchange_new` flag: a batch member's response carries `T(n)` ([`BatchToken::Current`]).
const BATCH_CURRENT: u32 = 4;

/// `exchange_loaded`: what the load found.
const FOUND: u32 = 0;
const MISSING: u32 = 1;
const LOAD_FAILED: u32 = 2;

/// `exchange_swapped`: what the compare-and-swap did.
const STORED: u32 = 0;
const LOST: u32 = 1;
const SWAP_FAILED: u32 = 2;

/// The live exchanges, and the serial that makes every handle new.
pub(crate) struct Exchanges {
    slots: [Slot; CAPACITY],
    serial: u32,
}

struct Slot {
    /// The handle of the exchange in this slot, or [`FREE`] (zero, so that a zeroed table
    /// is an empty one).
    handle: i32,
    /// Initialised exactly while `handle != FREE`; zeroed bytes otherwise.
    exchange: MaybeUninit<Exchange>,
}

const FREE: i32 = 0;
/// Handles carry the slot in their low bits and a serial (from 1) above, so that a handle
/// used after its exchange ended names no later one for a long while, and none is
/// [`FREE`] or negative.
const SLOT_BITS: u32 = CAPACITY.trailing_zeros();
const MAX_SERIAL: u32 = i32::MAX.unsigned_abs() >> SLOT_BITS;

impl Exchanges {
    pub(crate) const EMPTY: Self = Self {
        slots: [const {
            Slot {
                handle: FREE,
                exchange: MaybeUninit::zeroed(),
            }
        }; CAPACITY],
        serial: 0,
    };

    /// Keeps `exchange`; its handle, or [`Status::ExchangesFull`].
    fn insert(&mut self, exchange: Exchange) -> Result<i32, Status> {
        let Some((index, slot)) = self
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, slot)| slot.handle == FREE)
        else {
            return Err(Status::ExchangesFull);
        };
        self.serial = self.serial % MAX_SERIAL + 1;
        let handle = self.serial << SLOT_BITS | u32::try_from(index).unwrap_or(0);
        slot.handle = i32::try_from(handle).map_err(|_| Status::ExchangesFull)?;
        slot.exchange.write(exchange);
        Ok(slot.handle)
    }

    fn slot(&mut self, handle: i32) -> Result<&mut Slot, Status> {
        let index = usize::try_from(handle).map_err(|_| Status::UnknownExchange)? % CAPACITY;
        // `FREE` names no exchange, though free slots hold it.
        self.slots
            .get_mut(index)
            .filter(|slot| slot.handle == handle && handle != FREE)
            .ok_or(Status::UnknownExchange)
    }
}

impl Slot {
    fn exchange(&mut self) -> &mut Exchange {
        // SAFETY: a slot is reached only through `Exchanges::slot`, which checks that it
        // holds a live exchange, and `free` is the only way one stops being live.
        unsafe { self.exchange.assume_init_mut() }
    }

    /// Ends the exchange: drops it in place, so that its tokens and seeds wipe themselves
    /// where they lie, then zeroes every byte of the slot, where copies an exchange leaves
    /// behind as it moves from state to state may remain.
    fn free(&mut self) {
        // SAFETY: as in `exchange`; the handle is cleared before anything else can run.
        unsafe { self.exchange.assume_init_drop() };
        self.handle = FREE;
        self.exchange = MaybeUninit::zeroed();
    }
}

/// Starts the exchange of a request presenting the token text at `INPUT` (`token_len`
/// bytes) at `now` (Unix ms, high and low 32 bits), with `flags` (`FORCE_ROTATION`,
/// `CHECK`, `BATCH_CURRENT`) and `max_attempts` decisions at most (0: rotauth's default;
/// ignored by a check). Returns its handle; its first step is a load.
#[unsafe(no_mangle)]
pub extern "C" fn exchange_new(
    token_len: u32,
    now_high: u32,
    now_low: u32,
    flags: u32,
    max_attempts: u32,
) -> i32 {
    let now = Timestamp::from_unix_millis(millis(now_high, now_low));
    wiped(|state| {
        let result = (|| {
            state.rotator.as_ref().ok_or(Status::NotInitialized)?;
            let text = presented(&state.io, token_len)?;
            // The first step of an exchange is always a load, which the host knows: the
            // handle is all it needs back.
            let (exchange, Step::Load) = (if flags & CHECK != 0 {
                Exchange::check(text, now)
            } else {
                let mut options = Options::default()
                    .forced(flags & FORCE_ROTATION != 0)
                    .batch_token(if flags & BATCH_CURRENT != 0 {
                        BatchToken::Current
                    } else {
                        BatchToken::Blank
                    });
                if max_attempts > 0 {
                    options = options.max_attempts(max_attempts);
                }
                Exchange::new(text, now, options)
            }) else {
                return Err(Status::UnknownExchange);
            };
            state.exchanges.insert(exchange)
        })();
        wipe(&mut state.io, INPUT, MAX_INPUT_LEN);
        status(result)
    })
}

/// What the load asked for found: `FOUND` (the record at `RECORD`, `record_len` bytes, and
/// whether the user the request claims is the session's), `MISSING` or `LOAD_FAILED`. A
/// record that does not decode is a corrupt one. Returns the next step.
#[unsafe(no_mangle)]
pub extern "C" fn exchange_loaded(
    handle: i32,
    found: u32,
    claim_matches: u32,
    record_len: u32,
) -> i32 {
    step(handle, |rotator, io, exchange| {
        let stored: Result<Session, Status>;
        let loaded = match found {
            FOUND => {
                stored = session(io, record_len);
                match &stored {
                    Ok(session) => Loaded::Found {
                        session,
                        version: session.version(),
                        claim_matches: claim_matches != 0,
                    },
                    Err(_) => Loaded::Corrupt,
                }
            }
            MISSING => Loaded::Missing,
            LOAD_FAILED => Loaded::Failed,
            _ => return Err(Status::UnknownExchange),
        };
        Ok(exchange.loaded(rotator, loaded))
    })
}

/// What the compare-and-swap asked for did: `STORED`, `LOST` or `SWAP_FAILED` (whether it
/// wrote is unknown). Returns the next step.
#[unsafe(no_mangle)]
pub extern "C" fn exchange_swapped(handle: i32, swapped: u32) -> i32 {
    step(handle, |rotator, _, exchange| {
        let swapped = match swapped {
            STORED => Swapped::Stored,
            LOST => Swapped::Lost,
            SWAP_FAILED => Swapped::Failed,
            _ => return Err(Status::UnknownExchange),
        };
        Ok(exchange.swapped(rotator, swapped))
    })
}

/// Whether the delete asked for succeeded (1) or the store failed (0). Returns the next
/// step.
#[unsafe(no_mangle)]
pub extern "C" fn exchange_deleted(handle: i32, deleted: u32) -> i32 {
    step(handle, |_, _, exchange| Ok(exchange.deleted(deleted != 0)))
}

/// After a store failure: try again (from a load). Returns the next step.
#[unsafe(no_mangle)]
pub extern "C" fn exchange_retry(handle: i32) -> i32 {
    step(handle, |_, _, exchange| Ok(exchange.retry()))
}

/// After a store failure: answer 503. Returns the next step (the answer).
#[unsafe(no_mangle)]
pub extern "C" fn exchange_give_up(handle: i32) -> i32 {
    step(handle, |_, _, exchange| Ok(exchange.give_up()))
}

/// Ends an exchange before its answer (the host stopped driving it) and wipes it. Returns
/// 0, or `UnknownExchange` if it had ended already.
#[unsafe(no_mangle)]
pub extern "C" fn exchange_drop(handle: i32) -> i32 {
    wiped(|state| {
        status(state.exchanges.slot(handle).map(|slot| {
            slot.free();
            0
        }))
    })
}

/// How many exchanges an instance holds at once.
#[unsafe(no_mangle)]
pub extern "C" fn exchange_capacity() -> i32 {
    i32::try_from(CAPACITY).unwrap_or(i32::MAX)
}

/// Runs one step of the exchange `handle` and writes out the step it leads to, freeing
/// the exchange at its answer. The record the host handed in is wiped from the buffer.
fn step(
    handle: i32,
    work: impl FnOnce(&Rotator, &[u8], &mut Exchange) -> Result<Step, Status>,
) -> i32 {
    wiped(|state| {
        let State {
            io,
            rotator,
            exchanges,
        } = state;
        let result = (|| {
            let rotator = rotator.as_ref().ok_or(Status::NotInitialized)?;
            let slot = exchanges.slot(handle)?;
            let next = work(rotator, io, slot.exchange());
            wipe(io, RECORD, RECORD_LEN);
            let next = next?;
            let code = step_code(io, &next);
            if matches!(next, Step::Answer(_)) {
                slot.free();
            }
            Ok(code)
        })();
        status(result)
    })
}

// Step codes, bits 0–3 of what a step export returns.
const LOAD: i32 = 0;
const STORE: i32 = 1;
const DELETE: i32 = 2;
const STORE_FAILED: i32 = 3;
const ANSWER: i32 = 4;
// An answer, bits 4–7.
const SERVE: i32 = 0;
const ACCEPTED: i32 = 1;
const REFUSE: i32 = 2;
const UNAVAILABLE: i32 = 3;

/// `step`, packed, with what it carries written to the buffer:
///
/// - bits 0–3: 0 load, 1 store (the record at `RECORD`, its version at `VERSION_OUT`, the
///   version to compare at `EXPECTED_VERSION_OUT`), 2 delete, 3 store failed, 4 answer
/// - an answer, bits 4–7: 0 serve, 1 accepted, 2 refuse, 3 unavailable
/// - serve: bits 8–11 the decision (numbered as `decide` numbers it), bits 12–15 the reply
///   (0 a new token, 1 batch, 2 the current token, 3 the same token; the token at
///   `TOKEN_OUT`, the expiry at `EXPIRES_OUT`), bits 16–23 the compare-and-swaps lost
/// - accepted: bits 8–11 the decision
/// - refuse: bits 8–11 1 user mismatch, 2 rejected, 3 revoked, 4 corrupt record; bits
///   12–19 the reason of a rejection or revocation (numbered as `decide` numbers it)
/// - unavailable: bits 8–11 0 the store failed, 1 too many lost compare-and-swaps
fn step_code(io: &mut [u8], step: &Step) -> i32 {
    match step {
        Step::Load => LOAD,
        Step::Store {
            session,
            expected_version,
        } => {
            write_record(io, session);
            write_u64(io, EXPECTED_VERSION_OUT, *expected_version);
            STORE
        }
        Step::Delete => DELETE,
        Step::StoreFailed => STORE_FAILED,
        Step::Answer(answer) => ANSWER | answer_code(io, answer),
    }
}

fn answer_code(io: &mut [u8], answer: &Answer) -> i32 {
    match answer {
        Answer::Serve {
            reply,
            decision,
            lost_swaps,
        } => {
            let reply_code = match reply {
                Reply::NewToken { .. } => 0,
                Reply::Batch { .. } => 1,
                Reply::Current { .. } => 2,
                Reply::SameToken { .. } => 3,
                // A reply this module does not know: sent as a batch member's, no token.
                _ => 1,
            };
            if let (Some(token), true) = (reply.token(), reply_code != 1) {
                write_token(io, token);
            }
            write_u64(io, EXPIRES_OUT, reply.expires_at().unix_millis());
            let lost = i32::try_from((*lost_swaps).min(255)).unwrap_or(255);
            SERVE << 4 | decision_code(*decision) << 8 | reply_code << 12 | lost << 16
        }
        Answer::Accepted { decision } => ACCEPTED << 4 | decision_code(*decision) << 8,
        Answer::Refuse(refusal) => {
            let (refusal, reason) = match refusal {
                Refusal::UserMismatch => (1, 0),
                Refusal::Rejected(reason) => (2, reason_code(*reason, io)),
                Refusal::Revoked(reason) => (3, reason_code(*reason, io)),
                Refusal::CorruptRecord => (4, 0),
                // Not the exchange's to give (the host reads credentials): a refusal all
                // the same.
                _ => (0, 0),
            };
            REFUSE << 4 | refusal << 8 | reason << 12
        }
        Answer::Unavailable(cause) => {
            let cause = match cause {
                Unavailable::Contention => 1,
                _ => 0,
            };
            UNAVAILABLE << 4 | cause << 8
        }
    }
}

/// A decision's number, as `decide` returns it.
fn decision_code(kind: DecisionKind) -> i32 {
    match kind {
        DecisionKind::Accept => 0,
        DecisionKind::Rotate => 1,
        DecisionKind::BatchReuse => 2,
        DecisionKind::Reissue => 3,
        DecisionKind::Reject => 4,
        _ => 5,
    }
}
