//! A devise_token_auth-compatible auth server on rotauth, as a library: the router and its
//! state (`app`), the command line (`cli`), and the accounts and sessions in SQLite or
//! PostgreSQL (`db`). Every token is decided by rotauth-axum's request loop, read from and
//! written to devise's headers by its `DeviseProtocol`, and stored by its session stores.
//! The `devise_server` binary runs it; the tests run the same router on an ephemeral port.

pub mod app;
pub mod cli;
pub mod db;
