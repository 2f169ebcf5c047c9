//! Shared helpers: rotators, store wrappers that fail or record, an HTTP harness.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::missing_errors_doc,
    clippy::must_use_candidate,
    missing_docs
)]

pub mod cookie;
pub mod load;
pub mod proxy;
pub mod servers;
pub mod stores;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rotauth::{ClientId, Config, KeyId, Keyring, Rotator, Token};
use rotauth_axum::{
    AuthLayer, Authenticated, Authenticator, Protocol, Record, SessionStore, SessionSummary,
    StoreError, StoredSession, Swap,
};

pub const WINDOW: Duration = Duration::from_secs(5);

pub fn rotator(config: Config) -> Rotator {
    Rotator::new(Keyring::new(KeyId(1), &[0x5a; 32]).unwrap(), config)
}

pub fn default_rotator() -> Rotator {
    rotator(Config::builder().batch_window(WINDOW).build().unwrap())
}

/// `user` signed in at `now`: a sign-in begun and finished at once.
pub async fn sign_in_at<S: SessionStore>(
    auth: &Authenticator<S>,
    user: &str,
    now: rotauth::Timestamp,
) -> rotauth_axum::SignedIn {
    let pending = auth.begin_sign_in(user).await.unwrap();
    auth.sign_in_with(pending, &mut getrandom::SysRng, now)
        .await
        .unwrap()
}

/// A unique name for users and key prefixes, so that tests sharing a database do not meet.
pub fn unique(label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{label}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Counts swaps, and fails on demand.
#[derive(Clone)]
pub struct Wrapped<S> {
    pub inner: S,
    pub fail_load: Arc<AtomicBool>,
    pub fail_writes: Arc<AtomicBool>,
    /// The next this many swaps are written, then reported as failures: an acknowledgement
    /// lost on the way back (a timeout, a connection that broke after the commit).
    pub lose_acks: Arc<AtomicUsize>,
    pub swapped: Arc<AtomicUsize>,
    pub lost: Arc<AtomicUsize>,
    /// Set to `(n, barrier)`: the next `n` loads wait at `barrier` for each other, so that
    /// `n` requests surely read the same record before any of them writes.
    pub meet: Arc<Mutex<Option<Meeting>>>,
    /// Set: the next insert parks there, before or after it reaches the store.
    pub park: Arc<Mutex<Option<Park>>>,
}

/// Where an insert parks: it waits at `arrived` (so the test knows it is there), then at
/// `release` (so the test decides when it goes on), with the insert itself done before the
/// two waits (`after`) or after them.
pub struct Park {
    pub after: bool,
    pub arrived: Arc<tokio::sync::Barrier>,
    pub release: Arc<tokio::sync::Barrier>,
}

impl Park {
    /// A park, and the two barriers for the test's side.
    pub fn new(after: bool) -> (Self, Arc<tokio::sync::Barrier>, Arc<tokio::sync::Barrier>) {
        let arrived = Arc::new(tokio::sync::Barrier::new(2));
        let release = Arc::new(tokio::sync::Barrier::new(2));
        (
            Self {
                after,
                arrived: Arc::clone(&arrived),
                release: Arc::clone(&release),
            },
            arrived,
            release,
        )
    }

    async fn wait(&self) {
        self.arrived.wait().await;
        self.release.wait().await;
    }
}

/// How many loads are still to meet, and where.
pub type Meeting = (usize, Arc<tokio::sync::Barrier>);

impl<S> Wrapped<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            fail_load: Arc::default(),
            fail_writes: Arc::default(),
            lose_acks: Arc::default(),
            swapped: Arc::default(),
            lost: Arc::default(),
            meet: Arc::default(),
            park: Arc::default(),
        }
    }

    fn check(&self, flag: &AtomicBool) -> Result<(), StoreError> {
        if flag.load(Ordering::SeqCst) {
            Err(StoreError::backend("injected failure"))
        } else {
            Ok(())
        }
    }
}

