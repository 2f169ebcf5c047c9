//! The rotator's keys and policy: made once by `init`, changed by the key exports.

use rotauth::{Config, ConfigError, KeyError, KeyId, Keyring, Mode, ReplayPolicy, Rotator};

use crate::{KEY, KEY_IDS_OUT, MAX_KEY_LEN, Status, status, wipe, wiped};

/// `init` flag: rotation off (devise's `change_headers_on_each_request = false`).
const NO_ROTATION: u32 = 1;
/// `init` flag: [`Mode::Recover`] instead of Strict.
const RECOVER: u32 = 2;
/// `init` flag: [`ReplayPolicy::RevokeSession`] instead of Reject.
const REVOKE_ON_REPLAY: u32 = 4;
/// `init` flag: `absolute_ms` is an absolute lifetime (otherwise there is none).
const ABSOLUTE_LIFETIME: u32 = 8;

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

fn rotator_mut(rotator: &mut Option<Rotator>) -> Result<&mut Rotator, Status> {
    rotator.as_mut().ok_or(Status::NotInitialized)
}
