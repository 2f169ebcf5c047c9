//! Account changes: a new password or email, and account deletion, ordered so that no
//! answer after a stored rotation lacks its token and no session of the old credentials
//! outlives them.

use super::*;

/// The new password of an account update: devise's checks of the password, its
/// confirmation and the current password (verified against the stored hash under a
/// hashing permit), then the new hash. `Ok(None)`: no new password, or field errors.
pub(super) async fn new_password_hash<D: Database>(
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
pub(super) struct AccountChanged {
    pub(super) authed: Authed,
    /// Whether the email or the password changed.
    pub(super) changed: bool,
    /// Sessions a new password signed out.
    pub(super) signed_out: usize,
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
pub(super) async fn account_change<D: Database>(
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
pub(super) async fn change_password<D: Database>(
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
pub(super) async fn update_account<D: Database>(
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
pub(super) async fn delete_account<D: Database>(
    State(state): State<AppState<D>>,
    parts: Parts,
) -> Response {
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
pub(super) fn made(
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
pub(super) fn account_gone(shape: &str) -> Response {
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
