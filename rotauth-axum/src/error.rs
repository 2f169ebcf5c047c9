//! Why sign-in, sign-out or a credential change failed.

use std::fmt;

use crate::store::StoreError;

/// Why sign-in, sign-out or a credential change failed. Nothing was sent; as a response
/// it is 401 for [`CredentialsChanged`](Self::CredentialsChanged), 503 otherwise.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    Store(StoreError),
    /// The operating system's RNG failed; no session was made.
    Rng,
    /// The user's sessions were signed out (a password change, an account deletion, a
    /// renamed user) after the sign-in began: the credentials it checked may be gone. No
    /// session was made; the client signs in again.
    CredentialsChanged,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => write!(f, "{e}"),
            Self::Rng => f.write_str("the system RNG failed"),
            Self::CredentialsChanged => {
                f.write_str("the user's credentials changed while the sign-in was checked")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(e) => Some(e),
            Self::Rng | Self::CredentialsChanged => None,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EpochChanged => Self::CredentialsChanged,
            other => Self::Store(other),
        }
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        if let Self::CredentialsChanged = self {
            tracing::info!(error = %self, "rotauth: sign-in refused");
            return crate::protocol::json_response(
                http::StatusCode::UNAUTHORIZED,
                r#"{"errors":["unauthorized"]}"#,
            );
        }
        tracing::error!(error = %self, "rotauth: sign-in or sign-out failed");
        crate::protocol::unavailable_response()
    }
}

/// Why [`Authenticator::change_credentials`](crate::Authenticator::change_credentials) failed, and whether the change was made.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChangeError<T, E> {
    /// Signing the user out before the change failed: the change did not run, nothing
    /// changed.
    NotStarted(Error),
    /// The change failed. The user's sessions but the kept one are signed out already.
    Change(E),
    /// The change was made (`T` is its result) and every session from before it is
    /// signed out, but signing out again after it failed: a sign-in that raced the change
    /// may have stored a session. Call [`Authenticator::sign_out_others`](crate::Authenticator::sign_out_others) again.
    NotConfirmed(T, Error),
}

impl<T, E: fmt::Display> fmt::Display for ChangeError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotStarted(e) => write!(f, "signing the user out before the change failed: {e}"),
            Self::Change(e) => write!(f, "{e}"),
            Self::NotConfirmed(_, e) => {
                write!(f, "signing the user out after the change failed: {e}")
            }
        }
    }
}
