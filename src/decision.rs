//! The decision: what one request does to its session's token (the table in
//! `docs/DESIGN.md`).

use core::fmt;
use core::str::FromStr;

use crate::config::{Config, Mode, ParseNameError, ReplayPolicy};
use crate::keyring::Keyring;
use crate::session::Session;
use crate::time::Timestamp;
use crate::token::{Claim, Token, TokenError};

/// The token as the request presented it.
///
/// `Debug` shows the form and length only: the token is the bearer's credential.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum Presented<'a> {
    /// The text form, as sent in a header (55 characters of base64url).
    Text(&'a str),
    /// The byte form (41 bytes).
    Bytes(&'a [u8]),
    /// A token the host has already parsed.
    Token(&'a Token),
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => write!(f, "Text({} bytes)", text.len()),
            Self::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            // Its own `Debug` shows the public key id and generation only.
            Self::Token(token) => write!(f, "Token({token:?})"),
        }
    }
}

impl<'a> From<&'a str> for Presented<'a> {
    fn from(text: &'a str) -> Self {
        Self::Text(text)
    }
}

impl<'a> From<&'a [u8]> for Presented<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Self::Bytes(bytes)
    }
}

impl<'a> From<&'a Token> for Presented<'a> {
    fn from(token: &'a Token) -> Self {
        Self::Token(token)
    }
}

/// One authenticated request: the presented token, the host's `now`, and whether the
/// client asked to leave the batch (devise's `unbatch=true`).
///
/// `Debug` does not show the token (see [`Presented`]).
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct Request<'a> {
    pub(crate) token: Presented<'a>,
    pub(crate) now: Timestamp,
    pub(crate) force_rotation: bool,
}

impl<'a> Request<'a> {
    /// A request presenting `token` at `now`.
    pub fn new(token: impl Into<Presented<'a>>, now: Timestamp) -> Self {
        Self {
            token: token.into(),
            now,
            force_rotation: false,
        }
    }

    /// Rotates even inside the batch window (devise's `unbatch=true`): for every token the
    /// table accepts as a batch member (`T(n-2)`, `T(n-1)` or `T(n)` inside the window) the
    /// session moves from `n` to `n+1` and `T(n+1)` is sent. Outside the window, and when
    /// rotation is switched off, it changes nothing: a previous token stays a replay.
    pub fn force_rotation(mut self) -> Self {
        self.force_rotation = true;
        self
    }
}

/// Why a request was refused. Each reason is distinct, so a host can log and count them;
/// all of them answer 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The host has no session for the client id.
    UnknownSession,
    /// The token text or bytes have the wrong length or encoding.
    Malformed(TokenError),
    /// The token names a key id that is not in the keyring (never added, or retired).
    UnknownKey,
    /// The MAC does not verify: forged, corrupted, or a token of another session.
    Forged,
    /// The session's sliding lifespan has run out (`now ≥ expires_at`).
    Expired,
    /// The session is past its absolute lifetime, or has used up its generations.
    TooOld,
    /// A genuine token of this session that has been invalidated by later rotations.
    Replayed {
        /// How many generations behind the current one it is (at least 1).
        behind: u64,
    },
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownSession => f.write_str("no such session"),
            Self::Malformed(e) => write!(f, "malformed token: {e}"),
            Self::UnknownKey => f.write_str("token names an unknown key"),
            Self::Forged => f.write_str("token does not verify"),
            Self::Expired => f.write_str("session expired"),
            Self::TooOld => f.write_str("session past its absolute lifetime"),
            Self::Replayed { behind: 1 } => f.write_str("replayed token, 1 generation old"),
            Self::Replayed { behind } => write!(f, "replayed token, {behind} generations old"),
        }
    }
}

