//! The client side shared by `tests/devise_server.rs` (the example's router in the test's
//! runtime) and `tests/devise_cluster.rs` (the built binary as child processes): a
//! temporary directory, the package's devise client (`devise_server::client`, which the
//! load and flood tools use too) with failures failing the test, and the check of one
//! stored session against its client.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not reach,
// and test arithmetic on known small values, which no clippy.toml setting covers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use devise_server::client;
pub use devise_server::client::{Auth, SendError};
use hyper::Method;
use rotauth::{Session, Token};
use serde_json::Value;

/// 16 random hex digits, for names that parallel tests and processes must not share.
pub fn random_suffix() -> String {
    use rand::TryRng as _;
    format!("{:016x}", rand::rngs::SysRng.try_next_u64().unwrap())
}

/// A temporary directory (logs, SQLite files), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "rotauth-devise-{}-{n}-{}",
            std::process::id(),
            random_suffix()
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

/// A response, read whole: the package's client's.
pub use devise_server::client::Response as Resp;

/// The body of a response as JSON, failing the test when it is not.
pub trait JsonBody {
    fn json(&self) -> Value;
}

impl JsonBody for Resp {
    fn json(&self) -> Value {
        self.body_json()
            .unwrap_or_else(|| panic!("not JSON: {:?}", self.text))
    }
}

/// The package's devise client ([`devise_server::client::Http`]), whose failures fail the
/// test; [`Self::try_send`] for the tests that expect one.
#[derive(Clone)]
pub struct Http(pub client::Http);

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self(client::Http::new(addr))
    }

    /// A client whose connections leave from the local address `local`, so that the server
    /// sees another client: on Linux every address of 127.0.0.0/8 is the loopback's.
    pub fn from_local(addr: SocketAddr, local: IpAddr) -> Self {
        Self(client::Http::from_local(addr, local))
    }

    /// A client of the same server, sending from the local address `local`.
    pub fn sending_from(&self, local: IpAddr) -> Self {
        Self(self.0.sending_from(local))
    }

    /// The same client (and pool) for the server at `addr`.
    pub fn at(&self, addr: SocketAddr) -> Self {
        Self(self.0.at(addr))
    }

    /// One request; `Err` when the server is unreachable or the connection breaks.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(String, String)],
        body: Option<&str>,
    ) -> Result<Resp, SendError> {
        self.0.send(method, path, headers, body).await
    }

    /// One request that must be answered.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(String, String)],
        body: Option<&str>,
    ) -> Resp {
        self.try_send(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"))
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Resp {
        self.send(Method::GET, path, &auth.headers(), None).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Resp {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub async fn sign_up(&self, email: &str, password: &str) -> Auth {
        self.0
            .sign_up(email, password)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Auth {
        self.0
            .sign_in(email, password)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `rotauth_cas_conflicts_total` and the decision counters (`--metrics`), as
    /// `(name, value)` pairs.
    pub async fn metrics(&self) -> Vec<(String, u64)> {
        self.0.metrics().await.unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn metric(&self, name: &str) -> u64 {
        self.0
            .metric(name)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    /// One request as raw bytes on a fresh connection: for header bytes that a typed HTTP
    /// client refuses to send. Returns the status and the whole response text.
    pub async fn raw(&self, request: &[u8]) -> (u16, String) {
        let (addr, request) = (self.0.addr(), request.to_vec());
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

/// A client id's text (the `client` header) as the session table keys it: 16 bytes.
pub fn client_bytes(text: &str) -> Vec<u8> {
    text.parse::<rotauth::ClientId>()
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// The inverse of [`client_bytes`].
pub fn client_text(bytes: &[u8]) -> String {
    rotauth::ClientId::from_bytes(bytes.try_into().unwrap()).to_string()
}

/// The stored session of a client after a load (`session` decoded from the record,
/// `version` its column) against what the client saw: the version column mirrors the
/// record and the client holds the current token. `strict` (no response lost): the
/// generation equals the number of new tokens the client received (every stored rotation
/// reached it exactly once), only rotations changed the record, and each of the client's
/// `unbatched` bursts rotated.
pub fn assert_record(session: &Session, version: i64, auth: &Auth, unbatched: u64, strict: bool) {
    assert_eq!(session.client_id().to_string(), auth.client);
    assert_eq!(
        u64::try_from(version).unwrap(),
        session.version(),
        "version column mirrors the record"
    );
    if strict {
        assert_eq!(
            session.generation(),
            auth.received,
            "every stored rotation reached its client exactly once"
        );
        assert_eq!(
            session.version(),
            session.generation(),
            "strict mode stores rotations only"
        );
        assert!(auth.received >= unbatched, "every unbatch rotates");
    } else {
        // Recover mode also records the first use of a token (`acknowledged`) and each
        // reissue. A client that lost a rotating response and then unbatches with the stale
        // token in the window rotates past the lost generation without ever receiving it.
        assert!(session.version() >= session.generation());
        assert!(session.generation() >= auth.received);
    }
    assert_eq!(
        Token::from_text(&auth.token).unwrap().generation(),
        session.generation(),
        "the client holds the current token"
    );
}
