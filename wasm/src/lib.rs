//! rotauth's rotator as a `wasm32-unknown-unknown` module with no imports at all: no WASI,
//! no JS glue, no allocator. It runs in any WebAssembly host (a browser, an edge worker,
//! Node, Deno, Bun) that can call exported functions and read linear memory; the npm
//! package in `js/` is the ES-module wrapper that JavaScript users call.
//!
//! One instance holds one [`Rotator`] (keyring with precomputed HMAC schedules, and the
//! policy), made once by [`init`] and kept in linear memory across calls, so no call
//! rebuilds a key schedule. The host keeps the session records and hands one in per call.
//!
//! Data passes through one fixed buffer in linear memory, [`io_buffer`]; numbers pass as
//! arguments (`u64` is a JS `BigInt`). Randomness for sign-in comes from the host as 32
//! bytes (client id, then seed), e.g. from `crypto.getRandomValues`.
//!
//! Buffer layout (byte offsets):
//!
//! | offset | length | contents |
//! |---|---|---|
//! | 0 | up to 256 | in: a key (`init`, `insert_key`) |
//! | 256 | 75 | the session record: in for `decide`, `current_token` and `check_record`; out from `sign_in`, and from `decide` when the session changed |
//! | 336 | up to 128 | in: 32 bytes of entropy for `sign_in`, or the presented token text for `decide` |
//! | 464 | 55 | out: a token to send (`sign_in`, `current_token`, `decide` on rotate and reissue) |
//! | 520 | 8 | out: generations behind, on a replay (u64, little-endian) |
//! | 528 | 4 | out: key ids, primary first (`key_ids`) |
//!
//! Why a hand-written wrapper rather than `wasm-bindgen`: the same rotator built with
//! `wasm-bindgen` 0.2.130 (classes returning records and tokens as `Vec`/`String`, so `std`
//! and its allocator) measured 39.3 KB of `.wasm` (gzip 15.7 KB) plus 17.9 KB of generated
//! JS, against 22.5 KB here after `wasm-opt -Oz` (gzip 8.8 KB); its decisions took 1.3×
//! (batch reuse) and 1.15× (rotate) the time of this module behind `js/lib/core.js`, without
//! any wiping; and its CLI must match the crate's version exactly and took 19 minutes of
//! wall time (6 of CPU) to `cargo install` here.
//!
//! Every export wipes the inputs it read from the buffer (key, entropy, token text) and,
//! before returning, the part of the stack its work used; the host wipes the outputs once
//! it has read them. Each export returns a negative [`Status`] for a bad call, after which
//! nothing has changed.

#![no_std]

use core::cell::UnsafeCell;

use rotauth::{
    Config, ConfigError, Decision, KeyError, KeyId, Keyring, Mode, RejectReason, ReplayPolicy,
    Request, Rotator, Session, Timestamp,
};

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
const IO_LEN: usize = 640;

/// How much stack every export zeroes before it returns: more than the deepest call
/// uses (about 1 KiB; the package's tests check that no secret is left).
const STACK_WIPE: usize = 4 * 1024;

/// `init` flag: rotation off (devise's `change_headers_on_each_request = false`).
const NO_ROTATION: u32 = 1;
/// `init` flag: [`Mode::Recover`] instead of Strict.
const RECOVER: u32 = 2;
/// `init` flag: [`ReplayPolicy::RevokeSession`] instead of Reject.
const REVOKE_ON_REPLAY: u32 = 4;
/// `init` flag: `absolute_ms` is an absolute lifetime (otherwise there is none).
const ABSOLUTE_LIFETIME: u32 = 8;

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
}

/// The buffer shared with the host and the one rotator of this instance.
struct State {
    io: [u8; IO_LEN],
    rotator: Option<Rotator>,
}

struct Global(UnsafeCell<State>);

