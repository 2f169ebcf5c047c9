//! The layer's cost per request: the same trivial axum handler served on loopback without
//! auth and behind `AuthLayer` (in-memory store, `BearerProtocol`), each driven over one
//! kept-alive HTTP/1.1 connection, measured side by side in one run.
//!
//! ```text
//! cargo bench -p rotauth-axum --bench overhead
//! ```
//!
//! The authenticated client follows its tokens as a real one does: with the default 5 s
//! batch window most requests are batch members (one HMAC check, no write) and one
//! request per window rotates (a compare-and-swap and a new token).
//!
//! After criterion's figures the bench measures both again in interleaved rounds and
//! prints the overhead: (with layer − bare) / bare.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rotauth::{Config, KeyId, Keyring, Rotator};
use rotauth_axum::{AuthLayer, Authenticator, BearerProtocol, MemoryStore, Protocol};
use tokio::runtime::Runtime;

async fn hello() -> &'static str {
    "hello"
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One kept-alive connection, and the `Authorization` value to send (updated from each
/// response that carries new credentials).
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    authorization: Option<String>,
}

async fn connect(addr: SocketAddr, authorization: Option<String>) -> Arc<Mutex<Option<Conn>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    Arc::new(Mutex::new(Some(Conn {
        sender,
        authorization,
    })))
}

/// One request over the connection; panics on anything but 200.
async fn request(conn: &Arc<Mutex<Option<Conn>>>) {
    let mut c = conn.lock().unwrap().take().unwrap();
    let mut builder = http::Request::get("/").header("host", "bench");
    if let Some(value) = &c.authorization {
        builder = builder.header("authorization", value.as_str());
    }
    c.sender.ready().await.unwrap();
    let response = c
        .sender
        .send_request(builder.body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    if let Some(next) = response.headers().get("rotauth-token") {
        c.authorization = Some(format!("Rotauth {}", next.to_str().unwrap()));
    }
    response.into_body().collect().await.unwrap();
    *conn.lock().unwrap() = Some(c);
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (bare, authed) = rt.block_on(async {
        let bare_addr = serve(Router::new().route("/", get(hello))).await;
        let rotator = Rotator::new(
            Keyring::new(KeyId(1), &[9u8; 32]).unwrap(),
            Config::default(),
        );
        let auth = Authenticator::new(rotator, MemoryStore::new());
        let signed_in = auth
            .sign_in(auth.begin_sign_in("bench").await.unwrap())
            .await
            .unwrap();
        let credentials = BearerProtocol::new().sign_in_headers(&signed_in);
        let first = format!("Rotauth {}", credentials["rotauth-token"].to_str().unwrap());
        let authed_addr = serve(
            Router::new()
                .route("/", get(hello))
                .layer(AuthLayer::new(auth, BearerProtocol::new())),
        )
        .await;
        (
            connect(bare_addr, None).await,
            connect(authed_addr, Some(first)).await,
        )
    });

    let mut group = c.benchmark_group("loopback_request");
    group.bench_function("bare", |b| b.to_async(&rt).iter(|| request(&bare)));
    group.bench_function("rotauth_layer_memory_store", |b| {
        b.to_async(&rt).iter(|| request(&authed))
    });
    group.finish();

    interleaved(&rt, &bare, &authed);
    in_process(c, &rt);
}

/// The same two apps called in process (no socket, no HTTP parsing): the layer's own cost,
/// without the loopback noise.
fn in_process(c: &mut Criterion, rt: &Runtime) {
    use tower::ServiceExt;
    let bare = Router::new().route("/", get(hello));
    let rotator = Rotator::new(
        Keyring::new(KeyId(1), &[9u8; 32]).unwrap(),
        Config::default(),
    );
    let auth = Authenticator::new(rotator, MemoryStore::new());
    let signed_in = rt
        .block_on(async { auth.sign_in(auth.begin_sign_in("bench").await?).await })
        .unwrap();
    let first = BearerProtocol::authorization(&signed_in.client_id, &signed_in.token);
    let authorization = Arc::new(Mutex::new(first.to_string()));
    let authed = Router::new()
        .route("/", get(hello))
        .layer(AuthLayer::new(auth, BearerProtocol::new()));
    let call = |app: Router, authorization: Option<Arc<Mutex<String>>>| async move {
        let mut builder = http::Request::get("/");
        if let Some(value) = &authorization {
            builder = builder.header("authorization", value.lock().unwrap().as_str());
        }
        let response = app
            .oneshot(builder.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        if let (Some(value), Some(next)) = (&authorization, response.headers().get("rotauth-token"))
        {
            *value.lock().unwrap() = format!("Rotauth {}", next.to_str().unwrap());
        }
        response.into_body().collect().await.unwrap();
    };
    let mut group = c.benchmark_group("in_process_request");
    group.bench_function("bare", |b| b.to_async(rt).iter(|| call(bare.clone(), None)));
    group.bench_function("rotauth_layer_memory_store", |b| {
        b.to_async(rt)
            .iter(|| call(authed.clone(), Some(Arc::clone(&authorization))))
    });
    group.finish();
}

/// Both again in alternating rounds, so that drift on a shared machine hits both alike;
/// prints the medians and the overhead.
fn interleaved(rt: &Runtime, bare: &Arc<Mutex<Option<Conn>>>, authed: &Arc<Mutex<Option<Conn>>>) {
    const ROUNDS: usize = 15;
    const PER_ROUND: u32 = 2_000;
    let time = |conn: &Arc<Mutex<Option<Conn>>>| -> Duration {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                request(conn).await;
            }
            start.elapsed() / PER_ROUND
        })
    };
    let (mut bare_times, mut authed_times) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            bare_times.push(time(bare));
            authed_times.push(time(authed));
        } else {
            authed_times.push(time(authed));
            bare_times.push(time(bare));
        }
    }
    bare_times.sort();
    authed_times.sort();
    let bare = bare_times[ROUNDS / 2].as_secs_f64() * 1e6;
    let authed = authed_times[ROUNDS / 2].as_secs_f64() * 1e6;
    println!(
        "overhead: bare loopback request {bare:.1} µs, with rotauth layer {authed:.1} µs \
         (medians of {ROUNDS} interleaved rounds of {PER_ROUND}); layer + decision = {:.1} µs \
         = {:.1} % of a bare request (goal < 20 %)",
        authed - bare,
        (authed - bare) / bare * 100.0
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