/// What the host must do with a request. See the variants for the host's duty in each case.
///
/// ## Security
///
/// A false accept lets a thief in; a false reject logs a real user out. rotauth accepts a
/// token only if its MAC verifies under the host's key for *this* session (client id and
/// seed), so without the key no token can be forged, whatever the database leaks. Among
/// genuine tokens, it accepts an invalidated one only where the devise design requires it:
/// inside the batch window, for at most the two previous generations, because a browser's
/// parallel requests and out-of-order responses legitimately present them. The window is
/// anchored at the rotation and never slides, so a stolen token expires from use at most
/// `W` after the next rotation. Outside the window a previous token is a replay (a thief or
/// a client that lost track), and Strict mode refuses it at the price of logging out a
/// client whose response was lost; Recover mode trades a little of that safety back by
/// reissuing `T(n)` for `T(n-1)`, but only until `T(n)` is seen in use, after which the
/// holder of `T(n-1)` cannot be the legitimate client. Tokens from the future (`g > n`)
/// verify only if the host made them, so they mean the host lost a write, and are
/// fast-forwarded rather than refused: refusing would log out the legitimate client.
///
/// ## Exhaustive on purpose
///
/// Unlike the other public enums, `Decision` is not `#[non_exhaustive]`: each variant is a
/// duty, and a new duty in a later version must break every host's `match` at compile
/// time rather than fall into a `_ =>` arm that serves the request without doing it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a decision tells the host what to store and which token to send"]
#[allow(
    clippy::exhaustive_enums,
    reason = "a new duty must break hosts at compile time"
)]
pub enum Decision {
    /// Valid, with rotation switched off. Serve the request and send the presented token
    /// back. Store `updated` first if present (a fast-forward past a lost write).
    Accept {
        /// The session to store, if it changed.
        updated: Option<Session>,
    },
    /// Valid, and a new generation starts. Store `session` first, compare-and-swap on the
    /// version you read; if the swap loses, re-read and decide again (the retry is then
    /// part of the batch). Then serve and send `token`.
    Rotate {
        /// The session to store.
        session: Session,
        /// `T(n+1)`, to send with the response.
        token: Token,
    },
    /// Valid as part of a batch. Serve and send no token (devise sends `access-token: " "`).
    /// Store `updated` only if present.
    BatchReuse {
        /// The session to store, if it changed.
        updated: Option<Session>,
    },
    /// [`Mode::Recover`] only: the previous token, presented after the window while `T(n)`
    /// was never used (its response was lost). Store `updated` first if present
    /// (compare-and-swap, as for a rotation: it records that the recovery was granted), then
    /// serve and send `token` (`T(n)` again).
    Reissue {
        /// The session to store, if it changed.
        updated: Option<Session>,
        /// `T(n)`, to send with the response.
        token: Token,
    },
    /// Refused: answer 401 and send no token. Nothing to store.
    Reject {
        /// Why.
        reason: RejectReason,
    },
    /// Refused, and the session must go: a replay under [`ReplayPolicy::RevokeSession`].
    /// Delete the session (this one only, never the user's others), then answer 401 and
    /// send no token.
    Revoke {
        /// Why: always [`RejectReason::Replayed`] today.
        reason: RejectReason,
    },
}

/// The kind of a [`Decision`], without its payload: for logs and metrics. Its text form
/// ([`as_str`](Self::as_str), `Display`, `FromStr`) is the variant in snake case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecisionKind {
    /// [`Decision::Accept`].
    Accept,
    /// [`Decision::Rotate`].
    Rotate,
    /// [`Decision::BatchReuse`].
    BatchReuse,
    /// [`Decision::Reissue`].
    Reissue,
    /// [`Decision::Reject`].
    Reject,
    /// [`Decision::Revoke`].
    Revoke,
}

impl DecisionKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::Accept,
        Self::Rotate,
        Self::BatchReuse,
        Self::Reissue,
        Self::Reject,
        Self::Revoke,
    ];

    /// A short lowercase name, e.g. `batch_reuse`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Rotate => "rotate",
            Self::BatchReuse => "batch_reuse",
            Self::Reissue => "reissue",
            Self::Reject => "reject",
            Self::Revoke => "revoke",
        }
    }
}

impl fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DecisionKind {
    type Err = ParseNameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or(ParseNameError::new(
                "decision kind",
                "accept, rotate, batch_reuse, reissue, reject or revoke",
            ))
    }
}

impl Decision {
    /// The kind of decision.
    #[must_use]
    pub fn kind(&self) -> DecisionKind {
        match self {
            Self::Accept { .. } => DecisionKind::Accept,
            Self::Rotate { .. } => DecisionKind::Rotate,
            Self::BatchReuse { .. } => DecisionKind::BatchReuse,
            Self::Reissue { .. } => DecisionKind::Reissue,
            Self::Reject { .. } => DecisionKind::Reject,
            Self::Revoke { .. } => DecisionKind::Revoke,
        }
    }

