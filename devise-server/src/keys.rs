//! The signing keys: from the environment or a file, never a flag (a flag shows in the
//! process list), and read again from the file on SIGHUP, so that keys change without a
//! restart and without signing anyone out.
//!
//! Every source holds the same text: one key in hex (key id 1), or a list of `ID:HEX`
//! entries separated by commas or line breaks, the first of them the primary, which signs
//! every new token; the others only verify the tokens made under them. Changing keys is
//! three edits of that list, each applied on every instance before the next: add the new
//! key after the old one; move it first; once `/metrics` shows no session left on the old
//! key (`rotauth_sessions_by_key`), remove the old one.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use rotauth::rand_core::TryRng;
use rotauth::{KeyId, Keyring};
use zeroize::Zeroizing;

/// The environment variable for the key or keys.
pub const KEY_ENV: &str = "ROTAUTH_KEY";
/// The same, under the name that says there may be several.
pub const KEYS_ENV: &str = "ROTAUTH_KEYS";

/// The signing keys and what to say about them at start.
pub struct SigningKey {
    /// The keyring holding them.
    pub keyring: Keyring,
    /// Whether the key was generated at random (none configured).
    pub generated: bool,
    /// The key file, which SIGHUP reads again; `None` for the environment (which a running
    /// process cannot see change) or a generated key.
    pub file: Option<PathBuf>,
    /// Warnings to log (never holding a key).
    pub warnings: Vec<String>,
}

/// The longest key file read, in bytes: four keys of 512 bytes in hex, with room to spare.
const MAX_KEY_FILE: u64 = 8192;

/// The signing keys: the value of an environment variable (`env`: its name and value, as
/// the caller read it) or the contents of `--key-file` (`file`), never both; with neither,
/// a fresh random key. Every error names where the keys came from and never shows a key.
pub fn signing_key(file: Option<&Path>, env: Option<(&str, &OsStr)>) -> Result<SigningKey, String> {
    let mut warnings = Vec::new();
    let (text, origin) = match (file, env) {
        (Some(_), Some((name, _))) => {
            return Err(format!(
                "both {name} and --key-file are set; give the keys in one of them"
            ));
        }
        (Some(path), None) => {
            let origin = format!("--key-file {}", path.display());
            (read_key_file(path, &origin, &mut warnings)?, origin)
        }
        (None, Some((name, value))) => {
            let text = value
                .to_str()
                .map(|text| Zeroizing::new(text.to_owned()))
                .ok_or_else(|| format!("{name}: must be hex digits"))?;
            (text, name.to_owned())
        }
        (None, None) => {
            let mut key = Zeroizing::new([0u8; 32]);
            rand::rngs::SysRng
                .try_fill_bytes(&mut key[..])
                .map_err(|e| format!("system RNG failed: {e}"))?;
            let keyring = Keyring::new(KeyId(1), &key[..]).map_err(|e| e.to_string())?;
            return Ok(SigningKey {
                keyring,
                generated: true,
                file: None,
                warnings,
            });
        }
    };
    let keyring = keyring(&text).map_err(|e| format!("{origin}: {e}"))?;
    Ok(SigningKey {
        keyring,
        generated: false,
        file: file.map(Path::to_owned),
        warnings,
    })
}

/// The keys of `file` again, for SIGHUP: the same checks as at start.
pub fn reload(file: &Path) -> Result<SigningKey, String> {
    signing_key(Some(file), None)
}

/// The keyring `text` describes: one key in hex (id 1), or `ID:HEX` entries separated by
/// commas or line breaks, the first primary. Each key is at least 32 bytes (64 hex
/// digits) and not one byte value repeated (all zeros, all `0x07`...): such a key is a
/// placeholder, and anyone who guesses it can mint tokens. At most four keys, each id
/// once. The errors name key ids, never keys.
pub fn keyring(text: &str) -> Result<Keyring, String> {
    let entries: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|entry| !entry.is_empty())
        .collect();
    let single = match entries.as_slice() {
        [] => return Err("no key".to_owned()),
        [only] => !only.contains(':'),
        _ => false,
    };
    let mut keyring: Option<Keyring> = None;
    for entry in entries {
        let (id, hex) = if single {
            (KeyId(1), entry)
        } else {
            let (id, hex) = entry
                .split_once(':')
                .ok_or("several keys are written ID:HEX, separated by commas")?;
            let id = id
                .trim()
                .parse::<u8>()
                .map_err(|_| "a key id is a number from 0 to 255")?;
            (KeyId(id), hex)
        };
        let key = decode(hex).map_err(|e| format!("key {}: {e}", id.0))?;
        let added = match keyring.as_mut() {
            Some(keyring) => keyring.insert(id, &key),
            None => Keyring::new(id, &key).map(|first| keyring = Some(first)),
        };
        added.map_err(|e| format!("key {}: {e} (a key is 64 hex digits or more)", id.0))?;
    }
    keyring.ok_or_else(|| "no key".to_owned())
}

