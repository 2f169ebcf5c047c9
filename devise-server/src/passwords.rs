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

/// A stored PHC string, read: the argon2 settings it was made with, its salt and its
/// output. `None` for anything else (another format, a missing salt or output, unknown
/// settings). A string without a version is version 0x13, argon2's default.
struct StoredHash {
    argon2: Argon2<'static>,
    params: argon2::Params,
    algorithm: argon2::Algorithm,
    version: argon2::Version,
    salt: Vec<u8>,
    expected: argon2::password_hash::phc::Output,
}

impl StoredHash {
    fn parse(hash: &str) -> Option<Self> {
        use argon2::password_hash::phc::PasswordHash;
        let phc = PasswordHash::new(hash).ok()?;
        let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
            return None;
        };
        let algorithm = argon2::Algorithm::try_from(phc.algorithm.as_str()).ok()?;
        let params = argon2::Params::try_from(&phc).ok()?;
        let version = phc
            .version
            .map(argon2::Version::try_from)
            .transpose()
            .ok()?
            .unwrap_or_default();
        Some(Self {
            argon2: Argon2::new(algorithm, version, params.clone()),
            params,
            algorithm,
            version,
            salt: salt.as_ref().to_vec(),
            expected: *expected,
        })
    }
}

/// Whether `password` matches the PHC string `hash` (its own parameters, salt and
/// length), computed in `area` and compared in constant time.
fn verify_password(hash: &str, password: &[u8], area: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::phc::Output;
    let Some(stored) = StoredHash::parse(hash) else {
        return false;
    };
    let mut buffer = Zeroizing::new([0u8; 64]);
    let Some(out) = buffer.get_mut(..stored.expected.len()) else {
        return false;
    };
    if stored
        .argon2
        .hash_password_into_with_memory(password, &stored.salt, out, blocks(area, &stored.params))
        .is_err()
    {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(out).is_ok_and(|actual| actual == stored.expected)
}

/// Whether the stored PHC string `hash` was computed with weaker argon2 settings than
/// `params`: another algorithm than argon2id (the one [`hash_password`] uses), an older
/// version, or less memory (`m`), fewer passes (`t`) or fewer lanes (`p`). A hash that
/// does not parse counts as weaker: rehashing is all there is to do with it. Answers
/// whether a password verified at sign-in should be hashed again with `params`, for
/// accounts hashed under `--insecure-fast-hashing` or before the cost was raised.
pub(crate) fn weaker_than(hash: &str, params: &argon2::Params) -> bool {
    StoredHash::parse(hash).is_none_or(|stored| {
        stored.algorithm != argon2::Algorithm::Argon2id
            || stored.version < argon2::Version::V0x13
            || stored.params.m_cost() < params.m_cost()
            || stored.params.t_cost() < params.t_cost()
            || stored.params.p_cost() < params.p_cost()
    })
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

    use super::{Argon2, hash_password, verify_password, weaker_than};

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

    /// A hash is weaker than the server's parameters when any of its algorithm, version,
    /// memory, passes or lanes is below them; equal or stronger is not; garbage is.
    #[test]
    fn weaker_than_compares_algorithm_version_memory_passes_and_lanes() {
        let params = |m, t, p| argon2::Params::new(m, t, p, None).unwrap();
        let salt = b"0123456789abcdef";
        let hash = |algorithm, version, params: argon2::Params| {
            Argon2::new(algorithm, version, params)
                .hash_password_with_salt(b"pw", salt)
                .unwrap()
                .to_string()
        };
        let (id, v13) = (argon2::Algorithm::Argon2id, argon2::Version::V0x13);
        let server = params(4096, 2, 2);
        // What --insecure-fast-hashing stores, against the defaults and against itself.
        let fast = hash_password(&params(1024, 1, 1), b"pw", &mut Vec::new()).unwrap();
        assert!(weaker_than(&fast, &argon2::Params::default()));
        assert!(!weaker_than(&fast, &params(1024, 1, 1)));
        let default = hash_password(&argon2::Params::default(), b"pw", &mut Vec::new()).unwrap();
        assert!(!weaker_than(&default, &argon2::Params::default()));
        assert!(weaker_than(&default, &params(65_536, 2, 1)), "m below");
        // One parameter below is enough; equal or above is not weaker.
        assert!(!weaker_than(&hash(id, v13, params(4096, 2, 2)), &server));
        assert!(!weaker_than(&hash(id, v13, params(8192, 3, 4)), &server));
        assert!(
            weaker_than(&hash(id, v13, params(2048, 2, 2)), &server),
            "m"
        );
        assert!(
            weaker_than(&hash(id, v13, params(8192, 1, 2)), &server),
            "t"
        );
        assert!(
            weaker_than(&hash(id, v13, params(8192, 2, 1)), &server),
            "p"
        );
        // Another algorithm or an older version, at the same costs.
        let (i, d) = (argon2::Algorithm::Argon2i, argon2::Algorithm::Argon2d);
        assert!(
            weaker_than(&hash(i, v13, params(4096, 2, 2)), &server),
            "argon2i"
        );
        assert!(
            weaker_than(&hash(d, v13, params(4096, 2, 2)), &server),
            "argon2d"
        );
        let old = hash(id, argon2::Version::V0x10, params(4096, 2, 2));
        assert!(old.contains("$v=16$"), "{old}");
        assert!(weaker_than(&old, &server), "v=16");
        // Unparseable, or without its salt or output.
        for garbage in [
            "",
            "not a phc string",
            "$argon2id$v=19$m=4096,t=2,p=2",
            "$argon2id$v=19$m=4096,t=2,p=2$MDEyMzQ1Njc4OWFiY2RlZg",
            "$bcrypt$v=19$m=4096,t=2,p=2$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=99$m=4096,t=2,p=2$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(weaker_than(garbage, &server), "{garbage:?}");
        }
    }
}