    /// Whether the request may be served.
    #[must_use]
    pub fn is_accepted(&self) -> bool {
        !matches!(self, Self::Reject { .. } | Self::Revoke { .. })
    }

    /// The session the host must store before replying, if any.
    #[must_use]
    pub fn session_to_store(&self) -> Option<&Session> {
        match self {
            Self::Rotate { session, .. } => Some(session),
            Self::Accept { updated }
            | Self::BatchReuse { updated }
            | Self::Reissue { updated, .. } => updated.as_ref(),
            Self::Reject { .. } | Self::Revoke { .. } => None,
        }
    }

    /// The new token to send with the response, if any. `None` on an accepted request
    /// means: [`Accept`](Self::Accept) echoes the presented token, a batch sends a blank.
    #[must_use]
    pub fn token_to_send(&self) -> Option<&Token> {
        match self {
            Self::Rotate { token, .. } | Self::Reissue { token, .. } => Some(token),
            _ => None,
        }
    }

    /// The reason, if refused.
    #[must_use]
    pub fn reject_reason(&self) -> Option<RejectReason> {
        match self {
            Self::Reject { reason } | Self::Revoke { reason } => Some(*reason),
            _ => None,
        }
    }

    /// Whether the host must delete the session ([`Decision::Revoke`]).
    #[must_use]
    pub fn must_revoke(&self) -> bool {
        matches!(self, Self::Revoke { .. })
    }
}

/// The decision, in the order the design states it: verify, then lifetimes, then the table.
pub(crate) fn decide(
    keyring: &Keyring,
    config: &Config,
    session: Option<&Session>,
    request: Request<'_>,
) -> Decision {
    let Some(session) = session else {
        return reject(RejectReason::UnknownSession);
    };
    // Read in place: a host's bytes, or the text decoded straight into the fields.
    let claim = match request.token {
        Presented::Token(token) => Ok(Claim::read(token.as_bytes())),
        Presented::Bytes(bytes) => Claim::from_bytes(bytes),
        Presented::Text(text) => Claim::from_text(text),
    };
    let claim = match claim {
        Ok(claim) => claim,
        Err(e) => return reject(RejectReason::Malformed(e)),
    };
    let Some(key) = keyring.get(claim.key_id()) else {
        return reject(RejectReason::UnknownKey);
    };
    if !claim.verify(key, &session.client_id, &session.seed) {
        return reject(RejectReason::Forged);
    }

    let now = request.now;
    if absolute_deadline(config, session).is_some_and(|deadline| now >= deadline) {
        return reject(RejectReason::TooOld);
    }
    if now >= session.expires_at {
        return reject(RejectReason::Expired);
    }

    let presented = claim.generation();
    let current = session.generation;
    if presented < current {
        let behind = current.abs_diff(presented);
        return previous(keyring, config, session, behind, request);
    }

    if presented == current {
        return current_generation(keyring, config, session, None, request);
    }
    // A verified token from the future means the host lost the write of the rotation that
    // issued it (or a replica lags, or a backup was restored): adopt it as current, and
    // replay that lost rotation's window and expiry from `now`, the first moment this host
    // knows of it. Keeping the stale window instead would rotate again on every request
    // until a write lands, each time pushing the batch's other requests a generation
    // further behind, until they count as replays.
    let mut ahead = session.next_version();
    ahead.generation = presented;
    ahead.key_id = claim.key_id();
    ahead.acknowledged = false;
    ahead.reissued = false;
    if config.rotate() {
        ahead.rotated_at = now.max(session.rotated_at);
        ahead.expires_at = expiry(config, &ahead, ahead.rotated_at);
    }
    current_generation(keyring, config, session, Some(ahead), request)
}

/// The current token `T(n)`, or a token from the future that `ahead` adopts as current.
///
/// Inlined into both calls, so that the common one, with nothing to store, returns its
/// answer without moving an 80-byte `None` into it.
#[inline(always)]
fn current_generation(
    keyring: &Keyring,
    config: &Config,
    session: &Session,
    ahead: Option<Session>,
    request: Request<'_>,
) -> Decision {
    let now = request.now;
    if !config.rotate() {
        return Decision::Accept { updated: ahead };
    }
    let base = ahead.as_ref().unwrap_or(session);
    if in_window(config, base, now) && !request.force_rotation {
        // First use of `T(n)`: in Recover mode, record it, so `T(n-1)` can no longer be
        // exchanged for it.
        let acknowledge = config.mode() == Mode::Recover && !base.acknowledged;
        let mut updated = ahead;
        if acknowledge {
            updated
                .get_or_insert_with(|| session.next_version())
                .acknowledged = true;
        }
        return Decision::BatchReuse { updated };
    }
    rotate(keyring, config, base, now)
}