// SAFETY: a WebAssembly instance without the threads proposal runs one call at a time, and
// the exports do not call each other, so at most one reference to the state is live.
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(State {
    io: [0; IO_LEN],
    rotator: None,
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

/// Makes this instance's rotator from the key at `KEY` (`key_len` bytes, id `key_id`,
/// primary) and the policy: `flags` (`NO_ROTATION`, `RECOVER`, `REVOKE_ON_REPLAY`,
/// `ABSOLUTE_LIFETIME`), the batch window, the sliding lifespan and the absolute lifetime,
/// in milliseconds. Replaces any rotator made before. Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn init(
    flags: u32,
    window_ms: u64,
    lifespan_ms: u64,
    absolute_ms: u64,
    key_len: u32,
    key_id: u32,
) -> i32 {
    wiped(|state| {
        let result = (|| {
            let mut builder = Config::builder()
                .rotate(flags & NO_ROTATION == 0)
                .batch_window(core::time::Duration::from_millis(window_ms))
                .lifespan(core::time::Duration::from_millis(lifespan_ms));
            if flags & ABSOLUTE_LIFETIME != 0 {
                builder =
                    builder.absolute_lifetime(Some(core::time::Duration::from_millis(absolute_ms)));
            }
            if flags & RECOVER != 0 {
                builder = builder.mode(Mode::Recover);
            }
            if flags & REVOKE_ON_REPLAY != 0 {
                builder = builder.replay_policy(ReplayPolicy::RevokeSession);
            }
            let config = builder.build().map_err(config_status)?;
            let id = key_id_of(key_id)?;
            let keyring = Keyring::new(id, key(&state.io, key_len)?).map_err(key_status)?;
            state.rotator = Some(Rotator::new(keyring, config));
            Ok(0)
        })();
        wipe(&mut state.io, KEY, MAX_KEY_LEN);
        status(result)
    })
}

/// Adds the key at `KEY` (`key_len` bytes) under `key_id`: it verifies tokens that name it
/// and signs nothing until made primary. Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn insert_key(key_len: u32, key_id: u32) -> i32 {
    wiped(|state| {
        let result = (|| {
            let id = key_id_of(key_id)?;
            let key = key(&state.io, key_len)?;
            rotator_mut(&mut state.rotator)?
                .keyring_mut()
                .insert(id, key)
                .map_err(key_status)?;
            Ok(0)
        })();
        wipe(&mut state.io, KEY, MAX_KEY_LEN);
        status(result)
    })
}

/// Makes `key_id` the key that signs every new token. Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn set_primary(key_id: u32) -> i32 {
    wiped(|state| {
        status((|| {
            let id = key_id_of(key_id)?;
            rotator_mut(&mut state.rotator)?
                .keyring_mut()
                .set_primary(id)
                .map_err(key_status)?;
            Ok(0)
        })())
    })
}

/// Removes `key_id`: tokens that name it are refused from now on. Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn remove_key(key_id: u32) -> i32 {
    wiped(|state| {
        status((|| {
            let id = key_id_of(key_id)?;
            rotator_mut(&mut state.rotator)?
                .keyring_mut()
                .remove(id)
                .map_err(key_status)?;
            Ok(0)
        })())
    })
}

/// Writes the key ids at `KEY_IDS_OUT`, the primary first. Returns how many.
#[unsafe(no_mangle)]
pub extern "C" fn key_ids() -> i32 {
    wiped(|state| {
        status((|| {
            let rotator = state.rotator.as_ref().ok_or(Status::NotInitialized)?;
            let mut count = 0;
            let slots = state
                .io
                .get_mut(KEY_IDS_OUT..KEY_IDS_OUT + rotauth::MAX_KEYS)
                .unwrap_or(&mut []);
            for (slot, id) in slots.iter_mut().zip(rotator.keyring().ids()) {
                *slot = id.0;
                count += 1;
            }
            Ok(count)
        })())
    })
}

