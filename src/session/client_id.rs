//! The public id of a session and its text form.

use core::fmt;
use core::str::FromStr;

use base64ct::{Base64UrlUnpadded, Encoding};

/// The public, random id of a session: devise's `client` header.
///
/// Its text form is base64url without padding (22 characters), as devise's
/// `SecureRandom.urlsafe_base64` makes them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId([u8; ClientId::LEN]);

impl ClientId {
    /// Length in bytes.
    pub const LEN: usize = 16;
    /// Length of the text form.
    pub const TEXT_LEN: usize = 22;

    /// A client id from its bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// The text form (22 characters of unpadded base64url, devise's `client` header),
    /// written into `out` as ASCII bytes: for hosts that pass it on as bytes, without the
    /// formatting machinery of `Display`.
    pub fn write_text(&self, out: &mut [u8; Self::TEXT_LEN]) {
        // 16 bytes are exactly 22 characters: the encoding cannot run out of room.
        let _ = Base64UrlUnpadded::encode(&self.0, out);
    }
}

/// Why text is not a [`ClientId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseClientIdError;

impl fmt::Display for ParseClientIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("client id is not 22 characters of unpadded base64url")
    }
}

impl core::error::Error for ParseClientIdError {}

impl FromStr for ClientId {
    type Err = ParseClientIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != Self::TEXT_LEN {
            return Err(ParseClientIdError);
        }
        let mut bytes = [0u8; Self::LEN];
        match Base64UrlUnpadded::decode(text, &mut bytes) {
            Ok(decoded) if decoded.len() == Self::LEN => Ok(Self(bytes)),
            _ => Err(ParseClientIdError),
        }
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; Self::TEXT_LEN];
        let text = Base64UrlUnpadded::encode(&self.0, &mut text).map_err(|_| fmt::Error)?;
        f.write_str(text)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({self})")
    }
}
