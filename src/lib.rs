//! Per-request auth token rotation with batch windows and replay detection, as a pure state
//! machine: a session record, the presented token and the host's `now` go in, a
//! [`Decision`] comes out. rotauth does no I/O, reads no clock, draws randomness only at
//! sign-in from an RNG you pass, and never allocates (`#![no_std]`, no `alloc`,
//! `#![forbid(unsafe_code)]`). Your program, the *host*, brings the clock, the RNG, storage
//! and HTTP.
//!
//! It is the token core of [devise_token_auth] rebuilt: every response hands the client the
//! token for its next request, and requests fired together within a batch window share one
//! token. Tokens are derived with HMAC-SHA256 from a per-session seed and a generation
//! counter, so checking one costs one HMAC (about 100 ns, where devise_token_auth spends a
//! bcrypt), rotation is idempotent so racing servers never fork a session, a leaked
//! database yields no usable token, the batch window never slides, and replays are
//! detected at any depth.
//!
//! The rules, the reasons behind them and the threat model are in the [design document].
//!
//! [devise_token_auth]: https://github.com/lynndylanhurley/devise_token_auth
//! [design document]: https://github.com/rotauth/rotauth/blob/main/docs/DESIGN.md
//!
//! # How a host drives it
//!
//! 1. At start-up, build a [`Keyring`] from your secret key(s) (at least [`MIN_KEY_LEN`]
//!    bytes each) and a [`Config`] (the defaults are devise's: rotate on every request, 5 s
//!    batch window, 14-day lifespan; change them with [`Config::builder`]), and make a
//!    [`Rotator`] of them.
//! 2. On sign-in, call [`Rotator::sign_in`] with a cryptographic RNG and `now`. Store the
//!    [`Session`] ([`Session::encode`]: 75 bytes, which hold the session's secret seed)
//!    under its [`ClientId`], and send the client its client id and the token `T(0)`.
//! 3. On every authenticated request, load the session by client id and call
//!    [`Rotator::decide`] with the presented token and `now` in a [`Request`]. Act on the
//!    [`Decision`]; each variant states the host's duty:
//!    - [`Decision::Rotate`]: store the new session first, with a compare-and-swap on the
//!      [`version`](Session::version) you read; then serve and send the new token.
//!    - [`Decision::BatchReuse`]: store `updated` first if present; serve and send no token
//!      (devise sends `access-token: " "`).
//!    - [`Decision::Accept`] (rotation off): store `updated` first if present; serve and send
//!      the presented token back.
//!    - [`Decision::Reissue`] (Recover mode): store `updated` first if present
//!      (compare-and-swap); then serve and send the token it carries.
//!    - [`Decision::Reject`]: answer 401, send no token, store nothing.
//!    - [`Decision::Revoke`]: answer 401, send no token, and delete the session.
//! 4. If the compare-and-swap fails, another request of the same session won the race:
//!    re-read and decide again. The retry is then part of the batch, and since rotation is a
//!    function of the session, the winner sent the very token the loser would have.
//!
//! [`Decision`] is exhaustive on purpose: a future decision with a new duty must break your
//! `match` at compile time instead of falling into a catch-all arm. Every other public enum
//! is `#[non_exhaustive]`.
//!
//! A host loop with a compare-and-swap store, and the design notes' story through it:
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Duration;
//!
//! use rotauth::{
//!     ClientId, Config, Decision, EncodedSession, KeyId, Keyring, RejectReason, Request,
//!     Rotator, Session, Timestamp,
//! };
//!
//! /// Session rows with compare-and-swap on the version, like
//! /// `UPDATE sessions SET record = ? WHERE client_id = ? AND version = ?`.
//! /// The encoded records hold the seeds, and wipe themselves when dropped.
//! #[derive(Default)]
//! struct Store(HashMap<ClientId, EncodedSession>);
//!
//! impl Store {
//!     fn load(&self, client: &ClientId) -> Option<Session> {
//!         self.0.get(client).and_then(|bytes| Session::decode(bytes.as_ref()).ok())
//!     }
//!
//!     fn compare_and_swap(&mut self, read: &Session, next: &Session) -> bool {
//!         match self.load(&read.client_id()) {
//!             Some(current) if current.version() == read.version() => {
//!                 self.0.insert(next.client_id(), next.encode());
//!                 true
//!             }
//!             _ => false,
//!         }
//!     }
//!
//!     fn delete(&mut self, client: &ClientId) {
//!         self.0.remove(client);
//!     }
//! }
//!
//! /// One request, as a host serves it: the token to send back (`None`: a blank), or a 401.
//! fn serve(
//!     rotator: &Rotator,
//!     store: &mut Store,
//!     client: &ClientId,
//!     token: &str,
//!     now: Timestamp,
//! ) -> Result<Option<String>, RejectReason> {
//!     loop {
//!         let session = store.load(client);
//!         let decision = rotator.decide(session.as_ref(), Request::new(token, now));
//!         if let (Some(read), Some(next)) = (&session, decision.session_to_store()) {
//!             if !store.compare_and_swap(read, next) {
//!                 continue; // lost a race: decide again on the winner's record
//!             }
//!         }
//!         return match decision {
//!             Decision::Rotate { token, .. } | Decision::Reissue { token, .. } => {
//!                 Ok(Some(token.to_text().as_str().to_owned()))
//!             }
//!             Decision::Accept { .. } => Ok(Some(token.to_owned())),
//!             Decision::BatchReuse { .. } => Ok(None),
//!             Decision::Reject { reason } => Err(reason),
//!             Decision::Revoke { reason } => {
//!                 store.delete(client);
//!                 Err(reason)
//!             }
//!         };
//!     }
//! }
//!
//! let keyring = Keyring::new(KeyId(1), b"a secret key of at least 32 bytes!")?;
//! let rotator = Rotator::new(keyring, Config::default());
//! let mut store = Store::default();
//! let mut now = Timestamp::from_unix_millis(1_796_083_200_000);
//!
//! // Sign-in: store the session, send the client id and T(0).
//! let (session, t0) = rotator.sign_in(&mut rand::rng(), now);
//! let client = session.client_id();
//! store.0.insert(client, session.encode());
//! let t0 = t0.to_text();
//!
//! // Six seconds later a page load fires three requests with T(0) at once. Requests `a` and
//! // `b` read the record before either has written: both decide Rotate.
//! now = now.saturating_add(Duration::from_secs(6));
//! let read_a = store.load(&client).unwrap();
//! let read_b = store.load(&client).unwrap();
//! let a = rotator.decide(&read_a, Request::new(t0.as_str(), now));
//! let b = rotator.decide(&read_b, Request::new(t0.as_str(), now));
//! assert_eq!(a.token_to_send(), b.token_to_send(), "rotation is deterministic");
//! assert!(store.compare_and_swap(&read_a, a.session_to_store().unwrap()));
//! // `b` loses the compare-and-swap, re-reads and decides again: now a batch member.
//! assert!(!store.compare_and_swap(&read_b, b.session_to_store().unwrap()));
//! let b = rotator.decide(&store.load(&client).unwrap(), Request::new(t0.as_str(), now));
//! assert_eq!(b, Decision::BatchReuse { updated: None });
//! // `c` arrives 50 ms later, inside the batch window: no token, so a late response can
//! // never hand the client an outdated one.
//! now = now.saturating_add(Duration::from_millis(50));
//! assert_eq!(serve(&rotator, &mut store, &client, t0.as_str(), now), Ok(None));
//! // The client keeps the one token it received: T(1).
//! let t1 = a.token_to_send().unwrap().to_text();
//!
//! // The next request after the window rotates again.
//! now = now.saturating_add(Duration::from_secs(10));
//! let t2 = serve(&rotator, &mut store, &client, t1.as_str(), now).unwrap().unwrap();
//! assert_ne!(t2, t1.as_str());
//!
//! // T(0) presented again, long after its batch: a replay, refused.
//! now = now.saturating_add(Duration::from_secs(10));
//! assert_eq!(
//!     serve(&rotator, &mut store, &client, t0.as_str(), now),
//!     Err(RejectReason::Replayed { behind: 2 })
//! );
//! // The legitimate client is unaffected.
//! assert!(serve(&rotator, &mut store, &client, &t2, now).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Sessions`] does the same for hosts that keep all of one user's sessions in one value,
//! and [`Keyring`] shows how to change keys without logging anyone out.
//!
//! # The decision table
//!
//! `n` is the session's generation, `g` the generation of a presented token whose MAC
//! verifies, `W` the batch window and `age = now − rotated_at` (saturating: a clock behind
//! counts as 0, inside the window). With rotation on:
//!
//! | presented | age < W | age ≥ W |
//! |---|---|---|
//! | `g = n` | BatchReuse; forced: Rotate | Rotate |
//! | `g = n-1` | BatchReuse; forced: Rotate | Strict: Replayed · Recover: Reissue `T(n)` unless acknowledged |
//! | `g = n-2` | BatchReuse; forced: Rotate | Replayed |
//! | `g < n-2` | Replayed | Replayed |
//! | `g > n` | fast-forward: `T(g)` becomes current, its window opening now (the host lost a write); then as `g = n` | same |
//!
//! - Before the table: no session is [`UnknownSession`](RejectReason::UnknownSession); a
//!   token that does not parse is `Malformed`, one naming a key not in the keyring
//!   `UnknownKey`, one whose MAC fails `Forged`; then past the absolute lifetime is `TooOld`
//!   and past `expires_at` is `Expired`.
//! - "Replayed" is [`Decision::Reject`] with [`RejectReason::Replayed`], or
//!   [`Decision::Revoke`] under [`ReplayPolicy::RevokeSession`]. A rejection never changes
//!   the session.
//! - Only a rotation moves the window (`rotated_at ← now`) and slides the expiry
//!   (`expires_at ← now + lifespan`, capped by the absolute lifetime), and a fast-forward,
//!   which replays the lost rotation as of `now`. A batch request never extends either.
//! - "Forced" is [`Request::force_rotation`], devise's `?unbatch=true`: it rotates for every
//!   batch member; outside the window it changes nothing.
//! - [`Mode::Recover`]: `T(n-1)` after the window gets `T(n)` again while `T(n)` has not been
//!   used, and a recovery is granted once: the rotation out of a reissued generation starts
//!   the next one acknowledged.
//! - With rotation off, `g = n` is Accept until the sign-in expiry, and older tokens are
//!   Replayed.
//!
//! # Security
//!
//! - **False accepts.** A token is accepted only if its MAC verifies under the host's key
//!   for this session's client id and seed, compared in constant time. Among genuine
//!   tokens, an invalidated one is accepted only inside the batch window, at most two
//!   generations back, because a browser's parallel requests and out-of-order responses
//!   legitimately present them; the window is anchored at the rotation and never slides. So
//!   a stolen token stops working at most `W` after the legitimate client's next rotation
//!   (inside that window a forced rotation hands its holder the next token, and then the
//!   legitimate client's token falls behind instead), and its later use is reported as
//!   `Replayed`, which can revoke the session. Recover mode
//!   lets a holder of `T(n-1)` obtain `T(n)` once while `T(n)` is unused; of two parties
//!   holding diverging tokens at most one is still served two generations later.
//! - **False rejects.** A client that always presents the newest token it received is never
//!   refused before expiry: batch members may lag two generations, a host that lost a write
//!   is fast-forwarded rather than contradicted, and a compare-and-swap loser's retry is a
//!   batch member. Strict mode does log out a client whose response was lost after the
//!   window closed; Recover mode recovers one lost response.
//! - **Secrets.** Keys, their HMAC states, seeds and tokens never appear in `Debug` output
//!   and are wiped on drop (`zeroize`), and so is [`EncodedSession`], the record's bytes.
//!   Treat those bytes, and a [`Sessions`] encoding, as secrets. Token text is decoded in
//!   constant time.
//! - **Panics.** No input reaches a panic: token text and bytes, record bytes, container
//!   bytes, and timestamps from 0 to `u64::MAX` (also going backwards) give typed errors or
//!   rejections. A rejection is a [`Decision`], not an `Err`; `Result` is kept for caller
//!   misuse ([`ConfigError`], [`KeyError`]), decoding ([`DecodeError`]) and RNG failure.
//! - **Limits.** rotauth does not authenticate users, rate-limit guesses or protect tokens
//!   in transit. Timing reveals whether a client id names a session. Strict mode cannot tell
//!   a thief from a client that lost a response; Recover mode can only by the order the
//!   tokens are used. The [design document] has the threat model in full.
//!
//! # Feature flags
//!
//! - `std`: `Timestamp::now()` from the system clock and `From<SystemTime>` for
//!   [`Timestamp`]. The core never needs it.
//! - `serde`: `Serialize` and `Deserialize` for the configuration and the plain values
//!   ([`Config`], [`Mode`], [`ReplayPolicy`], [`ClientId`] as its text, [`KeyId`],
//!   [`Timestamp`]), so hosts can load their policy from a configuration file. Secrets
//!   (keys, seeds, tokens, sessions) are deliberately not serializable.
//!
//! No feature is on by default. Minimum supported Rust version: 1.87.
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
pub mod exchange;
mod keyring;
mod mac;
mod rotator;
#[cfg(feature = "serde")]
mod serde_impls;
mod session;
mod sessions;
mod time;
mod token;

pub use config::{Config, ConfigBuilder, ConfigError, Mode, ParseNameError, ReplayPolicy};
pub use decision::{Decision, DecisionKind, Presented, RejectReason, Request};
pub use keyring::{KeyError, KeyId, Keyring, MAX_KEYS, MIN_KEY_LEN};
pub use rotator::Rotator;
pub use session::{ClientId, DecodeError, EncodedSession, ParseClientIdError, Session};
pub use sessions::{BufferTooSmall, Sessions, SignedIn};
pub use time::Timestamp;
pub use token::{TOKEN_LEN, TOKEN_TEXT_LEN, Token, TokenError, TokenText};

/// `rand_core`, re-exported so hosts name the same RNG traits rotauth asks for.
pub use rand_core;
