//! The HTTP side: devise_token_auth's routes on axum, over any [`Store`].
//!
//! Every authenticated request goes through [`authenticate`]: read the session row, let
//! rotauth decide, persist with compare-and-swap before answering, and on a lost swap
//! re-read and decide again (the retry is then part of the batch).

// Handlers return the response to send as the error of their helpers; boxing it would only
// add an allocation on the error path.
#![allow(clippy::result_large_err)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use rotauth::rand_core::TryRng;
use rotauth::{ClientId, Decision, DecisionKind, Rotator, Session, Timestamp, Token};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::headers::{self, Credentials};
use crate::store::{Store, StoreError, User};

/// Largest request body accepted: sign-up and password bodies are a few hundred bytes.
pub const BODY_LIMIT: usize = 16 * 1024;
/// devise_token_auth's `max_number_of_devices`.
pub const MAX_SESSIONS_PER_USER: usize = 10;
/// Lost compare-and-swaps before giving up with 503. Each loss means another request of the
/// same session committed in between, so a few are plenty; the bound keeps a pathological
/// storm from spinning.
const MAX_ATTEMPTS: usize = 8;
/// devise's `password_length` lower bound as the issue asks; the upper is devise's.
const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 128;
const MAX_EMAIL: usize = 254;

/// What a batch response carries in `access-token` and `expiry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchToken {
    /// `" "`, as devise_token_auth: a response that may arrive after a newer one never
    /// carries a token at all.
    Blank,
    /// The session's current token `T(n)` (as stored when this request was decided).
    Current,
}

/// Where the one-line-per-request log goes.
#[derive(Clone)]
pub enum LogSink {
    /// One line per request on standard error.
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
            Self::Stderr => eprintln!("{line}"),
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
    /// `--cors-origin`: the one origin allowed, or `*`.
    pub cors_origin: Option<HeaderValue>,
    /// Password hashing cost.
    pub argon2: argon2::Params,
    /// `--clock-offset-ms`: added to the wall clock for every decision (tests of instances
    /// whose clocks disagree).
    pub clock_offset_ms: i64,
    /// `--metrics`: serve `GET /metrics`.
    pub metrics: bool,
}

/// Counters since start, served at `GET /metrics` with `--metrics` and printed at shutdown.
#[derive(Default)]
pub struct Metrics {
    /// Compare-and-swaps lost to another request of the same session (each one re-read and
    /// decided again).
    pub cas_conflicts: AtomicU64,
    /// Requests that lost [`MAX_ATTEMPTS`] swaps in a row and answered 503.
    pub cas_exhausted: AtomicU64,
    /// Authenticated decisions by kind, in `DECISION_KINDS` order.
    decisions: [AtomicU64; DECISION_KINDS.len()],
}

const DECISION_KINDS: [DecisionKind; 6] = DecisionKind::ALL;

impl Metrics {
    fn count(&self, kind: DecisionKind) {
        if let Some(counter) = DECISION_KINDS
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.decisions.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus' text format.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP rotauth_cas_conflicts_total Session updates that lost a compare-and-swap and were decided again.\n\
             # TYPE rotauth_cas_conflicts_total counter\n\
             rotauth_cas_conflicts_total {}",
            self.cas_conflicts.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP rotauth_cas_exhausted_total Requests that answered 503 after too many lost compare-and-swaps.\n\
             # TYPE rotauth_cas_exhausted_total counter\n\
             rotauth_cas_exhausted_total {}",
            self.cas_exhausted.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP rotauth_decisions_total Token decisions of authenticated requests.\n\
             # TYPE rotauth_decisions_total counter\n",
        );
        for (kind, counter) in DECISION_KINDS.iter().zip(&self.decisions) {
            let _ = writeln!(
                out,
                "rotauth_decisions_total{{kind=\"{}\"}} {}",
                kind.as_str(),
                counter.load(Ordering::Relaxed)
            );
        }
        out
    }
}

