//! What the handlers share: the settings, the state built from them, this server's clock,
//! and how rotauth-axum's extractors find the authenticator and the protocol in it.

use std::sync::{Arc, Mutex};

use axum::extract::FromRef;
use axum::http::HeaderValue;
use rotauth::rand_core::TryRng;
use rotauth::{Rotator, Timestamp};
use rotauth_axum::{AuthRejection, Authenticator, BatchToken, Check, Rotation};

use super::transport::Transport;

use crate::clock::Clock;
use crate::db::{self, Database};
use crate::health::Readiness;
use crate::limits::{Limits, Throttle};
use crate::metrics::Metrics;
use crate::passwords::{Hasher, hash_password};

/// An authenticated request of a route that rotates: rotauth-axum's loop decided it and
/// stored the decision; returned with the response, it writes devise's headers.
pub(crate) type Session<D> = Rotation<<D as Database>::Sessions, Transport>;

/// An authenticated request decided without storing anything (sign-out, account
/// deletion, the check before an account change's slow work).
pub(crate) type Checked<D> = Check<<D as Database>::Sessions, Transport>;

/// Why [`Session`] or [`Checked`] did not extract: a refusal, or a 503.
pub(crate) type Rejection = AuthRejection<Transport>;

/// Where the one-line-per-request log goes.
#[derive(Clone)]
pub enum LogSink {
    /// One `tracing` event per request (the binary prints them on standard error).
    Stderr,
    /// No request log (`--quiet`).
    Off,
    /// Kept in memory, for tests that check what is (and is not) logged.
    #[cfg_attr(not(test), allow(dead_code))]
    Memory(Arc<Mutex<Vec<String>>>),
}

impl LogSink {
    pub(super) fn write(&self, line: String) {
        match self {
            Self::Stderr => tracing::info!(target: "devise_server", "{line}"),
            Self::Off => {}
            Self::Memory(lines) => {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        }
    }
}

/// Everything the handlers share.
pub struct Settings {
    /// The keyring and rotation policy that decide every request.
    pub rotator: Rotator,
    /// `--batch-token`: what a batch response carries.
    pub batch_token: BatchToken,
    /// Where the request log goes.
    pub log: LogSink,
    /// `--cors-origin`: the origins allowed (`*` for any); empty: no CORS headers at all.
    pub cors_origins: Vec<HeaderValue>,
    /// Abuse limits: hashing, throttling, connections, timeouts.
    pub limits: Limits,
    /// Password hashing cost.
    pub argon2: argon2::Params,
    /// The time every decision is made at (`--clock-offset-ms`, `--test-clock-file`).
    pub clock: Clock,
    /// `--metrics`: serve `GET /metrics`.
    pub metrics: bool,
    /// `--credentials`: devise's headers, or the httpOnly cookie.
    pub transport: Transport,
}

pub(super) struct Inner<D: Database> {
    pub(super) db: D,
    /// rotauth-axum's request loop over the database's session store, deciding at the
    /// time of the server's [`Clock`].
    pub(super) auth: Authenticator<D::Sessions>,
    pub(super) transport: Transport,
    pub(super) log: LogSink,
    pub(super) cors_origins: Vec<HeaderValue>,
    pub(super) limits: Limits,
    pub(super) argon2: argon2::Params,
    pub(super) serve_metrics: bool,
    pub(super) metrics: Metrics,
    /// A hash of a random password: unknown emails are checked against it, so that sign-in
    /// takes as long for them as for known ones.
    pub(super) dummy_hash: String,
    /// Password hashing, bounded by `Limits::concurrent_hashes`.
    pub(super) hashing: Arc<Hasher>,
    pub(super) throttle: Throttle,
    /// Set when a stop signal arrives: `GET /readyz` answers 503 from then on.
    pub(super) readiness: Readiness,
}

/// The shared state of the server.
pub struct AppState<D: Database>(pub(super) Arc<Inner<D>>);

impl<D: Database> Clone for AppState<D> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// How rotauth-axum's extractors (`Session`, `Checked`) find the request loop.
impl<D: Database> FromRef<AppState<D>> for Authenticator<D::Sessions> {
    fn from_ref(state: &AppState<D>) -> Self {
        state.0.auth.clone()
    }
}

/// How rotauth-axum's extractors find the protocol: the one `--credentials` chose.
impl<D: Database> FromRef<AppState<D>> for Transport {
    fn from_ref(state: &AppState<D>) -> Self {
        state.0.transport.clone()
    }
}

impl<D: Database> AppState<D> {
    /// Builds the state; hashes one random password for the unknown-email path.
    pub fn new(db: D, settings: Settings) -> Result<Self, String> {
        let mut password = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut password)
            .map_err(|e| format!("system RNG failed: {e}"))?;
        let dummy_hash = hash_password(&settings.argon2, &password, &mut Vec::new())
            .map_err(|e| format!("password hashing failed: {e}"))?;
        let hashing = Hasher::new(settings.limits.concurrent_hashes);
        let throttle = Throttle::new(&settings.limits);
        let clock = settings.clock;
        let auth = Authenticator::new(settings.rotator, db.sessions())
            .batch_token(settings.batch_token)
            .uid_in_user_id(db::uid_in_session_owner)
            .clock(move || clock.now());
        Ok(Self(Arc::new(Inner {
            db,
            auth,
            transport: settings.transport,
            log: settings.log,
            cors_origins: settings.cors_origins,
            limits: settings.limits,
            argon2: settings.argon2,
            serve_metrics: settings.metrics,
            metrics: Metrics::default(),
            dummy_hash,
            hashing,
            throttle,
            readiness: Readiness::default(),
        })))
    }

    /// Decides with `keyring` from now on (SIGHUP): see `Authenticator::set_keyring`.
    pub fn set_keyring(&self, keyring: rotauth::Keyring) {
        self.0.auth.set_keyring(keyring);
    }

    /// The counters since start.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The database.
    pub fn db(&self) -> &D {
        &self.0.db
    }

    /// rotauth-axum's request loop, sign-in and sign-out.
    pub(crate) fn auth(&self) -> &Authenticator<D::Sessions> {
        &self.0.auth
    }

    /// How credentials travel (`--credentials`).
    pub(crate) fn transport(&self) -> &Transport {
        &self.0.transport
    }

    /// Whether the server is stopping, for `GET /readyz`.
    pub fn readiness(&self) -> &Readiness {
        &self.0.readiness
    }

    /// The abuse limits.
    pub(crate) fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// Forgets throttled keys whose quota has recovered.
    pub(crate) fn purge_throttle(&self) {
        self.0.throttle.purge();
    }

    /// This server's time (`crate::clock`), as every decision and sign-in reads it: the
    /// authenticator is given the clock, and this asks the authenticator.
    pub fn now(&self) -> Timestamp {
        self.0.auth.now()
    }
}
