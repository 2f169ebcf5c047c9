//! rotauth's rotator as a `wasm32-unknown-unknown` module with no imports at all: no WASI,
//! no JS glue, no allocator. It runs in any WebAssembly host (a browser, an edge worker,
//! Node, Deno, Bun) that can call exported functions and read linear memory; the npm
//! package in `js/` is the ES-module wrapper that JavaScript users call.
//!
//! One instance holds one [`Rotator`] (keyring with precomputed HMAC schedules, and the
//! policy), made once by `init` and kept in linear memory across calls, so no call
//! rebuilds a key schedule. The host keeps the session records and hands one in per call.
//! The request loop around a decision is rotauth's own `Exchange`, kept in a table of this
//! instance between the host's I/O steps (`exchanges`): the host does the loads and
//! compare-and-swaps it asks for, and no rule of the loop lives in the host.
//!
//! Data passes through one fixed buffer in linear memory, [`io_buffer`]; numbers pass as
//! arguments (`u64` is a JS `BigInt`, or two `u32` halves where speed matters) and come
//! back as little-endian `u64`s in the buffer. Randomness for sign-in comes from the host
//! as 32 bytes (client id, then seed), e.g. from `crypto.getRandomValues`. The host reads
//! what it needs of a record (client id, expiry, version, ...) from the fields an export
//! writes out, never from the record's bytes, whose format is rotauth's.
//!
//! Buffer layout (byte offsets):
//!
//! | offset | length | contents |
//! |---|---|---|
//! | 0 | up to 256 | in: a key (`init`, `insert_key`) |
//! | 256 | 75 | the session record: in for `decide`, `current_token`, `batch_token`, `record_fields` and `exchange_loaded`; out from `sign_in`, from `decide` when the session changed, and with an exchange's store step |
//! | 336 | up to 128 | in: 32 bytes of entropy for `sign_in`, or the presented token text (`decide`, `batch_token`, `exchange_new`) |
//! | 464 | 55 | out: a token to send (`sign_in`, `current_token`, `batch_token`, `decide` on rotate and reissue, an exchange's answer) |
//! | 520 | 8 | out: generations behind, on a replay |
//! | 528 | 4 | out: key ids, primary first (`key_ids`) |
//! | 536 | 8 | out: when the session expires, Unix ms (`decide` when accepted, an exchange's answer when served, and the fields) |
//! | 544 | 8 | out: the version of the record at 256 (`decide` when it wrote one, an exchange's store step, and the fields) |
//! | 552 | 8 | out: the version a store step's compare-and-swap expects |
//! | 560 | 48 | out: the other public fields of a record (`sign_in`, `record_fields`): generation, created and rotated at (Unix ms), client id text (22 bytes), key id, flags (1 acknowledged, 2 reissued) |
//!
//! Why a hand-written wrapper rather than `wasm-bindgen`: the same rotator built with
//! `wasm-bindgen` 0.2.130 (classes returning records and tokens as `Vec`/`String`, so `std`
//! and its allocator) measured 39.3 KB of `.wasm` (gzip 15.7 KB) plus 17.9 KB of generated
//! JS, against 22.5 KB here after `wasm-opt -Oz` (gzip 8.8 KB); its decisions took 1.3×
//! (batch reuse) and 1.15× (rotate) the time of this module behind `js/lib/core.js`, without
//! any wiping; and its CLI must match the crate's version exactly and took 19 minutes of
//! wall time (6 of CPU) to `cargo install` here. (Measured when this module decided only;
//! it now also holds the request loop, and is built for speed rather than size: see
//! `Cargo.toml` and `build.sh`.)
//!
//! Every export wipes the inputs it read from the buffer (key, entropy, token text, a
//! record handed to an exchange) and, before returning, the part of the stack its work
//! used; an ended exchange's slot is zeroed; the host wipes the outputs once it has read
//! them. Each export returns a negative [`Status`] for a bad call, after which nothing has
//! changed.

