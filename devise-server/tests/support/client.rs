//! The client side shared by `tests/devise_server.rs` (the example's router in the test's
//! runtime) and `tests/devise_cluster.rs` (the built binary as child processes): a
//! temporary directory, a keep-alive HTTP client, what a devise client keeps and follows,
//! and the check of one stored session against its client. Nothing here knows the
//! server's modules, so both test crates can include it.
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

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
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
    /// How many responses handed this client a token it did not hold.
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

    /// Takes the token of `resp` if it carries a new one, as devise's JavaScript clients do.
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

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection: nothing listens there (refused), so the server never saw the request.
    Connect(String),
    /// The connection broke after the request was written, before a whole response came
    /// back (a server that died, or closed an idle kept-alive connection just as the
    /// request went out on it).
    Broken(String),
    /// No response within 30 s.
    TimedOut,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Broken(e) => write!(f, "connection broken: {e}"),
            Self::TimedOut => f.write_str("timed out"),
        }
    }
}

/// A keep-alive HTTP/1 client talking to the server at `addr`; [`Self::at`] reaches another
/// one through the same connection pool.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    pub addr: SocketAddr,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            addr,
        }
    }

    /// A client whose connections leave from the local address `local`, so that the server
    /// sees another client: on Linux every address of 127.0.0.0/8 is the loopback's.
    pub fn from_local(addr: SocketAddr, local: IpAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            addr,
        }
    }

    /// A client of the same server, sending from the local address `local`.
    pub fn sending_from(&self, local: IpAddr) -> Self {
        Self::from_local(self.addr, local)
    }

    /// The same client (and pool) for the server at `addr`.
    pub fn at(&self, addr: SocketAddr) -> Self {
        Self {
            client: self.client.clone(),
            addr,
        }
    }

    /// One request; `Err` when the server is unreachable or the connection breaks. A body
    /// goes as `Content-Type: application/json` unless `headers` name another type (the
    /// server refuses bodies of other types, or of none, with 415).
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(String, String)],
        body: Option<&str>,
    ) -> Result<Resp, SendError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if body.is_some()
            && !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .map_err(|_| SendError::TimedOut)?
            .map_err(|e| {
                if e.is_connect() {
                    SendError::Connect(e.to_string())
                } else {
                    SendError::Broken(e.to_string())
                }
            })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| SendError::Broken(e.to_string()))?
            .to_bytes();
        Ok(Resp {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        })
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

    /// `rotauth_cas_conflicts_total` and the decision counters (`--metrics`), as
    /// `(name, value)` pairs.
    pub async fn metrics(&self) -> Vec<(String, u64)> {
        let resp = self.send(Method::GET, "/metrics", &[], None).await;
        assert_eq!(resp.status, 200);
        resp.text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    pub async fn metric(&self, name: &str) -> u64 {
        self.metrics()
            .await
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no metric {name}"))
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
