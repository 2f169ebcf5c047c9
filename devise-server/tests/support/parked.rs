//! A database whose session store can park the next sign-in in its insert, so that a test
//! holds a sign-in open between its password check and its write while another request
//! changes the account: the races of account changes, made deterministic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use devise_server::db::{Database, EmailChange, User, UserWithHash};
use rotauth::ClientId;
use rotauth_axum::{Record, SessionStore, SessionSummary, StoreError, StoredSession, Swap};
use tokio::sync::Barrier;

/// Where the next insert parks: after it reached the store (`after`) or before.
struct Park {
    after: bool,
    arrived: Arc<Barrier>,
    release: Arc<Barrier>,
}

/// The test's side of a park.
pub struct Parked {
    arrived: Arc<Barrier>,
    release: Arc<Barrier>,
}

impl Parked {
    /// Waits until the sign-in is parked.
    pub async fn arrived(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.arrived.wait())
            .await
            .expect("the sign-in never reached its insert");
    }

    /// Lets it go on.
    pub async fn release(&self) {
        self.release.wait().await;
    }
}

/// The store of [`ParkingDb`]: everything goes to the inner store, the parked insert late.
#[derive(Clone)]
pub struct ParkingSessions<S> {
    inner: S,
    park: Arc<Mutex<Option<Park>>>,
}

impl<S: SessionStore> SessionStore for ParkingSessions<S> {
    async fn load(&self, client_id: ClientId) -> Result<Option<StoredSession>, StoreError> {
        self.inner.load(client_id).await
    }

    async fn epoch(&self, user_id: &str) -> Result<u64, StoreError> {
        self.inner.epoch(user_id).await
    }

    async fn insert(&self, user_id: &str, epoch: u64, record: &Record) -> Result<(), StoreError> {
        let park = self.park.lock().unwrap().take();
        let Some(park) = park else {
            return self.inner.insert(user_id, epoch, record).await;
        };
        let early = if park.after {
            Some(self.inner.insert(user_id, epoch, record).await)
        } else {
            None
        };
        park.arrived.wait().await;
        park.release.wait().await;
        match early {
            Some(inserted) => inserted,
            None => self.inner.insert(user_id, epoch, record).await,
        }
    }

    async fn compare_and_swap(
        &self,
        expected_version: u64,
        record: &Record,
    ) -> Result<Swap, StoreError> {
        self.inner.compare_and_swap(expected_version, record).await
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

/// A database whose sessions can park the next insert ([`Self::park_next_insert`]).
#[derive(Clone)]
pub struct ParkingDb<D> {
    inner: D,
    park: Arc<Mutex<Option<Park>>>,
}

impl<D: Database> ParkingDb<D> {
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            park: Arc::default(),
        }
    }

    /// The next session insert parks, with its write done first when `after`.
    pub fn park_next_insert(&self, after: bool) -> Parked {
        let arrived = Arc::new(Barrier::new(2));
        let release = Arc::new(Barrier::new(2));
        *self.park.lock().unwrap() = Some(Park {
            after,
            arrived: Arc::clone(&arrived),
            release: Arc::clone(&release),
        });
        Parked { arrived, release }
    }
}

impl<D: Database> Database for ParkingDb<D> {
    type Sessions = ParkingSessions<D::Sessions>;

    fn sessions(&self) -> Self::Sessions {
        ParkingSessions {
            inner: self.inner.sessions(),
            park: Arc::clone(&self.park),
        }
    }

    async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
    ) -> Result<Option<User>, StoreError> {
        self.inner.create_user(email, password_hash).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserWithHash>, StoreError> {
        self.inner.user_by_email(email).await
    }

    async fn set_email(&self, user: &User, email: &str) -> Result<EmailChange, StoreError> {
        self.inner.set_email(user, email).await
    }

    async fn set_password_hash(&self, user: &User, hash: &str) -> Result<bool, StoreError> {
        self.inner.set_password_hash(user, hash).await
    }

    async fn upgrade_password_hash(
        &self,
        user: &User,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        self.inner.upgrade_password_hash(user, old, new).await
    }

    async fn delete_user(&self, user: &User) -> Result<bool, StoreError> {
        self.inner.delete_user(user).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
