//! The server's lifecycle as a load balancer and a process manager see it:
//!
//! - `GET /healthz` and `GET /readyz` answer without credentials, are never cached and are
//!   logged; readiness is 503 when the database is gone (an SQLite table dropped, a
//!   PostgreSQL table locked past the bound, the PostgreSQL database dropped) while
//!   liveness stays 200;
//! - a stop: readiness 503 at once, requests still served for `--shutdown-delay-ms`, then
//!   the listener closes; the built binary, given SIGTERM or SIGINT (also as soon as it
//!   listens), answers the request in flight and exits 0, or exits 0 anyway past
//!   `--shutdown-timeout-ms` and says so.
//!
//! The PostgreSQL test needs `ROTAUTH_TEST_DATABASE_URL` and FAILS without it
//! (`bash scripts/with-postgres.sh cargo test -p devise-server --test devise_lifecycle`).
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not reach,
// and test arithmetic on known small values, which no clippy.toml setting covers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[allow(dead_code)]
#[path = "support/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "support/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "support/support.rs"]
mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use axum::http::Method;
use client::{Http, Resp, SendError, TempDir};
use cluster::{Instance, PASSWORD, TestDb};
use serde_json::{Value, json};
use support::{KEY, TestServer};

fn body(resp: &Resp) -> Value {
    resp.json()
}

async fn get(http: &Http, path: &str) -> Resp {
    http.send(Method::GET, path, &[], None).await
}

fn assert_not_ready(resp: &Resp, reason: &str) {
    assert_eq!(resp.status, 503, "{}", resp.text);
    assert_eq!(
        body(resp),
        json!({"status": "unavailable", "reason": reason})
    );
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
}

