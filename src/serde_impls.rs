//! serde for the plain values, by hand: each is one number or one short string, and the
//! derives would add nothing but a proc macro. `Mode`, `ReplayPolicy` and `Config` derive
//! theirs in `config.rs`.

use core::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Error as _, Serialize, Serializer};

use crate::keyring::KeyId;
use crate::session::ClientId;
use crate::time::Timestamp;

/// Its 22-character text, as in the `client` header.
impl Serialize for ClientId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; Self::TEXT_LEN];
        let text = Base64UrlUnpadded::encode(self.as_bytes(), &mut text)
            .map_err(|_| S::Error::custom("client id does not fit its text length"))?;
        serializer.serialize_str(text)
    }
}

/// From its 22-character text; anything else is an error.
impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ClientIdText;

        impl Visitor<'_> for ClientIdText {
            type Value = ClientId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a client id: 22 characters of base64url")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ClientId, E> {
                text.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(ClientIdText)
    }
}

/// Its number.
impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.0)
    }
}

/// From its number, 0 to 255.
impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u8::deserialize(deserializer).map(KeyId)
    }
}

/// Unix milliseconds, as a number.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.unix_millis())
    }
}

/// From Unix milliseconds, any number from 0 to `u64::MAX`.
impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u64::deserialize(deserializer).map(Self::from_unix_millis)
    }
}
