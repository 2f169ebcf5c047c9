//! The parity scenarios (`parity/scenarios/`) against the devise server over HTTP, on
//! SQLite and on PostgreSQL (`bash scripts/with-services.sh`): a user signs up for each
//! scenario, its requests go to `GET /demo/members_only`, the server's clock is the file
//! the runner writes each step's time into (`--test-clock-file`, in builds with the
//! `test-clock` feature only), and the stored record is read (and put back) through
//! rotauth-axum's session store on the server's database. Faults and races cannot be
//! injected over HTTP: those scenarios are skipped, and the report says so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    unreachable_pub
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

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::Method;
use client::{Http, TempDir, random_suffix};
use devise_server::db::Database;
use rotauth::Session;
use rotauth_axum::{Record, SessionStore, Swap};
use rotauth_parity::{
    BatchToken, Config, Fault, Host, Mode, Replay, Response, Sent, SignedIn, Wire,
};
use support::TestServer;

/// One server per configuration the scenarios use, on one database.
struct Server<D: Database> {
    server: TestServer,
    http: Http,
    clock: PathBuf,
    db: D,
}

/// The flags that set the server up as `config` says, or why it cannot be.
fn flags(config: &Config, clock: &Path) -> Result<Vec<String>, String> {
    // rotauth's bound; the server has no flag for another.
    if config.max_attempts != 4 {
        return Err("max_attempts is rotauth's 4 in the devise server".to_owned());
    }
    let mut flags = vec![
        "--batch-window-ms".to_owned(),
        config.batch_window_ms.to_string(),
        "--test-clock-file".to_owned(),
        clock.display().to_string(),
        "--quiet".to_owned(),
    ];
    if config.mode == Mode::Recover {
        flags.extend(["--mode".to_owned(), "recover".to_owned()]);
    }
    if config.replay == Replay::Revoke {
        flags.extend(["--replay".to_owned(), "revoke".to_owned()]);
    }
    if config.batch_token == BatchToken::Current {
        flags.extend(["--batch-token".to_owned(), "current".to_owned()]);
    }
    if !config.rotate {
        flags.push("--no-rotation".to_owned());
    }
    Ok(flags)
}

/// A scenario's view of one server: it sets the clock, signs up, sends requests, and
/// looks at the sessions through the library's store.
struct DeviseHost<D: Database> {
    server: Arc<Server<D>>,
    saved: Option<Record>,
}

impl<D: Database> DeviseHost<D> {
    fn set_clock(&self, now: u64) {
        // Written aside and renamed, so the server never reads half a time.
        let aside = self.server.clock.with_extension("next");
        std::fs::write(&aside, now.to_string()).unwrap();
        std::fs::rename(&aside, &self.server.clock).unwrap();
    }

    async fn stored(&self, client: &str) -> Option<Record> {
        let sessions = self.server.db.sessions();
        let stored = sessions.load(client.parse().unwrap()).await.unwrap();
        stored.map(|stored| stored.record)
    }
}

impl<D: Database> Host for DeviseHost<D> {
    async fn sign_in(&mut self, now: u64) -> Result<SignedIn, String> {
        self.set_clock(now);
        let email = format!("parity-{}@example.com", random_suffix());
        let auth = self
            .server
            .http
            .sign_up(&email, "correct horse battery")
            .await;
        Ok(SignedIn {
            client: auth.client,
            uid: auth.uid,
            token: auth.token,
        })
    }

    async fn send(&mut self, now: u64, wire: &Wire, _: Option<Fault>) -> Result<Sent, String> {
        self.set_clock(now);
        let path = format!("/demo/members_only{}", wire.query);
        let resp = self
            .server
            .http
            .try_send(Method::GET, &path, &wire.headers, None)
            .await
            .map_err(|e| e.to_string())?;
        let headers = resp
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap_or("?")));
        Ok(Sent {
            response: Response::from_headers(resp.status, headers),
            swaps_tried: None,
        })
    }

    async fn generation(&mut self, client: &str) -> Result<Option<u64>, String> {
        Ok(self
            .stored(client)
            .await
            .map(|record| Session::decode(record.as_bytes()).unwrap().generation()))
    }

    async fn save(&mut self, client: &str) -> Result<(), String> {
        self.saved = Some(self.stored(client).await.ok_or("no session to save")?);
        Ok(())
    }

    async fn restore(&mut self, client: &str) -> Result<(), String> {
        let saved = self.saved.as_ref().ok_or("nothing saved")?;
        let now = self.stored(client).await.ok_or("no session to restore")?;
        let sessions = self.server.db.sessions();
        match sessions.compare_and_swap(now.version(), saved).await {
            Ok(Swap::Swapped) => Ok(()),
            Ok(Swap::Lost) => Err("the restore lost its swap".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Runs the suite: a server for each configuration the runnable scenarios use, each on a
/// database `open` gives, with its clock file in `dir`.
async fn suite<D, F, Fut>(name: &str, dir: &TempDir, mut open: F)
where
    D: Database,
    F: FnMut() -> Fut,
    Fut: Future<Output = (D, PathBuf)>,
{
    let scenarios = rotauth_parity::scenarios().unwrap();
    let (runnable, _) = rotauth_parity::runnable(&scenarios, &[]);
    let mut servers: BTreeMap<Config, Result<Arc<Server<D>>, String>> = BTreeMap::new();
    for (i, scenario) in runnable.iter().enumerate() {
        let config = scenario.config;
        if servers.contains_key(&config) {
            continue;
        }
        let clock = dir.0.join(format!("clock-{i}"));
        let flags = match flags(&config, &clock) {
            Ok(flags) => flags,
            Err(why) => {
                servers.insert(config, Err(why));
                continue;
            }
        };
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let (db, path) = open().await;
        let server = TestServer::start_with(db.clone(), &path, &support::KEY, &flags).await;
        let http = server.http();
        let server = Server {
            server,
            http,
            clock,
            db,
        };
        servers.insert(config, Ok(Arc::new(server)));
    }
    let report = rotauth_parity::run(name, &scenarios, &[], |config| {
        let found = servers.get(&config).cloned();
        async move {
            let server = found.unwrap_or_else(|| Err("no server was started".to_owned()))?;
            Ok(DeviseHost {
                server,
                saved: None,
            })
        }
    })
    .await;
    report.print();
    for server in servers.into_values().flatten() {
        if let Ok(server) = Arc::try_unwrap(server) {
            server.server.stop().await;
        }
    }
    assert!(report.failed.is_empty(), "{report}");
    assert!(report.passed > 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = TempDir::new();
    let mut n = 0;
    let root = dir.0.clone();
    suite("devise/sqlite", &dir, || {
        n += 1;
        let path = root.join(format!("parity-{n}.sqlite3"));
        async move {
            let db = devise_server::db::Sqlite::open(&path.display().to_string(), 4)
                .await
                .unwrap();
            (db, path)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let dir = TempDir::new();
    let test_db = cluster::TestDb::create().await;
    let url = test_db.url.clone();
    suite("devise/postgres", &dir, || {
        let url = url.clone();
        async move {
            let db = devise_server::db::Postgres::open(&url, 4).await.unwrap();
            (db, PathBuf::from("postgres"))
        }
    })
    .await;
    test_db.drop_now().await;
}
