//! A devise_token_auth client over HTTP/1, as devise's JavaScript clients behave: it signs
//! up or in, sends the three auth headers, and takes a response's token only when it
//! carries a new one (a batch response's blank keeps the one it has). The load and flood
//! tools and the server's tests all use this one (feature `client`).
//!
//! ```no_run
//! # async fn run() -> Result<(), devise_server::client::ClientError> {
//! use devise_server::client::Http;
//! use hyper::Method;
//!
//! let http = Http::new("127.0.0.1:3000".parse().unwrap());
//! let mut auth = http.sign_up("ada@example.com", "correct horse battery").await?;
//! let answer = http.follow(Method::GET, "/demo/members_only", &mut auth).await?;
//! assert_eq!(answer.status, 200);
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// How long a request may take, unless set otherwise ([`Http::timeout`]).
const TIMEOUT: Duration = Duration::from_secs(30);

/// A response, read whole.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, as text (lossy).
    pub text: String,
}

impl Response {
    /// The body as JSON, if it is.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_str(&self.text).ok()
    }

    /// A header's value, if it is present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The new token this response hands the client, if any (a batch response carries a
    /// blank `access-token`).
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
    /// `access-token`.
    pub token: String,
    /// `client`.
    pub client: String,
    /// `uid`.
    pub uid: String,
    /// How many responses handed this client a token it did not hold.
    pub received: u64,
}

impl Auth {
    /// The credentials a response hands out (a sign-in's, a rotation's); `None` when it
    /// carries no token, client or uid.
    pub fn from_response(response: &Response) -> Option<Self> {
        Some(Self {
            token: response.token()?,
            client: response.header("client")?.to_owned(),
            uid: response.header("uid")?.to_owned(),
            received: 0,
        })
    }

