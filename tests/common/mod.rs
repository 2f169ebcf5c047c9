//! What every scenario needs: a host with a fixed key, a seeded RNG and a virtual clock.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not reach,
// and test arithmetic on known small values, which no clippy.toml setting covers.
#![allow(clippy::unwrap_used, clippy::panic, clippy::arithmetic_side_effects)]
#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use core::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rotauth::{Config, Decision, KeyId, Keyring, Request, Rotator, Session, Timestamp, Token};

pub const KEY: [u8; 32] = *b"an example key of thirty-two b!!";
/// The default batch window, in milliseconds.
pub const W: u64 = 5_000;

/// A host: one rotator, a deterministic RNG, and a clock the test moves by hand.
pub struct Host {
    pub rotator: Rotator,
    pub rng: StdRng,
    pub now: Timestamp,
}

impl Host {
    pub fn new(config: Config) -> Self {
        Self {
            rotator: Rotator::new(keyring(), config),
            rng: StdRng::seed_from_u64(7),
            // An arbitrary, realistic starting time: 2026-11-29T00:00:00Z.
            now: Timestamp::from_unix_millis(1_796_083_200_000),
        }
    }

    pub fn default_config() -> Self {
        Self::new(Config::default())
    }

    pub fn advance(&mut self, millis: u64) {
        self.now = Timestamp::from_unix_millis(self.now.unix_millis() + millis);
    }

    pub fn sign_in(&mut self) -> (Session, Token) {
        self.rotator.sign_in(&mut self.rng, self.now)
    }

    /// Presents `token` (as text, as a browser sends it) at the current time.
    pub fn present(&self, session: &Session, token: &Token) -> Decision {
        let text = token.to_text();
        self.rotator
            .decide(session, Request::new(text.as_str(), self.now))
    }

    pub fn present_unbatched(&self, session: &Session, token: &Token) -> Decision {
        let text = token.to_text();
        self.rotator.decide(
            session,
            Request::new(text.as_str(), self.now).force_rotation(),
        )
    }

    /// A session moved `generations` rotations on, each after the window, ending at `now`;
    /// returns it with the tokens `T(0)..=T(n)`.
    pub fn rotated(&mut self, generations: u64) -> (Session, Vec<Token>) {
        let (mut session, mut token) = self.sign_in();
        let mut tokens = vec![token.clone()];
        for _ in 0..generations {
            self.advance(W);
            match self.present(&session, &token) {
                Decision::Rotate {
                    session: next,
                    token: next_token,
                } => {
                    session = next;
                    token = next_token;
                    tokens.push(token.clone());
                }
                other => panic!("expected Rotate, got {other:?}"),
            }
        }
        (session, tokens)
    }
}

pub fn keyring() -> Keyring {
    Keyring::new(KeyId(1), &KEY).unwrap()
}

pub fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Unwraps a Rotate.
pub fn rotated(decision: Decision) -> (Session, Token) {
    match decision {
        Decision::Rotate { session, token } => (session, token),
        other => panic!("expected Rotate, got {other:?}"),
    }
}
