//! The server's lifecycle as a load balancer and a process manager see it:
//!
//! - `GET /healthz` and `GET /readyz` answer without credentials, are never cached and are
//!   logged; readiness is 503 when the database is gone (an SQLite table dropped, a
//!   PostgreSQL table locked past the bound, the PostgreSQL database dropped) while
//!   liveness stays 200;
//! - a stop: readiness 503 at once, requests still served for `--shutdown-delay-ms`, then
//!   the listener closes; the built binary, given SIGTERM or SIGINT, answers the request
//!   in flight and exits 0, or exits 0 anyway past `--shutdown-timeout-ms` and says so;
//! - one of two instances on PostgreSQL stopped with SIGTERM, or SIGKILLed, in the middle
//!   of a load and restarted on its address, in Recover mode: no client is signed out,
//!   and with SIGTERM no answer is lost.
//!
//! The PostgreSQL tests need `ROTAUTH_TEST_DATABASE_URL` and FAIL without it
//! (`bash scripts/with-postgres.sh cargo test -p devise-server --test devise_lifecycle`);
//! each creates its own database.
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
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::Method;
use client::{Http, JsonBody, Resp, SendError, TempDir};
use cluster::{Instance, Outcome, PASSWORD, Plan, TestDb, Totals, start_all};
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

const CLIENTS: usize = 50;
const REQUESTS: usize = 200;
const WINDOW_MS: u64 = 2000;
/// The instance is stopped once this many requests are answered: 30 % of the load.
const STOP_AFTER: usize = CLIENTS * REQUESTS * 3 / 10;

/// What stopping one instance in the middle of the load did.
struct Stopped {
    /// How the stopped process exited.
    exit: ExitStatus,
    /// From the signal to the exit.
    took: Duration,
    /// The stopped instance's log.
    log: String,
    /// The instance started again on the stopped one's address.
    restarted: Instance,
}

/// Two instances on one PostgreSQL database in Recover mode, 50 clients × 200 requests
/// sent to either at random (a client retries elsewhere on a transport error or a 503,
/// and signs in again if refused); once 30 % are answered, instance 1 gets `signal` and,
/// once it has exited, is started again on its address. After the load every client
/// waits out the batch window and validates its token, half on each instance: none may
/// be refused.
async fn stop_one_mid_load(signal: &str, seed: u64) -> Run {
    let db = TestDb::create().await;
    let dir = TempDir::new();
    let flags: &[&str] = &["--batch-window-ms", "2000", "--mode", "recover"];
    let mut instances = start_all(&db, &dir.0, &[flags, flags]);
    let addrs: Vec<_> = instances.iter().map(|i| i.addr).collect();
    let http = Http::new(addrs[0]);
    let plan = Plan {
        clients: CLIENTS,
        requests: REQUESTS,
        seed,
    };
    let answered = Arc::new(AtomicUsize::new(0));
    let victim = instances.pop().unwrap();
    let restart_args: Vec<String> = ["--database-url", &db.url]
        .iter()
        .chain(flags)
        .map(|s| (*s).to_owned())
        .chain(["--addr".to_owned(), victim.addr.to_string()])
        .collect();
    let log_dir = dir.0.clone();
    let control = {
        let answered = Arc::clone(&answered);
        async move {
            while answered.load(Ordering::Relaxed) < STOP_AFTER {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let start = Instant::now();
            cluster::signal(victim.pid(), signal);
            let (victim, exit) = tokio::task::spawn_blocking(move || {
                let mut victim = victim;
                let exit = victim.wait();
                (victim, exit)
            })
            .await
            .unwrap();
            let took = start.elapsed();
            let restarted = tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = restart_args.iter().map(String::as_str).collect();
                Instance::spawn(&args, &log_dir, "restarted")
            })
            .await
            .unwrap();
            Stopped {
                exit,
                took,
                log: victim.log_text(),
                restarted,
            }
        }
    };
    let ((mut outcomes, totals), stopped) = tokio::join!(
        cluster::run_load_counting(&http, &addrs, &plan, answered),
        control
    );
    assert_eq!(stopped.restarted.addr, addrs[1]);
    cluster::assert_answered(&totals, &plan);
    assert!(totals.refused > 0, "no client met the stopped instance");
    // The restarted instance rejoined: it decided some of the load.
    let decided = decisions(&http.at(stopped.restarted.addr)).await;
    assert!(decided > 0, "the restarted instance served nothing");

    // Only to let the batch window pass; nothing asserts how long anything took.
    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 200)).await;
    for (i, outcome) in outcomes.iter_mut().enumerate() {
        let resp = http
            .at(addrs[i % 2])
            .get("/auth/validate_token", &outcome.auth)
            .await;
        assert_eq!(resp.status, 200, "client signed out: {}", resp.text);
        assert!(outcome.auth.follow(&resp), "past the window: a new token");
    }
    cluster::assert_records(&outcomes, &db.sessions().await, false);
    let survivor = instances.pop().unwrap();
    Run {
        outcomes,
        totals,
        stopped,
        survivor,
        db,
    }
}

