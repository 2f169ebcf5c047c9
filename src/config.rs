//! The rotation policy: batch window, lifetimes, mode and replay policy, validated once.

use core::fmt;
use core::time::Duration;

use crate::time::millis;

/// What an invalidated previous token may still do outside the batch window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// An invalidated token fails outside the batch window (the devise design notes).
    #[default]
    Strict,
    /// A client whose response was lost may present `T(n-1)` after the window and receive
    /// `T(n)` again, but only while `T(n)` has never been presented.
    Recover,
}

/// What a replayed token does to its session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplayPolicy {
    /// Refuse the request; the session lives on.
    #[default]
    Reject,
    /// Refuse the request and tell the host to delete this one session (RFC 9700 §4.14.2
    /// family revocation, scoped to the session, never to the user's other sessions).
    RevokeSession,
}

/// A configuration refused by [`ConfigBuilder::build`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The sliding lifespan is zero: every session would be born expired.
    ZeroLifespan,
    /// The absolute lifetime is zero: every session would be born too old.
    ZeroAbsoluteLifetime,
    /// The batch window is longer than the lifespan, so a token would expire while its
    /// batch is still open.
    WindowLongerThanLifespan,
    /// The absolute lifetime is shorter than the batch window, so a session would be too old
    /// before its sign-in's batch is over.
    AbsoluteLifetimeShorterThanWindow,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroLifespan => "token lifespan must be longer than zero",
            Self::ZeroAbsoluteLifetime => "absolute session lifetime must be longer than zero",
            Self::WindowLongerThanLifespan => "batch window must not be longer than the lifespan",
            Self::AbsoluteLifetimeShorterThanWindow => {
                "absolute session lifetime must not be shorter than the batch window"
            }
        })
    }
}

impl core::error::Error for ConfigError {}

/// A validated rotation policy. [`Config::default`] is devise_token_auth's defaults; change them with
/// [`Config::builder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    rotate: bool,
    batch_window_ms: u64,
    lifespan_ms: u64,
    absolute_lifetime_ms: Option<u64>,
    mode: Mode,
    replay_policy: ReplayPolicy,
}

const DEFAULT_BATCH_WINDOW_MS: u64 = 5_000;
const DEFAULT_LIFESPAN_MS: u64 = 14 * 24 * 60 * 60 * 1_000;

impl Default for Config {
    fn default() -> Self {
        Self {
            rotate: true,
            batch_window_ms: DEFAULT_BATCH_WINDOW_MS,
            lifespan_ms: DEFAULT_LIFESPAN_MS,
            absolute_lifetime_ms: None,
            mode: Mode::Strict,
            replay_policy: ReplayPolicy::Reject,
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Self::default())
    }

    /// Whether each request outside the batch window rotates the token (devise's
    /// `change_headers_on_each_request`). Default: on.
    #[must_use]
    pub fn rotate(&self) -> bool {
        self.rotate
    }

    /// The batch window `W` (devise's `batch_request_buffer_throttle`). Default: 5 s.
    #[must_use]
    pub fn batch_window(&self) -> Duration {
        Duration::from_millis(self.batch_window_ms)
    }

    /// How long a session lives after its last rotation (devise's `token_lifespan`).
    /// Default: 14 days.
    #[must_use]
    pub fn lifespan(&self) -> Duration {
        Duration::from_millis(self.lifespan_ms)
    }

    /// How long a session may live after sign-in, however often it rotates. Default: none.
    #[must_use]
    pub fn absolute_lifetime(&self) -> Option<Duration> {
        self.absolute_lifetime_ms.map(Duration::from_millis)
    }

    /// Default: [`Mode::Strict`].
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Default: [`ReplayPolicy::Reject`].
    #[must_use]
    pub fn replay_policy(&self) -> ReplayPolicy {
        self.replay_policy
    }

    pub(crate) fn batch_window_ms(&self) -> u64 {
        self.batch_window_ms
    }

    pub(crate) fn lifespan_ms(&self) -> u64 {
        self.lifespan_ms
    }

