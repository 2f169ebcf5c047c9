//! The per-route extractors on a router without the layer: `Rotation` stores and writes
//! its reply, `Check` stores nothing until it rotates, `AuthRejection` lets a route choose
//! its refusal body but never its 503, the uid travels both ways, `Decided` reaches a
//! middleware, and the authenticator's clock decides.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use common::{Wrapped, rotator};
use http::{HeaderMap, StatusCode};
use rotauth::{Config, DecisionKind, RejectReason, Timestamp, Token};
use rotauth_axum::{
    AuthRejection, Authenticator, Check, Decided, DeviseProtocol, MemoryStore, Protocol, Refusal,
    Rotation, SessionStore,
};
use tower::ServiceExt;

type Store = Wrapped<MemoryStore>;
type Session = Rotation<Store, DeviseProtocol>;
type Checked = Check<Store, DeviseProtocol>;

const WINDOW_MS: u64 = 1_000;
const T0: u64 = 1_700_000_000_000;

#[derive(Clone)]
struct App {
    auth: Authenticator<Store>,
    protocol: DeviseProtocol,
    /// The `Decided` of every response, as a middleware outside the routes sees it.
    seen: Arc<Mutex<Vec<Decided>>>,
}

impl FromRef<App> for Authenticator<Store> {
    fn from_ref(app: &App) -> Self {
        app.auth.clone()
    }
}

impl FromRef<App> for DeviseProtocol {
    fn from_ref(app: &App) -> Self {
        app.protocol
    }
}

/// The app, its store, and its clock (Unix milliseconds, moved by the test).
struct Harness {
    app: App,
    store: Store,
    millis: Arc<AtomicU64>,
}

impl Harness {
    fn new() -> Self {
        let store = Wrapped::new(MemoryStore::new());
        let millis = Arc::new(AtomicU64::new(T0));
        let clock = Arc::clone(&millis);
        let config = Config::builder()
            .batch_window(Duration::from_millis(WINDOW_MS))
            .replay_policy(rotauth::ReplayPolicy::RevokeSession)
            .build()
            .unwrap();
        let auth = Authenticator::new(rotator(config), store.clone())
            .uid_in_user_id(|user_id| user_id.split_once(' ').map_or(user_id, |(_, uid)| uid))
            .store_patience(Duration::ZERO)
            .clock(move || Timestamp::from_unix_millis(clock.load(Ordering::SeqCst)));
        let app = App {
            auth,
            protocol: DeviseProtocol::new(),
            seen: Arc::default(),
        };
        Self { app, store, millis }
    }

    fn advance(&self, ms: u64) {
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }

    fn router(&self) -> Router {
        async fn me(session: Session) -> (Session, String) {
            let user = session.who().user_id.clone();
            (session, user)
        }
        async fn members(session: Result<Session, AuthRejection<DeviseProtocol>>) -> Response {
            match session {
                Ok(session) => (session, "welcome").into_response(),
                Err(rejection) => {
                    rejection.refused_with((StatusCode::UNAUTHORIZED, "members only"))
                }
            }
        }
        async fn rename(mut session: Session) -> Result<(Session, String), Response> {
            let new = format!(
                "{} new@example.com",
                session.who().user_id.split(' ').next().unwrap()
            );
            let moved = session
                .rename_user(&new)
                .await
                .map_err(IntoResponse::into_response)?;
            Ok((session, format!("{moved}")))
        }
        async fn sign_out(State(app): State<App>, check: Checked) -> String {
            let removed = app.auth.sign_out(check.who().client_id).await.unwrap();
            format!("{} {removed}", check.decision())
        }
        async fn slow(
            check: Checked,
        ) -> Result<(Session, &'static str), AuthRejection<DeviseProtocol>> {
            // The slow work would be here; then the request's rotation, forced.
            Ok((check.rotate(true).await?, "changed"))
        }
        async fn observe(State(app): State<App>, request: Request, next: Next) -> Response {
            let response = next.run(request).await;
            if let Some(decided) = response.extensions().get::<Decided>() {
                app.seen.lock().unwrap().push(*decided);
            }
            response
        }
        Router::new()
            .route("/me", get(me))
            .route("/members", get(members))
            .route("/rename", put(rename))
            .route("/sign_out", delete(sign_out))
            .route("/slow", put(slow))
            .layer(middleware::from_fn_with_state(self.app.clone(), observe))
            .with_state(self.app.clone())
    }