#![no_std]

use core::cell::UnsafeCell;

use rotauth::{Decision, RejectReason, Request, Rotator, Session, Timestamp};

mod exchanges;
mod keys;

/// The host's random bytes (`crypto.getRandomValues`) are handed to sign-in in order by
/// `FixedBytes`, which fails when they run out. (`TestRng` is not used here.)
#[allow(dead_code)]
#[path = "../../embedded-tests/src/rng.rs"]
mod rng;

const KEY: usize = 0;
const MAX_KEY_LEN: usize = 256;
const RECORD: usize = 256;
const INPUT: usize = 336;
const MAX_INPUT_LEN: usize = 128;
const ENTROPY_LEN: usize = 32;
const TOKEN_OUT: usize = 464;
const BEHIND_OUT: usize = 520;
const KEY_IDS_OUT: usize = 528;
const EXPIRES_OUT: usize = 536;
const VERSION_OUT: usize = 544;
const EXPECTED_VERSION_OUT: usize = 552;
const GENERATION_OUT: usize = 560;
const CREATED_OUT: usize = 568;
const ROTATED_OUT: usize = 576;
const CLIENT_ID_OUT: usize = 584;
const KEY_ID_OUT: usize = 606;
const FLAGS_OUT: usize = 607;
const IO_LEN: usize = 640;
const RECORD_LEN: usize = Session::ENCODED_LEN;

/// How much stack every export zeroes before it returns: more than the deepest call
/// uses (about 1 KiB; the package's tests check that no secret is left).
const STACK_WIPE: usize = 4 * 1024;

/// `decide` flag: rotate even inside the batch window (devise's `unbatch=true`).
const FORCE_ROTATION: u32 = 1;
/// `decide` flag: the host has no session for the client id (no record is read).
const NO_SESSION: u32 = 2;

/// What a bad call returns: a negative number, mapped to a typed error by the wrapper.
#[repr(i32)]
#[derive(Clone, Copy)]
enum Status {
    KeyTooShort = -1,
    KeyTooLong = -2,
    InvalidKeyId = -3,
    DuplicateKeyId = -4,
    KeyringFull = -5,
    UnknownKeyId = -6,
    RemovingPrimary = -7,
    ZeroLifespan = -10,
    ZeroAbsoluteLifetime = -11,
    WindowLongerThanLifespan = -12,
    AbsoluteLifetimeShorterThanWindow = -13,
    InvalidConfig = -19,
    RecordLength = -20,
    RecordFormat = -21,
    RecordInvalid = -22,
    TokenTooLong = -30,
    EntropyExhausted = -31,
    NotInitialized = -40,
    KeyRemoved = -41,
    /// Every slot of the exchange table is taken: the host answers 503.
    ExchangesFull = -50,
    /// No live exchange has this handle (it ended, or never was), or the step is not one
    /// the module knows.
    UnknownExchange = -51,
}

/// The buffer shared with the host, the one rotator of this instance, and the exchanges
/// of the requests in flight.
struct State {
    io: [u8; IO_LEN],
    rotator: Option<Rotator>,
    exchanges: exchanges::Exchanges,
}

struct Global(UnsafeCell<State>);

// SAFETY: a WebAssembly instance without the threads proposal runs one call at a time, and
// the exports do not call each other, so at most one reference to the state is live.
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(State {
    io: [0; IO_LEN],
    rotator: None,
    exchanges: exchanges::Exchanges::EMPTY,
}));

fn state() -> &'static mut State {
    // SAFETY: see `Global`: one export runs at a time and each takes this reference once.
    unsafe { &mut *STATE.0.get() }
}

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // A trap: the host sees a `RuntimeError`. rotauth has no reachable panic; this keeps
    // the module free of imports should one exist.
    core::arch::wasm32::unreachable()
}