/// Signs a session in at `now` (Unix ms, as its high and low 32 bits) from the 32 bytes of
/// entropy at `INPUT`; writes the session record and `T(0)` text. Returns 0.
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
            write(
                &mut state.io,
                TOKEN_OUT,
                token.to_text().as_str().as_bytes(),
            );
            write(&mut state.io, RECORD, session.encode().as_ref());
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
/// - bit 4: a new record was written at `RECORD` (store it)
/// - bit 5: a token was written at `TOKEN_OUT` (send it)
/// - bits 8–15, on reject and revoke: 1 unknown session, 2 malformed, 3 unknown key,
///   4 forged, 5 expired, 6 too old, 7 replayed (generations behind at `BEHIND_OUT`)
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
    let presented = usize::try_from(token_len)
        .ok()
        .filter(|len| *len <= MAX_INPUT_LEN)
        .and_then(|len| state.io.get(INPUT..INPUT + len))
        .ok_or(Status::TokenTooLong)?;
    // Text that is not UTF-8 cannot be a token; let the decision say so as "malformed".
    let text = core::str::from_utf8(presented).unwrap_or("\u{fffd}");
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
        result |= reason_code(reason) << 8;
        let behind = match reason {
            RejectReason::Replayed { behind } => behind,
            _ => 0,
        };
        write(&mut state.io, BEHIND_OUT, &behind.to_le_bytes());
    }
    if let Some(session) = decision.session_to_store() {
        write(&mut state.io, RECORD, session.encode().as_ref());
        result |= 1 << 4;
    }
    if let Some(token) = decision.token_to_send() {
        write(
            &mut state.io,
            TOKEN_OUT,
            token.to_text().as_str().as_bytes(),
        );
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
            write(
                &mut state.io,
                TOKEN_OUT,
                token.to_text().as_str().as_bytes(),
            );
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
            let presented = usize::try_from(token_len)
                .ok()
                .filter(|len| *len <= MAX_INPUT_LEN)
                .and_then(|len| state.io.get(INPUT..INPUT + len))
                .ok_or(Status::TokenTooLong)?;
            let held = core::str::from_utf8(presented)
                .ok()
                .and_then(|text| rotauth::Token::from_text(text).ok());
            match held.and_then(|held| rotauth::exchange::current_for(rotator, &session, &held)) {
                Some(token) => {
                    write(
                        &mut state.io,
                        TOKEN_OUT,
                        token.to_text().as_str().as_bytes(),
                    );
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
/// compare-and-swaps it may lose): rotauth's bound, which every host's loop keeps.
#[unsafe(no_mangle)]
pub extern "C" fn max_attempts() -> i32 {
    i32::try_from(rotauth::exchange::Options::MAX_ATTEMPTS).unwrap_or(i32::MAX)
}

/// Checks that the record at `RECORD` (`record_len` bytes) decodes. Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn check_record(record_len: u32) -> i32 {
    wiped(|state| status(session(&state.io, record_len).map(|_| 0)))
}

fn millis(high: u32, low: u32) -> u64 {
    u64::from(high) << 32 | u64::from(low)
}

fn rotator_mut(rotator: &mut Option<Rotator>) -> Result<&mut Rotator, Status> {
    rotator.as_mut().ok_or(Status::NotInitialized)
}

fn key(io: &[u8], key_len: u32) -> Result<&[u8], Status> {
    usize::try_from(key_len)
        .ok()
        .filter(|len| *len <= MAX_KEY_LEN)
        .and_then(|len| io.get(KEY..KEY + len))
        .ok_or(Status::KeyTooLong)
}

fn key_id_of(key_id: u32) -> Result<KeyId, Status> {
    u8::try_from(key_id)
        .map(KeyId)
        .map_err(|_| Status::InvalidKeyId)
}

fn session(io: &[u8], record_len: u32) -> Result<Session, Status> {
    let bytes = usize::try_from(record_len)
        .ok()
        .filter(|len| *len == Session::ENCODED_LEN)
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

fn key_status(e: KeyError) -> Status {
    match e {
        KeyError::TooShort { .. } => Status::KeyTooShort,
        KeyError::DuplicateId(_) => Status::DuplicateKeyId,
        KeyError::Full => Status::KeyringFull,
        KeyError::UnknownId(_) => Status::UnknownKeyId,
        KeyError::RemovingPrimary(_) => Status::RemovingPrimary,
        _ => Status::InvalidConfig,
    }
}

fn config_status(e: ConfigError) -> Status {
    match e {
        ConfigError::ZeroLifespan => Status::ZeroLifespan,
        ConfigError::ZeroAbsoluteLifetime => Status::ZeroAbsoluteLifetime,
        ConfigError::WindowLongerThanLifespan => Status::WindowLongerThanLifespan,
        ConfigError::AbsoluteLifetimeShorterThanWindow => Status::AbsoluteLifetimeShorterThanWindow,
        _ => Status::InvalidConfig,
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
        _ => 15,
    }
}
