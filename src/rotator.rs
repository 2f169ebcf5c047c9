//! The host's handle: keyring and configuration, with sign-in and the decision.

use rand_core::{CryptoRng, TryCryptoRng};

use crate::config::Config;
use crate::decision::{self, Decision, Request};
use crate::keyring::Keyring;
use crate::session::{ClientId, Seed, Session};
use crate::time::Timestamp;
use crate::token::Token;

/// What a host holds once: its keys and its policy. Every operation is a pure function of
/// this, a session and the request; nothing here reads a clock, an RNG or storage.
#[derive(Debug)]
pub struct Rotator {
    keyring: Keyring,
    config: Config,
}

impl Rotator {
    /// A rotator with these keys and this policy.
    #[must_use]
    pub fn new(keyring: Keyring, config: Config) -> Self {
        Self { keyring, config }
    }

    /// The keys.
    #[must_use]
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The keys, to add, promote or retire one while the host runs.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        &mut self.keyring
    }

    /// The policy.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Signs in a new session at `now`: draws its client id and seed from `rng` and returns
    /// the session to store with `T(0)` to send. This is the only place rotauth uses
    /// randomness.
    #[must_use = "the session must be stored and the token sent, or the sign-in is lost"]
    pub fn sign_in<R: CryptoRng + ?Sized>(&self, rng: &mut R, now: Timestamp) -> (Session, Token) {
        let Ok(signed_in) = self.try_sign_in(rng, now);
        signed_in
    }

    /// [`sign_in`](Self::sign_in) with an RNG that can fail (an OS RNG, a hardware RNG).
    ///
    /// # Errors
    ///
    /// The RNG's error; nothing is created.
    #[must_use = "the session must be stored and the token sent, or the sign-in is lost"]
    pub fn try_sign_in<R: TryCryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        now: Timestamp,
    ) -> Result<(Session, Token), R::Error> {
        let mut client_id = [0u8; ClientId::LEN];
        rng.try_fill_bytes(&mut client_id)?;
        let mut seed = Seed::from_bytes([0u8; Seed::LEN]);
        rng.try_fill_bytes(seed.as_mut_bytes())?;
        let mut session = Session {
            client_id: ClientId::from_bytes(client_id),
            seed,
            key_id: self.keyring.primary(),
            generation: 0,
            created_at: now,
            rotated_at: now,
            expires_at: now,
            acknowledged: false,
            reissued: false,
            version: 0,
        };
        session.expires_at = decision::expiry(&self.config, &session, now);
        let token = Token::derive(
            self.keyring.primary_key(),
            session.key_id,
            &session.client_id,
            &session.seed,
            0,
        );
        Ok((session, token))
    }

    /// Decides what `request` does to `session` (`None` if the host has no session for the
    /// client id). See [`Decision`] for what the host must do with the answer.
    ///
    /// Costs one HMAC to check the token, plus one to derive `T(n+1)` on rotation; a token
    /// that does not parse, or names an unknown key, costs none.
    pub fn decide<'s>(
        &self,
        session: impl Into<Option<&'s Session>>,
        request: Request<'_>,
    ) -> Decision {
        decision::decide(&self.keyring, &self.config, session.into(), request)
    }

    /// The session's current token `T(n)`, or `None` if its key has been removed. For hosts
    /// that echo the current token in batch responses instead of a blank.
    #[must_use]
    pub fn current_token(&self, session: &Session) -> Option<Token> {
        decision::current_token(&self.keyring, session)
    }
}