    /// The request headers that present these credentials.
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            ("access-token".into(), self.token.clone()),
            ("token-type".into(), "Bearer".into()),
            ("client".into(), self.client.clone()),
            ("uid".into(), self.uid.clone()),
        ]
    }

    /// Takes the token of `response` if it carries a new one, and its `uid` with it (an
    /// email change names the new one), as devise's JavaScript clients do. Whether it did.
    pub fn follow(&mut self, response: &Response) -> bool {
        match response.token() {
            Some(token) if token != self.token => {
                self.token = token;
                if let Some(uid) = response.header("uid").filter(|u| !u.trim().is_empty()) {
                    uid.clone_into(&mut self.uid);
                }
                self.received = self.received.saturating_add(1);
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
    /// request went out on it); or the request could not be made.
    Broken(String),
    /// No response within the client's timeout.
    TimedOut,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Broken(e) => write!(f, "connection broken: {e}"),
            Self::TimedOut => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why a sign-up, sign-in or metrics scrape did not give what was asked.
#[derive(Debug)]
pub enum ClientError {
    /// No response.
    Send(SendError),
    /// A response, but not a success: its status and body.
    Status {
        /// What was asked.
        what: &'static str,
        /// The status.
        status: u16,
        /// The body.
        body: String,
    },
    /// A successful sign-up or sign-in without the auth headers.
    NoCredentials(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send(e) => write!(f, "{e}"),
            Self::Status { what, status, body } => write!(f, "{what} answered {status}: {body}"),
            Self::NoCredentials(what) => write!(f, "{what} answered 200 without the auth headers"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<SendError> for ClientError {
    fn from(e: SendError) -> Self {
        Self::Send(e)
    }
}

/// An HTTP/1 client of the server at one address, keeping connections alive unless told
/// otherwise; [`at`](Self::at) reaches another server through the same connection pool.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    timeout: Duration,
}

impl Http {
    /// A client of the server at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self::with(addr, HttpConnector::new(), true)
    }

    /// A client whose connections leave from the local address `local`, so that the server
    /// sees another client: on Linux every address of 127.0.0.0/8 is the loopback's.
    pub fn from_local(addr: SocketAddr, local: IpAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        Self::with(addr, connector, true)
    }

    fn with(addr: SocketAddr, connector: HttpConnector, keep_alive: bool) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        if !keep_alive {
            builder.pool_max_idle_per_host(0);
        }
        Self {
            client: builder.build(connector),
            addr,
            timeout: TIMEOUT,
        }
    }

    /// A client of the same server sending from the local address `local`.
    pub fn sending_from(&self, local: IpAddr) -> Self {
        Self::from_local(self.addr, local).timeout(self.timeout)
    }

    /// The same client (and connection pool) for the server at `addr`.
    pub fn at(&self, addr: SocketAddr) -> Self {
        Self {
            client: self.client.clone(),
            addr,
            timeout: self.timeout,
        }
    }

    /// One connection per request, closed after its response (no pool): for floods that
    /// must not leave idle connections in the server they measure.
    pub fn closing_connections(self) -> Self {
        Self {
            timeout: self.timeout,
            ..Self::with(self.addr, HttpConnector::new(), false)
        }
    }

    /// How long a request may take before it fails with [`SendError::TimedOut`] (30 s
    /// unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One request. A body goes as `Content-Type: application/json` unless `headers` name
    /// another type (the server refuses bodies of other types, or of none, with 415).
    ///
    /// # Errors
    ///
    /// [`SendError`] when no whole response came back.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(String, String)],
        body: Option<&str>,
    ) -> Result<Response, SendError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        let typed = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !typed {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
            .map_err(|e| SendError::Broken(e.to_string()))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
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
            Ok(Response {
                status,
                headers,
                text: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SendError::TimedOut)?
    }

    /// A `GET` presenting `auth`, which it does not update (see [`follow`](Self::follow)).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn get(&self, path: &str, auth: &Auth) -> Result<Response, SendError> {
        self.send(Method::GET, path, &auth.headers(), None).await
    }

    /// A request presenting `auth`, then the response's token taken if it carries a new
    /// one ([`Auth::follow`]): one step of a client following its rotations.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); `auth` is unchanged then.
    pub async fn follow(
        &self,
        method: Method,
        path: &str,
        auth: &mut Auth,
    ) -> Result<Response, SendError> {
        let response = self.send(method, path, &auth.headers(), None).await?;
        auth.follow(&response);
        Ok(response)
    }

    /// A `POST` of a JSON body, without credentials.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn post(&self, path: &str, body: &str) -> Result<Response, SendError> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    /// Signs a new account up (`POST /auth`); the credentials of its first session.
    ///
    /// # Errors
    ///
    /// [`ClientError`] unless it answered 200 with the auth headers.
    pub async fn sign_up(&self, email: &str, password: &str) -> Result<Auth, ClientError> {
        let body = serde_json::json!({
            "email": email, "password": password, "password_confirmation": password,
        });
        let response = self.post("/auth", &body.to_string()).await?;
        credentials("sign-up", &response)
    }

    /// Signs in (`POST /auth/sign_in`); the credentials of the new session.
    ///
    /// # Errors
    ///
    /// [`ClientError`] unless it answered 200 with the auth headers.
    pub async fn sign_in(&self, email: &str, password: &str) -> Result<Auth, ClientError> {
        let body = serde_json::json!({"email": email, "password": password});
        let response = self.post("/auth/sign_in", &body.to_string()).await?;
        credentials("sign-in", &response)
    }

    /// The counters of `GET /metrics` (a server started with `--metrics`), as
    /// `(name with labels, value)` pairs.
    ///
    /// # Errors
    ///
    /// [`ClientError`] unless it answered 200.
    pub async fn metrics(&self) -> Result<Vec<(String, u64)>, ClientError> {
        let response = self.send(Method::GET, "/metrics", &[], None).await?;
        if response.status != 200 {
            return Err(status("metrics", &response));
        }
        Ok(response
            .text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect())
    }

    /// One counter of [`metrics`](Self::metrics), by its name with labels; `None` when
    /// the server has no such series.
    ///
    /// # Errors
    ///
    /// As [`metrics`](Self::metrics).
    pub async fn metric(&self, name: &str) -> Result<Option<u64>, ClientError> {
        let metrics = self.metrics().await?;
        Ok(metrics.into_iter().find(|(n, _)| n == name).map(|(_, v)| v))
    }
}

/// The credentials of a sign-up's or sign-in's response.
fn credentials(what: &'static str, response: &Response) -> Result<Auth, ClientError> {
    if response.status != 200 {
        return Err(status(what, response));
    }
    Auth::from_response(response).ok_or(ClientError::NoCredentials(what))
}

fn status(what: &'static str, response: &Response) -> ClientError {
    ClientError::Status {
        what,
        status: response.status,
        body: response.text.clone(),
    }
}
