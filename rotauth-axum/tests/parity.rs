//! The parity scenarios (`parity/scenarios/`) through the layer with devise's protocol, in
//! process, on every store compiled in: the time is the layer's clock, set by each step;
//! faults and races come from a store wrapper.
//!
//! PostgreSQL and Redis need `bash scripts/with-services.sh cargo test -p rotauth-axum
//! --all-features`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use rotauth::{ClientId, Config, KeyId, Keyring, Mode, ReplayPolicy, Rotator, Session, Timestamp};
use rotauth_axum::{
    AuthLayer, Authenticator, BatchToken, DeviseProtocol, Record, SessionStore, SessionSummary,
    StoreError, StoredSession, Swap,
};
use rotauth_parity::{Fault, Host, Need, Response, Sent, SignedIn, Wire};
use tokio::sync::oneshot;
use tower::ServiceExt as _;

/// A store that does what a step's fault says, counts the swaps tried, and can hold a
/// load until a competing request has been served.
#[derive(Clone)]
struct Faulty<S> {
    inner: S,
    fault: Arc<Mutex<Option<Fault>>>,
    /// A fault that strikes once has struck.
    struck: Arc<AtomicBool>,
    swaps_tried: Arc<AtomicU32>,
    /// The next load, once done, says so on the first sender and waits for the second.
    hold: Arc<Mutex<Option<Hold>>>,
}

/// Where a held load says it has loaded, and where it waits to go on.
type Hold = (oneshot::Sender<()>, oneshot::Receiver<()>);

impl<S> Faulty<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            fault: Arc::default(),
            struck: Arc::default(),
            swaps_tried: Arc::default(),
            hold: Arc::default(),
        }
    }

    fn set(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap() = fault;
        self.struck.store(false, Ordering::SeqCst);
        self.swaps_tried.store(0, Ordering::SeqCst);
    }

    fn fault(&self) -> Option<Fault> {
        *self.fault.lock().unwrap()
    }

    /// Whether a fault that strikes once strikes now.
    fn strike_once(&self) -> bool {
        !self.struck.swap(true, Ordering::SeqCst)
    }
}

fn injected() -> StoreError {
    StoreError::backend("injected by the parity scenario")
}

impl<S: SessionStore> SessionStore for Faulty<S> {
    async fn load(&self, client_id: ClientId) -> Result<Option<StoredSession>, StoreError> {
        match self.fault() {
            Some(Fault::LoadFails) => return Err(injected()),
            Some(Fault::LoadFailsOnce) if self.strike_once() => return Err(injected()),
            _ => {}
        }
        let loaded = self.inner.load(client_id).await;
        let hold = self.hold.lock().unwrap().take();
        if let Some((loaded_tx, release)) = hold {
            loaded_tx.send(()).unwrap();
            release.await.unwrap();
        }
        loaded
    }

    async fn epoch(&self, user_id: &str) -> Result<u64, StoreError> {
        self.inner.epoch(user_id).await
    }

    async fn insert(&self, user_id: &str, epoch: u64, record: &Record) -> Result<(), StoreError> {
        self.inner.insert(user_id, epoch, record).await
    }

    async fn compare_and_swap(
        &self,
        expected_version: u64,
        record: &Record,
    ) -> Result<Swap, StoreError> {
        self.swaps_tried.fetch_add(1, Ordering::SeqCst);
        match self.fault() {
            Some(Fault::SwapFails) => Err(injected()),
            Some(Fault::EverySwapLost) => Ok(Swap::Lost),
            Some(Fault::SwapLandsUnacknowledged) if self.strike_once() => {
                match self
                    .inner
                    .compare_and_swap(expected_version, record)
                    .await?
                {
                    Swap::Swapped => Err(injected()),
                    Swap::Lost => Ok(Swap::Lost),
                }
            }
            _ => self.inner.compare_and_swap(expected_version, record).await,
        }
    }

    async fn delete(&self, client_id: ClientId) -> Result<bool, StoreError> {
        match self.fault() {
            Some(Fault::DeleteFails) => Err(injected()),
            _ => self.inner.delete(client_id).await,
        }
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

    async fn sessions_per_key(&self, now: Timestamp) -> Result<Vec<(KeyId, u64)>, StoreError> {
        self.inner.sessions_per_key(now).await
    }
}

/// The layer with devise's protocol in front of a handler that answers 200, deciding at
/// the time the test sets.
struct LayerHost<S> {
    auth: Authenticator<Faulty<S>>,
    store: Faulty<S>,
    router: Router,
    clock: Arc<AtomicU64>,
    saved: Option<Record>,
}

impl<S: SessionStore + Clone> LayerHost<S> {
    fn new(config: rotauth_parity::Config, store: S) -> Result<Self, String> {
        let rotator = Rotator::new(
            Keyring::new(KeyId(1), &[0x5a; 32]).unwrap(),
            rotator(config)?,
        );
        let store = Faulty::new(store);
        let patience = if config.patience {
            Authenticator::<S>::STORE_PATIENCE
        } else {
            // The first failure is answered.
            Duration::ZERO
        };
        let clock = Arc::new(AtomicU64::new(0));
        let read = Arc::clone(&clock);
        let auth = Authenticator::new(rotator, store.clone())
            .batch_token(match config.batch_token {
                rotauth_parity::BatchToken::Blank => BatchToken::Blank,
                rotauth_parity::BatchToken::Current => BatchToken::Current,
            })
            .max_attempts(config.max_attempts as usize)
            .store_patience(patience)
            .clock(move || Timestamp::from_unix_millis(read.load(Ordering::SeqCst)));
        let layer = AuthLayer::new(auth.clone(), DeviseProtocol::new());
        let router = Router::new()
            .route("/parity", get(|| async { "served" }))
            .layer(layer);
        Ok(Self {
            auth,
            store,
            router,
            clock,
            saved: None,
        })
    }

