//! The rotation policy: batch window, lifetimes, mode and replay policy, validated once.

use core::fmt;
use core::str::FromStr;
use core::time::Duration;

use crate::time::millis;

/// What an invalidated previous token may still do outside the batch window.
///
/// Its text form (`Display`, `FromStr` and, with the `serde` feature, serde) is `"strict"`
/// or `"recover"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
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
///
/// Its text form (`Display`, `FromStr` and, with the `serde` feature, serde) is `"reject"`
/// or `"revoke_session"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum ReplayPolicy {
    /// Refuse the request; the session lives on.
    #[default]
    Reject,
    /// Refuse the request and tell the host to delete this one session (RFC 9700 §4.14.2
    /// family revocation, scoped to the session, never to the user's other sessions).
    RevokeSession,
}

impl Mode {
    const fn name(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::Recover => "recover",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = ParseNameError;

    /// Parses `"strict"` or `"recover"`, exactly (no other case, no whitespace).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [Self::Strict, Self::Recover]
            .into_iter()
            .find(|mode| mode.name() == name)
            .ok_or(ParseNameError::new("mode", "\"strict\" or \"recover\""))
    }
}

impl ReplayPolicy {
    const fn name(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::RevokeSession => "revoke_session",
        }
    }
}

impl fmt::Display for ReplayPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ReplayPolicy {
    type Err = ParseNameError;

    /// Parses `"reject"` or `"revoke_session"`, exactly (no other case, no whitespace).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [Self::Reject, Self::RevokeSession]
            .into_iter()
            .find(|policy| policy.name() == name)
            .ok_or(ParseNameError::new(
                "replay policy",
                "\"reject\" or \"revoke_session\"",
            ))
    }
}

/// A name that `FromStr` does not know, for [`Mode`], [`ReplayPolicy`] and
/// [`DecisionKind`](crate::DecisionKind).
///
/// Its `Display` says which type and which names it accepts; it never repeats the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseNameError {
    what: &'static str,
    expected: &'static str,
}

impl ParseNameError {
    /// `what` names the type ("mode"), `expected` lists its names for the message.
    pub(crate) const fn new(what: &'static str, expected: &'static str) -> Self {
        Self { what, expected }
    }
}

impl fmt::Display for ParseNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {}: expected {}", self.what, self.expected)
    }
}

impl core::error::Error for ParseNameError {}

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
///
/// # Serde
///
/// With the `serde` feature, a `Config` reads from and writes to a host's configuration file
/// as a map of these fields, every duration in whole milliseconds (the resolution the
/// decision works in, so nothing is rounded):
///
/// | field | type | default |
/// |---|---|---|
/// | `rotate` | bool | `true` |
/// | `batch_window_ms` | integer | `5000` (5 s) |
/// | `lifespan_ms` | integer | `1209600000` (14 days) |
/// | `absolute_lifetime_ms` | integer, or absent for none | absent |
/// | `mode` | `"strict"` or `"recover"` | `"strict"` |
/// | `replay_policy` | `"reject"` or `"revoke_session"` | `"reject"` |
///
/// A missing field takes its default; an unknown field is an error (a misspelt policy must
/// not fall back to the default silently). Reading validates through
/// [`ConfigBuilder::build`] and fails with the [`ConfigError`]'s message.
///
/// ```
/// # #[cfg(feature = "serde")]
/// # fn main() -> Result<(), serde_json::Error> {
/// use core::time::Duration;
/// use rotauth::{Config, Mode};
///
/// let config: Config = serde_json::from_str(r#"{ "batch_window_ms": 2000, "mode": "recover" }"#)?;
/// assert_eq!(config.batch_window(), Duration::from_secs(2));
/// assert_eq!(config.mode(), Mode::Recover);
///
/// let refused = serde_json::from_str::<Config>(r#"{ "lifespan_ms": 0 }"#).unwrap_err();
/// assert!(refused.to_string().starts_with("token lifespan must be longer than zero"));
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "serde"))]
/// # fn main() {}
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "ConfigFields", into = "ConfigFields")
)]
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
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use rotauth::{Config, ConfigError, Mode, ReplayPolicy};
    ///
    /// // devise_token_auth's settings, made explicit, for several server instances that may
    /// // die mid-request: Recover mode, a replay ends its session, and no session lives
    /// // longer than 30 days however active it is.
    /// let config = Config::builder()
    ///     .rotate(true) // change_headers_on_each_request
    ///     .batch_window(Duration::from_secs(5)) // batch_request_buffer_throttle
    ///     .lifespan(Duration::from_secs(14 * 24 * 3600)) // token_lifespan
    ///     .absolute_lifetime(Some(Duration::from_secs(30 * 24 * 3600)))
    ///     .mode(Mode::Recover)
    ///     .replay_policy(ReplayPolicy::RevokeSession)
    ///     .build()?;
    /// assert_eq!(config.batch_window(), Config::default().batch_window());
    /// assert_eq!(config.mode(), Mode::Recover);
    ///
    /// // Nonsense is refused when the policy is built, never found mid-request: here a
    /// // token would expire while its batch is still open.
    /// let refused = Config::builder()
    ///     .batch_window(Duration::from_secs(60))
    ///     .lifespan(Duration::from_secs(30))
    ///     .build();
    /// assert_eq!(refused, Err(ConfigError::WindowLongerThanLifespan));
    /// # Ok::<(), ConfigError>(())
    /// ```
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

/// A [`Config`] as serde sees it: the same fields, not yet validated.
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigFields {
    rotate: bool,
    batch_window_ms: u64,
    lifespan_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    absolute_lifetime_ms: Option<u64>,
    mode: Mode,
    replay_policy: ReplayPolicy,
}

#[cfg(feature = "serde")]
impl Default for ConfigFields {
    fn default() -> Self {
        Config::default().into()
    }
}

#[cfg(feature = "serde")]
impl From<Config> for ConfigFields {
    fn from(config: Config) -> Self {
        Self {
            rotate: config.rotate,
            batch_window_ms: config.batch_window_ms,
            lifespan_ms: config.lifespan_ms,
            absolute_lifetime_ms: config.absolute_lifetime_ms,
            mode: config.mode,
            replay_policy: config.replay_policy,
        }
    }
}

#[cfg(feature = "serde")]
impl TryFrom<ConfigFields> for Config {
    type Error = ConfigError;

    fn try_from(fields: ConfigFields) -> Result<Self, ConfigError> {
        Self::builder()
            .rotate(fields.rotate)
            .batch_window(Duration::from_millis(fields.batch_window_ms))
            .lifespan(Duration::from_millis(fields.lifespan_ms))
            .absolute_lifetime(fields.absolute_lifetime_ms.map(Duration::from_millis))
            .mode(fields.mode)
            .replay_policy(fields.replay_policy)
            .build()
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
