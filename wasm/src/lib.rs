//! rotauth's sign-in and decision as a `wasm32-unknown-unknown` module with no imports at
//! all: no WASI, no JS glue, no allocator. It runs in any WebAssembly host (a browser, an
//! edge worker, Node) that can call exported functions and read linear memory.
//!
//! Data passes through one fixed buffer in linear memory, [`io_buffer`]; numbers pass as
//! arguments (`u64` is a JS `BigInt`). The host keeps the session record (75 bytes) and
//! hands it back on every call, so the module holds no state between calls. Randomness
//! for sign-in comes from the host as 32 bytes (client id, then seed), e.g. from
//! `crypto.getRandomValues`: the module has no RNG of its own.
//!
//! Buffer layout (byte offsets):
//!
//! | offset | length | contents |
//! |---|---|---|
//! | 0 | up to 160 | the key (`key_len` bytes) |
//! | 160 | 75 | the session record: read by `decide` and `current_token`, written by `sign_in` and by `decide` when the session changed |
//! | 256 | up to 128 | in: 32 bytes of entropy for `sign_in`, or the presented token text for `decide` (`token_len` bytes) |
//! | 384 | 55 | out: a token to send (`sign_in`, `current_token`, `decide` on rotate and reissue) |
//!
//! Every export returns a negative number for a bad call: -1 the key is shorter than 32
//! bytes or longer than 160, or `key_id` is not a byte; -2 the record does not decode;
//! -3 `token_len` is over 128; -4 the record names a key id other than `key_id`; -5 the
//! entropy ran out (cannot happen with 32 bytes).

#![no_std]

use core::cell::UnsafeCell;

use rotauth::{
    Config, Decision, KeyId, Keyring, Mode, RejectReason, ReplayPolicy, Request, Rotator, Session,
    Timestamp,
};

/// The host's random bytes (`crypto.getRandomValues`) are handed to sign-in in order by
/// `FixedBytes`, which fails when they run out. (`TestRng` is not used here.)
#[allow(dead_code)]
#[path = "../../embedded-tests/src/rng.rs"]
mod rng;

const KEY: usize = 0;
const MAX_KEY_LEN: usize = 160;
const RECORD: usize = 160;
const INPUT: usize = 256;
const MAX_INPUT_LEN: usize = 128;
const TOKEN_OUT: usize = 384;
const IO_LEN: usize = 512;

/// `decide` flag: rotate even inside the batch window (devise's `unbatch=true`).
const FORCE_ROTATION: u32 = 1;
/// `decide` flag: [`Mode::Recover`] instead of Strict.
const RECOVER: u32 = 2;
/// `decide` flag: [`ReplayPolicy::RevokeSession`] instead of Reject.
const REVOKE_ON_REPLAY: u32 = 4;

/// The buffer shared with the host.
struct Io(UnsafeCell<[u8; IO_LEN]>);

// SAFETY: a WebAssembly instance without the threads proposal runs one call at a time, and
// the exports do not call each other, so at most one reference to the buffer is live.
unsafe impl Sync for Io {}

static IO: Io = Io(UnsafeCell::new([0; IO_LEN]));

fn io() -> &'static mut [u8; IO_LEN] {
    // SAFETY: see `Io`: one export runs at a time and each takes this reference once.
    unsafe { &mut *IO.0.get() }
}

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // A trap: the host sees a `RuntimeError`. rotauth has no reachable panic; this keeps
    // the module free of imports should one exist.
    core::arch::wasm32::unreachable()
}

/// The address of the shared buffer in linear memory.
#[unsafe(no_mangle)]
pub extern "C" fn io_buffer() -> *mut u8 {
    io().as_mut_ptr()
}

/// Signs a session in at `now` (Unix ms) with the default configuration. Reads the key and
/// 32 bytes of entropy; writes the session record and `T(0)` text. Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn sign_in(key_len: u32, key_id: u32, now: u64) -> i32 {
    let io = io();
    let Some(rotator) = rotator(io, key_len, key_id, 0) else {
        return -1;
    };
    let mut rng = rng::FixedBytes::new(io.get(INPUT..INPUT + 32).unwrap_or(&[]));
    let Ok((session, token)) = rotator.try_sign_in(&mut rng, Timestamp::from_unix_millis(now))
    else {
        return -5;
    };
    write(io, TOKEN_OUT, token.to_text().as_str().as_bytes());
    write(io, RECORD, &session.encode());
    0
}

