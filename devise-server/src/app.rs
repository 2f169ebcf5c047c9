//! The HTTP side: devise_token_auth's routes on axum, over any [`Database`].
//!
//! Every authenticated request goes through `authenticate`: devise's headers read by
//! rotauth-axum's `DeviseProtocol`, then rotauth-axum's `Authenticator`: read the session,
//! check the `uid`, let rotauth decide, persist with compare-and-swap before answering,
//! and on a lost swap re-read and decide again (the retry is then part of the batch).

// Handlers return the response to send as the error of their helpers; boxing it would only
// add an allocation on the error path.
#![allow(clippy::result_large_err)]

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
    Outcome, PendingSignIn, Protocol as _, Refusal, Reply, SignedIn, StoreError, Unavailable,
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
// Responses

/// What the log line says about the request, set by handlers as a response extension.
#[derive(Clone)]
struct LogNote {
    kind: &'static str,
    detail: Option<String>,
}

pub(crate) fn note(mut response: Response, kind: &'static str, detail: Option<String>) -> Response {
    response.extensions_mut().insert(LogNote { kind, detail });
    response
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

pub(crate) fn errors(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({"success": false, "errors": [message]}))
}

/// 503 with `Retry-After`, no token; `detail` (a database error) goes to the log only.
fn unavailable(detail: &dyn std::fmt::Display) -> Response {
    let mut response = errors(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service unavailable, please try again later.",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    note(response, "store_error", Some(detail.to_string()))
}

fn internal(detail: String) -> Response {
    note(
        errors(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error."),
        "error",
        Some(detail),
    )
}

fn user_json(user: &User) -> Value {
    json!({"id": user.id, "email": user.email, "uid": user.email, "provider": "email"})
}

fn with_headers(mut response: Response, extra: HeaderMap) -> Response {
    response.headers_mut().extend(extra);
    response
}

/// A request body, typed (see `bodies`), or the response to send instead: 415 for a
/// `Content-Type` that is neither JSON nor a form, 413 beyond the limit, 400 when the body
/// does not parse or cannot be read, in one shape for all.
fn parse_body<T: DeserializeOwned + Default>(
    request_headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Response> {
    let content_type = request_headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let encoding = Encoding::of(content_type).map_err(body_refused)?;
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return body_refused(BodyError::TooLarge);
        }
        note(
            errors(status, "Could not read the request body."),
            "bad_request",
            None,
        )
    })?;
    encoding.parse(&bytes).map_err(body_refused)
}

fn body_refused(error: BodyError) -> Response {
    let status = match error {
        BodyError::UnsupportedContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::Malformed(_) => StatusCode::BAD_REQUEST,
    };
    note(errors(status, &error.to_string()), "bad_request", None)
}

fn as_str(field: Option<&Zeroizing<String>>) -> Option<&str> {
    field.map(|s| s.as_str())
}

async fn not_found() -> Response {
    note(
        errors(StatusCode::NOT_FOUND, "Not found."),
        "not_found",
        None,
    )
}

async fn method_not_allowed() -> Response {
    note(
        errors(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed."),
        "method_not_allowed",
        None,
    )
}

/// devise's email format (`/\A[^@\s]+@[^@\s]+\z/`), restricted to visible ASCII because
/// the email travels back in the `uid` header.
fn email_error(email: &str) -> Option<&'static str> {
    if email.is_empty() {
        return Some("can't be blank");
    }
    let valid = email.len() <= MAX_EMAIL
        && email.bytes().all(|b| b.is_ascii_graphic())
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    (!valid).then_some("is not an email")
}