/// Zeroes the [`STACK_WIPE`] bytes of stack below the caller's frame, where the frames of
/// the work just done lay. The array's address escapes into `black_box`, so the optimiser
/// must write it.
#[inline(never)]
fn wipe_stack() {
    let mut scratch = [0u8; STACK_WIPE];
    core::hint::black_box(&mut scratch);
}

/// Runs `work`, then wipes the stack it used; every export goes through here.
#[inline(always)]
fn wiped<R>(work: impl FnOnce(&mut State) -> R) -> R {
    let result = run(work);
    wipe_stack();
    result
}

#[inline(never)]
fn run<R>(work: impl FnOnce(&mut State) -> R) -> R {
    work(state())
}

fn status(result: Result<i32, Status>) -> i32 {
    result.unwrap_or_else(|status| status as i32)
}

/// The address of the shared buffer in linear memory.
#[unsafe(no_mangle)]
pub extern "C" fn io_buffer() -> *mut u8 {
    state().io.as_mut_ptr()
}

/// Signs a session in at `now` (Unix ms, as its high and low 32 bits) from the 32 bytes of
/// entropy at `INPUT`; writes the session record, its fields and `T(0)` text. Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn sign_in(now_high: u32, now_low: u32) -> i32 {
    let now = millis(now_high, now_low);
    wiped(|state| {
        let result = (|| {
            let rotator = state.rotator.as_ref().ok_or(Status::NotInitialized)?;
            let entropy = state.io.get(INPUT..INPUT + ENTROPY_LEN).unwrap_or(&[]);
            let mut rng = rng::FixedBytes::new(entropy);
            let (session, token) = rotator
                .try_sign_in(&mut rng, Timestamp::from_unix_millis(now))
                .map_err(|_| Status::EntropyExhausted)?;
            write_token(&mut state.io, &token);
            write_record(&mut state.io, &session);
            write_fields(&mut state.io, &session);
            Ok(0)
        })();
        wipe(&mut state.io, INPUT, MAX_INPUT_LEN);
        status(result)
    })
}

/// Decides a request presenting the token text at `INPUT` (`token_len` bytes) at `now`
/// (Unix ms, as its high and low 32 bits: two `i32`s cross the boundary faster than a
/// `BigInt`), against the record at `RECORD` (`record_len` bytes; none with the
/// `NO_SESSION` flag).
/// Returns the decision, packed:
///
/// - bits 0–3: 0 accept, 1 rotate, 2 batch reuse, 3 reissue, 4 reject, 5 revoke
/// - bit 4: a new record was written at `RECORD` (store it), its version at `VERSION_OUT`
/// - bit 5: a token was written at `TOKEN_OUT` (send it)
/// - bits 8–15, on reject and revoke: 1 unknown session, 2 malformed, 3 unknown key,
///   4 forged, 5 expired, 6 too old, 7 replayed (generations behind at `BEHIND_OUT`)
///
/// When accepted, the expiry of the session in effect is at `EXPIRES_OUT`.
#[unsafe(no_mangle)]
pub extern "C" fn decide(
    record_len: u32,
    token_len: u32,
    now_high: u32,
    now_low: u32,
    flags: u32,
) -> i32 {
    let now = millis(now_high, now_low);
    wiped(|state| {
        let result = decide_in(state, record_len, token_len, now, flags);
        wipe(&mut state.io, INPUT, MAX_INPUT_LEN);
        status(result)
    })
}