struct Inner<S> {
    store: S,
    settings: Settings,
    metrics: Metrics,
    /// A hash of a random password: unknown emails are checked against it, so that sign-in
    /// takes as long for them as for known ones.
    dummy_hash: String,
}

/// The shared state of the server.
pub struct AppState<S>(Arc<Inner<S>>);

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<S: Store> AppState<S> {
    /// Builds the state; hashes one random password for the unknown-email path.
    pub fn new(store: S, settings: Settings) -> Result<Self, String> {
        let mut password = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut password)
            .map_err(|e| format!("system RNG failed: {e}"))?;
        let dummy_hash = hash_password(&settings.argon2, &password)
            .map_err(|e| format!("password hashing failed: {e}"))?;
        Ok(Self(Arc::new(Inner {
            store,
            settings,
            metrics: Metrics::default(),
            dummy_hash,
        })))
    }

    /// The counters since start.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// This server's clock: the wall clock shifted by `--clock-offset-ms`.
    pub fn now(&self) -> Timestamp {
        let wall = now().unix_millis();
        let offset = self.0.settings.clock_offset_ms;
        let shifted = if offset >= 0 {
            wall.saturating_add(offset.unsigned_abs())
        } else {
            wall.saturating_sub(offset.unsigned_abs())
        };
        Timestamp::from_unix_millis(shifted)
    }

    fn store(&self) -> &S {
        &self.0.store
    }

    fn rotator(&self) -> &Rotator {
        &self.0.settings.rotator
    }
}

/// devise_token_auth's routes plus `PUT /auth/password`, with the body limit, CORS and the log.
pub fn router<S: Store>(state: AppState<S>) -> Router {
    let router = Router::new()
        .route("/auth", post(sign_up::<S>))
        .route("/auth/sign_in", post(sign_in::<S>))
        .route("/auth/validate_token", get(validate_token::<S>))
        .route("/auth/sign_out", delete(sign_out::<S>))
        .route(
            "/auth/password",
            axum::routing::put(change_password::<S>).patch(change_password::<S>),
        )
        .route("/demo/members_only", get(members_only::<S>));
    let router = if state.0.settings.metrics {
        router.route("/metrics", get(metrics::<S>))
    } else {
        router
    };
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), cors::<S>))
        .layer(middleware::from_fn_with_state(state.clone(), log::<S>))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve<S: Store>(
    listener: TcpListener,
    state: AppState<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The host's clock, in rotauth's terms.
pub fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_millis(millis)
}

// ---------------------------------------------------------------------------------------
// Responses

/// What the log line says about the request, set by handlers as a response extension.
#[derive(Clone)]
struct LogNote {
    kind: &'static str,
    detail: Option<String>,
}

fn note(mut response: Response, kind: &'static str, detail: Option<String>) -> Response {
    response.extensions_mut().insert(LogNote { kind, detail });
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn errors(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({"success": false, "errors": [message]}))
}

fn unavailable(e: &StoreError) -> Response {
    let mut response = errors(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service unavailable, please try again later.",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    note(response, "store_error", Some(e.to_string()))
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

/// The body as JSON, or the response to send instead: 413 beyond the limit, 400 when it
/// does not parse.
fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<Value, Response> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("Request body too large (limit {BODY_LIMIT} bytes).")
        } else {
            "Could not read the request body.".to_owned()
        };
        note(errors(status, &message), "bad_request", None)
    })?;
    serde_json::from_slice(&bytes).map_err(|_| {
        note(
            errors(
                StatusCode::BAD_REQUEST,
                "Malformed JSON in the request body.",
            ),
            "bad_request",
            None,
        )
    })
}

fn string_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
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

// ---------------------------------------------------------------------------------------
// Passwords