/// devise's 422 shape: `errors` maps fields to messages, plus `full_messages`.
fn validation_failed(email: &str, field_errors: &[(&'static str, String)], top: &str) -> Response {
    let mut map = serde_json::Map::new();
    let mut full = Vec::new();
    for (field, message) in field_errors {
        let entry = map
            .entry((*field).to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(Value::String(message.clone()));
        }
        let mut label = field.replace('_', " ");
        if let Some(first) = label.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        full.push(Value::String(format!("{label} {message}")));
    }
    map.insert("full_messages".to_owned(), Value::Array(full));
    let body = if top == "registration" {
        json!({"status": "error", "errors": map,
               "data": {"id": null, "email": email, "uid": "", "provider": "email"}})
    } else if top == "account" {
        json!({"status": "error", "errors": map})
    } else {
        json!({"success": false, "errors": map})
    };
    note(
        json_response(StatusCode::UNPROCESSABLE_ENTITY, &body),
        "invalid",
        None,
    )
}

// ---------------------------------------------------------------------------------------
// Sign up, sign in

/// Replaces a weak password hash with one at the server's parameters, unless the hash
/// changed meanwhile (a password change wins). A failure costs the upgrade, not the
/// sign-in: it is logged and tried again at the next sign-in.
async fn upgrade_hash<D: Database>(
    state: &AppState<D>,
    user: &User,
    old: &str,
    password: Zeroizing<String>,
) {
    let params = state.0.argon2.clone();
    let new = match hash_blocking(&state.0.hashing, params, password).await {
        Ok(new) => new,
        Err(e) => {
            tracing::warn!(error = %e, "password hash upgrade failed");
            return;
        }
    };
    if let Err(e) = state.0.db.upgrade_password_hash(user, old, &new).await {
        tracing::warn!(error = %e, "password hash upgrade failed");
    }
}

/// Begins a sign-in of `user` (see `Authenticator::begin_sign_in`): before the password
/// hash that the sign-in checks is read.
async fn begin_sign_in<D: Database>(
    state: &AppState<D>,
    user: &User,
) -> Result<PendingSignIn, Response> {
    state
        .0
        .auth
        .begin_sign_in(&user.session_owner())
        .await
        .map_err(|e| unavailable(&e))
}

/// The session of a sign-in begun before its password check, stored, with the headers
/// carrying `T(0)`; `Ok(None)` when the user's credentials changed (or the account went)
/// since the sign-in began.
async fn new_session<D: Database>(
    state: &AppState<D>,
    pending: PendingSignIn,
    user: &User,
) -> Result<Option<HeaderMap>, Response> {
    let signed_in = match state
        .0
        .auth
        .sign_in_with(pending, &mut rand::rngs::SysRng, state.now())
        .await
    {
        Ok(signed_in) => signed_in,
        Err(rotauth_axum::Error::CredentialsChanged) => return Ok(None),
        Err(rotauth_axum::Error::Store(e)) => return Err(unavailable(&e)),
        Err(other) => return Err(internal(other.to_string())),
    };
    // The protocol writes the session's owner as `uid`: for devise that is the email.
    let signed_in = SignedIn {
        user_id: user.email.clone(),
        ..signed_in
    };
    Ok(Some(state.0.protocol.sign_in_headers(&signed_in)))
}

/// 429 with `Retry-After` (whole seconds, at least one) for a throttled sign-in or sign-up.
fn too_many(wait: Duration) -> Response {
    let mut response = errors(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts, please try again later.",
    );
    let secs = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1);
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    note(response, "throttled", None)
}

fn client_ip(request_headers: &axum::http::Extensions) -> Option<IpAddr> {
    request_headers.get::<ClientAddr>().map(|a| a.0.ip())
}

/// `POST /auth`: devise_token_auth's registration.
async fn sign_up<D: Database>(
    State(state): State<AppState<D>>,
    extensions: axum::http::Extensions,
    request_headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body: SignUpBody = match parse_body(&request_headers, body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    if body.email.is_none() && body.password.is_none() && body.password_confirmation.is_none() {
        return note(
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"status": "error",
                        "errors": ["Please submit proper sign up data in request body."]}),
            ),
            "invalid",
            None,
        );
    }
    let email = normalize_email(body.email.as_deref().unwrap_or(""));
    let password = as_str(body.password.as_ref());
    let mut field_errors = Vec::new();
    if let Some(message) = email_error(&email) {
        field_errors.push(("email", message.to_owned()));
    }
    field_errors.extend(password_errors(
        password,
        as_str(body.password_confirmation.as_ref()),
    ));
    let Some(password) = password.filter(|_| field_errors.is_empty()) else {
        return validation_failed(&email, &field_errors, "registration");
    };
    if let Err(wait) = state.0.throttle.check(client_ip(&extensions), &email) {
        return too_many(wait);
    }
    let hash = match hash_blocking(
        &state.0.hashing,
        state.0.argon2.clone(),
        Zeroizing::new(password.to_owned()),
    )
    .await
    {
        Ok(hash) => hash,
        Err(e) => return internal(format!("password hashing failed: {e}")),
    };
    let user = match state.0.db.create_user(&email, &hash).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let taken = [("email", "has already been taken".to_owned())];
            return validation_failed(&email, &taken, "registration");
        }
        Err(e) => return unavailable(&e),
    };
    let pending = match begin_sign_in(&state, &user).await {
        Ok(pending) => pending,
        Err(response) => return response,
    };
    match new_session(&state, pending, &user).await {
        // Deleted or changed before its first session was stored: sign in again.
        Ok(None) => errors(
            StatusCode::UNAUTHORIZED,
            "Invalid login credentials. Please try again.",
        ),
        Ok(Some(headers)) => note(
            with_headers(
                json_response(
                    StatusCode::OK,
                    &json!({"status": "success", "data": user_json(&user)}),
                ),
                headers,
            ),
            "sign_up",
            None,
        ),
        Err(response) => response,
    }
}

