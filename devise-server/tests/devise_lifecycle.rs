//! The server's lifecycle as a load balancer and a process manager see it:
//!
//! - `GET /healthz` and `GET /readyz` answer without credentials, are never cached and are
//!   logged; readiness is 503 when the database is gone (an SQLite table dropped, a
//!   PostgreSQL table locked past the bound, the PostgreSQL database dropped) while
//!   liveness stays 200;
//! - the built binary drains when a stop signal comes as soon as it listens.
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

use std::io::Write as _;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use axum::http::Method;
use client::{Http, Resp, TempDir};
use cluster::{Instance, TestDb};
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

// ---------------------------------------------------------------------------------------
// Stop signals, on the built binary with SQLite

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
