//! Harness for `tests/devise_cluster.rs` and `tests/devise_lifecycle.rs`: the built
//! `devise_server` example run as real child processes (so signalling one is real), a
//! fresh PostgreSQL database per test, and a load of clients that follow their tokens
//! while each request goes to a randomly chosen instance (a load balancer without
//! affinity), retrying on another when one is dead or answers 503, and signing in again
//! when refused. The HTTP client and what a client keeps are in `client.rs`, shared with
//! the in-process tests.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not reach,
// and test arithmetic on known small values, which no clippy.toml setting covers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hyper::Method;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rotauth::Session;

use crate::client::{Auth, Http, Resp, SendError, assert_record, random_suffix};

/// The signing key every instance of a test shares (hex; a test key, not a secret).
pub const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
pub const PASSWORD: &str = "correct horse battery";
/// Where `bash scripts/with-postgres.sh` puts the throwaway cluster.
pub const DATABASE_ENV: &str = "ROTAUTH_TEST_DATABASE_URL";

/// The PostgreSQL server the tests may create databases on. Unset is a failure, never a
/// skip: a green run must mean the cluster tests ran.
pub fn admin_url() -> String {
    match std::env::var(DATABASE_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{DATABASE_ENV} is not set, so the PostgreSQL cluster tests cannot run.\n\
             Run them with a throwaway PostgreSQL (installed from Debian's packages if needed):\n\
             \n    bash scripts/with-postgres.sh cargo test\n\n\
             or point {DATABASE_ENV} at a server where the tests may CREATE DATABASE, e.g.\n\
             \n    {DATABASE_ENV}=postgres://postgres@127.0.0.1:5432/postgres cargo test --test devise_cluster\n"
        ),
    }
}

/// The example binary `cargo test` built next to this test binary.
pub fn server_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_devise_server"))
}

/// A fresh database on the test server (`CREATE DATABASE t_<random>`), so tests run in
/// parallel without seeing each other's rows; dropped at the end.
pub struct TestDb {
    pub url: String,
    admin: String,
    name: String,
}

/// `url` with its database name replaced by `name`.
fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").expect("a postgres:// URL");
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {DATABASE_ENV}: {e}"));
    tokio::spawn(connection);
    client
}