/// `POST /auth/sign_in`: a new session (device) for the user.
async fn sign_in<D: Database>(
    State(state): State<AppState<D>>,
    extensions: axum::http::Extensions,
    request_headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body: SignInBody = match parse_body(&request_headers, body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let invalid = || {
        note(
            errors(
                StatusCode::UNAUTHORIZED,
                "Invalid login credentials. Please try again.",
            ),
            "sign_in_failed",
            None,
        )
    };
    let (Some(email), Some(password)) = (body.email.as_deref(), body.password.clone()) else {
        return invalid();
    };
    let email = normalize_email(email);
    if let Err(wait) = state.0.throttle.check(client_ip(&extensions), &email) {
        return too_many(wait);
    }
    // The sign-in begins (rotauth-axum reads the user's epoch) before the password hash it
    // checks is read: a password change, an email change or a deletion from then on makes
    // it fail instead of storing a session the change was meant to end. The user's id is
    // part of what the epoch is kept under, hence a first look-up for the id, then the
    // hash read again after the sign-in began.
    let found = match state.0.db.user_by_email(&email).await {
        Ok(found) => found,
        Err(e) => return unavailable(&e),
    };
    let pending = match &found {
        Some(found) => match begin_sign_in(&state, &found.user).await {
            Ok(pending) => Some(pending),
            Err(response) => return response,
        },
        None => None,
    };
    let current = match (&found, &pending) {
        (Some(found), Some(_)) => match state.0.db.user_by_email(&email).await {
            Ok(again) => again.filter(|again| again.user.id == found.user.id),
            Err(e) => return unavailable(&e),
        },
        _ => None,
    };
    let (user, hash) = match current {
        Some(current) => (Some(current.user), current.password_hash),
        None => (None, state.0.dummy_hash.clone()),
    };
    // A hash made with weaker parameters than the server's (an older default, or
    // `--insecure-fast-hashing`) is checked quickly: a wrong password for it also pays for
    // a hash at the server's cost, so that it answers as slowly as any other, and a right
    // one is hashed again at that cost.
    let weak = user.is_some() && weaker_than(&hash, &state.0.argon2);
    let verified = verify_blocking(&state.0.hashing, hash.clone(), password.clone()).await;
    if weak && !verified {
        let dummy = state.0.dummy_hash.clone();
        let _ = verify_blocking(&state.0.hashing, dummy, password.clone()).await;
    }
    let (Some(user), Some(pending)) = (user.filter(|_| verified), pending) else {
        return invalid();
    };
    if weak {
        upgrade_hash(&state, &user, &hash, password).await;
    }
    match new_session(&state, pending, &user).await {
        Ok(None) => note(
            invalid(),
            "sign_in_failed",
            Some("credentials changed".to_owned()),
        ),
        Ok(Some(headers)) => note(
            with_headers(
                json_response(StatusCode::OK, &json!({"data": user_json(&user)})),
                headers,
            ),
            "sign_in",
            None,
        ),
        Err(response) => response,
    }
}

// ---------------------------------------------------------------------------------------
// Authenticated requests

/// An accepted request: its user, its session, and what its response carries.
struct Authed {
    user: User,
    client_id: ClientId,
    /// What the stored decision sends; `None` after [`check`], which stores nothing.
    reply: Option<Reply>,
    /// What rotauth decided (for the log).
    decision: DecisionKind,
    /// Compare-and-swaps lost before the decision held (for the log).
    lost_swaps: usize,
}

enum AuthError {
    /// No usable credentials, or rotauth refused them (the reason, for the log).
    Unauthorized(String),
    /// The database failed or the request lost too many swaps: 503, no token.
    Unavailable(String),
}

impl AuthError {
    /// The response for an error; `unauthorized` is the route's own 401 body.
    fn into_response(self, unauthorized: Response) -> Response {
        match self {
            Self::Unauthorized(reason) => note(unauthorized, "reject", Some(reason)),
            Self::Unavailable(detail) => unavailable(&detail),
        }
    }
}

/// The one place a request's credentials are decided: devise's headers read by
/// rotauth-axum's protocol, then rotauth-axum's loop: the session loaded (and refused if
/// the `uid` is not its owner's email), rotauth's decision stored with compare-and-swap
/// before answering, decided again on a lost swap (`force`: `?unbatch`). The user comes
/// from the session's owner (`"{id} {email}"`), without a query.
async fn authenticate<D: Database>(
    state: &AppState<D>,
    parts: &Parts,
    force: bool,
) -> Result<Authed, AuthError> {
    let inner = &state.0;
    let credentials = credentials(state, parts)?;
    match inner
        .auth
        .authenticate(&credentials, state.now(), force)
        .await
    {
        Outcome::Served {
            who,
            reply,
            decision,
            lost_swaps,
        } => {
            inner.metrics.count(decision);
            inner.metrics.conflicts(lost_swaps);
            Ok(Authed {
                user: user_of(&who)?,
                client_id: who.client_id,
                reply: Some(reply),
                decision,
                lost_swaps,
            })
        }
        Outcome::Refused(refusal) => Err(refused(state, refusal)),
        Outcome::Unavailable(why) => Err(unavailable_because(state, why)),
    }
}

/// Whether the request's credentials are accepted, storing nothing and sending no token:
/// sign-out, account deletion, and the check before slow work that commits later. A
/// replay that the policy revokes still deletes its session.
async fn check<D: Database>(state: &AppState<D>, parts: &Parts) -> Result<Authed, AuthError> {
    let credentials = credentials(state, parts)?;
    match state.0.auth.check(&credentials, state.now()).await {
        Checked::Accepted { who, decision } => Ok(Authed {
            user: user_of(&who)?,
            client_id: who.client_id,
            reply: None,
            decision,
            lost_swaps: 0,
        }),
        Checked::Refused(refusal) => Err(refused(state, refusal)),
        Checked::Unavailable(why) => Err(unavailable_because(state, why)),
    }
}

fn credentials<D: Database>(state: &AppState<D>, parts: &Parts) -> Result<Credentials, AuthError> {
    state
        .0
        .protocol
        .credentials(parts)
        .map_err(|refusal| AuthError::Unauthorized(refusal.to_string()))
}

/// The user a session belongs to.
fn user_of(who: &Authenticated) -> Result<User, AuthError> {
    User::from_session_owner(&who.user_id)
        .ok_or_else(|| AuthError::Unavailable("a session's owner is not a user".to_owned()))
}

/// A refusal, counted when rotauth made it.
fn refused<D: Database>(state: &AppState<D>, refusal: Refusal) -> AuthError {
    match refusal {
        Refusal::Rejected(_) => state.0.metrics.count(DecisionKind::Reject),
        Refusal::Revoked(_) => state.0.metrics.count(DecisionKind::Revoke),
        _ => {}
    }
    AuthError::Unauthorized(refusal.to_string())
}

/// A 503, counted when the request lost every compare-and-swap it was allowed.
fn unavailable_because<D: Database>(state: &AppState<D>, why: Unavailable) -> AuthError {
    if let Unavailable::Contention = why {
        state.0.metrics.exhausted();
    }
    AuthError::Unavailable(why.to_string())
}

impl Authed {
    /// devise's headers for the reply, with the user's email, as it is when the response
    /// is sent, as `uid`; none when nothing was stored.
    fn headers<D: Database>(&self, state: &AppState<D>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(reply) = &self.reply {
            let who = Authenticated {
                client_id: self.client_id,
                user_id: self.user.email.clone(),
            };
            state.0.protocol.write_reply(&who, reply, &mut headers);
        }
        headers
    }

    /// `response` with the headers of the reply.
    fn answer<D: Database>(&self, state: &AppState<D>, response: Response) -> Response {
        with_headers(response, self.headers(state))
    }

    /// A JSON response with the headers of the reply, logged with the decision.
    fn respond<D: Database>(
        &self,
        state: &AppState<D>,
        status: StatusCode,
        body: &Value,
    ) -> Response {
        let detail = (self.lost_swaps > 0)
            .then(|| format!("decided again after CAS conflict x{}", self.lost_swaps));
        note(
            self.answer(state, json_response(status, body)),
            self.decision.as_str(),
            detail,
        )
    }
}

/// Whether the request asks to rotate inside the batch window (`?unbatch=true`).
fn force<D: Database>(state: &AppState<D>, parts: &Parts) -> bool {
    state.0.protocol.force_rotation(parts)
}

/// `GET /auth/validate_token`.
async fn validate_token<D: Database>(State(state): State<AppState<D>>, parts: Parts) -> Response {
    match authenticate(&state, &parts, force(&state, &parts)).await {
        Ok(authed) => {
            let body = json!({"success": true, "data": user_json(&authed.user)});
            authed.respond(&state, StatusCode::OK, &body)
        }
        Err(e) => e.into_response(errors(
            StatusCode::UNAUTHORIZED,
            "Invalid login credentials",
        )),
    }
}

/// `GET /demo/members_only`: devise_token_auth's demo protected route.
async fn members_only<D: Database>(State(state): State<AppState<D>>, parts: Parts) -> Response {
    match authenticate(&state, &parts, force(&state, &parts)).await {
        Ok(authed) => {
            let body = json!({"data": {
                "message": format!("Welcome {}", authed.user.email),
                "user": user_json(&authed.user),
            }});
            authed.respond(&state, StatusCode::OK, &body)
        }
        Err(e) => e.into_response(json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"errors": ["You need to sign in or sign up before continuing."]}),
        )),
    }
}

