//! rotauth for axum and tower: per-request token rotation as a layer, an extractor and a
//! session store.
//!
//! [rotauth](https://docs.rs/rotauth) decides, for one request, whether the caller's token
//! is kept, rotated, let through as part of a batch or refused; it is pure and stores
//! nothing. This crate is the part every web host needs around it, written once:
//!
//! - [`SessionStore`], the storage contract (load, insert, compare-and-swap, delete, list
//!   and delete a user's sessions), with [`MemoryStore`] and, behind features,
//!   `SqliteStore` and `PostgresStore` on sqlx pools, `TokioPostgresStore` on
//!   tokio-postgres and `RedisStore` on a redis connection manager;
//! - [`Authenticator`], the request loop: decide, store with compare-and-swap before
//!   answering, decide again on a lost swap (a bounded number of times), ride out a
//!   failing store for a few seconds and then answer 503 without a token, delete a revoked
//!   session; and sign-in with a per-user cap;
//! - [`Protocol`], how credentials and tokens travel: [`DeviseProtocol`]
//!   (devise_token_auth's headers), [`BearerProtocol`] (one header each way) and
//!   [`CookieProtocol`] (one httpOnly `__Host-` cookie for browser apps, never cleared by a
//!   refusal, with CSRF screening that answers a forged request 403 before the loop spends
//!   a rotation on it, [`Protocol::screen`]);
//! - [`AuthLayer`], a tower layer for any service, and [`Authenticated`], the axum
//!   extractor handlers behind it take;
//! - per-route extractors for routes without the layer: [`Rotation`], which stores the
//!   request's decision and writes its reply into the response it is returned with, and
//!   [`Check`], which decides without storing (sign-out, account deletion, a check before
//!   slow work that rotates afterwards); both are rejected with an [`AuthRejection`],
//!   which the protocol renders, or whose refusal a route answers in a shape of its own;
//! - [`Decided`], what the loop came to for a request (its decision, lost swaps, why it
//!   was refused or answered 503), in every response's extensions, for logs and metrics.
//!
//! # Using it
//!
//! ```no_run
//! use axum::{Router, extract::State, routing::{get, post}};
//! use rotauth::{Config, KeyId, Keyring, Rotator};
//! use rotauth_axum::{AuthLayer, Authenticated, Authenticator, BearerProtocol, MemoryStore, Protocol};
//!
//! type Auth = Authenticator<MemoryStore>;
//!
//! async fn sign_in(State(auth): State<Auth>) -> Result<impl axum::response::IntoResponse, rotauth_axum::Error> {
//!     // Begin before the password hash is read, so that a password change in between
//!     // fails this sign-in; check the password (not shown); then:
//!     let pending = auth.begin_sign_in("alice").await?;
//!     let signed_in = auth.sign_in(pending).await?;
//!     Ok(BearerProtocol::new().sign_in_headers(&signed_in))
//! }
//!
//! async fn me(who: Authenticated) -> String {
//!     who.user_id
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The key comes from your secret store; at least 32 random bytes.
//! let rotator = Rotator::new(Keyring::new(KeyId(1), &[7u8; 32])?, Config::default());
//! let auth = Authenticator::new(rotator, MemoryStore::new());
//! let app = Router::new()
//!     .route("/me", get(me))
//!     .layer(AuthLayer::new(auth.clone(), BearerProtocol::new()))
//!     .route("/sign_in", post(sign_in))
//!     .with_state(auth);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Routes added after `.layer(..)` (here `/sign_in`) are not behind it.
//!
//! # Per-route extractors
//!
//! Without the layer, a handler takes a [`Rotation`] (or a [`Check`]) and returns it with
//! its response; both read the [`Authenticator`] and the [`Protocol`] from the router's
//! state through [`FromRef`](axum::extract::FromRef). A handler that takes
//! `Result<Rotation<S, P>, AuthRejection<P>>` answers a refusal its own way and keeps the
//! protocol's 503:
//!
//! ```
//! use axum::{Router, extract::FromRef, response::{IntoResponse, Response}, routing::get};
//! use rotauth_axum::{AuthRejection, Authenticator, DeviseProtocol, MemoryStore, Rotation};
//!
//! #[derive(Clone)]
//! struct App {
//!     auth: Authenticator<MemoryStore>,
//!     protocol: DeviseProtocol,
//! }
//! // `#[derive(FromRef)]` with axum's `macros` feature writes these two.
//! impl FromRef<App> for Authenticator<MemoryStore> {
//!     fn from_ref(app: &App) -> Self {
//!         app.auth.clone()
//!     }
//! }
//! impl FromRef<App> for DeviseProtocol {
//!     fn from_ref(app: &App) -> Self {
//!         app.protocol
//!     }
//! }
//!
//! type Session = Rotation<MemoryStore, DeviseProtocol>;
//!
//! async fn validate(session: Result<Session, AuthRejection<DeviseProtocol>>) -> Response {
//!     match session {
//!         Ok(session) => {
//!             let body = format!(r#"{{"success":true,"uid":"{}"}}"#, session.who().uid);
//!             (session, body).into_response()
//!         }
//!         Err(rejection) => rejection.refused_with((
//!             http::StatusCode::UNAUTHORIZED,
//!             r#"{"success":false,"errors":["Invalid login credentials"]}"#,
//!         )),
//!     }
//! }
//! # let _: Router<App> = Router::new().route("/auth/validate_token", get(validate));
//! ```
//!
//! # Guarantees
//!
//! - **No token is sent that is not stored.** The [`Reply`] that carries a token exists
//!   only after the store acknowledged the write that makes it valid; sign-in returns the
//!   token only after the insert.
//! - **One rotation per batch window**, across threads and servers, as long as the store
//!   keeps the compare-and-swap contract of [`SessionStore`]. Concurrent requests that
//!   lose the swap decide again and become batch members: they are served without a token.
//! - **A store failure never leaks a token, and one shorter than the patience logs
//!   nobody out**: the request tries the store again for up to
//!   [`Authenticator::STORE_PATIENCE`] (a write whose acknowledgement was lost is read
//!   back, and its token sent), then answers 503 with `Retry-After: 1`, and the client
//!   retries with the token it has. A longer failure while a write's fate is unknown can
//!   leave the client a token behind, which Strict mode refuses after the batch window
//!   and Recover mode reissues (see [`Authenticator::store_patience`]).
//! - **Refused requests never reach the handler** (unless it takes the
//!   [`AuthRejection`] to choose its refusal body).
//! - **No reply is lost silently**: a [`Rotation`] dropped with an unsent new token is
//!   logged as an error.
//! - Tokens and records are wiped from memory when dropped and never logged; logs go
//!   through `tracing` (client ids and decision kinds at `debug`, store failures at
//!   `debug` while the request tries again and at `warn` when it answers 503,
//!   revocations at `info`). A token written into a response header is copied
//!   into `http`'s `HeaderValue`, which this crate cannot wipe.
//!
//! # Limits
//!
//! - The per-user cap is enforced at each sign-in; two sign-ins of one user at the same
//!   moment can leave one session over the cap until the next.
//! - `SessionStore` uses `impl Future` methods, so it is not object-safe: an app picks its
//!   store type at compile time (`Authenticator<SqliteStore>`).
//! - The layer, the extractors and sign-in read the time from the authenticator's clock
//!   ([`Authenticator::clock`], the wall clock unless set); call
//!   [`Authenticator::authenticate`] directly to decide one request at another time.
//!
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | `sqlite` | `SqliteStore` on `sqlx::SqlitePool` |
//! | `postgres` | `PostgresStore` on `sqlx::PgPool` |
//! | `tokio-postgres` | `TokioPostgresStore` on tokio-postgres connections of its own |
//! | `redis` | `RedisStore` on `redis::aio::ConnectionManager` |
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authenticator;
mod error;
mod extract;
mod layer;
mod protocol;
mod request;
mod store;

pub use authenticator::{Authenticator, PendingSignIn};
pub use error::{ChangeError, Error};
pub use extract::{AuthRejection, Check, Rotation};
pub use layer::{AuthLayer, AuthService, MissingAuthLayer};
pub use protocol::{
    BearerProtocol, CookieProtocol, DeviseProtocol, Forbidden, InvalidCookieName, Protocol,
    SameSite,
};
pub use request::{Authenticated, Checked, Credentials, Decided, Outcome, SignedIn, Unavailable};
/// What a response carries, why a request is refused, and what a batch member is sent:
/// rotauth's request loop's own types, the same for every host.
pub use rotauth::exchange::{BatchToken, Refusal, Reply};
pub use store::memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use store::redis::RedisStore;
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteStore;
#[cfg(feature = "tokio-postgres")]
pub use store::tokio_pg::TokioPostgresStore;
pub use store::{BoxError, Record, SessionStore, SessionSummary, StoreError, StoredSession, Swap};

/// The core crate, re-exported so that its version always matches this one.
pub use rotauth;
