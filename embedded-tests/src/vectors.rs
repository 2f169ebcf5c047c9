//! The known-answer token vectors shared with the host tests, parsed at run time without
//! allocation (format in the file's header comments).

/// The vector file, compiled into the firmware.
pub const FILE: &str = include_str!("../../tests/vectors/tokens.txt");

/// The longest key a vector may carry.
pub const MAX_KEY_LEN: usize = 160;

/// One vector: a key, a session's client id and seed, a generation and the token text.
pub struct Vector<'a> {
    key: [u8; MAX_KEY_LEN],
    key_len: usize,
    pub key_id: u8,
    pub client_id: [u8; 16],
    pub seed: [u8; 16],
    pub generation: u64,
    pub token: &'a str,
}

impl Vector<'_> {
    pub fn key(&self) -> &[u8] {
        self.key.get(..self.key_len).unwrap_or(&[])
    }
}

/// The vectors of [`FILE`], in order; `Err(line number)` for a line that does not parse.
pub fn all() -> impl Iterator<Item = Result<Vector<'static>, usize>> {
    FILE.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|(index, line)| parse(line).ok_or(index.saturating_add(1)))
}

fn parse(line: &str) -> Option<Vector<'_>> {
    let mut fields = line.split_ascii_whitespace();
    let key_hex = fields.next()?;
    let key_id = fields.next()?.parse().ok()?;
    let client_id = hex_array(fields.next()?)?;
    let seed = hex_array(fields.next()?)?;
    let generation = fields.next()?.parse().ok()?;
    let token = fields.next()?;
    if fields.next().is_some() {
        return None;
    }
    let mut key = [0u8; MAX_KEY_LEN];
    let key_len = hex(key_hex, &mut key)?;
    Some(Vector {
        key,
        key_len,
        key_id,
        client_id,
        seed,
        generation,
        token,
    })
}

fn hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    (hex(text, &mut out)? == N).then_some(out)
}

/// Decodes `text` into the front of `out`; returns the length.
fn hex(text: &str, out: &mut [u8]) -> Option<usize> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) || digits.len() / 2 > out.len() {
        return None;
    }
    for (pair, byte) in digits.chunks_exact(2).zip(out.iter_mut()) {
        let [hi, lo] = *pair else { return None };
        *byte = nibble(hi)? << 4 | nibble(lo)?;
    }
    Some(digits.len() / 2)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}
