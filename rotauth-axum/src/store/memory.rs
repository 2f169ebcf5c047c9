//! The in-memory store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use rotauth::ClientId;

use super::{KeyCensus, Record, SessionStore, SessionSummary, StoreError, StoredSession, Swap};

#[derive(Default)]
struct Sessions {
    by_client: HashMap<ClientId, StoredSession>,
    by_user: HashMap<String, HashSet<ClientId>>,
    /// Users signed out at least once; the others are at epoch 0.
    epochs: HashMap<String, u64>,
}

impl Sessions {
    fn epoch(&self, user_id: &str) -> u64 {
        self.epochs.get(user_id).copied().unwrap_or(0)
    }

    fn next_epoch(&mut self, user_id: &str) {
        let epoch = self.epochs.entry(user_id.to_owned()).or_insert(0);
        *epoch = epoch.wrapping_add(1);
    }

    fn remove(&mut self, client_id: ClientId) -> bool {
        let Some(stored) = self.by_client.remove(&client_id) else {
            return false;
        };
        if let Some(clients) = self.by_user.get_mut(&stored.user_id) {
            clients.remove(&client_id);
            if clients.is_empty() {
                self.by_user.remove(&stored.user_id);
            }
        }
        true
    }
}

/// Sessions in this process's memory, behind one mutex: for tests and single-process apps.
/// Everything is lost when the process exits. Cloning shares the sessions.
///
/// ```
/// use rotauth_axum::MemoryStore;
/// let store = MemoryStore::new();
/// assert!(store.is_empty());
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Sessions>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many sessions are stored, expired ones included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().by_client.len()
    }

    /// Whether no session is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the sessions that expired before `now`; returns how many.
    pub fn purge_expired(&self, now: rotauth::Timestamp) -> usize {
        let mut sessions = self.lock();
        let expired: Vec<ClientId> = sessions
            .by_client
            .iter()
            .filter(|(_, s)| s.record.expires_at() <= now)
            .map(|(c, _)| *c)
            .collect();
        expired.iter().filter(|c| sessions.remove(**c)).count()
    }

    /// The lock, also after a panic in another thread: every update below leaves the maps
    /// consistent before anything that could panic.
    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SessionStore for MemoryStore {
    async fn load(&self, client_id: ClientId) -> Result<Option<StoredSession>, StoreError> {
        Ok(self.lock().by_client.get(&client_id).cloned())
    }

    async fn epoch(&self, user_id: &str) -> Result<u64, StoreError> {
        Ok(self.lock().epoch(user_id))
    }

    async fn insert(&self, user_id: &str, epoch: u64, record: &Record) -> Result<(), StoreError> {
        let mut sessions = self.lock();
        let client_id = record.client_id();
        if sessions.epoch(user_id) != epoch {
            return Err(StoreError::EpochChanged);
        }
        if sessions.by_client.contains_key(&client_id) {
            return Err(StoreError::Duplicate);
        }
        sessions.by_client.insert(
            client_id,
            StoredSession {
                user_id: user_id.to_owned(),
                record: record.clone(),
            },
        );
        sessions
            .by_user
            .entry(user_id.to_owned())
            .or_default()
            .insert(client_id);
        Ok(())
    }

    async fn compare_and_swap(
        &self,
        expected_version: u64,
        record: &Record,
    ) -> Result<Swap, StoreError> {
        let mut sessions = self.lock();
        match sessions.by_client.get_mut(&record.client_id()) {
            Some(stored) if stored.record.version() == expected_version => {
                stored.record = record.clone();
                Ok(Swap::Swapped)
            }
            _ => Ok(Swap::Lost),
        }
    }

    async fn delete(&self, client_id: ClientId) -> Result<bool, StoreError> {
        Ok(self.lock().remove(client_id))
    }

    async fn list(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
        let sessions = self.lock();
        let Some(clients) = sessions.by_user.get(user_id) else {
            return Ok(Vec::new());
        };
        Ok(clients
            .iter()
            .filter_map(|c| sessions.by_client.get(c))
            .map(|s| SessionSummary {
                client_id: s.record.client_id(),
                expires_at: s.record.expires_at(),
            })
            .collect())
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        keep: Option<ClientId>,
    ) -> Result<usize, StoreError> {
        let mut sessions = self.lock();
        sessions.next_epoch(user_id);
        let doomed: Vec<ClientId> = sessions
            .by_user
            .get(user_id)
            .map(|clients| {
                clients
                    .iter()
                    .copied()
                    .filter(|c| Some(*c) != keep)
                    .collect()
            })
            .unwrap_or_default();
        Ok(doomed.iter().filter(|c| sessions.remove(**c)).count())
    }

    async fn rename_user(&self, from: &str, to: &str) -> Result<usize, StoreError> {
        let mut sessions = self.lock();
        sessions.next_epoch(from);
        if from == to {
            return Ok(sessions.by_user.get(from).map_or(0, HashSet::len));
        }
        let Some(moved) = sessions.by_user.remove(from) else {
            return Ok(0);
        };
        for client_id in &moved {
            if let Some(stored) = sessions.by_client.get_mut(client_id) {
                to.clone_into(&mut stored.user_id);
            }
        }
        let count = moved.len();
        sessions
            .by_user
            .entry(to.to_owned())
            .or_default()
            .extend(moved);
        Ok(count)
    }

    async fn sessions_per_key(
        &self,
        now: rotauth::Timestamp,
    ) -> Result<Vec<(rotauth::KeyId, u64)>, StoreError> {
        let mut census = KeyCensus::default();
        for stored in self.lock().by_client.values() {
            census.count(&stored.record, now);
        }
        Ok(census.into_counts())
    }
}
