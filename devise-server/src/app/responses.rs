//! Responses: the JSON shapes devise answers in, and the checks of an email.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::log::{Event, note};
use crate::db::User;

/// Longest email accepted (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;

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

pub(super) fn user_json(user: &User) -> Value {
    json!({"id": user.id, "email": user.email, "uid": user.email, "provider": "email"})
}

/// The routes whose errors devise shapes differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// `POST /auth`, devise's registration: `{"status":"error",...,"data":{...}}`.
    SignUp,
    /// `PUT /auth`, devise's registration update: `{"status":"error",...}`.
    Account,
    /// `PUT /auth/password`: `{"success":false,...}`.
    Password,
}

impl Shape {
    /// The answer to a request whose credentials are refused.
    pub(super) fn unauthorized(self) -> Response {
        match self {
            Self::Account => json_response(
                StatusCode::NOT_FOUND,
                &json!({"status": "error", "errors": ["User not found."]}),
            ),
            Self::SignUp | Self::Password => errors(StatusCode::UNAUTHORIZED, "Unauthorized"),
        }
    }

    /// The answer when the account went (deleted, or its email changed by another
    /// session) while the request changed it.
    pub(super) fn account_gone(self) -> Response {
        let body = match self {
            Self::Account | Self::SignUp => {
                json!({"status": "error", "errors": ["User not found."]})
            }
            Self::Password => json!({"success": false, "errors": ["User not found."]}),
        };
        note(
            json_response(StatusCode::NOT_FOUND, &body),
            Event::Reject,
            Some("account gone".to_owned()),
        )
    }
}

/// Devise's 422: `errors` maps fields to messages, plus `full_messages`, in the route's
/// shape (a sign-up's also echoes the email).
pub(crate) struct Invalid {
    pub(super) shape: Shape,
    pub(super) email: String,
    pub(super) errors: Vec<(&'static str, String)>,
}

impl IntoResponse for Invalid {
    fn into_response(self) -> Response {
        let mut map = serde_json::Map::new();
        let mut full = Vec::new();
        for (field, message) in &self.errors {
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
        let body = match self.shape {
            Shape::SignUp => json!({"status": "error", "errors": map,
                "data": {"id": null, "email": self.email, "uid": "", "provider": "email"}}),
            Shape::Account => json!({"status": "error", "errors": map}),
            Shape::Password => json!({"success": false, "errors": map}),
        };
        note(
            json_response(StatusCode::UNPROCESSABLE_ENTITY, &body),
            Event::Invalid,
            None,
        )
    }
}

/// Devise's 422 for a body without any of the fields a route takes.
pub(super) fn no_fields(what: &str) -> Response {
    let message = format!("Please submit proper {what} data in request body.");
    note(
        json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"status": "error", "errors": [message]}),
        ),
        Event::Invalid,
        None,
    )
}

pub(super) async fn not_found() -> Response {
    note(
        errors(StatusCode::NOT_FOUND, "Not found."),
        Event::NotFound,
        None,
    )
}

pub(super) async fn method_not_allowed() -> Response {
    note(
        errors(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed."),
        Event::MethodNotAllowed,
        None,
    )
}

/// devise's email format (`/\A[^@\s]+@[^@\s]+\z/`), restricted to visible ASCII because
/// the email travels back in the `uid` header.
pub(super) fn email_error(email: &str) -> Option<&'static str> {
    if email.is_empty() {
        return Some("can't be blank");
    }
    let valid = email.len() <= MAX_EMAIL
        && email.bytes().all(|b| b.is_ascii_graphic())
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    (!valid).then_some("is not an email")
}