impl<S: SessionStore> SessionStore for Wrapped<S> {
    async fn load(&self, client_id: ClientId) -> Result<Option<StoredSession>, StoreError> {
        self.check(&self.fail_load)?;
        let loaded = self.inner.load(client_id).await;
        let barrier = match self.meet.lock().unwrap().as_mut() {
            Some((left, barrier)) if *left > 0 => {
                *left -= 1;
                Some(Arc::clone(barrier))
            }
            _ => None,
        };
        match barrier {
            Some(barrier) => {
                barrier.wait().await;
            }
            // Let other tasks run between a load and the swap that follows it, even on a
            // store whose futures never wait (the in-memory one): races must really race.
            None => tokio::task::yield_now().await,
        }
        loaded
    }

    async fn epoch(&self, user_id: &str) -> Result<u64, StoreError> {
        self.check(&self.fail_load)?;
        self.inner.epoch(user_id).await
    }

    async fn insert(&self, user_id: &str, epoch: u64, record: &Record) -> Result<(), StoreError> {
        self.check(&self.fail_writes)?;
        let park = self.park.lock().unwrap().take();
        match park {
            Some(park) if park.after => {
                let inserted = self.inner.insert(user_id, epoch, record).await;
                park.wait().await;
                inserted
            }
            Some(park) => {
                park.wait().await;
                self.inner.insert(user_id, epoch, record).await
            }
            None => self.inner.insert(user_id, epoch, record).await,
        }
    }

    async fn compare_and_swap(
        &self,
        expected_version: u64,
        record: &Record,
    ) -> Result<Swap, StoreError> {
        self.check(&self.fail_writes)?;
        let swap = self
            .inner
            .compare_and_swap(expected_version, record)
            .await?;
        match swap {
            Swap::Swapped => self.swapped.fetch_add(1, Ordering::SeqCst),
            Swap::Lost => self.lost.fetch_add(1, Ordering::SeqCst),
        };
        let lose = self
            .lose_acks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lose {
            return Err(StoreError::backend(
                "injected: the acknowledgement was lost",
            ));
        }
        Ok(swap)
    }

    async fn delete(&self, client_id: ClientId) -> Result<bool, StoreError> {
        self.check(&self.fail_writes)?;
        self.inner.delete(client_id).await
    }

    async fn list(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
        self.check(&self.fail_load)?;
        self.inner.list(user_id).await
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        keep: Option<ClientId>,
    ) -> Result<usize, StoreError> {
        self.check(&self.fail_writes)?;
        self.inner.delete_user_sessions(user_id, keep).await
    }

    async fn rename_user(&self, from: &str, to: &str) -> Result<usize, StoreError> {
        self.check(&self.fail_writes)?;
        self.inner.rename_user(from, to).await
    }

    async fn sessions_per_key(
        &self,
        now: rotauth::Timestamp,
    ) -> Result<Vec<(rotauth::KeyId, u64)>, StoreError> {
        self.check(&self.fail_load)?;
        self.inner.sessions_per_key(now).await
    }
}

/// What happened, in order: a generation stored for a client, or a token handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Stored(ClientId, u64),
    Sent(ClientId, u64),
}

pub type Journal = Arc<Mutex<Vec<Event>>>;

/// A store that journals every acknowledged write of a generation.
#[derive(Clone)]
pub struct JournalStore<S> {
    pub inner: S,
    pub journal: Journal,
}

fn generation(record: &Record) -> u64 {
    rotauth::Session::decode(record.as_bytes())
        .unwrap()
        .generation()
}

impl<S: SessionStore> SessionStore for JournalStore<S> {
    async fn load(&self, client_id: ClientId) -> Result<Option<StoredSession>, StoreError> {
        self.inner.load(client_id).await
    }

    async fn epoch(&self, user_id: &str) -> Result<u64, StoreError> {
        self.inner.epoch(user_id).await
    }

    async fn insert(&self, user_id: &str, epoch: u64, record: &Record) -> Result<(), StoreError> {
        self.inner.insert(user_id, epoch, record).await?;
        self.journal
            .lock()
            .unwrap()
            .push(Event::Stored(record.client_id(), generation(record)));
        Ok(())
    }

