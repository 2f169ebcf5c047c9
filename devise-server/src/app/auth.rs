//! The routes that only authenticate (validate, the demo route, sign-out), each answering
//! a refusal in devise's shape for it; rotauth-axum's extractors do the rest.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rotauth_axum::{Check, Protocol, Rotation};
use serde_json::json;

use super::error::AppError;
use super::log::{Event, note};
use super::responses::{errors, json_response, user_json};
use super::state::{AppState, Checked, Rejection, Session};
use super::transport::Transport;
use crate::db::{Database, User};

/// The user a rotated session belongs to, with the session; an error sent with the
/// session's headers when its owner is not a user of this server.
pub(super) fn signed_in<S>(
    session: Rotation<S, Transport>,
) -> Result<(Rotation<S, Transport>, User), AppError> {
    match User::from_session_owner(&session.who().user_id) {
        Some(user) => Ok((session, user)),
        None => Err(not_a_user().sent_with(session)),
    }
}

/// The user a checked session belongs to.
pub(super) fn checked_user<S>(check: &Check<S, Transport>) -> Result<User, AppError> {
    User::from_session_owner(&check.who().user_id).ok_or_else(not_a_user)
}

fn not_a_user() -> AppError {
    AppError::Internal("a session's owner is not a user".to_owned())
}

/// `GET /auth/validate_token`.
pub(super) async fn validate_token<D: Database>(
    session: Result<Session<D>, Rejection>,
) -> Result<Response, AppError> {
    let session = session.map_err(|rejection| {
        let invalid = errors(StatusCode::UNAUTHORIZED, "Invalid login credentials");
        AppError::refused(rejection, invalid)
    })?;
    let (session, user) = signed_in(session)?;
    let body = json!({"success": true, "data": user_json(&user)});
    Ok((session, json_response(StatusCode::OK, &body)).into_response())
}

/// `GET /demo/members_only`: devise_token_auth's demo protected route.
pub(super) async fn members_only<D: Database>(
    session: Result<Session<D>, Rejection>,
) -> Result<Response, AppError> {
    let session = session.map_err(|rejection| {
        let body = json!({"errors": ["You need to sign in or sign up before continuing."]});
        AppError::refused(rejection, json_response(StatusCode::UNAUTHORIZED, &body))
    })?;
    let (session, user) = signed_in(session)?;
    let body = json!({"data": {
        "message": format!("Welcome {}", user.email),
        "user": user_json(&user),
    }});
    Ok((session, json_response(StatusCode::OK, &body)).into_response())
}

/// `DELETE /auth/sign_out`: any token the decision accepts (batch ones included) signs the
/// session out; nothing is rotated, and the response carries no auth headers.
pub(super) async fn sign_out<D: Database>(
    State(state): State<AppState<D>>,
    check: Result<Checked<D>, Rejection>,
) -> Result<Response, AppError> {
    let not_found = || {
        errors(
            StatusCode::NOT_FOUND,
            "User was not found or was not logged in.",
        )
    };
    let check = check.map_err(|rejection| AppError::refused(rejection, not_found()))?;
    if state.auth().sign_out(check.who().client_id).await? {
        let mut signed_out = json_response(StatusCode::OK, &json!({"success": true}));
        signed_out
            .headers_mut()
            .extend(state.transport().sign_out_headers());
        Ok(note(signed_out, Event::SignOut, None))
    } else {
        let detail = Some("already signed out".to_owned());
        Ok(note(not_found(), Event::Reject, detail))
    }
}