/// `DELETE /auth/sign_out`: any token the decision accepts (batch ones included) signs the
/// session out; nothing is rotated, and the response carries no auth headers.
async fn sign_out<D: Database>(State(state): State<AppState<D>>, parts: Parts) -> Response {
    let not_found = || {
        errors(
            StatusCode::NOT_FOUND,
            "User was not found or was not logged in.",
        )
    };
    let authed = match check(&state, &parts).await {
        Ok(authed) => authed,
        Err(e) => return e.into_response(not_found()),
    };
    match state.0.auth.sign_out(authed.client_id).await {
        Ok(true) => note(
            json_response(StatusCode::OK, &json!({"success": true})),
            "sign_out",
            None,
        ),
        Ok(false) => note(not_found(), "reject", Some("already signed out".to_owned())),
        Err(e) => unavailable(&e),
    }
}

/// The new password of an account update: devise's checks of the password, its
/// confirmation and the current password (verified against the stored hash under a
/// hashing permit), then the new hash. `Ok(None)`: no new password, or field errors.
async fn new_password_hash<D: Database>(
    state: &AppState<D>,
    user: &User,
    body: &AccountBody,
    field_errors: &mut Vec<(&'static str, String)>,
) -> Result<Option<Zeroizing<String>>, Response> {
    let Some(password) = as_str(body.password.as_ref()) else {
        return Ok(None);
    };
    field_errors.extend(password_errors(
        Some(password),
        as_str(body.password_confirmation.as_ref()),
    ));
    match body.current_password.clone().filter(|c| !c.is_empty()) {
        None => field_errors.push(("current_password", "can't be blank".to_owned())),
        Some(current) => {
            let found = match state.0.db.user_by_email(&user.email).await {
                Ok(Some(found)) if found.user.id == user.id => found,
                Ok(_) => return Err(errors(StatusCode::UNAUTHORIZED, "Unauthorized")),
                Err(e) => return Err(unavailable(&e)),
            };
            if !verify_blocking(&state.0.hashing, found.password_hash, current).await {
                field_errors.push(("current_password", "is invalid".to_owned()));
            }
        }
    }
    if !field_errors.is_empty() {
        return Ok(None);
    }
    hash_blocking(
        &state.0.hashing,
        state.0.argon2.clone(),
        Zeroizing::new(password.to_owned()),
    )
    .await
    .map(|hash| Some(Zeroizing::new(hash)))
    .map_err(|e| internal(format!("password hashing failed: {e}")))
}

/// What `PUT /auth` and `PUT /auth/password` committed.
struct AccountChanged {
    authed: Authed,
    /// Whether the email or the password changed.
    changed: bool,
    /// Sessions a new password signed out.
    signed_out: usize,
}

/// The shared work of `PUT /auth` and `PUT /auth/password`, ordered so that no answer
/// after a committed rotation lacks its token:
///
/// 1. check the credentials without storing anything;
/// 2. do every slow and fallible check (the current password, argon2 for the new one);
///    a failure here answers without a token and changes nothing, so the client's token
///    still works;
/// 3. decide and store the request's rotation;
/// 4. only then write the change: on a validation error, a taken email or a database
///    failure the answer (422, 422, 503) still carries the token the rotation sent. A new
///    password is written between two sign-outs of every other session
///    (`Authenticator::change_credentials`): the first leaves no old session alive beside
///    a new password whatever fails next, the second fails every sign-in that read the old
///    hash meanwhile. A new email renames the sessions after the `users` row, which fails
///    every sign-in begun under the old email.
async fn account_change<D: Database>(
    state: &AppState<D>,
    parts: &Parts,
    body: &AccountBody,
    shape: &'static str,
) -> Result<AccountChanged, Result<Response, AuthError>> {
    // `PUT /auth/password` sets the password only; `PUT /auth` may change the email too.
    let email_change = shape == "account";
    let peek = check(state, parts).await.map_err(Err)?;
    let user = peek.user;
    let mut field_errors = Vec::new();
    let mut email = None;
    if email_change && let Some(new) = body.email.as_deref() {
        let new = normalize_email(new);
        if let Some(message) = email_error(&new) {
            field_errors.push(("email", message.to_owned()));
        } else if new != user.email {
            match state.0.db.user_by_email(&new).await {
                Ok(Some(_)) => field_errors.push(("email", "has already been taken".to_owned())),
                Ok(None) => email = Some(new),
                Err(e) => return Err(Ok(unavailable(&e))),
            }
        }
    }
    let password_hash = new_password_hash(state, &user, body, &mut field_errors)
        .await
        .map_err(Ok)?;
    // A new email is a new `uid`: the answer must carry a token, or a client that keeps
    // its headers only from responses with a token (all of devise's clients) would go on
    // sending the old uid. Inside the batch window that takes a forced rotation.
    let forced = force(state, parts) || (field_errors.is_empty() && email.is_some());
    let mut authed = authenticate(state, parts, forced).await.map_err(Err)?;
    if !field_errors.is_empty() {
        let response = validation_failed(&authed.user.email, &field_errors, shape);
        return Err(Ok(authed.answer(state, response)));
    }
    // From here on the rotation is stored: every answer carries its headers.
    let failed = |authed: Authed, response: Response| Err(Ok(authed.answer(state, response)));
    let db = &state.0.db;
    let auth = &state.0.auth;
    let owner = user.session_owner();
    let mut signed_out = 0;
    if let Some(hash) = &password_hash {
        // Every other session, and every sign-in that read the old hash, ends with it.
        let change = db.set_password_hash(&user, hash);
        match made(
            auth.change_credentials(&owner, Some(authed.client_id), change)
                .await,
        ) {
            Ok((true, n)) => signed_out = n,
            Ok((false, _)) => return failed(authed, account_gone(shape)),
            Err(e) => return failed(authed, unavailable(&e)),
        }
    }
    if let Some(new) = &email {
        match db.set_email(&user, new).await {
            Ok(EmailChange::Changed) => {}
            Ok(EmailChange::Taken) => {
                let taken = [("email", "has already been taken".to_owned())];
                let response = validation_failed(&authed.user.email, &taken, shape);
                return failed(authed, response);
            }
            Ok(EmailChange::NoUser) => return failed(authed, account_gone(shape)),
            Err(e) => return failed(authed, unavailable(&e)),
        }
        // The sessions follow the new email, and a sign-in begun under the old one fails.
        let renamed = User {
            id: user.id,
            email: new.clone(),
        };
        if let Err(e) = auth.rename_user(&owner, &renamed.session_owner()).await {
            return failed(authed, unavailable(&e));
        }
        // The answer's `uid` header is the new email: the client must take it.
        authed.user.email.clone_from(new);
    }
    Ok(AccountChanged {
        authed,
        changed: email.is_some() || password_hash.is_some(),
        signed_out,
    })
}

/// `PUT /auth/password` (devise_token_auth's password update, with
/// `check_current_password_before_update = :password`): sets a new password and signs out
/// every other session of the user, keeping this one. The request itself rotates like any
/// other, and every answer after authentication carries the auth headers.
async fn change_password<D: Database>(
    State(state): State<AppState<D>>,
    parts: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The body first: a malformed request changes nothing, not even the token.
    let mut body: AccountBody = match parse_body(&parts.headers, body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    // This route always sets a password: a missing one is devise's "can't be blank".
    body.password
        .get_or_insert_with(|| Zeroizing::new(String::new()));
    match account_change(&state, &parts, &body, "password").await {
        Ok(done) => {
            let body = json!({
                "success": true,
                "data": user_json(&done.authed.user),
                "message": "Your password has been successfully updated.",
                "signed_out_sessions": done.signed_out,
            });
            done.authed.respond(&state, StatusCode::OK, &body)
        }
        Err(Ok(response)) => response,
        Err(Err(e)) => e.into_response(errors(StatusCode::UNAUTHORIZED, "Unauthorized")),
    }
}

/// `PUT /auth` (devise_token_auth's registration update): a new email (the new `uid`)
/// and/or a new password, which needs `current_password` and signs out every other
/// session. 200 `{"status":"success","data":{user}}` with the auth headers; 422 in
/// devise's `{"status":"error","errors":{...}}`; 404 `User not found.` without valid
/// credentials.
async fn update_account<D: Database>(
    State(state): State<AppState<D>>,
    parts: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut body: AccountBody = match parse_body(&parts.headers, body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    if body.email.is_none()
        && body.password.is_none()
        && body.password_confirmation.is_none()
        && body.current_password.is_none()
    {
        return note(
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"status": "error",
                        "errors": ["Please submit proper account update data in request body."]}),
            ),
            "invalid",
            None,
        );
    }
    // devise drops a blank password (and a blank confirmation with it): no password change.
    if body.password.as_ref().is_some_and(|p| p.is_empty()) {
        body.password = None;
        if body
            .password_confirmation
            .as_ref()
            .is_some_and(|p| p.is_empty())
        {
            body.password_confirmation = None;
        }
    }
    match account_change(&state, &parts, &body, "account").await {
        Ok(done) => {
            let body = json!({"status": "success", "data": user_json(&done.authed.user)});
            let mut response = done.authed.respond(&state, StatusCode::OK, &body);
            if done.changed
                && let Some(n) = response.extensions_mut().get_mut::<LogNote>()
            {
                n.detail = Some("account updated".to_owned());
            }
            response
        }
        Err(Ok(response)) => response,
        Err(Err(e)) => e.into_response(json_response(
            StatusCode::NOT_FOUND,
            &json!({"status": "error", "errors": ["User not found."]}),
        )),
    }
}

