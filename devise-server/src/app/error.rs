//! The server's errors as responses, so that handlers use `?`: each in devise's shape,
//! with the log's word for it.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rotauth_axum::{DeviseProtocol, Protocol, Rotation, StoreError};

use super::log::{Event, note};
use super::responses::{Invalid, errors};
use super::state::Rejection;
use crate::bodies::BodyError;

/// Why a request was not answered as asked.
pub(crate) enum AppError {
    /// The database failed: the protocol's 503 (with `Retry-After`), no token; the detail
    /// goes to the log.
    Unavailable(String),
    /// 500; the detail goes to the log.
    Internal(String),
    /// A body that is not JSON or a form, too long, or malformed: 415, 413 or 400.
    Body(BodyError),
    /// A body that could not be read off the connection: its status.
    Unreadable(StatusCode),
    /// Too many sign-ins or sign-ups: 429 with `Retry-After` (this long, in whole seconds).
    Throttled(Duration),
    /// Devise's 422 with field errors.
    Invalid(Invalid),
    /// An answer made already: a refusal in the route's shape, or one sent with the
    /// headers of the request's rotation (boxed: a response is large, and an error path's
    /// allocation is cheaper than every `Result` carrying one).
    Answer(Box<Response>),
}

impl AppError {
    /// An answer made already.
    pub(super) fn answer(response: Response) -> Self {
        Self::Answer(Box::new(response))
    }

    /// A refused request answered with `refused` (the route's own 401 or 404 body), or
    /// the protocol's 503 when the loop could not decide.
    pub(super) fn refused(rejection: Rejection, refused: Response) -> Self {
        Self::answer(rejection.refused_with(refused))
    }

    /// This error, answered with the headers of `session`'s rotation: once a rotation is
    /// stored, every answer carries its token, or the client would be left holding the
    /// token before it.
    pub(super) fn sent_with<S, P: Protocol>(self, session: Rotation<S, P>) -> Self {
        Self::answer((session, self).into_response())
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<BodyError> for AppError {
    fn from(e: BodyError) -> Self {
        Self::Body(e)
    }
}

/// rotauth-axum's sign-in and sign-out errors: the store's is a 503, a sign-in that a
/// credential change overtook is refused as a wrong password would be.
impl From<rotauth_axum::Error> for AppError {
    fn from(e: rotauth_axum::Error) -> Self {
        match e {
            rotauth_axum::Error::Store(e) => e.into(),
            rotauth_axum::Error::CredentialsChanged => Self::answer(note(
                errors(
                    StatusCode::UNAUTHORIZED,
                    "Invalid login credentials. Please try again.",
                ),
                Event::SignInFailed,
                Some("credentials changed".to_owned()),
            )),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            // The protocol's 503, as the request loop answers one: a client sees one
            // shape of "try again", whichever part of the server failed.
            Self::Unavailable(detail) => note(
                DeviseProtocol::new().unavailable(),
                Event::StoreError,
                Some(detail),
            ),
            Self::Internal(detail) => note(
                errors(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error."),
                Event::Error,
                Some(detail),
            ),
            Self::Body(error) => {
                let status = match error {
                    BodyError::UnsupportedContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    BodyError::Malformed(_) => StatusCode::BAD_REQUEST,
                };
                note(errors(status, &error.to_string()), Event::BadRequest, None)
            }
            Self::Unreadable(status) => note(
                errors(status, "Could not read the request body."),
                Event::BadRequest,
                None,
            ),
            Self::Throttled(wait) => {
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
                note(response, Event::Throttled, None)
            }
            Self::Invalid(invalid) => invalid.into_response(),
            Self::Answer(response) => *response,
        }
    }
}