    /// Signs `user_id` in now; the devise headers of the sign-in response.
    async fn sign_in(&self, user_id: &str) -> Held {
        let auth = &self.app.auth;
        let signed_in = auth
            .sign_in(auth.begin_sign_in(user_id).await.unwrap())
            .await
            .unwrap();
        let headers = self.app.protocol.sign_in_headers(&signed_in);
        Held::from(&headers).unwrap()
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        held: &Held,
    ) -> (StatusCode, HeaderMap, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("access-token", held.token.as_str())
            .header("client", held.client.as_str())
            .header("uid", held.uid.as_str())
            .body(Body::empty())
            .unwrap();
        let response = self.router().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    fn seen(&self) -> Vec<Decided> {
        std::mem::take(&mut *self.app.seen.lock().unwrap())
    }

    async fn version(&self, held: &Held) -> Option<u64> {
        let client_id = held.client.parse().unwrap();
        self.store
            .inner
            .load(client_id)
            .await
            .unwrap()
            .map(|stored| stored.record.version())
    }
}

/// What a devise client holds.
#[derive(Clone, Debug)]
struct Held {
    token: String,
    client: String,
    uid: String,
}

impl Held {
    /// The credentials of a response that carries a token.
    fn from(headers: &HeaderMap) -> Option<Self> {
        let text = |name: &str| {
            headers
                .get(name)
                .map(|v| v.to_str().unwrap().trim().to_owned())
        };
        Some(Self {
            token: text("access-token").filter(|t| !t.is_empty())?,
            client: text("client")?,
            uid: text("uid")?,
        })
    }

    fn generation(&self) -> u64 {
        Token::from_text(&self.token).unwrap().generation()
    }
}

/// A route outside any layer rotates after the window, writes the new token with the uid
/// part of the user id (not the stored user id), and serves a batch member inside the
/// window without a token; the middleware sees each decision.
#[tokio::test]
async fn a_rotation_writes_its_reply_with_the_uid() {
    let h = Harness::new();
    let held = h.sign_in("42 ada@example.com").await;
    assert_eq!(
        held.uid, "ada@example.com",
        "the sign-in names the uid part"
    );
    h.advance(WINDOW_MS + 1);
    let (status, headers, body) = h.send(http::Method::GET, "/me", &held).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "42 ada@example.com");
    let next = Held::from(&headers).expect("a rotation carries a token");
    assert_eq!(next.generation(), 1);
    assert_eq!(next.uid, "ada@example.com");
    assert_eq!(h.version(&held).await, Some(1), "stored before it was sent");
    // Inside the window the old token is a batch member: served, blank token.
    let (status, headers, _) = h.send(http::Method::GET, "/me", &held).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["access-token"], " ");
    let seen = h.seen();
    assert_eq!(
        seen.iter().map(Decided::decision).collect::<Vec<_>>(),
        [Some(DecisionKind::Rotate), Some(DecisionKind::BatchReuse)]
    );
    assert!(seen.iter().all(|d| d.is_served() && d.lost_swaps() == 0));
}

/// The authenticator's clock decides, not the wall clock: before the virtual clock passes
/// the window, requests are batch members; after, the first one rotates.
#[tokio::test]
async fn the_authenticators_clock_decides() {
    let h = Harness::new();
    let held = h.sign_in("1 bo@example.com").await;
    h.advance(WINDOW_MS - 1);
    let (_, headers, _) = h.send(http::Method::GET, "/me", &held).await;
    assert_eq!(headers["access-token"], " ", "still inside the window");
    h.advance(2);
    let (_, headers, _) = h.send(http::Method::GET, "/me", &held).await;
    assert_eq!(Held::from(&headers).unwrap().generation(), 1);
}