// ---------------------------------------------------------------------------------------
// Liveness and readiness, in process, on SQLite

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_and_readiness_need_no_credentials_and_are_never_cached() {
    let dir = TempDir::new();
    let server = TestServer::start_on(&dir.db(), &KEY, &[]).await;
    let http = server.http();
    for (path, expected) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let resp = get(&http, path).await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.text);
        assert_eq!(body(&resp), json!({"status": expected}));
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        assert!(resp.token().is_none());
        let head = http.send(Method::HEAD, path, &[], None).await;
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.text.is_empty());
    }
    let resp = http.send(Method::POST, "/readyz", &[], Some("{}")).await;
    assert_eq!(resp.status, 405);
    let lines = server.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GET /healthz 200 health "))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GET /readyz 200 ready "))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_503_when_a_table_is_gone_and_liveness_stays_200() {
    let dir = TempDir::new();
    let server = TestServer::start_on(&dir.db(), &KEY, &[]).await;
    let http = server.http();
    assert_eq!(get(&http, "/readyz").await.status, 200);
    server
        .sql()
        .execute_batch("DROP TABLE rotauth_sessions")
        .unwrap();
    let resp = get(&http, "/readyz").await;
    assert_not_ready(&resp, "database");
    // The body names the failing check, never the database, its path or its error.
    for secret in [
        "rotauth_sessions",
        "sqlite",
        "no such table",
        "test.sqlite3",
    ] {
        assert!(!resp.text.contains(secret), "{}", resp.text);
    }
    assert_eq!(get(&http, "/healthz").await.status, 200);
    // The error goes to the log.
    assert!(
        server
            .log_lines()
            .iter()
            .any(|l| l.starts_with("GET /readyz 503 not_ready (database: ")
                && l.contains("no such table")),
        "{:?}",
        server.log_lines()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_draining_readiness_is_503_and_requests_are_served_until_the_listener_closes() {
    let dir = TempDir::new();
    let mut server = TestServer::start_on(&dir.db(), &KEY, &["--shutdown-delay-ms", "3000"]).await;
    let http = server.http();
    let mut auth = http.sign_up("drain@example.com", PASSWORD).await;
    assert_eq!(get(&http, "/readyz").await.status, 200);

    server.signal_stop();
    // The accept loop sees the stop at its next turn: a moment, not the delay.
    let mut resp = get(&http, "/readyz").await;
    for _ in 0..100 {
        if resp.status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        resp = get(&http, "/readyz").await;
    }
    assert_not_ready(&resp, "draining");
    // Still alive and still serving during the delay, on new connections too.
    let fresh = Http::new(server.addr);
    assert_eq!(get(&fresh, "/healthz").await.status, 200);
    let resp = fresh.get("/demo/members_only", &auth).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    auth.follow(&resp);
    assert_not_ready(&get(&fresh, "/readyz").await, "draining");

    let addr = server.addr;
    let lines = server.log_lines();
    server.stop().await;
    // The listener is closed: nothing answers there any more.
    match Http::new(addr)
        .try_send(Method::GET, "/healthz", &[], None)
        .await
    {
        Err(SendError::Connect(_)) => {}
        other => panic!("still answering after the drain: {other:?}"),
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GET /readyz 503 not_ready (draining) ")),
        "{lines:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Stop signals, on the built binary with SQLite

/// A sign-in whose head is sent with `Expect: 100-continue` and whose body is held back:
/// once the server answers `100 Continue` its handler is reading the body, so the request
/// is in flight, for as long as the test holds the rest.
struct HeldRequest {
    stream: TcpStream,
    rest: &'static [u8],
}

impl HeldRequest {
    fn open(addr: SocketAddr) -> Self {
        const BODY: &[u8] = br#"{"email":"held@example.com","password":"correct horse battery"}"#;
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let head = format!(
            "POST /auth/sign_in HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            BODY.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut continued = [0u8; 25];
        stream.read_exact(&mut continued).unwrap();
        assert_eq!(&continued, b"HTTP/1.1 100 Continue\r\n\r\n");
        let (first, rest) = BODY.split_at(10);
        stream.write_all(first).unwrap();
        Self { stream, rest }
    }

    /// Sends the rest of the body and reads the response to the end of the connection.
    fn finish(mut self) -> String {
        self.stream.write_all(self.rest).unwrap();
        self.read_to_end()
    }

    fn read_to_end(mut self) -> String {
        let mut out = Vec::new();
        let _ = self.stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Waits until nothing listens at `addr` any more (connection refused), for at most 10 s.
fn wait_until_refused(addr: SocketAddr) {
    let start = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the listener stayed open"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the instance to exit, for at most 30 s.
fn wait_for_exit(instance: &mut Instance) -> ExitStatus {
    let start = Instant::now();
    while !instance.exited() {
        assert!(start.elapsed() < Duration::from_secs(30), "did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    instance.wait()
}

fn sqlite_instance(dir: &TempDir, flags: &[&str]) -> Instance {
    let file = dir.db().display().to_string();
    let mut args = vec!["--db", file.as_str()];
    args.extend_from_slice(flags);
    Instance::ready(Instance::launch(&args, &dir.0, "sqlite", false))
}

/// The handlers are in place before the address is announced: a process manager that
/// stops the server as soon as it listens gets a drain and exit status 0, never the
/// default action's kill (status 143). Five times, as the window was a few milliseconds.
#[test]
fn a_sigterm_as_soon_as_the_server_listens_drains_it_too() {
    let dir = TempDir::new();
    for _ in 0..5 {
        // A shell already waiting for the pid: its built-in kill sends the signal within
        // microseconds of the address line, where spawning kill(1) takes milliseconds.
        let mut kill = std::process::Command::new("sh")
            .args(["-c", "read pid; kill -TERM \"$pid\""])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut instance = sqlite_instance(&dir, &[]);
        let mut pid = kill.stdin.take().unwrap();
        writeln!(pid, "{}", instance.pid()).unwrap();
        drop(pid);
        assert!(kill.wait().unwrap().success());
        let status = wait_for_exit(&mut instance);
        let log = instance.log_text();
        assert_eq!(status.code(), Some(0), "{status}: {log}");
        assert!(log.contains("SIGTERM: shutting down"), "{log}");
    }
}

#[test]
fn sigterm_closes_the_listener_answers_the_request_in_flight_and_exits_zero() {
    let dir = TempDir::new();
    let mut instance = sqlite_instance(&dir, &[]);
    let held = HeldRequest::open(instance.addr);
    cluster::signal(instance.pid(), "TERM");
    wait_until_refused(instance.addr);
    assert!(!instance.exited(), "exited with a request in flight");
    // The request in flight gets its answer, then the connection closes.
    let response = held.finish();
    assert!(
        response.starts_with("HTTP/1.1 401 "),
        "no answer: {response:?}"
    );
    assert!(response.contains("Invalid login credentials"));
    let status = wait_for_exit(&mut instance);
    let log = instance.log_text();
    assert_eq!(status.code(), Some(0), "{log}");
    for line in [
        "SIGTERM: shutting down",
        // (Other open connections are the test's own, connected to see whether the
        // listener was still open.)
        "listener closed; 1 requests in flight on ",
        "1 requests answered since the listener closed, 0 dropped by their clients before \
         the answer, none cut off",
        "POST /auth/sign_in 401 sign_in_failed",
    ] {
        assert!(log.contains(line), "{line:?} not in the log:\n{log}");
    }
}

#[test]
fn past_the_shutdown_timeout_sigint_exits_zero_anyway_and_says_so() {
    let dir = TempDir::new();
    let mut instance = sqlite_instance(&dir, &["--shutdown-timeout-ms", "300"]);
    let held = HeldRequest::open(instance.addr);
    cluster::signal(instance.pid(), "INT");
    let status = wait_for_exit(&mut instance);
    let log = instance.log_text();
    assert_eq!(status.code(), Some(0), "{log}");
    for line in [
        "SIGINT: shutting down",
        "shutdown timeout of 300 ms reached: exiting anyway, cutting off 1 requests in flight \
         on 1 connections",
    ] {
        assert!(log.contains(line), "{line:?} not in the log:\n{log}");
    }
    // The connection is closed without an answer.
    assert_eq!(held.read_to_end(), "");
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: readiness, and an instance stopped under load

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_postgres_database() {
    let db = TestDb::create().await;
    let dir = TempDir::new();
    let instance = Instance::ready(Instance::launch(
        &["--database-url", &db.url],
        &dir.0,
        "pg",
        false,
    ));
    let http = Http::new(instance.addr);
    assert_eq!(get(&http, "/readyz").await.status, 200);

    // A table locked by another session: the readiness query waits, and the bound answers.
    let locker = db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    assert_not_ready(&get(&http, "/readyz").await, "database");
    assert_eq!(get(&http, "/healthz").await.status, 200);
    assert!(
        instance
            .log_text()
            .contains("GET /readyz 503 not_ready (database: no answer within 1000 ms)"),
        "{}",
        instance.log_text()
    );
    locker.batch_execute("ROLLBACK").await.unwrap();
    let mut resp = get(&http, "/readyz").await;
    for _ in 0..20 {
        if resp.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        resp = get(&http, "/readyz").await;
    }
    assert_eq!(
        resp.status, 200,
        "not ready again after the lock: {}",
        resp.text
    );

    // The database dropped under the running instance.
    drop(locker);
    db.drop_now().await;
    assert_not_ready(&get(&http, "/readyz").await, "database");
    assert_eq!(get(&http, "/healthz").await.status, 200);
}
