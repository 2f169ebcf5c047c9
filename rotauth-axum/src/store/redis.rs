//! Redis on a connection manager.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use rotauth::{ClientId, Timestamp};
use zeroize::Zeroizing;

use super::{Record, SessionStore, SessionSummary, StoreError, StoredSession, Swap};

/// Inserts a session hash unless it exists, sets its expiry, adds it to the user's set.
/// KEYS: session hash, user set. ARGV: user id, record, version, expires_at ms, client id.
const INSERT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'record', ARGV[2], 'version', ARGV[3], 'expires', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
return 1
";

/// Replaces the record if the stored version is the expected one, and moves the expiry.
/// KEYS: session hash. ARGV: expected version, record, version, expires_at ms.
const COMPARE_AND_SWAP: &str = r"
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[2], 'version', ARGV[3], 'expires', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 1
";

/// Latest expiry handed to Redis (the end of year 9999): rotauth's "never"
/// ([`Timestamp::MAX`]) is beyond what `PEXPIREAT` accepts.
const MAX_EXPIRY_MS: u64 = 253_402_300_799_999;

/// Sessions in Redis, on the app's [`ConnectionManager`] (which reconnects by itself).
///
/// Each session is a hash `{prefix}session:{client id}` with the user id, the record, its
/// version and expiry; the key expires (`PEXPIREAT`) when the session does, and every
/// rotation moves it. A user's client ids are in the set `{prefix}user:{user id}`, pruned
/// of expired sessions whenever it is listed (every sign-in lists it).
///
/// Insert and compare-and-swap are Lua scripts, so each runs atomically in Redis: of any
/// number of concurrent swaps from one version, exactly one matches. The scripts touch
/// only the keys they declare; on a Redis Cluster, give the store a prefix with a hash tag
/// only if you need multi-key operations to stay in one slot (none of these do).
///
/// Durability is Redis's: with the default snapshotting a crash loses the last seconds of
/// rotations, which rotauth repairs (a client holding a newer token fast-forwards the
/// restored record) but signed-in sessions since the last snapshot are lost. Use
/// `appendonly yes` if that matters.
///
/// ```no_run
/// use rotauth_axum::RedisStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open("redis://127.0.0.1/")?;
/// let manager = redis::aio::ConnectionManager::new(client).await?;
/// let store = RedisStore::new(manager);
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    manager: ConnectionManager,
    prefix: Arc<str>,
    insert: Arc<Script>,
    swap: Arc<Script>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The key prefix unless set otherwise.
    pub const DEFAULT_PREFIX: &'static str = "rotauth:";

    /// A store on `manager`, with keys under [`DEFAULT_PREFIX`](Self::DEFAULT_PREFIX).
    #[must_use]
    pub fn new(manager: ConnectionManager) -> Self {
        Self {
            manager,
            prefix: Arc::from(Self::DEFAULT_PREFIX),
            insert: Arc::new(Script::new(INSERT)),
            swap: Arc::new(Script::new(COMPARE_AND_SWAP)),
        }
    }

    /// Puts every key under `prefix` instead (several apps on one Redis, tests).
    #[must_use]
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    fn session_key(&self, client_id: ClientId) -> String {
        format!("{}session:{client_id}", self.prefix)
    }

    fn user_key(&self, user_id: &str) -> String {
        format!("{}user:{user_id}", self.prefix)
    }

    fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }
}

fn expiry_ms(record: &Record) -> u64 {
    record.expires_at().unix_millis().min(MAX_EXPIRY_MS)
}

impl SessionStore for RedisStore {
    async fn load(&self, client_id: ClientId) -> Result<Option<StoredSession>, StoreError> {
        let (user, record): (Option<String>, Option<Vec<u8>>) = self
            .conn()
            .hmget(self.session_key(client_id), &["user", "record"])
            .await
            .map_err(StoreError::backend)?;
        let (Some(user_id), Some(bytes)) = (user, record) else {
            return Ok(None);
        };
        let bytes = Zeroizing::new(bytes);
        Ok(Some(StoredSession {
            user_id,
            record: Record::from_bytes(&bytes)?,
        }))
    }

    async fn insert(&self, user_id: &str, record: &Record) -> Result<(), StoreError> {
        let inserted: i64 = self
            .insert
            .key(self.session_key(record.client_id()))
            .key(self.user_key(user_id))
            .arg(user_id)
            .arg(record.as_bytes())
            .arg(record.version())
            .arg(expiry_ms(record))
            .arg(record.client_id().to_string())
            .invoke_async(&mut self.conn())
            .await
            .map_err(StoreError::backend)?;
        if inserted == 1 {
            Ok(())
        } else {
            Err(StoreError::Duplicate)
        }
    }

    async fn compare_and_swap(
        &self,
        expected_version: u64,
        record: &Record,
    ) -> Result<Swap, StoreError> {
        let swapped: i64 = self
            .swap
            .key(self.session_key(record.client_id()))
            .arg(expected_version.to_string())
            .arg(record.as_bytes())
            .arg(record.version())
            .arg(expiry_ms(record))
            .invoke_async(&mut self.conn())
            .await
            .map_err(StoreError::backend)?;
        Ok(if swapped == 1 {
            Swap::Swapped
        } else {
            Swap::Lost
        })
    }

    async fn delete(&self, client_id: ClientId) -> Result<bool, StoreError> {
        // The user's set keeps the id until it is next listed.
        let deleted: i64 = self
            .conn()
            .del(self.session_key(client_id))
            .await
            .map_err(StoreError::backend)?;
        Ok(deleted > 0)
    }

    async fn list(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
        let mut conn = self.conn();
        let user_key = self.user_key(user_id);
        let members: Vec<String> = conn
            .smembers(&user_key)
            .await
            .map_err(StoreError::backend)?;
        let mut ids = Vec::with_capacity(members.len());
        let mut pipe = redis::pipe();
        for member in &members {
            if let Ok(client_id) = member.parse::<ClientId>() {
                pipe.hmget(self.session_key(client_id), &["user", "expires"]);
                ids.push(client_id);
            }
        }
        let fields: Vec<(Option<String>, Option<u64>)> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn)
                .await
                .map_err(StoreError::backend)?
        };
        let mut summaries = Vec::with_capacity(ids.len());
        let mut stale = Vec::new();
        for (client_id, (user, expires)) in ids.into_iter().zip(fields) {
            match (user, expires) {
                (Some(user), Some(expires)) if user == user_id => summaries.push(SessionSummary {
                    client_id,
                    expires_at: Timestamp::from_unix_millis(expires),
                }),
                _ => stale.push(client_id.to_string()),
            }
        }
        if !stale.is_empty() {
            let _: i64 = conn
                .srem(&user_key, stale)
                .await
                .map_err(StoreError::backend)?;
        }
        Ok(summaries)
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        keep: Option<ClientId>,
    ) -> Result<usize, StoreError> {
        let mut deleted = 0usize;
        for summary in self.list(user_id).await? {
            if Some(summary.client_id) != keep && self.delete(summary.client_id).await? {
                deleted = deleted.saturating_add(1);
            }
        }
        Ok(deleted)
    }
}