fn decide_in(
    state: &mut State,
    record_len: u32,
    token_len: u32,
    now: u64,
    flags: u32,
) -> Result<i32, Status> {
    let rotator = state.rotator.as_ref().ok_or(Status::NotInitialized)?;
    let session = if flags & NO_SESSION == 0 {
        Some(session(&state.io, record_len)?)
    } else {
        None
    };
    let text = presented(&state.io, token_len)?;
    let mut request = Request::new(text, Timestamp::from_unix_millis(now));
    if flags & FORCE_ROTATION != 0 {
        request = request.force_rotation();
    }
    let decision = rotator.decide(session.as_ref(), request);

    let mut result: i32 = match &decision {
        Decision::Accept { .. } => 0,
        Decision::Rotate { .. } => 1,
        Decision::BatchReuse { .. } => 2,
        Decision::Reissue { .. } => 3,
        Decision::Reject { .. } => 4,
        Decision::Revoke { .. } => 5,
    };
    if let Some(reason) = decision.reject_reason() {
        result |= reason_code(reason, &mut state.io) << 8;
    }
    if let Some(session) = decision.session_to_store() {
        write_record(&mut state.io, session);
        result |= 1 << 4;
    }
    if let Some(in_effect) = decision.session_to_store().or(session.as_ref())
        && decision.is_accepted()
    {
        write_u64(
            &mut state.io,
            EXPIRES_OUT,
            in_effect.expires_at().unix_millis(),
        );
    }
    if let Some(token) = decision.token_to_send() {
        write_token(&mut state.io, token);
        result |= 1 << 5;
    }
    Ok(result)
}

/// Writes the current token `T(n)` of the record at `RECORD` (`record_len` bytes) as text.
/// Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn current_token(record_len: u32) -> i32 {
    wiped(|state| {
        status((|| {
            let rotator = state.rotator.as_ref().ok_or(Status::NotInitialized)?;
            let session = session(&state.io, record_len)?;
            let token = rotator.current_token(&session).ok_or(Status::KeyRemoved)?;
            write_token(&mut state.io, &token);
            Ok(0)
        })())
    })
}

/// Writes the token a batch member presenting the token at `INPUT` (`token_len` bytes of
/// text) is sent under the "current" batch-token policy, for the record at `RECORD`
/// (`record_len` bytes): `T(n)` to a holder of `T(n)` or `T(n-1)` (returns 0), nothing to
/// anyone else (returns 1; rotauth's `exchange::current_for` says why).
#[unsafe(no_mangle)]
pub extern "C" fn batch_token(record_len: u32, token_len: u32) -> i32 {
    wiped(|state| {
        let result = (|| {
            let rotator = state.rotator.as_ref().ok_or(Status::NotInitialized)?;
            let session = session(&state.io, record_len)?;
            let held = rotauth::Token::from_text(presented(&state.io, token_len)?).ok();
            match held.and_then(|held| rotauth::exchange::current_for(rotator, &session, &held)) {
                Some(token) => {
                    write_token(&mut state.io, &token);
                    Ok(0)
                }
                None => Ok(1),
            }
        })();
        wipe(&mut state.io, INPUT, MAX_INPUT_LEN);
        status(result)
    })
}

/// How many decisions one request may take before it answers 503 (one plus the
/// compare-and-swaps it may lose), unless a host sets otherwise: rotauth's bound.
#[unsafe(no_mangle)]
pub extern "C" fn max_attempts() -> i32 {
    i32::try_from(rotauth::exchange::Options::MAX_ATTEMPTS).unwrap_or(i32::MAX)
}

/// Checks that the record at `RECORD` (`record_len` bytes) decodes, and writes its public
/// fields (expiry, version, generation, times, client id, key id, flags). Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn record_fields(record_len: u32) -> i32 {
    wiped(|state| {
        status(session(&state.io, record_len).map(|session| {
            write_fields(&mut state.io, &session);
            0
        }))
    })
}

fn millis(high: u32, low: u32) -> u64 {
    u64::from(high) << 32 | u64::from(low)
}

