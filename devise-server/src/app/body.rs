//! The request body as an extractor: JSON or a form by its `Content-Type` (see
//! `bodies`), anything else refused before a byte of it is read.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::AppError;
use crate::bodies::{BodyError, Encoding};

/// A request body, typed: JSON or `application/x-www-form-urlencoded`. Rejected with
/// 415 for any other `Content-Type` (or none), 413 beyond the body limit, 400 when it
/// does not parse or cannot be read, in devise's error shape.
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for Body<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        let encoding = Encoding::of(content_type)?;
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => AppError::Body(BodyError::TooLarge),
                    status => AppError::Unreadable(status),
                })?;
        Ok(Self(encoding.parse(&bytes)?))
    }
}
