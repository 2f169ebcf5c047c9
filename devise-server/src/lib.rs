//! A devise_token_auth-compatible auth server on rotauth, as a library: the routes and their
//! state (`app`), the request bodies they read (`bodies`), the time they decide at
//! (`clock`), the accept loop and its drain at
//! a stop signal (`connections`), the command line (`cli`), the signing keys (`keys`), the
//! accounts and sessions in SQLite or PostgreSQL (`db`), how emails are compared
//! (`email`), liveness and readiness (`health`), the abuse limits (`limits`), password
//! hashing (`passwords`) and the counters (`metrics`). Every token is decided by
//! rotauth-axum's request loop, read from and written to devise's headers by its
//! `DeviseProtocol`, and stored by its session stores. The `devise_server` binary runs it;
//! the tests run the same router on an ephemeral port. The devise client the load and
//! flood tools and the tests share is `client` (feature `client`).
//!
//! The modules that need the server's dependencies are behind the default feature
//! `server`; the fuzz targets reach the body parsing with `default-features = false`,
//! without building the database drivers, the HTTP stack and the command line.

#[cfg(feature = "server")]
pub mod app;
pub mod bodies;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod connections;
#[cfg(feature = "server")]
pub mod db;
pub mod email;
#[cfg(feature = "server")]
pub mod health;
#[cfg(feature = "server")]
pub mod keys;
#[cfg(feature = "server")]
pub mod limits;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod passwords;
