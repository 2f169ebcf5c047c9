//! One line per request, and the decision counters: both read from what the response
//! carries, in one middleware outside the routes. A handler notes what it did
//! ([`note`]); rotauth-axum's extractors leave what the request loop decided
//! ([`Decided`]) in the response, whichever route ran.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rotauth_axum::Decided;

use super::AppState;
use crate::db::Database;

/// What a route did, as the log line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    SignUp,
    SignIn,
    SignInFailed,
    SignOut,
    AccountDeleted,
    /// Credentials refused, or the account gone.
    Reject,
    /// Devise's 422: field errors, or no fields at all.
    Invalid,
    /// A body that could not be read.
    BadRequest,
    Throttled,
    /// The database failed: 503.
    StoreError,
    /// 500.
    Error,
    NotFound,
    MethodNotAllowed,
    Page,
    Metrics,
    Health,
    Ready,
    NotReady,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Self::SignUp => "sign_up",
            Self::SignIn => "sign_in",
            Self::SignInFailed => "sign_in_failed",
            Self::SignOut => "sign_out",
            Self::AccountDeleted => "account_deleted",
            Self::Reject => "reject",
            Self::Invalid => "invalid",
            Self::BadRequest => "bad_request",
            Self::Throttled => "throttled",
            Self::StoreError => "store_error",
            Self::Error => "error",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Page => "page",
            Self::Metrics => "metrics",
            Self::Health => "health",
            Self::Ready => "ready",
            Self::NotReady => "not_ready",
        }
    }
}

/// What the log line says about the request, set by handlers as a response extension.
/// Without an event the line names the decision the response carries.
#[derive(Clone)]
struct LogNote {
    event: Option<Event>,
    detail: Option<String>,
}

/// `response`, logged as `event` with `detail` (never a secret).
pub(crate) fn note(mut response: Response, event: Event, detail: Option<String>) -> Response {
    response.extensions_mut().insert(LogNote {
        event: Some(event),
        detail,
    });
    response
}

/// `response`, logged as the decision it carries, with `detail`.
pub(super) fn note_detail(mut response: Response, detail: String) -> Response {
    response.extensions_mut().insert(LogNote {
        event: None,
        detail: Some(detail),
    });
    response
}

/// Counts the decision every response carries, and writes one line per request: method,
/// path (never the query, which may carry credentials), status, what happened, latency.
/// Never a token: handlers note an event and a reason, the loop a decision.
pub(super) async fn observe<D: Database>(
    State(state): State<AppState<D>>,
    request: Request,
    next: Next,
) -> Response {
    let sink = &state.0.log;
    let logging = !matches!(sink, super::LogSink::Off);
    let start = Instant::now();
    let head = logging.then(|| {
        let path: String = request.uri().path().chars().take(200).collect();
        (request.method().clone(), path)
    });
    let response = next.run(request).await;
    let decided = response.extensions().get::<Decided>().copied();
    if let Some(decided) = &decided {
        state.0.metrics.count(decided);
    }
    let Some((method, path)) = head else {
        return response;
    };
    let note = response.extensions().get::<LogNote>();
    let (kind, detail) = describe(note, decided.as_ref());
    let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
    sink.write(format!(
        "{method} {path} {status} {kind}{detail} {latency:.3}ms",
        status = response.status().as_u16(),
        latency = start.elapsed().as_secs_f64() * 1000.0,
    ));
    response
}

/// The log's word for a request and its reason: the handler's note first, then what the
/// loop decided.
fn describe(note: Option<&LogNote>, decided: Option<&Decided>) -> (&'static str, Option<String>) {
    let kind = note
        .and_then(|n| n.event)
        .map(Event::as_str)
        .or_else(|| decided.map(word));
    let detail = note
        .and_then(|n| n.detail.clone())
        .or_else(|| decided.and_then(reason));
    (kind.unwrap_or("-"), detail)
}

/// What the loop came to, in a word: the decision of a served request, `reject` for a
/// refused one, `store_error` for a 503.
fn word(decided: &Decided) -> &'static str {
    if decided.is_unavailable() {
        return Event::StoreError.as_str();
    }
    match (decided.refusal(), decided.decision()) {
        (None, Some(kind)) => kind.as_str(),
        _ => Event::Reject.as_str(),
    }
}

/// Why: the refusal, the 503's cause, or the swaps a served request lost first.
fn reason(decided: &Decided) -> Option<String> {
    if let Some(refusal) = decided.refusal() {
        return Some(refusal.to_string());
    }
    if decided.is_contention() {
        return Some("too many lost compare-and-swaps in a row".to_owned());
    }
    if decided.is_unavailable() {
        return Some("the session store failed".to_owned());
    }
    let lost = decided.lost_swaps();
    (lost > 0).then(|| format!("decided again after CAS conflict x{lost}"))
}
