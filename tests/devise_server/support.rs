//! Test harness for `tests/devise_server.rs`: the example's own router on an ephemeral
//! loopback port with a temporary SQLite file, and a small HTTP client that follows tokens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rotauth::{KeyId, Keyring, Session};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{app, cli, store};

/// The signing key the tests use unless they say otherwise (not a secret: a test key).
pub const KEY: [u8; 32] = [7; 32];

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "rotauth-devise-{}-{n}-{}",
            std::process::id(),
            app::now().unix_millis()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn db(&self) -> PathBuf {
        self.0.join("test.sqlite3")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
        let mut args: Vec<String> = flags.iter().map(|s| (*s).to_owned()).collect();
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
        let store = store::SqliteStore::open(&cli.db).unwrap();
        let state = app::AppState::new(store, settings).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app::serve(listener, state, async {
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
                "SELECT client_id, user_id, hex(record), version, expires_at FROM sessions ORDER BY client_id",
            )
            .unwrap();
        let sessions = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{}|{}|{}|{}|{}",
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
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
                "SELECT record, version FROM sessions WHERE client_id = ?1",
                [client],
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

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The new token this response hands the client, if any (batch responses carry " ").
    pub fn token(&self) -> Option<String> {
        self.header("access-token")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }
}

/// What a devise client keeps: the auth headers of the last response that carried a token.
#[derive(Clone, Debug)]
pub struct Auth {
    pub token: String,
    pub client: String,
    pub uid: String,
    /// How many responses handed this client a new token.
    pub received: u64,
}

impl Auth {
    pub fn from_response(resp: &Resp) -> Self {
        Self {
            token: resp.token().expect("no access-token"),
            client: resp.header("client").expect("no client").to_owned(),
            uid: resp.header("uid").expect("no uid").to_owned(),
            received: 0,
        }
    }

    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            ("access-token".into(), self.token.clone()),
            ("token-type".into(), "Bearer".into()),
            ("client".into(), self.client.clone()),
            ("uid".into(), self.uid.clone()),
        ]
    }

    /// Takes the token of `resp` if it carries one, as devise's JavaScript clients do.
    pub fn follow(&mut self, resp: &Resp) -> bool {
        match resp.token() {
            Some(token) if token != self.token => {
                self.token = token;
                self.received += 1;
                true
            }
            _ => false,
        }
    }
}

/// A keep-alive HTTP/1 client for one server.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    pub addr: SocketAddr,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
            addr,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(String, String)],
        body: Option<&str>,
    ) -> Resp {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(20), self.client.request(request))
            .await
            .expect("request timed out")
            .expect("request failed");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Resp {
        self.send(Method::GET, path, &auth.headers(), None).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Resp {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub async fn sign_up(&self, email: &str, password: &str) -> Auth {
        let body = serde_json::json!({
            "email": email, "password": password, "password_confirmation": password,
        });
        let resp = self.post("/auth", &body.to_string()).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        Auth::from_response(&resp)
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Auth {
        let body = serde_json::json!({"email": email, "password": password});
        let resp = self.post("/auth/sign_in", &body.to_string()).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        Auth::from_response(&resp)
    }

    /// One request as raw bytes on a fresh connection: for header bytes that a typed HTTP
    /// client refuses to send. Returns the status and the whole response text.
    pub async fn raw(&self, request: &[u8]) -> (u16, String) {
        let (addr, request) = (self.addr, request.to_vec());
        // Blocking std I/O on the blocking pool: tokio's I/O helpers need a feature the
        // server does not.
        let out = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(&request).unwrap();
            let mut out = Vec::new();
            // A reset after the server answers a garbage request still leaves its answer.
            let _ = stream.read_to_end(&mut out);
            out
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }
}