    async fn call(&self, wire: &Wire) -> Response {
        call(self.router.clone(), wire.clone()).await
    }

    async fn stored(&self, client: &str) -> Option<StoredSession> {
        let client_id = client.parse().unwrap();
        self.store.inner.load(client_id).await.unwrap()
    }
}

fn rotator(config: rotauth_parity::Config) -> Result<Config, String> {
    Config::builder()
        .batch_window(Duration::from_millis(config.batch_window_ms))
        .rotate(config.rotate)
        .mode(match config.mode {
            rotauth_parity::Mode::Strict => Mode::Strict,
            rotauth_parity::Mode::Recover => Mode::Recover,
        })
        .replay_policy(match config.replay {
            rotauth_parity::Replay::Reject => ReplayPolicy::Reject,
            rotauth_parity::Replay::Revoke => ReplayPolicy::RevokeSession,
        })
        .build()
        .map_err(|e| e.to_string())
}

async fn call(router: Router, wire: Wire) -> Response {
    let mut request = http::Request::builder().uri(format!("/parity{}", wire.query));
    for (name, value) in &wire.headers {
        request = request.header(name, value);
    }
    let response = router
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let headers = response.headers();
    Response::from_headers(
        response.status().as_u16(),
        headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap_or("?"))),
    )
}

impl<S: SessionStore + Clone> Host for LayerHost<S> {
    async fn sign_in(&mut self, now: u64) -> Result<SignedIn, String> {
        let uid = format!("{}@example.com", common::unique("parity"));
        let pending = self
            .auth
            .begin_sign_in(&uid)
            .await
            .map_err(|e| e.to_string())?;
        let signed_in = self
            .auth
            .sign_in_with(
                pending,
                &mut getrandom::SysRng,
                Timestamp::from_unix_millis(now),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(SignedIn {
            client: signed_in.client_id.to_string(),
            uid,
            token: signed_in.token.to_text().as_str().to_owned(),
        })
    }

    async fn send(&mut self, now: u64, wire: &Wire, fault: Option<Fault>) -> Result<Sent, String> {
        self.clock.store(now, Ordering::SeqCst);
        self.store.set(fault);
        let response = self.call(wire).await;
        let swaps_tried = self.store.swaps_tried.load(Ordering::SeqCst);
        self.store.set(None);
        Ok(Sent {
            response,
            swaps_tried: Some(swaps_tried),
        })
    }

    async fn race(
        &mut self,
        now: u64,
        first: &Wire,
        competing: &Wire,
    ) -> Result<(Response, Response), String> {
        self.clock.store(now, Ordering::SeqCst);
        let (loaded_tx, loaded) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        *self.store.hold.lock().unwrap() = Some((loaded_tx, release_rx));
        let first = tokio::spawn(call(self.router.clone(), first.clone()));
        loaded.await.map_err(|_| "the first request never loaded")?;
        let theirs = self.call(competing).await;
        release.send(()).unwrap();
        let ours = first.await.map_err(|e| e.to_string())?;
        Ok((ours, theirs))
    }

    async fn generation(&mut self, client: &str) -> Result<Option<u64>, String> {
        Ok(self.stored(client).await.map(|stored| {
            Session::decode(stored.record.as_bytes())
                .unwrap()
                .generation()
        }))
    }

    async fn save(&mut self, client: &str) -> Result<(), String> {
        self.saved = Some(
            self.stored(client)
                .await
                .ok_or("no session to save")?
                .record,
        );
        Ok(())
    }

    async fn restore(&mut self, client: &str) -> Result<(), String> {
        let saved = self.saved.as_ref().ok_or("nothing saved")?;
        let now = self.stored(client).await.ok_or("no session to restore")?;
        match self
            .store
            .inner
            .compare_and_swap(now.record.version(), saved)
            .await
            .map_err(|e| e.to_string())?
        {
            Swap::Swapped => Ok(()),
            Swap::Lost => Err("the restore lost its swap".to_owned()),
        }
    }
}

/// Runs the suite on `store`, prints the report, and fails on any failed scenario.
async fn suite<S: SessionStore + Clone>(name: &str, store: S) {
    let scenarios = rotauth_parity::scenarios().unwrap();
    let every = [Need::Faults, Need::Race, Need::Patience];
    let report = rotauth_parity::run(name, &scenarios, &every, |config| {
        let store = store.clone();
        async move { LayerHost::new(config, store) }
    })
    .await;
    report.print();
    assert!(report.failed.is_empty(), "{report}");
    assert!(report.passed > 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    suite("axum/memory", rotauth_axum::MemoryStore::new()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    suite("axum/sqlite", common::stores::sqlite().await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    suite("axum/postgres", common::stores::postgres().await).await;
}

#[cfg(feature = "tokio-postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres() {
    suite(
        "axum/tokio-postgres",
        common::stores::tokio_postgres().await,
    )
    .await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    suite("axum/redis", common::stores::redis().await).await;
}
