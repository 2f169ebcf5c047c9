//! The cookie protocol's test harness: an app behind the layer with a clock the test
//! moves, and readers of what its responses set.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    missing_docs
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, Response};
use http_body_util::BodyExt;
use rotauth::{Config, ReplayPolicy, Timestamp, Token};
use rotauth_axum::{
    AuthLayer, Authenticated, Authenticator, CookieProtocol, Decided, MemoryStore, SignedIn,
};
use tower::ServiceExt;

use super::rotator;

pub const WINDOW_MS: u64 = 1_000;
pub const T0: u64 = 1_700_000_000_000;
pub const HOST: &str = "app.example";

pub struct Harness {
    pub auth: Authenticator<MemoryStore>,
    pub protocol: CookieProtocol,
    millis: Arc<AtomicU64>,
}

impl Harness {
    pub fn new(protocol: CookieProtocol, replay: ReplayPolicy) -> Self {
        let millis = Arc::new(AtomicU64::new(T0));
        let clock = Arc::clone(&millis);
        let config = Config::builder()
            .batch_window(Duration::from_millis(WINDOW_MS))
            .replay_policy(replay)
            .build()
            .unwrap();
        let auth = Authenticator::new(rotator(config), MemoryStore::new())
            .clock(move || Timestamp::from_unix_millis(clock.load(Ordering::SeqCst)));
        Self {
            auth,
            protocol,
            millis,
        }
    }

    pub fn advance(&self) {
        self.millis.fetch_add(WINDOW_MS + 1, Ordering::SeqCst);
    }

    pub async fn sign_in(&self) -> SignedIn {
        let pending = self.auth.begin_sign_in("ada").await.unwrap();
        self.auth.sign_in(pending).await.unwrap()
    }

    /// `method /me` with `headers`, through the layer.
    pub async fn call(&self, method: &str, headers: &[(&str, &str)]) -> Response<Body> {
        let app = Router::new()
            .route(
                "/me",
                get(|who: Authenticated| async move { who.user_id })
                    .post(|who: Authenticated| async move { who.user_id }),
            )
            .layer(AuthLayer::new(self.auth.clone(), self.protocol.clone()));
        let mut request = Request::builder()
            .method(method)
            .uri("/me")
            .header("host", HOST);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        app.oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }
}

/// The `name=value` of every `Set-Cookie`, and the whole headers.
pub fn set_cookies(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `Cookie` header that sends back what a `Set-Cookie` set.
pub fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

pub fn generation(cookie: &str) -> u64 {
    let value = cookie.split_once('=').unwrap().1;
    Token::from_text(value.split_once('.').unwrap().1)
        .unwrap()
        .generation()
}

pub async fn body(response: Response<Body>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

pub fn decided(response: &Response<Body>) -> Decided {
    *response.extensions().get::<Decided>().unwrap()
}

pub const SAME_ORIGIN: (&str, &str) = ("origin", "https://app.example");