/// A load during which one instance was stopped, at its end.
struct Run {
    outcomes: Vec<Outcome>,
    totals: Totals,
    stopped: Stopped,
    /// The instance that was not stopped.
    survivor: Instance,
    db: TestDb,
}

impl Run {
    /// Rotations committed whose answer never reached the client: for each session, its
    /// generation less the new tokens its client received.
    async fn lost_rotations(&self) -> u64 {
        let rows = self.db.sessions().await;
        self.outcomes
            .iter()
            .map(|outcome| {
                let (_, record, _) = rows
                    .iter()
                    .find(|(client, _, _)| *client == outcome.auth.client)
                    .unwrap();
                let session = rotauth::Session::decode(record).unwrap();
                session.generation() - outcome.auth.received
            })
            .sum()
    }

    /// Lost responses that Recover mode handed out again, on both instances (the stopped
    /// one's counters died with it).
    async fn reissued(&self) -> u64 {
        let mut total = 0;
        for addr in [self.survivor.addr, self.stopped.restarted.addr] {
            total += Http::new(addr)
                .metric("rotauth_decisions_total{kind=\"reissue\"}")
                .await;
        }
        total
    }
}

async fn decisions(http: &Http) -> u64 {
    http.metrics()
        .await
        .iter()
        .filter(|(n, _)| n.starts_with("rotauth_decisions_total"))
        .map(|(_, v)| v)
        .sum()
}

/// The figures of a run; `lost` and `reissued` as [`Run::lost_rotations`] and
/// [`Run::reissued`].
fn report(label: &str, totals: &Totals, stopped: &Stopped, (lost, reissued): (u64, u64)) {
    eprintln!(
        "{label}: {} requests, {} answered 200, {} 401, {} clients signed in again; resent \
         elsewhere: {} after connection refused, {} after a broken connection, {} after a \
         503; the stopped instance exited ({}) {} ms after the signal; {lost} rotations \
         committed without their answer reaching the client, {reissued} reissued",
        totals.requests,
        totals.ok,
        totals.unauthorized,
        totals.signed_in_again,
        totals.refused,
        totals.broken,
        totals.unavailable,
        stopped.exit,
        stopped.took.as_millis(),
    );
}

/// SIGTERM: the instance closes its listener, answers what it had begun and exits 0, so
/// no response is lost: every rotation committed reached its client (the generation of
/// each session is the number of new tokens its client received) and nothing had to be
/// reissued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_stopped_with_sigterm_mid_load_loses_no_answer_and_logs_no_one_out() {
    let run = stop_one_mid_load("TERM", 5).await;
    let stopped = &run.stopped;
    assert_eq!(stopped.exit.code(), Some(0), "{}", stopped.log);
    assert!(stopped.log.contains("SIGTERM: shutting down"));
    assert!(
        stopped
            .log
            .contains("0 dropped by their clients before the answer, none cut off"),
        "{}",
        stopped.log
    );
    let lost = run.lost_rotations().await;
    assert_eq!(
        lost, 0,
        "rotations committed whose answer never reached the client"
    );
    let reissued = run.reissued().await;
    assert_eq!(reissued, 0, "a response was lost");
    let drain = stopped
        .log
        .lines()
        .find(|l| l.contains("drained in"))
        .unwrap_or_default();
    report("SIGTERM mid-load", &run.totals, stopped, (lost, reissued));
    eprintln!("SIGTERM mid-load, the stopped instance's log: {drain}");
}

/// SIGKILL: requests in flight on the instance are lost, including, possibly, a response
/// that carried a rotation already committed. Its client retries elsewhere with the token
/// it holds: inside the window a batch member (and its next unbatched burst rotates past
/// the lost generation); after it, Recover mode hands it the committed token again (a
/// lost response), where Strict mode would refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_mid_load_loses_no_session_and_logs_no_one_out() {
    use std::os::unix::process::ExitStatusExt as _;
    let run = stop_one_mid_load("KILL", 3).await;
    assert_eq!(run.stopped.exit.signal(), Some(9), "{}", run.stopped.log);
    let lost = run.lost_rotations().await;
    let reissued = run.reissued().await;
    report(
        "SIGKILL mid-load",
        &run.totals,
        &run.stopped,
        (lost, reissued),
    );
}
