//! Passwords: argon2id hashing whose memory stays bounded however many sign-ins arrive, and
//! devise's rules for a new password.

use std::sync::{Arc, Mutex};

use argon2::Argon2;
use rotauth::rand_core::TryRng;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// devise's `password_length` bounds: 8 to 128 characters.
const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 128;

/// Password hashing with a bounded amount of memory: a semaphore of
/// `Limits::concurrent_hashes` permits, and as many argon2 work areas, each reused from
/// one hash to the next. A request waits for a permit before anything is allocated, so a
/// flood of sign-ins holds a few argon2 areas however many requests wait.
///
/// The areas are kept rather than allocated per hash because of how glibc's allocator
/// treats repeated 19 MiB allocations: after the first is freed it raises its mmap
/// threshold, later ones come from per-thread arenas that are never returned, and the
/// blocking pool runs hashes on many threads: measured, 200 sign-ins two at a time left
/// the server at 3.6 GiB; with reused areas it stays at a few tens of MiB.
pub struct Hasher {
    permits: Arc<Semaphore>,
    areas: Mutex<Vec<Vec<argon2::Block>>>,
}

impl Hasher {
    pub(crate) fn new(concurrent: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(concurrent.clamp(1, Semaphore::MAX_PERMITS))),
            areas: Mutex::new(Vec::new()),
        })
    }

    /// Runs `work` on the blocking pool with a permit and a work area.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&mut Vec<argon2::Block>) -> T + Send + 'static,
    ) -> Result<T, String> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut area = this
                .areas
                .lock()
                .ok()
                .and_then(|mut areas| areas.pop())
                .unwrap_or_default();
            let result = work(&mut area);
            if let Ok(mut areas) = this.areas.lock() {
                areas.push(area);
            }
            drop(permit);
            result
        })
        .await
        .map_err(|e| e.to_string())
    }
}

/// The first `params.block_count()` blocks of `area`, grown if needed.
fn blocks<'a>(
    area: &'a mut Vec<argon2::Block>,
    params: &argon2::Params,
) -> &'a mut [argon2::Block] {
    let count = params.block_count();
    if area.len() < count {
        area.resize(count, argon2::Block::new());
    }
    area.get_mut(..count).unwrap_or_default()
}

/// A new argon2id PHC string for `password` with a fresh salt, computed in `area`.
pub(crate) fn hash_password(
    params: &argon2::Params,
    password: &[u8],
    area: &mut Vec<argon2::Block>,
) -> Result<String, String> {
    use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
    let mut salt = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| e.to_string())?;
    let argon2 = Argon2::from(params);
    let len = params
        .output_len()
        .unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN);
    let mut buffer = Zeroizing::new([0u8; 64]);
    let out = buffer.get_mut(..len).ok_or("argon2 output too long")?;
    argon2
        .hash_password_into_with_memory(password, &salt, out, blocks(area, params))
        .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash` (its own parameters, salt and
/// length), computed in `area` and compared in constant time.
fn verify_password(hash: &str, password: &[u8], area: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::phc::{Output, PasswordHash};
    let Ok(phc) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        argon2::Algorithm::try_from(phc.algorithm.as_str()),
        argon2::Params::try_from(&phc),
    ) else {
        return false;
    };
    let version = match phc.version.map(argon2::Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut buffer = Zeroizing::new([0u8; 64]);
    let Some(out) = buffer.get_mut(..expected.len()) else {
        return false;
    };
    if argon2
        .hash_password_into_with_memory(password, salt, out, blocks(area, &params))
        .is_err()
    {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(out).is_ok_and(|actual| actual == *expected)
}

/// Hashes on the blocking pool under a hashing permit (see [`Hasher`]).
pub(crate) async fn hash_blocking(
    hasher: &Arc<Hasher>,
    params: argon2::Params,
    password: Zeroizing<String>,
) -> Result<String, String> {
    hasher
        .run(move |area| hash_password(&params, password.as_bytes(), area))
        .await?
}

/// Checks a password on the blocking pool under a hashing permit (see [`Hasher`]).
pub(crate) async fn verify_blocking(
    hasher: &Arc<Hasher>,
    hash: String,
    password: Zeroizing<String>,
) -> bool {
    hasher
        .run(move |area| verify_password(&hash, password.as_bytes(), area))
        .await
        .unwrap_or(false)
}

/// devise's errors for a new password and its confirmation.
pub(crate) fn password_errors(
    password: Option<&str>,
    confirmation: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    match password {
        None | Some("") => errors.push(("password", "can't be blank".to_owned())),
        Some(p) if p.chars().count() < MIN_PASSWORD => errors.push((
            "password",
            format!("is too short (minimum is {MIN_PASSWORD} characters)"),
        )),
        Some(p) if p.chars().count() > MAX_PASSWORD => errors.push((
            "password",
            format!("is too long (maximum is {MAX_PASSWORD} characters)"),
        )),
        Some(_) => {}
    }
    // As devise: the confirmation is checked when it is sent.
    if let Some(confirmation) = confirmation
        && Some(confirmation) != password
    {
        errors.push(("password_confirmation", "doesn't match Password".to_owned()));
    }
    errors
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    use super::{Argon2, hash_password, verify_password};

    /// The reused work areas produce and accept the same PHC strings as argon2's own
    /// hasher, so hashes stored before and after the change keep working both ways.
    #[test]
    fn hashes_interoperate_with_argon2s_own_phc_strings() {
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        let mut area = Vec::new();
        let ours = hash_password(&params, b"correct horse", &mut area).unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{ours}");
        Argon2::from(&params)
            .verify_password(b"correct horse", ours.as_str())
            .unwrap();
        let theirs = Argon2::from(&params)
            .hash_password_with_salt(b"correct horse", b"0123456789abcdef")
            .unwrap()
            .to_string();
        assert!(verify_password(&theirs, b"correct horse", &mut area));
        assert!(!verify_password(&theirs, b"correct horsf", &mut area));
        assert!(!verify_password("not a phc string", b"x", &mut area));
        // A stored hash with a larger memory cost grows the area.
        let big = argon2::Params::new(4096, 1, 1, None).unwrap();
        let stored = hash_password(&big, b"pw", &mut Vec::new()).unwrap();
        assert!(verify_password(&stored, b"pw", &mut area));
        assert_eq!(area.len(), 4096);
    }
}