/// A route's own refusal body for a refused token; the protocol's 503 with `Retry-After`
/// when the store fails, whatever body the route chose; `Decided` on both.
#[tokio::test]
async fn a_route_chooses_its_refusal_but_not_its_503() {
    let h = Harness::new();
    let held = h.sign_in("7 cy@example.com").await;
    // The same token with its last character changed: its tag does not verify.
    let mut token = held.token.clone();
    let last = if token.ends_with('A') { "B" } else { "A" };
    token.replace_range(token.len() - 1.., last);
    let forged = Held {
        token,
        ..held.clone()
    };
    let (status, headers, body) = h.send(http::Method::GET, "/members", &forged).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::UNAUTHORIZED, "members only")
    );
    assert!(headers.get("access-token").is_none());
    let wrong_uid = Held {
        uid: "7 cy@example.com".to_owned(),
        ..held.clone()
    };
    let (status, _, _) = h.send(http::Method::GET, "/members", &wrong_uid).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the stored user id is not the uid"
    );
    h.store.fail_load.store(true, Ordering::SeqCst);
    let (status, headers, body) = h.send(http::Method::GET, "/members", &held).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(body.contains("Service unavailable"), "{body}");
    let seen = h.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].decision(), Some(DecisionKind::Reject));
    assert!(matches!(seen[0].refusal(), Some(Refusal::Rejected(_))));
    assert_eq!(seen[1].refusal(), Some(Refusal::UserMismatch));
    assert_eq!(seen[1].decision(), None, "no decision before the uid check");
    assert!(seen[2].is_unavailable() && !seen[2].is_contention());
}

/// Renaming through the rotation moves the sessions and makes this very response name the
/// new uid; the old uid is refused from then on, the new one served.
#[tokio::test]
async fn a_renamed_user_is_named_by_the_response_that_renamed_it() {
    let h = Harness::new();
    let held = h.sign_in("9 old@example.com").await;
    h.advance(WINDOW_MS + 1);
    let (status, headers, body) = h.send(http::Method::PUT, "/rename", &held).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "1"));
    let renamed = Held::from(&headers).unwrap();
    assert_eq!(renamed.uid, "new@example.com");
    let stale = Held {
        uid: "old@example.com".to_owned(),
        ..renamed.clone()
    };
    let (status, _, _) = h.send(http::Method::GET, "/me", &stale).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = h.send(http::Method::GET, "/me", &renamed).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "9 new@example.com")
    );
}

/// A check stores nothing and writes no token (sign-out deletes the session it checked);
/// a replay revoked by the policy is refused through a check too.
#[tokio::test]
async fn a_check_stores_nothing() {
    let h = Harness::new();
    let held = h.sign_in("3 di@example.com").await;
    h.advance(WINDOW_MS + 1);
    let (status, headers, body) = h.send(http::Method::DELETE, "/sign_out", &held).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "rotate true"));
    assert!(headers.get("access-token").is_none());
    assert_eq!(h.version(&held).await, None, "signed out");
    assert!(
        h.seen().is_empty(),
        "a check puts no decision in the response"
    );
    let (status, _, _) = h.send(http::Method::DELETE, "/sign_out", &held).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.seen()[0].refusal(),
        Some(Refusal::Rejected(RejectReason::UnknownSession))
    );
}

/// A check followed by a forced rotation rotates inside the window (a response that must
/// carry a token); the check alone had stored nothing.
#[tokio::test]
async fn a_check_rotates_when_asked() {
    let h = Harness::new();
    let held = h.sign_in("5 ed@example.com").await;
    let (status, headers, _) = h.send(http::Method::PUT, "/slow", &held).await;
    assert_eq!(status, StatusCode::OK);
    let next = Held::from(&headers).expect("forced: a token inside the window");
    assert_eq!(next.generation(), 1);
    assert_eq!(h.version(&held).await, Some(1));
    assert_eq!(h.seen()[0].decision(), Some(DecisionKind::Rotate));
    // The token before it is now a replay after the window: revoked.
    h.advance(WINDOW_MS + 1);
    let (status, _, _) = h.send(http::Method::PUT, "/slow", &held).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(matches!(h.seen()[0].refusal(), Some(Refusal::Revoked(_))));
    assert_eq!(h.version(&held).await, None);
}
