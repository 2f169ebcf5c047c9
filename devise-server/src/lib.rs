//! A devise_token_auth-compatible auth server on rotauth, as a library: the router and its
//! state (`app`), the command line (`cli`), the devise header protocol (`headers`) and the
//! session stores on SQLite (`store`) and PostgreSQL (`pg_store`). The `devise_server`
//! binary runs it; the tests run the same router on an ephemeral port.

pub mod app;
pub mod cli;
pub mod headers;
pub mod pg_store;
pub mod store;
