#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Public enums are `#[non_exhaustive]` unless a new variant must break hosts (`Decision`).
#![warn(clippy::exhaustive_enums)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "std")]
extern crate std;

mod config;
mod decision;
mod keyring;
mod mac;
mod rotator;
mod session;
mod sessions;
mod time;
mod token;

pub use config::{Config, ConfigBuilder, ConfigError, Mode, ReplayPolicy};
pub use decision::{
    Decision, DecisionKind, ParseDecisionKindError, Presented, RejectReason, Request,
};
pub use keyring::{KeyError, KeyId, Keyring, MAX_KEYS, MIN_KEY_LEN};
pub use rotator::Rotator;
pub use session::{ClientId, DecodeError, EncodedSession, ParseClientIdError, Session};
pub use sessions::{BufferTooSmall, Sessions, SignedIn};
pub use time::Timestamp;
pub use token::{TOKEN_LEN, TOKEN_TEXT_LEN, Token, TokenError, TokenText};

/// `rand_core`, re-exported so hosts name the same RNG traits rotauth asks for.
pub use rand_core;
