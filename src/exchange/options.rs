//! How an exchange runs: the per-host settings.

/// What the response to a batch member carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchToken {
    /// No token ([`Reply::Batch`](super::Reply::Batch); devise sends `access-token: " "`): a response that
    /// arrives after a newer one can never hand the client an older token. For clients
    /// that keep their token when a response carries none.
    #[default]
    Blank,
    /// The session's current token `T(n)` ([`Reply::Current`](super::Reply::Current)), for clients that take the
    /// token of every response, blank or not (devise's j-toker). Only a holder of `T(n)` or
    /// `T(n-1)` gets it: handing `T(n)` to an in-window `T(n-2)` would upgrade a token two
    /// rotations old to one that outlives the window. Others get [`Reply::Batch`](super::Reply::Batch).
    Current,
}

/// How an exchange runs: set once per host, except `force`, per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// The request asks to rotate inside the batch window (devise's `unbatch=true`).
    pub force: bool,
    /// What a batch member's response carries.
    pub batch_token: BatchToken,
    /// Decisions per request, at least 1: one plus the compare-and-swaps a request may
    /// lose before it answers 503.
    pub max_attempts: u32,
}

impl Options {
    /// Decisions per request unless set otherwise. Each lost swap means another request of
    /// the same session committed in between, and the retry is then a batch member that
    /// stores nothing, so two are normally enough; the bound keeps a pathological storm
    /// from spinning.
    pub const MAX_ATTEMPTS: u32 = 4;

    /// With `force` set (devise's `unbatch=true`).
    #[must_use]
    pub fn forced(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// With `batch_token` set.
    #[must_use]
    pub fn batch_token(mut self, batch_token: BatchToken) -> Self {
        self.batch_token = batch_token;
        self
    }

    /// With `max_attempts` set (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            force: false,
            batch_token: BatchToken::Blank,
            max_attempts: Self::MAX_ATTEMPTS,
        }
    }
}
