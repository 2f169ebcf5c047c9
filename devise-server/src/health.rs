//! What a load balancer and a process manager ask the server: `GET /healthz`, whether the
//! process answers at all, and `GET /readyz`, whether it should be sent requests (it is
//! not stopping, and its database answers); and the flag a stop signal sets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use crate::app::{AppState, Event, json_response, note};
use crate::db::Database;

/// How long `GET /readyz` waits for the database before it answers 503.
pub const DATABASE_BOUND: Duration = Duration::from_secs(1);

/// Whether the server has been told to stop. Set once, when the accept loop sees the stop
/// signal (`connections::serve`), and never cleared: a stopping server does not become
/// ready again.
#[derive(Debug, Default)]
pub struct Readiness {
    draining: AtomicBool,
}

impl Readiness {
    /// From now on `GET /readyz` answers 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether [`Self::start_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// `GET /healthz` and `GET /readyz` (and `HEAD`), for the app's router: neither needs
/// credentials, and both pass the router's layers (the log line, `Cache-Control:
/// no-store`) like any route.
pub fn routes<D: Database>() -> Router<AppState<D>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<D>))
}

/// Alive: 200 `{"status":"ok"}`, touching nothing (no database, no lock), so that a slow
/// or lost database never makes a process manager restart a process that is fine. It
/// stays 200 while the server drains.
async fn healthz() -> Response {
    note(
        json_response(StatusCode::OK, &json!({"status": "ok"})),
        Event::Health,
        None,
    )
}

/// Ready: 200 `{"status":"ready"}` when the server is not stopping and its database
/// answers [`Database::ping`] within [`DATABASE_BOUND`]; otherwise 503 with `Retry-After`
/// and `{"status":"unavailable","reason":"draining"|"database"}`. The database's error
/// goes to the log only.
async fn readyz<D: Database>(State(state): State<AppState<D>>) -> Response {
    if state.readiness().is_draining() {
        return not_ready(NotReady::Draining, None);
    }
    match tokio::time::timeout(DATABASE_BOUND, state.db().ping()).await {
        Ok(Ok(())) => note(
            json_response(StatusCode::OK, &json!({"status": "ready"})),
            Event::Ready,
            None,
        ),
        Ok(Err(e)) => not_ready(NotReady::Database, Some(format!("database: {e}"))),
        Err(_) => not_ready(
            NotReady::Database,
            Some(format!(
                "database: no answer within {} ms",
                DATABASE_BOUND.as_millis()
            )),
        ),
    }
}

/// Why the server is not ready.
#[derive(Clone, Copy)]
enum NotReady {
    /// It is stopping.
    Draining,
    /// Its database did not answer, or is missing a table.
    Database,
}

impl NotReady {
    fn as_str(self) -> &'static str {
        match self {
            Self::Draining => "draining",
            Self::Database => "database",
        }
    }
}

fn not_ready(reason: NotReady, detail: Option<String>) -> Response {
    let mut response = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"status": "unavailable", "reason": reason.as_str()}),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    let detail = detail.unwrap_or_else(|| reason.as_str().to_owned());
    note(response, Event::NotReady, Some(detail))
}