/// Decides a request presenting the token text at `INPUT` (`token_len` bytes) at `now`,
/// against the record at `RECORD`. Returns the decision, packed:
///
/// - bits 0–3: 0 accept, 1 rotate, 2 batch reuse, 3 reissue, 4 reject
/// - bit 4: a new record was written at `RECORD` (store it)
/// - bit 5: a token was written at `TOKEN_OUT` (send it)
/// - bit 6: revoke the session
/// - bits 8–15, on reject: 1 unknown session, 2 malformed, 3 unknown key, 4 forged,
///   5 expired, 6 too old, 7 replayed
/// - bits 16–23, on a replay: generations behind (at most 255)
#[unsafe(no_mangle)]
pub extern "C" fn decide(key_len: u32, key_id: u32, token_len: u32, now: u64, flags: u32) -> i32 {
    let io = io();
    let Some(rotator) = rotator(io, key_len, key_id, flags) else {
        return -1;
    };
    let Some(session) = session(io) else {
        return -2;
    };
    let Some(presented) = usize::try_from(token_len)
        .ok()
        .filter(|len| *len <= MAX_INPUT_LEN)
        .and_then(|len| io.get(INPUT..INPUT + len))
    else {
        return -3;
    };
    // Text that is not UTF-8 cannot be a token; let the decision say so as "malformed".
    let text = core::str::from_utf8(presented).unwrap_or("\u{fffd}");
    let mut request = Request::new(text, Timestamp::from_unix_millis(now));
    if flags & FORCE_ROTATION != 0 {
        request = request.force_rotation();
    }
    let decision = rotator.decide(&session, request);

    let mut result: i32 = match &decision {
        Decision::Accept { .. } => 0,
        Decision::Rotate { .. } => 1,
        Decision::BatchReuse { .. } => 2,
        Decision::Reissue { .. } => 3,
        // A revocation is a rejection with the revoke bit (1 << 6) set below.
        Decision::Reject { reason } | Decision::Revoke { reason } => 4 | reason_code(*reason) << 8,
    };
    if let Some(session) = decision.session_to_store() {
        write(io, RECORD, &session.encode());
        result |= 1 << 4;
    }
    if let Some(token) = decision.token_to_send() {
        write(io, TOKEN_OUT, token.to_text().as_str().as_bytes());
        result |= 1 << 5;
    }
    if decision.must_revoke() {
        result |= 1 << 6;
    }
    if let Some(RejectReason::Replayed { behind }) = decision.reject_reason() {
        result |= i32::from(u8::try_from(behind).unwrap_or(u8::MAX)) << 16;
    }
    result
}

/// Writes the current token `T(n)` of the record at `RECORD` as text. Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn current_token(key_len: u32, key_id: u32) -> i32 {
    let io = io();
    let Some(rotator) = rotator(io, key_len, key_id, 0) else {
        return -1;
    };
    let Some(session) = session(io) else {
        return -2;
    };
    let Some(token) = rotator.current_token(&session) else {
        return -4;
    };
    write(io, TOKEN_OUT, token.to_text().as_str().as_bytes());
    0
}

fn rotator(io: &[u8], key_len: u32, key_id: u32, flags: u32) -> Option<Rotator> {
    let key = usize::try_from(key_len)
        .ok()
        .filter(|len| *len <= MAX_KEY_LEN)
        .and_then(|len| io.get(KEY..KEY + len))?;
    let keyring = Keyring::new(KeyId(u8::try_from(key_id).ok()?), key).ok()?;
    let mut config = Config::builder();
    if flags & RECOVER != 0 {
        config = config.mode(Mode::Recover);
    }
    if flags & REVOKE_ON_REPLAY != 0 {
        config = config.replay_policy(ReplayPolicy::RevokeSession);
    }
    Some(Rotator::new(keyring, config.build().ok()?))
}

fn session(io: &[u8]) -> Option<Session> {
    Session::decode(io.get(RECORD..RECORD + Session::ENCODED_LEN)?).ok()
}

fn write(io: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(slot) = io.get_mut(at..at + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
}

fn reason_code(reason: RejectReason) -> i32 {
    match reason {
        RejectReason::UnknownSession => 1,
        RejectReason::Malformed(_) => 2,
        RejectReason::UnknownKey => 3,
        RejectReason::Forged => 4,
        RejectReason::Expired => 5,
        RejectReason::TooOld => 6,
        RejectReason::Replayed { .. } => 7,
        _ => 255,
    }
}
