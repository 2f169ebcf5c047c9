//! The HTTP side: devise_token_auth's routes on axum, over any [`Database`].
//!
//! Every authenticated request goes through `authenticate`: devise's headers read by
//! rotauth-axum's `DeviseProtocol`, then rotauth-axum's `Authenticator`: read the session,
//! check the `uid`, let rotauth decide, persist with compare-and-swap before answering,
//! and on a lost swap re-read and decide again (the retry is then part of the batch).

// Handlers return the response to send as the error of their helpers; boxing it would only
// add an allocation on the error path.
#![allow(clippy::result_large_err)]

mod account;
mod auth;
mod pages;
mod responses;
mod sign_in;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use rotauth::rand_core::TryRng;
use rotauth::{ClientId, DecisionKind, Rotator, Timestamp};
use rotauth_axum::{
    Authenticated, Authenticator, BatchToken, ChangeError, Checked, Credentials, DeviseProtocol,
    Outcome, PendingSignIn, Protocol as _, Refusal, Reply, StoreError, Unavailable,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};
use zeroize::Zeroizing;

use crate::bodies::{AccountBody, BODY_LIMIT, BodyError, Encoding, SignInBody, SignUpBody};
use crate::connections::ClientAddr;
use crate::db::{self, Database, EmailChange, User};
use crate::email::normalize_email;
use crate::health::{self, Readiness};
use crate::limits::{Limits, Throttle};
use crate::metrics::{Metrics, render_keys};
use account::*;
use auth::*;
use pages::*;
use responses::*;
pub(crate) use responses::{errors, json_response, note};
use sign_in::*;

use crate::passwords::{
    Hasher, hash_blocking, hash_password, password_errors, verify_blocking, weaker_than,
};

const MAX_EMAIL: usize = 254;

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
    fn write(&self, line: String) {
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
    /// `--clock-offset-ms`: added to the wall clock for every decision (tests of instances
    /// whose clocks disagree).
    pub clock_offset_ms: i64,
    /// `--metrics`: serve `GET /metrics`.
    pub metrics: bool,
}

struct Inner<D: Database> {
    db: D,
    /// rotauth-axum's request loop over the database's session store.
    auth: Authenticator<D::Sessions>,
    protocol: DeviseProtocol,
    log: LogSink,
    cors_origins: Vec<HeaderValue>,
    limits: Limits,
    argon2: argon2::Params,
    clock_offset_ms: i64,
    serve_metrics: bool,
    metrics: Metrics,
    /// A hash of a random password: unknown emails are checked against it, so that sign-in
    /// takes as long for them as for known ones.
    dummy_hash: String,
    /// Password hashing, bounded by `Limits::concurrent_hashes`.
    hashing: Arc<Hasher>,
    throttle: Throttle,
    /// Set when a stop signal arrives: `GET /readyz` answers 503 from then on.
    readiness: Readiness,
}

/// The shared state of the server.
pub struct AppState<D: Database>(Arc<Inner<D>>);

impl<D: Database> Clone for AppState<D> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
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
        let auth = Authenticator::new(settings.rotator, db.sessions())
            .batch_token(settings.batch_token)
            .uid_in_user_id(db::uid_in_session_owner);
        Ok(Self(Arc::new(Inner {
            db,
            auth,
            protocol: DeviseProtocol::new(),
            log: settings.log,
            cors_origins: settings.cors_origins,
            limits: settings.limits,
            argon2: settings.argon2,
            clock_offset_ms: settings.clock_offset_ms,
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

    /// This server's clock: the wall clock shifted by `--clock-offset-ms`.
    pub fn now(&self) -> Timestamp {
        let wall = Timestamp::now().unix_millis();
        let offset = self.0.clock_offset_ms;
        let shifted = if offset >= 0 {
            wall.saturating_add(offset.unsigned_abs())
        } else {
            wall.saturating_sub(offset.unsigned_abs())
        };
        Timestamp::from_unix_millis(shifted)
    }
}

/// devise_token_auth's routes plus `PUT /auth/password`, with the body limit, CORS,
/// `Cache-Control` and the log.
pub fn router<D: Database>(state: AppState<D>) -> Router {
    let router = Router::new()
        .route("/", get(page::<D>))
        .route(
            "/auth",
            post(sign_up::<D>)
                .put(update_account::<D>)
                .patch(update_account::<D>)
                .delete(delete_account::<D>),
        )
        .route("/auth/sign_in", post(sign_in::<D>))
        .route("/auth/validate_token", get(validate_token::<D>))
        .route("/auth/sign_out", delete(sign_out::<D>))
        .route(
            "/auth/password",
            axum::routing::put(change_password::<D>).patch(change_password::<D>),
        )
        .route("/demo/members_only", get(members_only::<D>))
        .merge(health::routes());
    let router = if state.0.serve_metrics {
        router.route("/metrics", get(metrics::<D>))
    } else {
        router
    };
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(no_store));
    let router = match cors_layer(&state.0.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    // tower-http's span per request carries the method and the path only: never the query
    // string (it may carry credentials) nor any header.
    let trace = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let path: String = request.uri().path().chars().take(200).collect();
            tracing::info_span!("request", method = %request.method(), path = %path)
        })
        .on_request(())
        .on_response(())
        .on_body_chunk(())
        .on_eos(())
        .on_failure(());
    router
        .layer(middleware::from_fn_with_state(state.clone(), log::<D>))
        .layer(trace)
        .with_state(state)
}

/// rack-cors with `headers: :any` on tower-http: the origins of `--cors-origin`, the
/// request headers a preflight asks for mirrored back (ng-token-auth and j-toker send
/// `If-Modified-Since`), the auth headers exposed, preflights cached for ten minutes, and
/// `Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers`.
fn cors_layer(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o.as_bytes() == b"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().cloned())
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(ExposeHeaders::list(DeviseProtocol::RESPONSE_HEADERS))
            .max_age(Duration::from_secs(600)),
    )
}

/// Every answer of this API is about one user and may carry a token in custom headers,
/// which shared caches do not know to keep private: `Cache-Control: no-store`, and
/// `Vary` on the credentials for caches that ignore `no-store`.
async fn no_store(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.append(
        header::VARY,
        HeaderValue::from_static("access-token, client, uid, authorization"),
    );
    response
}

// ---------------------------------------------------------------------------------------
// Middleware

/// One line per request: method, path (never the query, which may carry credentials),
/// status, decision kind, latency. Never a token: handlers only note the kind and a reason.
async fn log<D: Database>(
    State(state): State<AppState<D>>,
    request: Request,
    next: Next,
) -> Response {
    let sink = &state.0.log;
    if matches!(sink, LogSink::Off) {
        return next.run(request).await;
    }
    let start = Instant::now();
    let method = request.method().clone();
    let path: String = request.uri().path().chars().take(200).collect();
    let response = next.run(request).await;
    let elapsed = start.elapsed();
    let (kind, detail) = response
        .extensions()
        .get::<LogNote>()
        .map_or(("-", None), |n| (n.kind, n.detail.as_deref()));
    let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
    sink.write(format!(
        "{method} {path} {status} {kind}{detail} {latency:.3}ms",
        status = response.status().as_u16(),
        latency = elapsed.as_secs_f64() * 1000.0,
    ));
    response
}
