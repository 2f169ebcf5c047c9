//! Test harness for `tests/devise_server.rs`: the example's own router on an ephemeral
//! loopback port with a temporary SQLite file; the client side is in `client.rs`.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not cover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rotauth::{KeyId, Keyring, Session};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::Http;
use devise_server::{app, cli, connections, db};

/// The signing key the tests use unless they say otherwise (not a secret: a test key).
pub const KEY: [u8; 32] = [7; 32];

/// The example's router serving on 127.0.0.1:0 inside the test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    pub db: PathBuf,
    pub logs: Arc<Mutex<Vec<String>>>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A server on `db` with `key`, configured by command-line `flags` (parsed by the
    /// example's own parser). Password hashing is made cheap: the tests sign in hundreds
    /// of sessions, and the hashing itself is argon2 either way.
    pub async fn start_on(db: &Path, key: &[u8], flags: &[&str]) -> Self {
        let database = db::Sqlite::open(&db.display().to_string(), 4)
            .await
            .unwrap();
        Self::start_with(database, db, key, flags).await
    }

    /// A server on an opened `database` (SQLite at `db`, or any other: then `db` is only
    /// a name and the SQLite helpers below do not apply), as [`Self::start_on`].
    pub async fn start_with<D: db::Database>(
        database: D,
        db: &Path,
        key: &[u8],
        flags: &[&str],
    ) -> Self {
        // Suites sign in hundreds of times from one address: no throttling unless a test
        // asks for it (its own flags come later and win).
        let mut args: Vec<String> = [
            "--throttle-per-address",
            "0",
            "--throttle-per-address-account",
            "0",
        ]
        .iter()
        .chain(flags)
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(["--db".to_owned(), db.display().to_string()]);
        let cli = match cli::parse(args).unwrap() {
            cli::Command::Run(cli) => cli,
            cli::Command::Help => panic!("--help in test flags"),
        };
        let keyring = Keyring::new(KeyId(1), key).unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut settings =
            cli::settings(&cli, keyring, app::LogSink::Memory(Arc::clone(&logs))).unwrap();
        settings.argon2 = argon2::Params::new(1024, 1, 1, None).unwrap();
        let state = app::AppState::new(database, settings).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(connections::serve(listener, state, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            db: db.to_owned(),
            logs,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Tells the server to stop, as a stop signal does, without waiting: it drains
    /// (`connections::serve`); [`Self::stop`] waits for the end.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Stops accepting, finishes requests in flight, and waits until the server is gone.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(10), handle)
                .await
                .expect("server did not stop")
                .unwrap()
                .unwrap();
        }
    }

    pub fn http(&self) -> Http {
        Http::new(self.addr)
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// A read-only look at the database, as an operator would take it.
    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).unwrap()
    }

    pub fn count(&self, table: &str) -> i64 {
        self.sql()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    /// Every row of both tables, to prove a request wrote nothing.
    pub fn snapshot(&self) -> Vec<String> {
        let conn = self.sql();
        let mut rows = Vec::new();
        let mut stmt = conn
            .prepare("SELECT id, email, password_hash FROM users ORDER BY id")
            .unwrap();
        let users = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{}|{}|{}",
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?
                ))
            })
            .unwrap();
        rows.extend(users.map(Result::unwrap));
        let mut stmt = conn
            .prepare(
                "SELECT hex(client_id), user_id, hex(record), version, expires_at FROM rotauth_sessions ORDER BY client_id",
            )
            .unwrap();
        let sessions = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{}|{}|{}|{}|{}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?
                ))
            })
            .unwrap();
        rows.extend(sessions.map(Result::unwrap));
        rows
    }

    /// The stored session of `client`, decoded, with its version column; `None` if gone.
    pub fn session(&self, client: &str) -> Option<(Session, i64)> {
        let conn = self.sql();
        let row: Option<(Vec<u8>, i64)> = conn
            .query_row(
                "SELECT record, version FROM rotauth_sessions WHERE client_id = ?1",
                [crate::client::client_bytes(client)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        row.map(|(record, version)| (Session::decode(&record).unwrap(), version))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
