//! Responses: the JSON shapes devise answers in, the log note each response carries, and
//! the request bodies read into them.

use super::*;

/// What the log line says about the request, set by handlers as a response extension.
#[derive(Clone)]
pub(super) struct LogNote {
    pub(super) kind: &'static str,
    pub(super) detail: Option<String>,
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
pub(super) fn unavailable(detail: &dyn std::fmt::Display) -> Response {
    let mut response = errors(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service unavailable, please try again later.",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    note(response, "store_error", Some(detail.to_string()))
}

pub(super) fn internal(detail: String) -> Response {
    note(
        errors(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error."),
        "error",
        Some(detail),
    )
}

pub(super) fn user_json(user: &User) -> Value {
    json!({"id": user.id, "email": user.email, "uid": user.email, "provider": "email"})
}

pub(super) fn with_headers(mut response: Response, extra: HeaderMap) -> Response {
    response.headers_mut().extend(extra);
    response
}

/// A request body, typed (see `bodies`), or the response to send instead: 415 for a
/// `Content-Type` that is neither JSON nor a form, 413 beyond the limit, 400 when the body
/// does not parse or cannot be read, in one shape for all.
pub(super) fn parse_body<T: DeserializeOwned + Default>(
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

pub(super) fn body_refused(error: BodyError) -> Response {
    let status = match error {
        BodyError::UnsupportedContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::Malformed(_) => StatusCode::BAD_REQUEST,
    };
    note(errors(status, &error.to_string()), "bad_request", None)
}

pub(super) fn as_str(field: Option<&Zeroizing<String>>) -> Option<&str> {
    field.map(|s| s.as_str())
}

pub(super) async fn not_found() -> Response {
    note(
        errors(StatusCode::NOT_FOUND, "Not found."),
        "not_found",
        None,
    )
}

pub(super) async fn method_not_allowed() -> Response {
    note(
        errors(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed."),
        "method_not_allowed",
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

/// devise's 422 shape: `errors` maps fields to messages, plus `full_messages`.
pub(super) fn validation_failed(
    email: &str,
    field_errors: &[(&'static str, String)],
    top: &str,
) -> Response {
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