/// One key from hex, upper or lower case, in constant time (no branch or table lookup on
/// the digits, so timing does not leak the key), refused if it is one byte repeated.
fn decode(hex: &str) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let key =
        Zeroizing::new(base16ct::mixed::decode_vec(hex.trim()).map_err(|_| "must be hex digits")?);
    if one_byte_repeated(&key) {
        return Err(
            "refused: every byte of the key is the same value, a placeholder rather \
                    than a secret; generate a key, e.g. with `openssl rand -hex 32`",
        );
    }
    Ok(key)
}

/// Whether every byte of `key` equals its first, in constant time.
fn one_byte_repeated(key: &[u8]) -> bool {
    let first = key.first().copied().unwrap_or(0);
    key.iter().fold(0u8, |diff, &b| diff | (b ^ first)) == 0
}

/// The key file's text, at most [`MAX_KEY_FILE`] bytes, read into one buffer that is wiped
/// when dropped and never grows (a grown buffer would leave a copy of the key behind).
fn read_key_file(
    path: &Path,
    origin: &str,
    warnings: &mut Vec<String>,
) -> Result<Zeroizing<String>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("{origin}: cannot open: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file
            .metadata()
            .map_err(|e| format!("{origin}: {e}"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "{origin}: the key file may be read by other users (mode {:03o}); \
                 make it readable by its owner only (chmod 600)",
                mode & 0o777
            ));
        }
    }
    let capacity = usize::try_from(MAX_KEY_FILE)
        .unwrap_or(usize::MAX)
        .saturating_mul(2);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(MAX_KEY_FILE.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{origin}: cannot read: {e}"))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_KEY_FILE {
        return Err(format!(
            "{origin}: longer than {MAX_KEY_FILE} bytes, not keys in hex"
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| format!("{origin}: must be hex digits"))?;
    Ok(Zeroizing::new(text.trim_end().to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rotauth::KeyId;

    use super::keyring;

    const A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const B: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    #[test]
    fn one_key_is_id_1_and_a_list_puts_its_first_key_primary() {
        let one = keyring(A).unwrap();
        assert_eq!(one.ids().collect::<Vec<_>>(), [KeyId(1)]);
        let two = keyring(&format!("2:{B},1:{A}")).unwrap();
        assert_eq!(two.primary(), KeyId(2));
        assert_eq!(two.ids().collect::<Vec<_>>(), [KeyId(2), KeyId(1)]);
        let lines = keyring(&format!("1:{A}\n 7:{B}\n")).unwrap();
        assert_eq!(lines.ids().collect::<Vec<_>>(), [KeyId(1), KeyId(7)]);
    }

    #[test]
    fn a_bad_list_is_refused_naming_ids_never_keys() {
        for (text, says) in [
            (String::new(), "no key"),
            (format!("1:{A},1:{B}"), "key 1"),
            (format!("1:{A},2:00ff"), "key 2"),
            (format!("1:{A},300:{B}"), "0 to 255"),
            (format!("{A},{B}"), "ID:HEX"),
            (format!("1:{A},2:{}", "ab".repeat(32)), "same value"),
            (format!("1:{A},2:{B},3:{A}1f,4:{B}1f,5:{A}00"), "4 keys"),
        ] {
            let error = keyring(&text).err().unwrap();
            assert!(error.contains(says), "{text:?}: {error}");
            assert!(
                !error.contains(&A[..16]) && !error.contains(&B[..16]),
                "{error}"
            );
        }
    }
}
