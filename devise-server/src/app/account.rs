//! Account changes: a new password or email, and account deletion, ordered so that no
//! answer after a stored rotation lacks its token and no session of the old credentials
//! outlives them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rotauth_axum::{ChangeError, StoreError};
use serde_json::json;
use zeroize::Zeroizing;

use super::auth::checked_user;
use super::body::Body;
use super::error::AppError;
use super::log::{Event, note, note_detail};
use super::responses::{Invalid, Shape, email_error, errors, json_response, no_fields, user_json};
use super::state::{AppState, Checked, Rejection, Session};
use crate::bodies::AccountBody;
use crate::db::{Database, EmailChange, User};
use crate::email::normalize_email;
use crate::passwords::{hash_blocking, password_errors, verify_blocking};

/// A field's text.
fn text(field: Option<&Zeroizing<String>>) -> Option<&str> {
    field.map(|s| s.as_str())
}

/// The new password of an account update: devise's checks of the password, its
/// confirmation and the current password (verified against the stored hash under a
/// hashing permit), then the new hash. `Ok(None)`: no new password, or field errors.
async fn new_password_hash<D: Database>(
    state: &AppState<D>,
    user: &User,
    body: &AccountBody,
    field_errors: &mut Vec<(&'static str, String)>,
) -> Result<Option<Zeroizing<String>>, AppError> {
    let Some(password) = text(body.password.as_ref()) else {
        return Ok(None);
    };
    field_errors.extend(password_errors(
        Some(password),
        text(body.password_confirmation.as_ref()),
    ));
    match body.current_password.clone().filter(|c| !c.is_empty()) {
        None => field_errors.push(("current_password", "can't be blank".to_owned())),
        Some(current) => {
            let found = match state.db().user_by_email(&user.email).await? {
                Some(found) if found.user.id == user.id => found,
                _ => {
                    let unauthorized = errors(StatusCode::UNAUTHORIZED, "Unauthorized");
                    return Err(AppError::answer(unauthorized));
                }
            };
            if !verify_blocking(&state.0.hashing, found.password_hash, current).await {
                field_errors.push(("current_password", "is invalid".to_owned()));
            }
        }
    }
    if !field_errors.is_empty() {
        return Ok(None);
    }
    let password = Zeroizing::new(password.to_owned());
    match hash_blocking(&state.0.hashing, state.0.argon2.clone(), password).await {
        Ok(hash) => Ok(Some(Zeroizing::new(hash))),
        Err(e) => Err(AppError::Internal(format!("password hashing failed: {e}"))),
    }
}

/// What `PUT /auth` and `PUT /auth/password` committed.
struct AccountChanged<D: Database> {
    /// The request's rotation, to be returned with the answer.
    session: Session<D>,
    /// The user as the change left it.
    user: User,
    /// Whether the email or the password changed.
    changed: bool,
    /// Sessions a new password signed out.
    signed_out: usize,
}

/// The shared work of `PUT /auth` and `PUT /auth/password`, ordered so that no answer
/// after a committed rotation lacks its token:
///
/// 1. the credentials are checked without storing anything (`check`);
/// 2. every slow and fallible check (the current password, argon2 for the new one): a
///    failure here answers without a token and changes nothing, so the client's token
///    still works;
/// 3. the request's rotation is decided and stored;
/// 4. only then is the change written: on a validation error, a taken email or a database
///    failure the answer (422, 422, 503) still carries the token the rotation sent. A new
///    password is written between two sign-outs of every other session
///    (`Authenticator::change_credentials`): the first leaves no old session alive beside
///    a new password whatever fails next, the second fails every sign-in that read the old
///    hash meanwhile. A new email renames the sessions after the `users` row, which fails
///    every sign-in begun under the old email.
async fn account_change<D: Database>(
    state: &AppState<D>,
    check: Checked<D>,
    body: &AccountBody,
    shape: Shape,
) -> Result<AccountChanged<D>, AppError> {
    let user = checked_user(&check)?;
    let mut field_errors = Vec::new();
    let mut email = None;
    // `PUT /auth/password` sets the password only; `PUT /auth` may change the email too.
    if shape == Shape::Account
        && let Some(new) = body.email.as_deref()
    {
        let new = normalize_email(new);
        if let Some(message) = email_error(&new) {
            field_errors.push(("email", message.to_owned()));
        } else if new != user.email {
            match state.db().user_by_email(&new).await? {
                Some(_) => field_errors.push(("email", "has already been taken".to_owned())),
                None => email = Some(new),
            }
        }
    }
    let password_hash = new_password_hash(state, &user, body, &mut field_errors).await?;
    // A new email is a new `uid`: the answer must carry a token, or a client that keeps
    // its headers only from responses with a token (all of devise's clients) would go on
    // sending the old uid. Inside the batch window that takes a forced rotation.
    let forced = field_errors.is_empty() && email.is_some();
    let mut session = check
        .rotate(forced)
        .await
        .map_err(|rejection| AppError::refused(rejection, shape.unauthorized()))?;
    // From here on the rotation is stored: every answer carries its headers.
    if !field_errors.is_empty() {
        let invalid = Invalid {
            shape,
            email: user.email.clone(),
            errors: field_errors,
        };
        return Err(AppError::Invalid(invalid).sent_with(session));
    }
    let changed = email.is_some() || password_hash.is_some();
    let written = write_change(state, &mut session, &user, password_hash, email, shape).await;
    match written {
        Ok((user, signed_out)) => Ok(AccountChanged {
            session,
            user,
            changed,
            signed_out,
        }),
        Err(e) => Err(e.sent_with(session)),
    }
}

/// Writes an account change after the request's rotation: the new password hash, then the
/// new email, renaming the sessions so that the answer names the new `uid`. Returns the
/// user as changed and how many sessions the new password signed out.
async fn write_change<D: Database>(
    state: &AppState<D>,
    session: &mut Session<D>,
    user: &User,
    password_hash: Option<Zeroizing<String>>,
    email: Option<String>,
    shape: Shape,
) -> Result<(User, usize), AppError> {
    let mut signed_out = 0;
    if let Some(hash) = &password_hash {
        // Every other session, and every sign-in that read the old hash, ends with it.
        let change = state.db().set_password_hash(user, hash);
        let keep = Some(session.who().client_id);
        let owner = user.session_owner();
        match made(state.auth().change_credentials(&owner, keep, change).await) {
            Ok((true, n)) => signed_out = n,
            Ok((false, _)) => return Err(AppError::answer(shape.account_gone())),
            Err(e) => return Err(AppError::Unavailable(e.to_string())),
        }
    }
    let Some(new) = email else {
        return Ok((user.clone(), signed_out));
    };
    match state.db().set_email(user, &new).await? {
        EmailChange::Changed => {}
        EmailChange::Taken => {
            return Err(AppError::Invalid(Invalid {
                shape,
                email: user.email.clone(),
                errors: vec![("email", "has already been taken".to_owned())],
            }));
        }
        EmailChange::NoUser => return Err(AppError::answer(shape.account_gone())),
    }
    // The sessions follow the new email, a sign-in begun under the old one fails, and the
    // answer's `uid` header is the new email: the client must take it.
    let renamed = User {
        id: user.id,
        email: new,
    };
    session.rename_user(&renamed.session_owner()).await?;
    Ok((renamed, signed_out))
}

/// `PUT /auth/password` (devise_token_auth's password update, with
/// `check_current_password_before_update = :password`): sets a new password and signs out
/// every other session of the user, keeping this one. The request itself rotates like any
/// other, and every answer after authentication carries the auth headers.
pub(super) async fn change_password<D: Database>(
    State(state): State<AppState<D>>,
    check: Result<Checked<D>, Rejection>,
    Body(mut body): Body<AccountBody>,
) -> Result<Response, AppError> {
    let check = check.map_err(|r| AppError::refused(r, Shape::Password.unauthorized()))?;
    // This route always sets a password: a missing one is devise's "can't be blank".
    body.password
        .get_or_insert_with(|| Zeroizing::new(String::new()));
    let done = account_change(&state, check, &body, Shape::Password).await?;
    let body = json!({
        "success": true,
        "data": user_json(&done.user),
        "message": "Your password has been successfully updated.",
        "signed_out_sessions": done.signed_out,
    });
    Ok((done.session, json_response(StatusCode::OK, &body)).into_response())
}

/// `PUT /auth` (devise_token_auth's registration update): a new email (the new `uid`)
/// and/or a new password, which needs `current_password` and signs out every other
/// session. 200 `{"status":"success","data":{user}}` with the auth headers; 422 in
/// devise's `{"status":"error","errors":{...}}`; 404 `User not found.` without valid
/// credentials.
pub(super) async fn update_account<D: Database>(
    State(state): State<AppState<D>>,
    check: Result<Checked<D>, Rejection>,
    Body(mut body): Body<AccountBody>,
) -> Result<Response, AppError> {
    if body.email.is_none()
        && body.password.is_none()
        && body.password_confirmation.is_none()
        && body.current_password.is_none()
    {
        return Err(AppError::answer(no_fields("account update")));
    }
    let check = check.map_err(|r| AppError::refused(r, Shape::Account.unauthorized()))?;
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
    let done = account_change(&state, check, &body, Shape::Account).await?;
    let body = json!({"status": "success", "data": user_json(&done.user)});
    let response = json_response(StatusCode::OK, &body);
    let response = if done.changed {
        note_detail(response, "account updated".to_owned())
    } else {
        response
    };
    Ok((done.session, response).into_response())
}

/// `DELETE /auth` (devise_token_auth's registration destroy): deletes the user between
/// two sign-outs of all its sessions, so that neither a session nor a sign-in in flight
/// outlives the account. Any accepted token will do, as for sign-out; the answer carries
/// no token (there is no session left to hold one).
pub(super) async fn delete_account<D: Database>(
    State(state): State<AppState<D>>,
    check: Result<Checked<D>, Rejection>,
) -> Result<Response, AppError> {
    let not_found = || {
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"status": "error", "errors": ["Unable to locate account for destruction."]}),
        )
    };
    let check = check.map_err(|rejection| AppError::refused(rejection, not_found()))?;
    let user = checked_user(&check)?;
    // Every session of the account, and every sign-in in flight, ends with it.
    let deletion = state.db().delete_user(&user);
    let owner = user.session_owner();
    match made(
        state
            .auth()
            .change_credentials(&owner, None, deletion)
            .await,
    ) {
        Ok((true, _)) => {
            let message = format!("Account with UID '{}' has been destroyed.", user.email);
            let body = json!({"status": "success", "message": message});
            let deleted = json_response(StatusCode::OK, &body);
            Ok(note(deleted, Event::AccountDeleted, None))
        }
        Ok((false, _)) => {
            let detail = Some("account already gone".to_owned());
            Ok(note(not_found(), Event::Reject, detail))
        }
        Err(e) => Err(AppError::Unavailable(e.to_string())),
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