    async fn compare_and_swap(
        &self,
        expected_version: u64,
        record: &Record,
    ) -> Result<Swap, StoreError> {
        let swap = self
            .inner
            .compare_and_swap(expected_version, record)
            .await?;
        if swap == Swap::Swapped {
            self.journal
                .lock()
                .unwrap()
                .push(Event::Stored(record.client_id(), generation(record)));
        }
        Ok(swap)
    }

    async fn delete(&self, client_id: ClientId) -> Result<bool, StoreError> {
        self.inner.delete(client_id).await
    }

    async fn list(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
        self.inner.list(user_id).await
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        keep: Option<ClientId>,
    ) -> Result<usize, StoreError> {
        self.inner.delete_user_sessions(user_id, keep).await
    }

    async fn rename_user(&self, from: &str, to: &str) -> Result<usize, StoreError> {
        self.inner.rename_user(from, to).await
    }

    async fn sessions_per_key(
        &self,
        now: rotauth::Timestamp,
    ) -> Result<Vec<(rotauth::KeyId, u64)>, StoreError> {
        self.inner.sessions_per_key(now).await
    }
}

/// A protocol that journals every token it writes into a response.
#[derive(Clone)]
pub struct JournalProtocol<P> {
    pub inner: P,
    pub journal: Journal,
}

impl<P: Protocol> Protocol for JournalProtocol<P> {
    fn credentials(
        &self,
        parts: &http::request::Parts,
    ) -> Result<rotauth_axum::Credentials, rotauth_axum::Refusal> {
        self.inner.credentials(parts)
    }

    fn force_rotation(&self, parts: &http::request::Parts) -> bool {
        self.inner.force_rotation(parts)
    }

    fn write_reply(
        &self,
        who: &Authenticated,
        reply: &rotauth_axum::Reply,
        headers: &mut http::HeaderMap,
    ) {
        if let Some(token) = reply.token() {
            self.journal
                .lock()
                .unwrap()
                .push(Event::Sent(who.client_id, token.generation()));
        }
        self.inner.write_reply(who, reply, headers);
    }

    fn refused(&self, refusal: &rotauth_axum::Refusal) -> http::Response<axum::body::Body> {
        self.inner.refused(refusal)
    }
}

/// Fails unless every token handed out was stored (the same generation of the same client)
/// before it was handed out. Returns how many tokens were checked.
pub fn assert_stored_before_sent(journal: &[Event]) -> usize {
    let mut checked = 0;
    for (i, event) in journal.iter().enumerate() {
        if let Event::Sent(client, generation) = event {
            assert!(
                journal[..i].contains(&Event::Stored(*client, *generation)),
                "token of generation {generation} of {client:?} was sent before it was stored \
                 (event {i} of {})",
                journal.len()
            );
            checked += 1;
        }
    }
    checked
}

/// An HTTP server on loopback: `/sign_in/{user}` (outside the layer) and `/ping` (behind
/// it, answering the user id).
pub struct Server {
    pub addr: SocketAddr,
    pub client: Client<HttpConnector, Empty<bytes::Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve<S: SessionStore, P: Protocol>(auth: Authenticator<S>, protocol: P) -> Server {
    async fn ping(who: Authenticated) -> String {
        who.user_id
    }
    let sign_in_protocol = protocol.clone();
    let app = Router::new()
        .route("/ping", get(ping))
        .layer(AuthLayer::new(auth.clone(), protocol))
        .route(
            "/sign_in/{user}",
            post(
                move |State(auth): State<Authenticator<S>>, Path(user): Path<String>| async move {
                    let signed_in = auth.sign_in(auth.begin_sign_in(&user).await?).await?;
                    Ok::<_, rotauth_axum::Error>(
                        (sign_in_protocol.sign_in_headers(&signed_in), "signed in").into_response(),
                    )
                },
            ),
        )
        .with_state(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    Server { addr, client, task }
}

/// A response: status, the headers as text, the body.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of a devise response, if it carries one.
    pub fn devise_token(&self) -> Option<Token> {
        self.header("access-token")
            .filter(|t| !t.trim().is_empty())
            .map(|t| Token::from_text(t).unwrap())
    }
}

impl Server {
    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = self
            .client
            .request(request.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// A small deterministic PRNG for test schedules (never for secrets).
pub struct Schedule(u64);

impl Schedule {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