impl TestDb {
    pub async fn create() -> Self {
        let admin = admin_url();
        let name = format!("t_{}", random_suffix());
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        Self {
            url: with_dbname(&admin, &name),
            admin,
            name,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// Drops the database now, closing every connection to it (the instances' included).
    pub async fn drop_now(&self) {
        connect(&self.admin)
            .await
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }

    /// Every session row: client id, record bytes, version column.
    pub async fn sessions(&self) -> Vec<(String, Vec<u8>, i64)> {
        self.client()
            .await
            .query(
                "SELECT client_id, record, version FROM rotauth_sessions",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| {
                (
                    crate::client::client_text(row.get(0)),
                    row.get(1),
                    row.get(2),
                )
            })
            .collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime: a thread with its own runtime does the I/O.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// One `devise_server` process.
pub struct Instance {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Instance {
    /// Starts the binary with `args` (and the shared key, cheap hashing, `--metrics`,
    /// `--quiet`, no sign-in throttling, port 0; a later `--addr` in `args` wins); returns
    /// before it has printed its address: see [`Self::ready`].
    pub fn start(args: &[&str], dir: &Path, name: &str) -> (Child, PathBuf) {
        Self::launch(args, dir, name, true)
    }

    /// As [`Self::spawn`], with the keys from the `--key-file` among `args` instead of the
    /// shared key.
    pub fn spawn_with_key_file(args: &[&str], dir: &Path, name: &str) -> Self {
        Self::ready(Self::command(args, dir, name, true, false))
    }

    /// [`Self::start`], with a log line per request unless `quiet`.
    pub fn launch(args: &[&str], dir: &Path, name: &str, quiet: bool) -> (Child, PathBuf) {
        Self::command(args, dir, name, quiet, true)
    }

    fn command(
        args: &[&str],
        dir: &Path,
        name: &str,
        quiet: bool,
        shared_key: bool,
    ) -> (Child, PathBuf) {
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(server_binary());
        command
            .args(["--addr", "127.0.0.1:0"])
            .args(quiet.then_some("--quiet"))
            .args([
                "--metrics",
                "--insecure-fast-hashing",
                "--throttle-per-address",
                "0",
                "--throttle-per-address-account",
                "0",
            ])
            .args(args);
        if shared_key {
            command.env("ROTAUTH_KEY", KEY_HEX);
        } else {
            command.env_remove("ROTAUTH_KEY");
        }
        let child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        (child, log)
    }

    /// Waits for the first stdout line, `... listening on http://ADDR`.
    pub fn ready((mut child, log): (Child, PathBuf)) -> Self {
        let mut first = String::new();
        let stdout = child.stdout.take().unwrap();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let addr = first
            .trim()
            .rsplit("http://")
            .next()
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server did not start (first line {first:?}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Self { child, addr, log }
    }

    pub fn spawn(args: &[&str], dir: &Path, name: &str) -> Self {
        Self::ready(Self::start(args, dir, name))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and reaps it).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the process to exit (blocking).
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `flags.len()` instances on `db` at the same moment (so they create the schema at
/// once), logging into `dir`, and waits until each listens.
pub fn start_all(db: &TestDb, dir: &Path, flags: &[&[&str]]) -> Vec<Instance> {
    let started: Vec<_> = flags
        .iter()
        .enumerate()
        .map(|(i, flags)| {
            let mut args = vec!["--database-url", db.url.as_str()];
            args.extend_from_slice(flags);
            Instance::start(&args, dir, &format!("instance{i}"))
        })
        .collect();
    started.into_iter().map(Instance::ready).collect()
}

/// Sends the signal `name` (`TERM`, `INT`, `KILL`...) to `pid` with kill(1). `KILL` is a
/// crashed machine: no drain, responses in flight are lost.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// The load: `clients` clients, each signed up on a random instance, then sending
/// `requests` requests in bursts of 3–5 parallel ones with the token it holds, each to a
/// random instance, following the one new token a burst may bring. Every third burst asks
/// to `unbatch` on all its requests, so they race to rotate across instances. A client
/// refused (401) signs in again and goes on with its new session.
pub struct Plan {
    pub clients: usize,
    pub requests: usize,
    pub seed: u64,
}

/// One client at the end of the load.
pub struct Outcome {
    pub auth: Auth,
    /// Final status of every request (0: no instance answered).
    pub statuses: Vec<u16>,
    /// Bursts that asked to unbatch.
    pub unbatched: u64,
    /// Times it was refused and signed in again.
    pub signed_in_again: u64,
}

/// Totals over all clients.
pub struct Totals {
    pub requests: usize,
    pub ok: usize,
    pub unauthorized: usize,
    pub server_errors: usize,
    pub failed: usize,
    /// Requests sent again to another instance after a transport error (either kind below).
    pub retries: u64,
    /// Of those, attempts that found no listener (connection refused).
    pub refused: u64,
    /// Of those, attempts whose connection broke after the request was written.
    pub broken: u64,
    /// Requests sent again to another instance after a 503.
    pub unavailable: u64,
    /// Clients refused (401) at least once, who had to sign in again.
    pub signed_in_again: usize,
}

/// How often the load's requests were sent again, and why.
#[derive(Default)]
struct Resends {
    refused: AtomicU64,
    broken: AtomicU64,
    unavailable: AtomicU64,
}

/// Sends the request to the instance `first`; on a transport error (instance dead,
/// connection cut mid-response) or a 503 (which stores nothing and sends no token) tries
/// the others in turn with the same token, as a load balancer or a retrying client would.
/// `None` when no attempt got a response; the last 503 when every one was 503.
async fn send_anywhere(
    http: &Http,
    addrs: &[SocketAddr],
    first: usize,
    (method, path, headers, body): (Method, &str, &[(String, String)], Option<&str>),
    resends: &Resends,
) -> Option<Resp> {
    let n = addrs.len();
    let mut last = None;
    for attempt in 0..2 * n {
        let addr = addrs[(first + attempt) % n];
        let counter = match http
            .at(addr)
            .try_send(method.clone(), path, headers, body)
            .await
        {
            Ok(resp) if resp.status == 503 => {
                last = Some(resp);
                &resends.unavailable
            }
            Ok(resp) => return Some(resp),
            Err(SendError::Connect(_)) => &resends.refused,
            Err(SendError::Broken(_) | SendError::TimedOut) => &resends.broken,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    last
}

pub async fn run_load(http: &Http, addrs: &[SocketAddr], plan: &Plan) -> (Vec<Outcome>, Totals) {
    run_load_counting(http, addrs, plan, Arc::new(AtomicUsize::new(0))).await
}

/// [`run_load`], counting the requests answered so far (by any instance, or by none) in
/// `answered`, for a test that acts on an instance in the middle of the load.
pub async fn run_load_counting(
    http: &Http,
    addrs: &[SocketAddr],
    plan: &Plan,
    answered: Arc<AtomicUsize>,
) -> (Vec<Outcome>, Totals) {
    let addrs: Arc<[SocketAddr]> = addrs.into();
    let resends = Arc::new(Resends::default());
    let mut tasks = Vec::new();
    for i in 0..plan.clients {
        let (http, addrs, answered, resends) = (
            http.clone(),
            Arc::clone(&addrs),
            Arc::clone(&answered),
            Arc::clone(&resends),
        );
        let requests = plan.requests;
        let mut rng = StdRng::seed_from_u64(plan.seed.wrapping_add(i as u64));
        tasks.push(tokio::spawn(async move {
            let email = format!("load{i}@example.com");
            let at = rng.random_range(0..addrs.len());
            let mut auth = http.at(addrs[at]).sign_up(&email, PASSWORD).await;
            let mut statuses = Vec::with_capacity(requests);
            let (mut sent, mut burst_no, mut unbatched) = (0usize, 0usize, 0u64);
            let mut signed_in_again = 0;
            while sent < requests {
                let size = (3 + (i + burst_no) % 3).min(requests - sent);
                let unbatch = burst_no % 3 == 0;
                unbatched += u64::from(unbatch);
                let mut burst = Vec::new();
                let mut forced = None;
                for j in 0..size {
                    // An unbatched burst asks for its new token with its first request, and
                    // only then fires the rest: a forced rotation rotates from any batch
                    // member, so a forced request racing the others (which rotate after the
                    // window) would rotate a second time.
                    let path = match (unbatch && j == 0, j % 2) {
                        (true, _) => "/demo/members_only?unbatch=true",
                        (false, 0) => "/demo/members_only",
                        (false, _) => "/auth/validate_token",
                    };
                    let first = rng.random_range(0..addrs.len());
                    let (http, addrs, auth, resends, answered) = (
                        http.clone(),
                        Arc::clone(&addrs),
                        auth.clone(),
                        Arc::clone(&resends),
                        Arc::clone(&answered),
                    );
                    burst.push(tokio::spawn(async move {
                        let headers = auth.headers();
                        let request = (Method::GET, path, &headers[..], None);
                        let resp = send_anywhere(&http, &addrs, first, request, &resends).await;
                        answered.fetch_add(1, Ordering::Relaxed);
                        resp
                    }));
                    if unbatch
                        && j == 0
                        && let Some(request) = burst.pop()
                    {
                        forced = Some(request.await.unwrap());
                    }
                }
                let mut answers = Vec::new();
                answers.extend(forced);
                for request in burst {
                    answers.push(request.await.unwrap());
                }
                let mut new_tokens = 0;
                for answer in answers {
                    match answer {
                        Some(resp) => {
                            statuses.push(resp.status);
                            new_tokens += usize::from(auth.follow(&resp));
                        }
                        None => statuses.push(0),
                    }
                }
                assert!(new_tokens <= 1, "a burst brought {new_tokens} new tokens");
                // Refused: the user signs in again, as a devise client's app makes them.
                if statuses[sent..].contains(&401) {
                    let body = serde_json::json!({"email": email, "password": PASSWORD});
                    let body = body.to_string();
                    let request = (Method::POST, "/auth/sign_in", &[][..], Some(body.as_str()));
                    let first = rng.random_range(0..addrs.len());
                    let resp = send_anywhere(&http, &addrs, first, request, &resends).await;
                    let resp = resp.expect("no instance answered a sign-in");
                    assert_eq!(resp.status, 200, "sign-in again: {}", resp.text);
                    auth = Auth::from_response(&resp).expect("a response with the auth headers");
                    signed_in_again += 1;
                }
                sent += size;
                burst_no += 1;
            }
            Outcome {
                auth,
                statuses,
                unbatched,
                signed_in_again,
            }
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let all = || outcomes.iter().flat_map(|o| o.statuses.iter().copied());
    let totals = Totals {
        requests: all().count(),
        ok: all().filter(|&s| s == 200).count(),
        unauthorized: all().filter(|&s| s == 401).count(),
        server_errors: all().filter(|&s| s >= 500).count(),
        failed: all().filter(|&s| s == 0).count(),
        retries: resends.refused.load(Ordering::Relaxed) + resends.broken.load(Ordering::Relaxed),
        refused: resends.refused.load(Ordering::Relaxed),
        broken: resends.broken.load(Ordering::Relaxed),
        unavailable: resends.unavailable.load(Ordering::Relaxed),
        signed_in_again: outcomes.iter().filter(|o| o.signed_in_again > 0).count(),
    };
    (outcomes, totals)
}

/// The load's assertions: every request answered 200 (zero 401, zero 5xx, none left
/// unanswered), no client signed in again, and no 503 hidden by a resend.
pub fn assert_all_ok(totals: &Totals, plan: &Plan) {
    assert_answered(totals, plan);
    assert_eq!(
        totals.unavailable, 0,
        "503s under load (answered elsewhere)"
    );
}

/// [`assert_all_ok`], except that a 503 answered by another instance is allowed: for an
/// instance that stops in the middle of the load.
pub fn assert_answered(totals: &Totals, plan: &Plan) {
    assert_eq!(totals.requests, plan.clients * plan.requests);
    assert_eq!(totals.unauthorized, 0, "401s under load");
    assert_eq!(totals.signed_in_again, 0, "clients signed in again");
    assert_eq!(totals.server_errors, 0, "5xx under load");
    assert_eq!(totals.failed, 0, "requests no instance answered");
    assert_eq!(totals.ok, totals.requests);
}

/// One consistent record per session: exactly the clients' sessions, each decoding and
/// matching its client ([`assert_record`]). `strict`: only rotations changed the record.
pub fn assert_records(outcomes: &[Outcome], rows: &[(String, Vec<u8>, i64)], strict: bool) {
    assert_eq!(rows.len(), outcomes.len(), "one session row per client");
    for outcome in outcomes {
        let auth = &outcome.auth;
        let (_, record, version) = rows
            .iter()
            .find(|(client, _, _)| *client == auth.client)
            .unwrap_or_else(|| panic!("session {} lost", auth.client));
        let session = Session::decode(record).unwrap();
        assert_record(&session, *version, auth, outcome.unbatched, strict);
    }
}