/// A genuine token `behind` generations before the current one.
fn previous(
    keyring: &Keyring,
    config: &Config,
    session: &Session,
    behind: u64,
    request: Request<'_>,
) -> Decision {
    let now = request.now;
    let in_batch = config.rotate() && behind <= 2 && in_window(config, session, now);
    if in_batch {
        // devise's `unbatch=true` sends the batch's original token again and expects a new
        // one: a forced rotation applies to every batch member, not only to `T(n)`.
        if request.force_rotation {
            return rotate(keyring, config, session, now);
        }
        return Decision::BatchReuse { updated: None };
    }
    let lost_response =
        config.rotate() && config.mode() == Mode::Recover && behind == 1 && !session.acknowledged;
    if lost_response {
        let Some(token) = current_token(keyring, session) else {
            return reject(RejectReason::UnknownKey);
        };
        // Record the recovery, so that the rotation out of this generation closes the next
        // one to it: a second holder of `T(n-1)` cannot be served alongside the first
        // forever. Several requests of one reload may recover at once: only the first
        // writes.
        let updated = (!session.reissued).then(|| {
            let mut marked = session.next_version();
            marked.reissued = true;
            marked
        });
        return Decision::Reissue { updated, token };
    }
    let reason = RejectReason::Replayed { behind };
    match config.replay_policy() {
        ReplayPolicy::RevokeSession => Decision::Revoke { reason },
        ReplayPolicy::Reject => Decision::Reject { reason },
    }
}

/// `T(n)` under the key the session's current generation was made with, unless that key
/// has been removed.
pub(crate) fn current_token(keyring: &Keyring, session: &Session) -> Option<Token> {
    let key = keyring.get(session.key_id)?;
    Some(Token::derive(
        key,
        session.key_id,
        &session.client_id,
        &session.seed,
        session.generation,
    ))
}

/// Moves `session` to generation `n+1` under the primary key, opening a new window at `now`.
fn rotate(keyring: &Keyring, config: &Config, session: &Session, now: Timestamp) -> Decision {
    let Some(generation) = session.generation.checked_add(1) else {
        return reject(RejectReason::TooOld);
    };
    let mut next = session.next_version();
    next.generation = generation;
    next.key_id = keyring.primary();
    // A recovery is granted once: after a generation whose token was reissued, the new one
    // starts acknowledged, so `T(n)` (which two parties may now hold) cannot be exchanged
    // again. Otherwise `T(n+1)` is new and unacknowledged.
    next.acknowledged = session.reissued;
    next.reissued = false;
    // A clock behind `rotated_at` must not move the window back before the one it ends.
    next.rotated_at = now.max(session.rotated_at);
    next.expires_at = expiry(config, &next, next.rotated_at);
    let token = Token::derive(
        keyring.primary_key(),
        next.key_id,
        &next.client_id,
        &next.seed,
        generation,
    );
    Decision::Rotate {
        session: next,
        token,
    }
}

/// The sliding expiry of a window opening at `from`, capped by the absolute lifetime but
/// never before `from` (so `rotated_at ≤ expires_at` always holds).
pub(crate) fn expiry(config: &Config, session: &Session, from: Timestamp) -> Timestamp {
    from.saturating_add_millis(config.lifespan_ms())
        .min(absolute_deadline(config, session).unwrap_or(Timestamp::MAX))
        .max(from)
}

fn absolute_deadline(config: &Config, session: &Session) -> Option<Timestamp> {
    config
        .absolute_lifetime_ms()
        .map(|ms| session.created_at.saturating_add_millis(ms))
}

/// `now ∈ [rotated_at, rotated_at + W)`, with a clock behind `rotated_at` counting as age 0.
fn in_window(config: &Config, session: &Session, now: Timestamp) -> bool {
    now.millis_since(session.rotated_at) < config.batch_window_ms()
}

fn reject(reason: RejectReason) -> Decision {
    Decision::Reject { reason }
}
