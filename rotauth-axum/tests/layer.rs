//! The layer and the protocols over real HTTP, with the in-memory store: what reaches the
//! handler, what each protocol sends, and that no token is ever sent before it is stored.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    missing_docs
)]

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::{
    Event, JournalProtocol, JournalStore, Schedule, assert_stored_before_sent, rotator, serve,
    unique,
};
use http::{Method, Request, Response, StatusCode};
use rotauth::{Config, Token};
use rotauth_axum::{
    AuthLayer, Authenticated, Authenticator, BearerProtocol, DeviseProtocol, MemoryStore,
};
use tower::ServiceExt;

fn short_window() -> Config {
    Config::builder()
        .batch_window(Duration::from_millis(300))
        .build()
        .unwrap()
}

/// Every token that reaches a client (sign-in, rotation, forced rotation, recovery) was
/// stored first. The journal interleaves the store's acknowledged writes with the
/// protocol's writes into responses; this test fails if any token is written into a
/// response before the write that makes it valid returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_is_sent_before_it_is_stored() {
    let journal = Arc::new(Mutex::new(Vec::new()));
    let store = JournalStore {
        inner: MemoryStore::new(),
        journal: Arc::clone(&journal),
    };
    let protocol = JournalProtocol {
        inner: DeviseProtocol::new(),
        journal: Arc::clone(&journal),
    };
    let config = Config::builder()
        .batch_window(Duration::from_millis(200))
        .mode(rotauth::Mode::Recover)
        .build()
        .unwrap();
    let server = Arc::new(serve(Authenticator::new(rotator(config), store), protocol).await);
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..8u64 {
        let server = Arc::clone(&server);
        clients.spawn(async move {
            let user = unique("order");
            let answer = server
                .request(Method::POST, &format!("/sign_in/{user}"), &[])
                .await;
            let client = answer.header("client").unwrap().to_owned();
            let mut token = answer.devise_token().unwrap();
            let mut schedule = Schedule::new(c + 11);
            for burst in 0..15 {
                let mut requests = tokio::task::JoinSet::new();
                for i in 0..3 + schedule.below(3) {
                    let server = Arc::clone(&server);
                    let (text, client, user) = (token.to_text(), client.clone(), user.clone());
                    let path = if burst % 3 == 2 && i == 0 {
                        "/ping?unbatch=true"
                    } else {
                        "/ping"
                    };
                    requests.spawn(async move {
                        let headers = [
                            ("access-token", text.as_str()),
                            ("client", client.as_str()),
                            ("uid", user.as_str()),
                        ];
                        server.request(Method::GET, path, &headers).await
                    });
                }
                while let Some(answer) = requests.join_next().await {
                    let answer = answer.unwrap();
                    assert_eq!(answer.status, 200, "{}", answer.body);
                    if let Some(new) = answer.devise_token() {
                        if new.generation() > token.generation() {
                            token = new;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(schedule.below(300))).await;
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    let journal = journal.lock().unwrap();
    let sent = assert_stored_before_sent(&journal);
    let rotations = journal
        .iter()
        .filter(|e| matches!(e, Event::Sent(_, g) if *g > 0))
        .count();
    assert!(
        sent >= 8 && rotations >= 16,
        "{sent} tokens sent, {rotations} rotations"
    );
}

/// The checker itself: a journal with a token sent before its write fails it.
#[test]
#[should_panic(expected = "was sent before it was stored")]
fn the_order_check_can_fail() {
    let client = rotauth::ClientId::from_bytes([1; 16]);
    assert_stored_before_sent(&[
        Event::Stored(client, 0),
        Event::Sent(client, 1),
        Event::Stored(client, 1),
    ]);
}

/// The plain protocol: sign in, rotate, batch, refuse; refused requests never reach the
/// handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_protocol_end_to_end() {
    let reached = Arc::new(AtomicUsize::new(0));
    let auth = Authenticator::new(rotator(short_window()), MemoryStore::new());
    let counter = Arc::clone(&reached);
    let app = Router::new()
        .route(
            "/me",
            get(move |who: Authenticated| async move {
                counter.fetch_add(1, Ordering::SeqCst);
                who.user_id
            }),
        )
        .layer(AuthLayer::new(auth.clone(), BearerProtocol::new()));

    let call = |app: Router, authorization: Option<String>, query: &str| {
        let mut request = Request::builder().uri(format!("/me{query}"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        app.oneshot(request.body(Body::empty()).unwrap())
    };
    let signed_in = auth
        .sign_in(auth.begin_sign_in("carol").await.unwrap())
        .await
        .unwrap();
    let headers = BearerProtocol::new().sign_in_headers_for_test(&signed_in);
    let first = headers
        .get("rotauth-token")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let authorization = |credentials: &str| Some(format!("Rotauth {credentials}"));

    // Inside the window: a batch member, no token.
    let response = call(app.clone(), authorization(&first), "").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("rotauth-token").is_none());
    assert_eq!(body(response).await, "carol");

    // Forced rotation: the next credentials in one header, not cacheable.
    let response = call(app.clone(), authorization(&first), "?unbatch=true")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let second = response.headers()["rotauth-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let (client, token) = second.split_once('.').unwrap();
    assert_eq!(client, signed_in.client_id.to_string());
    assert_eq!(Token::from_text(token).unwrap().generation(), 1);

    // After the window, the first token is a replay: 401, handler not reached.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = reached.load(Ordering::SeqCst);
    let response = call(app.clone(), authorization(&first), "").await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Rotauth");
    assert!(response.headers().get("rotauth-token").is_none());
    assert_eq!(body(response).await, r#"{"errors":["unauthorized"]}"#);
    for bad in [
        None,
        Some("Rotauth nonsense".to_owned()),
        Some("Basic abc".to_owned()),
    ] {
        let response = call(app.clone(), bad, "").await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        before,
        "refused requests never reach the handler"
    );

    // The second token rotates after the window.
    let response = call(app.clone(), authorization(&second), "").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let third = response.headers()["rotauth-token"].to_str().unwrap();
    assert_eq!(
        Token::from_text(third.split_once('.').unwrap().1)
            .unwrap()
            .generation(),
        2
    );
}

/// devise's shapes: five headers, blank on a batch, its 401 body, `uid` checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devise_protocol_over_http() {
    let server = serve(
        Authenticator::new(rotator(short_window()), MemoryStore::new()),
        DeviseProtocol::new(),
    )
    .await;
    let user = unique("dave");
    let answer = server
        .request(Method::POST, &format!("/sign_in/{user}"), &[])
        .await;
    assert_eq!(answer.status, 200);
    for name in [
        "access-token",
        "token-type",
        "client",
        "expiry",
        "uid",
        "authorization",
    ] {
        assert!(answer.header(name).is_some(), "sign-in sends {name}");
    }
    assert_eq!(answer.header("uid"), Some(user.as_str()));
    let token = answer.devise_token().unwrap().to_text();
    let client = answer.header("client").unwrap().to_owned();
    let headers = [
        ("access-token", token.as_str()),
        ("client", client.as_str()),
        ("uid", user.as_str()),
    ];
    let batch = server.request(Method::GET, "/ping", &headers).await;
    assert_eq!(batch.status, 200);
    // Sent as `" "`; HTTP parsers strip the blank, so clients see an empty value.
    assert_eq!(batch.header("access-token").map(str::trim), Some(""));
    assert_eq!(batch.header("expiry").map(str::trim), Some(""));
    assert_eq!(batch.header("client"), Some(client.as_str()));
    assert!(batch.header("authorization").is_none());
    assert_eq!(batch.body, user);

    // The same credentials in `Authorization: Bearer <base64 JSON>`.
    let json = format!(
        r#"{{"access-token":"{}","client":"{client}","uid":"{user}"}}"#,
        token.as_str()
    );
    let bearer = format!(
        "Bearer {}",
        <base64ct::Base64 as base64ct::Encoding>::encode_string(json.as_bytes())
    );
    let answer = server
        .request(
            Method::GET,
            "/ping?unbatch=true",
            &[("authorization", bearer.as_str())],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.devise_token().unwrap().generation(), 1);
    assert_eq!(answer.header("cache-control"), Some("no-store"));

    // Another user's uid, a forged token, nothing at all: 401 in devise's shape.
    let other = [
        ("access-token", token.as_str()),
        ("client", client.as_str()),
        ("uid", "mallory@example.com"),
    ];
    let forged_token = "A".repeat(55);
    let forged = [
        ("access-token", forged_token.as_str()),
        ("client", client.as_str()),
        ("uid", user.as_str()),
    ];
    for headers in [&other[..], &forged[..], &[][..]] {
        let answer = server.request(Method::GET, "/ping", headers).await;
        assert_eq!(answer.status, 401);
        assert_eq!(
            answer.body,
            r#"{"errors":["You need to sign in or sign up before continuing."]}"#
        );
        assert!(answer.header("access-token").is_none());
    }
}

/// The layer serves any tower service, not only axum routers.
#[tokio::test]
async fn layer_wraps_any_tower_service() {
    let auth = Authenticator::new(rotator(short_window()), MemoryStore::new());
    let service = tower::ServiceBuilder::new()
        .layer(AuthLayer::new(auth.clone(), BearerProtocol::new()))
        .service(tower::service_fn(|request: Request<String>| async move {
            let who = request
                .extensions()
                .get::<Authenticated>()
                .cloned()
                .unwrap();
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                bytes::Bytes::from(who.user_id),
            )))
        }));
    let signed_in = auth
        .sign_in(auth.begin_sign_in("erin").await.unwrap())
        .await
        .unwrap();
    let request = Request::builder()
        .header(
            "authorization",
            BearerProtocol::authorization(&signed_in.client_id, &signed_in.token).as_str(),
        )
        .body(String::new())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await, "erin");
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// A handler taking `Authenticated` without the layer in front: 500, not an anonymous
/// request served; `Option<Authenticated>` is `None`.
#[tokio::test]
async fn extractor_without_layer_is_a_server_error() {
    let app = Router::new()
        .route("/strict", get(|_: Authenticated| async { "served" }))
        .route(
            "/optional",
            get(|who: Option<Authenticated>| async move { format!("{}", who.is_some()) }),
        );
    let response = app
        .clone()
        .oneshot(Request::get("/strict").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let response = app
        .oneshot(Request::get("/optional").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(body(response).await, "false");
}

async fn body<B>(response: Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// `sign_in_headers` is a trait method; this keeps the call sites above short.
trait SignInHeaders {
    fn sign_in_headers_for_test(&self, signed_in: &rotauth_axum::SignedIn) -> http::HeaderMap;
}

impl<P: rotauth_axum::Protocol> SignInHeaders for P {
    fn sign_in_headers_for_test(&self, signed_in: &rotauth_axum::SignedIn) -> http::HeaderMap {
        self.sign_in_headers(signed_in)
    }
}

/// A store whose swaps always lose: the request gives up after the bound with 503, having
/// decided exactly `max_attempts` times, and sends nothing.
#[tokio::test]
async fn lost_swaps_are_bounded() {
    #[derive(Clone)]
    struct AlwaysLoses {
        inner: MemoryStore,
        loads: Arc<AtomicUsize>,
    }
    impl rotauth_axum::SessionStore for AlwaysLoses {
        async fn load(
            &self,
            client_id: rotauth::ClientId,
        ) -> Result<Option<rotauth_axum::StoredSession>, rotauth_axum::StoreError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            self.inner.load(client_id).await
        }
        async fn epoch(&self, u: &str) -> Result<u64, rotauth_axum::StoreError> {
            self.inner.epoch(u).await
        }
        async fn insert(
            &self,
            user_id: &str,
            epoch: u64,
            record: &rotauth_axum::Record,
        ) -> Result<(), rotauth_axum::StoreError> {
            self.inner.insert(user_id, epoch, record).await
        }
        async fn compare_and_swap(
            &self,
            _: u64,
            _: &rotauth_axum::Record,
        ) -> Result<rotauth_axum::Swap, rotauth_axum::StoreError> {
            Ok(rotauth_axum::Swap::Lost)
        }
        async fn delete(&self, c: rotauth::ClientId) -> Result<bool, rotauth_axum::StoreError> {
            self.inner.delete(c).await
        }
        async fn list(
            &self,
            u: &str,
        ) -> Result<Vec<rotauth_axum::SessionSummary>, rotauth_axum::StoreError> {
            self.inner.list(u).await
        }
        async fn delete_user_sessions(
            &self,
            u: &str,
            k: Option<rotauth::ClientId>,
        ) -> Result<usize, rotauth_axum::StoreError> {
            self.inner.delete_user_sessions(u, k).await
        }
        async fn rename_user(
            &self,
            from: &str,
            to: &str,
        ) -> Result<usize, rotauth_axum::StoreError> {
            self.inner.rename_user(from, to).await
        }
        async fn sessions_per_key(
            &self,
            now: rotauth::Timestamp,
        ) -> Result<Vec<(rotauth::KeyId, u64)>, rotauth_axum::StoreError> {
            self.inner.sessions_per_key(now).await
        }
    }
    let loads = Arc::new(AtomicUsize::new(0));
    let store = AlwaysLoses {
        inner: MemoryStore::new(),
        loads: Arc::clone(&loads),
    };
    let auth = Authenticator::new(rotator(short_window()), store);
    assert_eq!(Authenticator::<MemoryStore>::MAX_ATTEMPTS, 4);
    let t0 = rotauth::Timestamp::now();
    let signed_in = common::sign_in_at(&auth, "frank", t0).await;
    let credentials = rotauth_axum::Credentials {
        client_id: signed_in.client_id,
        token: signed_in.token.to_text().as_str().to_owned().into(),
        uid: None,
    };
    let later = rotauth::Timestamp::from_unix_millis(t0.unix_millis() + 1_000);
    let outcome = auth.authenticate(&credentials, later, false).await;
    assert!(
        matches!(
            outcome,
            rotauth_axum::Outcome::Unavailable(rotauth_axum::Unavailable::Contention)
        ),
        "{outcome:?}"
    );
    assert_eq!(loads.load(Ordering::SeqCst), 4);
    let auth = auth.max_attempts(2);
    loads.store(0, Ordering::SeqCst);
    let _ = auth.authenticate(&credentials, later, false).await;
    assert_eq!(loads.load(Ordering::SeqCst), 2);
}

/// A record that does not decode is refused with 401, never served and never a 503 loop.
#[tokio::test]
async fn corrupt_record_is_refused() {
    #[derive(Clone)]
    struct Corrupt;
    impl rotauth_axum::SessionStore for Corrupt {
        async fn load(
            &self,
            _: rotauth::ClientId,
        ) -> Result<Option<rotauth_axum::StoredSession>, rotauth_axum::StoreError> {
            // What a store reports when the bytes it read are not a record.
            rotauth_axum::Record::from_bytes(&[0u8; 75]).map(|_| None)
        }
        async fn epoch(&self, _: &str) -> Result<u64, rotauth_axum::StoreError> {
            Ok(0)
        }
        async fn insert(
            &self,
            _: &str,
            _: u64,
            _: &rotauth_axum::Record,
        ) -> Result<(), rotauth_axum::StoreError> {
            Ok(())
        }
        async fn compare_and_swap(
            &self,
            _: u64,
            _: &rotauth_axum::Record,
        ) -> Result<rotauth_axum::Swap, rotauth_axum::StoreError> {
            Ok(rotauth_axum::Swap::Lost)
        }
        async fn delete(&self, _: rotauth::ClientId) -> Result<bool, rotauth_axum::StoreError> {
            Ok(false)
        }
        async fn list(
            &self,
            _: &str,
        ) -> Result<Vec<rotauth_axum::SessionSummary>, rotauth_axum::StoreError> {
            Ok(Vec::new())
        }
        async fn delete_user_sessions(
            &self,
            _: &str,
            _: Option<rotauth::ClientId>,
        ) -> Result<usize, rotauth_axum::StoreError> {
            Ok(0)
        }
        async fn rename_user(&self, _: &str, _: &str) -> Result<usize, rotauth_axum::StoreError> {
            Ok(0)
        }
        async fn sessions_per_key(
            &self,
            _: rotauth::Timestamp,
        ) -> Result<Vec<(rotauth::KeyId, u64)>, rotauth_axum::StoreError> {
            Ok(Vec::new())
        }
    }
    let auth = Authenticator::new(rotator(short_window()), Corrupt);
    let signed_in = auth
        .sign_in(auth.begin_sign_in("grace").await.unwrap())
        .await
        .unwrap();
    let credentials = rotauth_axum::Credentials {
        client_id: signed_in.client_id,
        token: signed_in.token.to_text().as_str().to_owned().into(),
        uid: None,
    };
    let outcome = auth
        .authenticate(&credentials, rotauth::Timestamp::now(), false)
        .await;
    assert!(
        matches!(
            outcome,
            rotauth_axum::Outcome::Refused(rotauth_axum::Refusal::CorruptRecord)
        ),
        "{outcome:?}"
    );
}
