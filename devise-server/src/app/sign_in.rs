//! Sign-up and sign-in: a session begun before the password hash is read, throttled per
//! address and account, the hash upgraded when weak.

use std::net::IpAddr;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rotauth_axum::{PendingSignIn, Protocol as _};
use serde_json::json;
use zeroize::Zeroizing;

use super::body::Body;
use super::error::AppError;
use super::log::{Event, note};
use super::responses::{Invalid, Shape, email_error, errors, json_response, no_fields, user_json};
use super::state::AppState;
use super::transport::Screened;
use crate::bodies::{SignInBody, SignUpBody};
use crate::connections::ClientAddr;
use crate::db::{Database, User};
use crate::email::normalize_email;
use crate::passwords::{hash_blocking, password_errors, verify_blocking, weaker_than};

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
    if let Err(e) = state.db().upgrade_password_hash(user, old, &new).await {
        tracing::warn!(error = %e, "password hash upgrade failed");
    }
}

/// Begins a sign-in of `user` (see `Authenticator::begin_sign_in`): before the password
/// hash that the sign-in checks is read.
async fn begin_sign_in<D: Database>(
    state: &AppState<D>,
    user: &User,
) -> Result<PendingSignIn, AppError> {
    Ok(state.auth().begin_sign_in(&user.session_owner()).await?)
}

/// The session of a sign-in begun before its password check, stored, as devise's headers
/// carrying `T(0)` and the user's email as `uid`. A sign-in that a credential change (or
/// the account's deletion) overtook is refused as a wrong password would be.
async fn new_session<D: Database>(
    state: &AppState<D>,
    pending: PendingSignIn,
) -> Result<HeaderMap, AppError> {
    let signed_in = state
        .auth()
        .sign_in_with(pending, &mut rand::rngs::SysRng, state.now())
        .await?;
    Ok(state.transport().sign_in_headers(&signed_in))
}

/// A 200 with the headers of a new session, logged as `event`.
fn signed_in(headers: HeaderMap, body: &serde_json::Value, event: Event) -> Response {
    let mut response = json_response(StatusCode::OK, body);
    response.headers_mut().extend(headers);
    note(response, event, None)
}

/// The client's address, for throttling (absent when the router runs without the accept
/// loop of `connections`).
fn client_ip(addr: Option<Extension<ClientAddr>>) -> Option<IpAddr> {
    addr.map(|Extension(ClientAddr(addr))| addr.ip())
}

/// `POST /auth`: devise_token_auth's registration.
pub(super) async fn sign_up<D: Database>(
    _: Screened,
    State(state): State<AppState<D>>,
    addr: Option<Extension<ClientAddr>>,
    Body(body): Body<SignUpBody>,
) -> Result<Response, AppError> {
    if body.email.is_none() && body.password.is_none() && body.password_confirmation.is_none() {
        return Err(AppError::answer(no_fields("sign up")));
    }
    let email = normalize_email(body.email.as_deref().unwrap_or(""));
    let password = body.password.as_deref().map(String::as_str);
    let mut field_errors = Vec::new();
    if let Some(message) = email_error(&email) {
        field_errors.push(("email", message.to_owned()));
    }
    let confirmation = body.password_confirmation.as_deref().map(String::as_str);
    field_errors.extend(password_errors(password, confirmation));
    let Some(password) = password.filter(|_| field_errors.is_empty()) else {
        return Err(AppError::Invalid(Invalid {
            shape: Shape::SignUp,
            email,
            errors: field_errors,
        }));
    };
    state
        .0
        .throttle
        .check(client_ip(addr), &email)
        .map_err(AppError::Throttled)?;
    let password = Zeroizing::new(password.to_owned());
    let hash = hash_blocking(&state.0.hashing, state.0.argon2.clone(), password)
        .await
        .map_err(|e| AppError::Internal(format!("password hashing failed: {e}")))?;
    let Some(user) = state.db().create_user(&email, &hash).await? else {
        return Err(AppError::Invalid(Invalid {
            shape: Shape::SignUp,
            email,
            errors: vec![("email", "has already been taken".to_owned())],
        }));
    };
    let pending = begin_sign_in(&state, &user).await?;
    // Deleted or changed before its first session was stored: sign in again.
    let headers = new_session(&state, pending).await?;
    let body = json!({"status": "success", "data": user_json(&user)});
    Ok(signed_in(headers, &body, Event::SignUp))
}

/// `POST /auth/sign_in`: a new session (device) for the user.
pub(super) async fn sign_in<D: Database>(
    _: Screened,
    State(state): State<AppState<D>>,
    addr: Option<Extension<ClientAddr>>,
    Body(body): Body<SignInBody>,
) -> Result<Response, AppError> {
    let invalid = || {
        let invalid = errors(
            StatusCode::UNAUTHORIZED,
            "Invalid login credentials. Please try again.",
        );
        AppError::answer(note(invalid, Event::SignInFailed, None))
    };
    let (Some(email), Some(password)) = (body.email.as_deref(), body.password.clone()) else {
        return Err(invalid());
    };
    let email = normalize_email(email);
    state
        .0
        .throttle
        .check(client_ip(addr), &email)
        .map_err(AppError::Throttled)?;
    // The sign-in begins (rotauth-axum reads the user's epoch) before the password hash it
    // checks is read: a password change, an email change or a deletion from then on makes
    // it fail instead of storing a session the change was meant to end. The user's id is
    // part of what the epoch is kept under, hence a first look-up for the id, then the
    // hash read again after the sign-in began.
    let found = state.db().user_by_email(&email).await?;
    let pending = match &found {
        Some(found) => Some(begin_sign_in(&state, &found.user).await?),
        None => None,
    };
    let current = match (&found, &pending) {
        (Some(found), Some(_)) => state
            .db()
            .user_by_email(&email)
            .await?
            .filter(|again| again.user.id == found.user.id),
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
        return Err(invalid());
    };
    if weak {
        upgrade_hash(&state, &user, &hash, password).await;
    }
    let headers = new_session(&state, pending).await?;
    Ok(signed_in(
        headers,
        &json!({"data": user_json(&user)}),
        Event::SignIn,
    ))
}