/// `DELETE /auth` (devise_token_auth's registration destroy): deletes the user between
/// two sign-outs of all its sessions, so that neither a session nor a sign-in in flight
/// outlives the account. Any accepted token will do, as for sign-out; the answer carries
/// no token (there is no session left to hold one).
async fn delete_account<D: Database>(State(state): State<AppState<D>>, parts: Parts) -> Response {
    let not_found = || {
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"status": "error", "errors": ["Unable to locate account for destruction."]}),
        )
    };
    let authed = match check(&state, &parts).await {
        Ok(authed) => authed,
        Err(e) => return e.into_response(not_found()),
    };
    let user = &authed.user;
    // Every session of the account, and every sign-in in flight, ends with it.
    let deletion = state.0.db.delete_user(user);
    match made(
        state
            .0
            .auth
            .change_credentials(&user.session_owner(), None, deletion)
            .await,
    ) {
        Ok((true, _)) => note(
            json_response(
                StatusCode::OK,
                &json!({"status": "success", "message":
                    format!("Account with UID '{}' has been destroyed.", user.email)}),
            ),
            "account_deleted",
            None,
        ),
        Ok((false, _)) => note(
            not_found(),
            "reject",
            Some("account already gone".to_owned()),
        ),
        Err(e) => unavailable(&e),
    }
}

