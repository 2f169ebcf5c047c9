//! Sign-up and sign-in: a session begun before the password hash is read, throttled per
//! address and account, the hash upgraded when weak.

use super::*;

/// Replaces a weak password hash with one at the server's parameters, unless the hash
/// changed meanwhile (a password change wins). A failure costs the upgrade, not the
/// sign-in: it is logged and tried again at the next sign-in.
pub(super) async fn upgrade_hash<D: Database>(
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
pub(super) async fn begin_sign_in<D: Database>(
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
pub(super) async fn new_session<D: Database>(
    state: &AppState<D>,
    pending: PendingSignIn,
    _user: &User,
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
    Ok(Some(state.0.protocol.sign_in_headers(&signed_in)))
}

/// 429 with `Retry-After` (whole seconds, at least one) for a throttled sign-in or sign-up.
pub(super) fn too_many(wait: Duration) -> Response {
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

pub(super) fn client_ip(request_headers: &axum::http::Extensions) -> Option<IpAddr> {
    request_headers.get::<ClientAddr>().map(|a| a.0.ip())
}

/// `POST /auth`: devise_token_auth's registration.
pub(super) async fn sign_up<D: Database>(
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
pub(super) async fn sign_in<D: Database>(
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