    pub(crate) fn absolute_lifetime_ms(&self) -> Option<u64> {
        self.absolute_lifetime_ms
    }
}

/// Builds a [`Config`]; [`build`](Self::build) refuses nonsense.
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// Turns per-request rotation on or off. Off: the sign-in token is accepted until it
    /// expires, and older generations are refused as replayed.
    pub fn rotate(mut self, on: bool) -> Self {
        self.0.rotate = on;
        self
    }

    /// Sets the batch window, in whole milliseconds. Zero is allowed: every request rotates.
    pub fn batch_window(mut self, window: Duration) -> Self {
        self.0.batch_window_ms = millis(window);
        self
    }

    /// Sets the sliding lifespan, in whole milliseconds.
    pub fn lifespan(mut self, lifespan: Duration) -> Self {
        self.0.lifespan_ms = millis(lifespan);
        self
    }

    /// Sets (or with `None` removes) the absolute lifetime, in whole milliseconds.
    pub fn absolute_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.0.absolute_lifetime_ms = lifetime.map(millis);
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.0.mode = mode;
        self
    }

    /// Sets the replay policy.
    pub fn replay_policy(mut self, policy: ReplayPolicy) -> Self {
        self.0.replay_policy = policy;
        self
    }

    /// Validates the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroLifespan`], [`ConfigError::ZeroAbsoluteLifetime`],
    /// [`ConfigError::WindowLongerThanLifespan`] or
    /// [`ConfigError::AbsoluteLifetimeShorterThanWindow`].
    pub fn build(self) -> Result<Config, ConfigError> {
        let config = self.0;
        if config.lifespan_ms == 0 {
            return Err(ConfigError::ZeroLifespan);
        }
        if config.absolute_lifetime_ms == Some(0) {
            return Err(ConfigError::ZeroAbsoluteLifetime);
        }
        if config.batch_window_ms > config.lifespan_ms {
            return Err(ConfigError::WindowLongerThanLifespan);
        }
        if config
            .absolute_lifetime_ms
            .is_some_and(|lifetime| lifetime < config.batch_window_ms)
        {
            return Err(ConfigError::AbsoluteLifetimeShorterThanWindow);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_specs() {
        let config = Config::default();
        assert!(config.rotate());
        assert_eq!(config.batch_window(), Duration::from_secs(5));
        assert_eq!(config.lifespan(), Duration::from_secs(14 * 24 * 3600));
        assert_eq!(config.absolute_lifetime(), None);
        assert_eq!(config.mode(), Mode::Strict);
        assert_eq!(config.replay_policy(), ReplayPolicy::Reject);
        assert_eq!(Config::builder().build(), Ok(config));
    }

    #[test]
    fn nonsense_is_refused() {
        let secs = Duration::from_secs;
        assert_eq!(
            Config::builder().lifespan(Duration::ZERO).build(),
            Err(ConfigError::ZeroLifespan)
        );
        assert_eq!(
            Config::builder()
                .lifespan(Duration::from_micros(999))
                .build(),
            Err(ConfigError::ZeroLifespan)
        );
        assert_eq!(
            Config::builder()
                .absolute_lifetime(Some(Duration::ZERO))
                .build(),
            Err(ConfigError::ZeroAbsoluteLifetime)
        );
        assert_eq!(
            Config::builder().lifespan(secs(4)).build(),
            Err(ConfigError::WindowLongerThanLifespan)
        );
        assert!(
            Config::builder()
                .batch_window(Duration::ZERO)
                .build()
                .is_ok()
        );
        assert!(Config::builder().lifespan(secs(5)).build().is_ok());
        assert!(Config::builder().lifespan(Duration::MAX).build().is_ok());
        // A session too old before its first batch is over.
        assert_eq!(
            Config::builder()
                .absolute_lifetime(Some(Duration::from_millis(4_999)))
                .build(),
            Err(ConfigError::AbsoluteLifetimeShorterThanWindow)
        );
        assert!(
            Config::builder()
                .absolute_lifetime(Some(secs(5)))
                .build()
                .is_ok()
        );
    }
}