/// A credential change that was made counts as made, and is answered so: when only the
/// sign-out after it failed, the old sessions are gone already (the first sign-out) and
/// the answer must not tell the client that its old password still holds. What is left (a
/// sign-in that raced the change may keep its session) goes to the log as an error.
fn made(
    result: Result<(bool, usize), ChangeError<bool, StoreError>>,
) -> Result<(bool, usize), ChangeError<bool, StoreError>> {
    match result {
        Err(ChangeError::NotConfirmed(made, error)) => {
            tracing::error!(%error, "an account change was made, but the sign-out after it failed");
            Ok((made, 0))
        }
        other => other,
    }
}

/// The answer to an account change whose account is gone (deleted meanwhile, or its
/// email changed by another session), in the route's shape.
fn account_gone(shape: &str) -> Response {
    let body = if shape == "account" {
        json!({"status": "error", "errors": ["User not found."]})
    } else {
        json!({"success": false, "errors": ["User not found."]})
    };
    note(
        json_response(StatusCode::NOT_FOUND, &body),
        "reject",
        Some("account gone".to_owned()),
    )
}

/// The demo page, embedded in the binary: one HTML file with its script and styles, no
/// build step.
const PAGE: &str = include_str!("page.html");

/// `GET /`: the page that shows rotation happen, with this server's batch window filled in.
/// Its script is inline, so the policy allows inline script and style and nothing from
/// anywhere else; it talks to this origin only.
async fn page<D: Database>(State(state): State<AppState<D>>) -> Response {
    let window = state.0.auth.rotator().config().batch_window().as_millis();
    let html = PAGE.replace("__BATCH_WINDOW_MS__", &window.to_string());
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    note(response, "page", None)
}

/// `GET /metrics` (with `--metrics`): counters in Prometheus' text format, for load tools
/// and dashboards. Nothing in it identifies a user or a session.
async fn metrics<D: Database>(State(state): State<AppState<D>>) -> Response {
    let mut text = state.metrics().render();
    // The key gauges scan the session store: a scrape's cost, not a request's.
    let auth = &state.0.auth;
    match auth.sessions_per_key(state.now()).await {
        Ok(sessions) => text.push_str(&render_keys(auth.rotator().keyring(), &sessions)),
        Err(e) => tracing::warn!(error = %e, "metrics: counting sessions per key failed"),
    }
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    note(response, "metrics", None)
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