/// The presented token text at `INPUT` (`token_len` bytes). Token text is ASCII; anything
/// else cannot be a token, and is handed on as text that is not one either, so that the
/// decision says "malformed".
fn presented(io: &[u8], token_len: u32) -> Result<&str, Status> {
    let bytes = usize::try_from(token_len)
        .ok()
        .filter(|len| *len <= MAX_INPUT_LEN)
        .and_then(|len| io.get(INPUT..INPUT + len))
        .ok_or(Status::TokenTooLong)?;
    if !bytes.is_ascii() {
        return Ok("\u{fffd}");
    }
    // SAFETY: ASCII is UTF-8. Checked by hand because `core::str::from_utf8` would add
    // 700 bytes to the module for a question the line above answers.
    Ok(unsafe { core::str::from_utf8_unchecked(bytes) })
}

/// Writes `session`'s record at `RECORD` and its version at `VERSION_OUT`.
fn write_record(io: &mut [u8], session: &Session) {
    write(io, RECORD, session.encode().as_ref());
    write_u64(io, VERSION_OUT, session.version());
}

/// Writes `session`'s public fields, for a host that shows or keys on them.
fn write_fields(io: &mut [u8], session: &Session) {
    write_u64(io, EXPIRES_OUT, session.expires_at().unix_millis());
    write_u64(io, VERSION_OUT, session.version());
    write_u64(io, GENERATION_OUT, session.generation());
    write_u64(io, CREATED_OUT, session.created_at().unix_millis());
    write_u64(io, ROTATED_OUT, session.rotated_at().unix_millis());
    if let Some(out) = io
        .get_mut(CLIENT_ID_OUT..CLIENT_ID_OUT + rotauth::ClientId::TEXT_LEN)
        .and_then(|out| <&mut [u8; rotauth::ClientId::TEXT_LEN]>::try_from(out).ok())
    {
        session.client_id().write_text(out);
    }
    write(io, KEY_ID_OUT, &[session.key_id().0]);
    let flags = u8::from(session.acknowledged()) | u8::from(session.reissued()) << 1;
    write(io, FLAGS_OUT, &[flags]);
}

/// Writes `token`'s text at `TOKEN_OUT`, straight into the buffer.
fn write_token(io: &mut [u8], token: &rotauth::Token) {
    if let Some(out) = io
        .get_mut(TOKEN_OUT..TOKEN_OUT + rotauth::TOKEN_TEXT_LEN)
        .and_then(|out| <&mut [u8; rotauth::TOKEN_TEXT_LEN]>::try_from(out).ok())
    {
        token.write_text(out);
    }
}

fn write_u64(io: &mut [u8], at: usize, value: u64) {
    write(io, at, &value.to_le_bytes());
}

fn session(io: &[u8], record_len: u32) -> Result<Session, Status> {
    let bytes = usize::try_from(record_len)
        .ok()
        .filter(|len| *len == RECORD_LEN)
        .and_then(|len| io.get(RECORD..RECORD + len))
        .ok_or(Status::RecordLength)?;
    Session::decode(bytes).map_err(|e| match e {
        rotauth::DecodeError::WrongLength { .. } => Status::RecordLength,
        rotauth::DecodeError::UnknownFormat(_) => Status::RecordFormat,
        _ => Status::RecordInvalid,
    })
}

fn write(io: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(slot) = io.get_mut(at..at + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
}

fn wipe(io: &mut [u8], at: usize, len: usize) {
    if let Some(slot) = io.get_mut(at..at + len) {
        slot.fill(0);
    }
}

/// The reason's number in the module's interface; a replay's generations behind are
/// written at `BEHIND_OUT`.
fn reason_code(reason: RejectReason, io: &mut [u8]) -> i32 {
    let behind = match reason {
        RejectReason::Replayed { behind } => behind,
        _ => 0,
    };
    write_u64(io, BEHIND_OUT, behind);
    match reason {
        RejectReason::UnknownSession => 1,
        RejectReason::Malformed(_) => 2,
        RejectReason::UnknownKey => 3,
        RejectReason::Forged => 4,
        RejectReason::Expired => 5,
        RejectReason::TooOld => 6,
        RejectReason::Replayed { .. } => 7,
        _ => 15,
    }
}