fn hash_password(params: &argon2::Params, password: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| e.to_string())?;
    Argon2::from(params)
        .hash_password_with_salt(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// Hashes on the blocking pool: argon2 takes tens of milliseconds on purpose.
async fn hash_blocking(params: argon2::Params, password: String) -> Result<String, String> {
    let password = zeroize::Zeroizing::new(password);
    tokio::task::spawn_blocking(move || hash_password(&params, password.as_bytes()))
        .await
        .map_err(|e| e.to_string())?
}

async fn verify_blocking(hash: String, password: String) -> bool {
    let password = zeroize::Zeroizing::new(password);
    tokio::task::spawn_blocking(move || {
        // The parameters come from the PHC string, not from the default instance.
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// devise's errors for a new password and its confirmation.
fn password_errors(
    password: Option<&str>,
    confirmation: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    match password {
        None | Some("") => errors.push(("password", "can't be blank".to_owned())),
        Some(p) if p.chars().count() < MIN_PASSWORD => errors.push((
            "password",
            format!("is too short (minimum is {MIN_PASSWORD} characters)"),
        )),
        Some(p) if p.chars().count() > MAX_PASSWORD => errors.push((
            "password",
            format!("is too long (maximum is {MAX_PASSWORD} characters)"),
        )),
        Some(_) => {}
    }
    // As devise: the confirmation is checked when it is sent.
    if let Some(confirmation) = confirmation {
        if Some(confirmation) != password {
            errors.push(("password_confirmation", "doesn't match Password".to_owned()));
        }
    }
    errors
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

/// A new session for `user`, stored, with the headers carrying `T(0)`.
async fn new_session<S: Store>(state: &AppState<S>, user: &User) -> Result<HeaderMap, Response> {
    let (session, token) = state
        .rotator()
        .try_sign_in(&mut rand::rngs::SysRng, state.now())
        .map_err(|e| internal(format!("system RNG failed: {e}")))?;
    state
        .store()
        .insert_session(user.id, &session, MAX_SESSIONS_PER_USER)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(headers::auth_headers(
        &session.client_id(),
        &user.email,
        Some((&token, session.expires_at())),
    ))
}

/// `POST /auth`: devise_token_auth's registration.
async fn sign_up<S: Store>(
    State(state): State<AppState<S>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let has_any = ["email", "password", "password_confirmation"]
        .iter()
        .any(|k| body.get(k).is_some());
    if !body.is_object() || !has_any {
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
    let email = string_field(&body, "email")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let password = string_field(&body, "password");
    let mut field_errors = Vec::new();
    if let Some(message) = email_error(&email) {
        field_errors.push(("email", message.to_owned()));
    }
    field_errors.extend(password_errors(
        password,
        string_field(&body, "password_confirmation"),
    ));
    let Some(password) = password.filter(|_| field_errors.is_empty()) else {
        return validation_failed(&email, &field_errors, "registration");
    };
    let hash = match hash_blocking(state.0.settings.argon2.clone(), password.to_owned()).await {
        Ok(hash) => hash,
        Err(e) => return internal(format!("password hashing failed: {e}")),
    };
    let user = match state.store().create_user(email.clone(), hash).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let taken = [("email", "has already been taken".to_owned())];
            return validation_failed(&email, &taken, "registration");
        }
        Err(e) => return unavailable(&e),
    };
    match new_session(&state, &user).await {
        Ok(headers) => note(
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
async fn sign_in<S: Store>(
    State(state): State<AppState<S>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match parse_body(body) {
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
    let (Some(email), Some(password)) = (
        string_field(&body, "email"),
        string_field(&body, "password"),
    ) else {
        return invalid();
    };
    let email = email.trim().to_ascii_lowercase();
    let found = match state.store().user_by_email(email).await {
        Ok(found) => found,
        Err(e) => return unavailable(&e),
    };
    let (user, hash) = match found {
        Some(found) => (Some(found.user), found.password_hash),
        None => (None, state.0.dummy_hash.clone()),
    };
    let verified = verify_blocking(hash, password.to_owned()).await;
    let Some(user) = user.filter(|_| verified) else {
        return invalid();
    };
    match new_session(&state, &user).await {
        Ok(headers) => note(
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

/// An authenticated request: who, and the headers its response must carry.
struct Authed {
    user: User,
    client: ClientId,
    headers: HeaderMap,
    kind: DecisionKind,
    /// Compare-and-swaps lost before this decision held (for the log).
    conflicts: usize,
}

enum AuthError {
    /// No usable credentials, or rotauth refused them (the reason, for the log).
    Unauthorized(Option<String>),
    /// The store failed: 503, no token.
    Unavailable(StoreError),
    /// A stored record does not decode: 500.
    Internal(String),
}

impl AuthError {
    /// The response for an error; `unauthorized` is the route's own 401 body.
    fn into_response(self, unauthorized: Response) -> Response {
        match self {
            Self::Unauthorized(reason) => note(unauthorized, "reject", reason),
            Self::Unavailable(e) => unavailable(&e),
            Self::Internal(detail) => internal(detail),
        }
    }
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e)
    }
}

/// `unbatch` in the query forces rotation, as devise's `params[:unbatch]`: any value but
/// `false` or `0`.
fn unbatch(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            key == "unbatch" && value != "false" && value != "0"
        })
    })
}

/// Parses the credentials and reads the session; `Ok(None)` is any unauthenticated case.
async fn load<S: Store>(
    state: &AppState<S>,
    credentials: &Credentials,
    client: ClientId,
) -> Result<Option<(User, Session, u64)>, AuthError> {
    let Some(stored) = state.store().session(client).await? else {
        return Ok(None);
    };
    // devise finds the user by `uid`, then the token among that user's clients.
    if stored.user.email != credentials.uid {
        return Ok(None);
    }
    let session = Session::decode(&stored.record)
        .map_err(|e| AuthError::Internal(format!("stored session does not decode: {e}")))?;
    Ok(Some((stored.user, session, stored.version)))
}

/// The heart of the host: decide, persist first with compare-and-swap, retry on a lost
/// swap, and build the five headers.
async fn authenticate<S: Store>(
    state: &AppState<S>,
    request_headers: &HeaderMap,
    force_rotation: bool,
) -> Result<Authed, AuthError> {
    let credentials = headers::credentials(request_headers)
        .ok_or_else(|| AuthError::Unauthorized(Some("no credentials".to_owned())))?;
    let client: ClientId = credentials
        .client
        .parse()
        .map_err(|_| AuthError::Unauthorized(Some("malformed client id".to_owned())))?;
    let rotator = state.rotator();
    let mut first_read: Option<u64> = None;
    for conflicts in 0..MAX_ATTEMPTS {
        let Some((user, session, version)) = load(state, &credentials, client).await? else {
            return Err(AuthError::Unauthorized(Some("no such session".to_owned())));
        };
        let mut request = rotauth::Request::new(credentials.token.as_str(), state.now());
        // A forced rotation that lost its race to a rotation is already done: the winner
        // moved the session on and sent the new token. Forcing again would rotate once more
        // and hand this burst a second new token.
        let read = *first_read.get_or_insert(session.generation());
        if force_rotation && session.generation() == read {
            request = request.force_rotation();
        }
        let decision = rotator.decide(&session, request);
        match decision {
            Decision::Reject { reason } => {
                state.metrics().count(DecisionKind::Reject);
                return Err(AuthError::Unauthorized(Some(reason.to_string())));
            }
            Decision::Revoke { reason } => {
                state.metrics().count(DecisionKind::Revoke);
                state.store().delete_session(client).await?;
                return Err(AuthError::Unauthorized(Some(format!(
                    "{reason}, session revoked"
                ))));
            }
            _ => {}
        }
        if let Some(next) = decision.session_to_store() {
            if !state.store().swap_session(version, next).await? {
                state
                    .metrics()
                    .cas_conflicts
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        let kind = decision.kind();
        state.metrics().count(kind);
        let stored = decision.session_to_store().unwrap_or(&session);
        let sent: Option<Token> = match &decision {
            Decision::Rotate { token, .. } | Decision::Reissue { token, .. } => Some(token.clone()),
            // Rotation off: the presented token stays valid and is echoed back.
            Decision::Accept { .. } => Token::from_text(&credentials.token).ok(),
            Decision::BatchReuse { .. } => match state.0.settings.batch_token {
                BatchToken::Blank => None,
                BatchToken::Current => rotator.current_token(stored),
            },
            Decision::Reject { .. } | Decision::Revoke { .. } => None,
        };
        let headers = headers::auth_headers(
            &client,
            &user.email,
            sent.as_ref().map(|t| (t, stored.expires_at())),
        );
        return Ok(Authed {
            user,
            client,
            headers,
            kind,
            conflicts,
        });
    }
    state
        .metrics()
        .cas_exhausted
        .fetch_add(1, Ordering::Relaxed);
    Err(AuthError::Unavailable(StoreError(format!(
        "{MAX_ATTEMPTS} compare-and-swap conflicts in a row"
    ))))
}

fn authed_response(authed: Authed, status: StatusCode, body: &Value) -> Response {
    let detail = (authed.conflicts > 0)
        .then(|| format!("decided again after CAS conflict x{}", authed.conflicts));
    note(
        with_headers(json_response(status, body), authed.headers),
        authed.kind.as_str(),
        detail,
    )
}

/// `GET /auth/validate_token`.
async fn validate_token<S: Store>(
    State(state): State<AppState<S>>,
    RawQuery(query): RawQuery,
    request_headers: HeaderMap,
) -> Response {
    match authenticate(&state, &request_headers, unbatch(query.as_deref())).await {
        Ok(authed) => {
            let body = json!({"success": true, "data": user_json(&authed.user)});
            authed_response(authed, StatusCode::OK, &body)
        }
        Err(e) => e.into_response(errors(
            StatusCode::UNAUTHORIZED,
            "Invalid login credentials",
        )),
    }
}

/// `GET /demo/members_only`: devise_token_auth's demo protected route.
async fn members_only<S: Store>(
    State(state): State<AppState<S>>,
    RawQuery(query): RawQuery,
    request_headers: HeaderMap,
) -> Response {
    match authenticate(&state, &request_headers, unbatch(query.as_deref())).await {
        Ok(authed) => {
            let body = json!({"data": {
                "message": format!("Welcome {}", authed.user.email),
                "user": user_json(&authed.user),
            }});
            authed_response(authed, StatusCode::OK, &body)
        }
        Err(e) => e.into_response(json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"errors": ["You need to sign in or sign up before continuing."]}),
        )),
    }
}

/// `DELETE /auth/sign_out`: any token the decision accepts (batch ones included) signs the
/// session out; nothing is rotated, and the response carries no auth headers.
async fn sign_out<S: Store>(
    State(state): State<AppState<S>>,
    request_headers: HeaderMap,
) -> Response {
    let not_found = || {
        errors(
            StatusCode::NOT_FOUND,
            "User was not found or was not logged in.",
        )
    };
    let Some(credentials) = headers::credentials(&request_headers) else {
        return note(not_found(), "reject", Some("no credentials".to_owned()));
    };
    let Ok(client) = credentials.client.parse::<ClientId>() else {
        return note(
            not_found(),
            "reject",
            Some("malformed client id".to_owned()),
        );
    };
    let (_, session, _) = match load(&state, &credentials, client).await {
        Ok(Some(found)) => found,
        Ok(None) => return note(not_found(), "reject", Some("no such session".to_owned())),
        Err(e) => return e.into_response(not_found()),
    };
    let decision = state.rotator().decide(
        &session,
        rotauth::Request::new(credentials.token.as_str(), state.now()),
    );
    match decision {
        Decision::Reject { reason } => {
            return note(not_found(), "reject", Some(reason.to_string()));
        }
        Decision::Revoke { reason } => {
            if let Err(e) = state.store().delete_session(client).await {
                return unavailable(&e);
            }
            return note(not_found(), "reject", Some(reason.to_string()));
        }
        _ => {}
    }
    match state.store().delete_session(client).await {
        Ok(true) => note(
            json_response(StatusCode::OK, &json!({"success": true})),
            "sign_out",
            None,
        ),
        Ok(false) => note(not_found(), "reject", Some("already signed out".to_owned())),
        Err(e) => unavailable(&e),
    }
}

/// `PUT /auth/password` (devise_token_auth's password update, with
/// `check_current_password_before_update = :password`): sets a new password and signs out
/// every other session of the user, keeping this one. The request itself rotates like any
/// other, and every answer after authentication carries the auth headers.
async fn change_password<S: Store>(
    State(state): State<AppState<S>>,
    RawQuery(query): RawQuery,
    request_headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The body first: a malformed request changes nothing, not even the token.
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let authed = match authenticate(&state, &request_headers, unbatch(query.as_deref())).await {
        Ok(authed) => authed,
        Err(e) => return e.into_response(errors(StatusCode::UNAUTHORIZED, "Unauthorized")),
    };
    let password = string_field(&body, "password");
    let confirmation = string_field(&body, "password_confirmation");
    let current = string_field(&body, "current_password").unwrap_or("");
    let mut field_errors = password_errors(password, confirmation);
    let found = match state.store().user_by_email(authed.user.email.clone()).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return with_headers(
                errors(StatusCode::UNAUTHORIZED, "Unauthorized"),
                authed.headers,
            );
        }
        Err(e) => return unavailable(&e),
    };
    if !verify_blocking(found.password_hash, current.to_owned()).await {
        field_errors.push(("current_password", "is invalid".to_owned()));
    }
    let Some(password) = password.filter(|_| field_errors.is_empty()) else {
        return with_headers(
            validation_failed(&authed.user.email, &field_errors, "password"),
            authed.headers,
        );
    };
    let hash = match hash_blocking(state.0.settings.argon2.clone(), password.to_owned()).await {
        Ok(hash) => hash,
        Err(e) => return internal(format!("password hashing failed: {e}")),
    };
    match state
        .store()
        .change_password(authed.user.id, hash, authed.client)
        .await
    {
        Ok(signed_out) => {
            let body = json!({
                "success": true,
                "data": user_json(&authed.user),
                "message": "Your password has been successfully updated.",
                "signed_out_sessions": signed_out,
            });
            authed_response(authed, StatusCode::OK, &body)
        }
        Err(e) => unavailable(&e),
    }
}

/// `GET /metrics` (with `--metrics`): counters in Prometheus' text format, for load tools
/// and dashboards. Nothing in it identifies a user or a session.
async fn metrics<S: Store>(State(state): State<AppState<S>>) -> Response {
    let mut response = (StatusCode::OK, state.metrics().render()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    note(response, "metrics", None)
}

// ---------------------------------------------------------------------------------------
// Middleware

const EXPOSED: &str = "access-token, client, uid, expiry, token-type, authorization";
const ALLOWED_HEADERS: &str =
    "access-token, client, uid, expiry, token-type, authorization, content-type";

/// CORS for `--cors-origin`: browsers on that origin may send and read the auth headers.
async fn cors<S: Store>(
    State(state): State<AppState<S>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(allowed) = state.0.settings.cors_origin.clone() else {
        return next.run(request).await;
    };
    let origin = request.headers().get(header::ORIGIN).cloned();
    let matches = origin
        .as_ref()
        .is_some_and(|o| allowed.as_bytes() == b"*" || o == allowed);
    if !matches {
        return next.run(request).await;
    }
    let allow_origin = if allowed.as_bytes() == b"*" {
        allowed
    } else {
        origin.unwrap_or(allowed)
    };
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        note(response, "preflight", None)
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// One line per request: method, path (never the query, which may carry credentials),
/// status, decision kind, latency. Never a token: handlers only note the kind and a reason.
async fn log<S: Store>(State(state): State<AppState<S>>, request: Request, next: Next) -> Response {
    let sink = &state.0.settings.log;
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
