//! The demo page and the metrics.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::log::{Event, note};
use super::state::AppState;
use crate::db::Database;
use crate::metrics::render_keys;

/// The demo page, embedded in the binary: one HTML file with its script and styles, no
/// build step.
pub(super) const PAGE: &str = include_str!("../page.html");

/// `GET /`: the page that shows rotation happen, with this server's batch window filled in.
/// Its script is inline, so the policy allows inline script and style and nothing from
/// anywhere else; it talks to this origin only.
pub(super) async fn page<D: Database>(State(state): State<AppState<D>>) -> Response {
    let window = state.auth().rotator().config().batch_window().as_millis();
    let html = PAGE.replace("__BATCH_WINDOW_MS__", &window.to_string());
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    note(response, Event::Page, None)
}

/// `GET /metrics` (with `--metrics`): counters in Prometheus' text format, for load tools
/// and dashboards. Nothing in it identifies a user or a session.
pub(super) async fn metrics<D: Database>(State(state): State<AppState<D>>) -> Response {
    let mut text = state.metrics().render();
    // The key gauges scan the session store: a scrape's cost, not a request's.
    let auth = state.auth();
    match auth.sessions_per_key(state.now()).await {
        Ok(sessions) => text.push_str(&render_keys(auth.rotator().keyring(), &sessions)),
        Err(e) => tracing::warn!(error = %e, "metrics: counting sessions per key failed"),
    }
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    note(response, Event::Metrics, None)
}
