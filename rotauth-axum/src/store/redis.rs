//! Redis on a connection manager.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use rotauth::{ClientId, Timestamp};
use zeroize::Zeroizing;

use super::{KeyCensus, Record, SessionStore, SessionSummary, StoreError, StoredSession, Swap};

/// Inserts a session hash unless it exists or the user's epoch moved, sets its expiry,
/// adds it to the user's set. Returns 1, 0 for a taken id, -1 for a moved epoch.
/// KEYS: session hash, user set, user epoch. ARGV: user id, record, version, expires_at
/// ms, client id, epoch.
const INSERT: &str = r"
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[6] then return -1 end
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

/// Moves the user's epoch on and deletes the user's sessions but one. Returns how many
/// were deleted. KEYS: user set, user epoch. ARGV: session key prefix, client id to keep
/// (empty: none).
const DELETE_USER_SESSIONS: &str = r"
redis.call('INCR', KEYS[2])
local deleted = 0
for _, client in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if client ~= ARGV[2] then
    deleted = deleted + redis.call('DEL', ARGV[1] .. client)
    redis.call('SREM', KEYS[1], client)
  end
end
return deleted
";

/// Moves the `from` user's sessions to `to` and the `from` epoch on. Returns how many
/// moved. KEYS: `from` set, `to` set, `from` epoch. ARGV: session key prefix, `to` user id.
const RENAME_USER: &str = r"
redis.call('INCR', KEYS[3])
if KEYS[1] == KEYS[2] then return redis.call('SCARD', KEYS[1]) end
local moved = 0
for _, client in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  -- HSET answers 0 when it overwrote the field of a live session; 1 when it made a
  -- hash, for an id left in the set after its session expired, which goes again.
  if redis.call('HSET', ARGV[1] .. client, 'user', ARGV[2]) == 0 then
    redis.call('SADD', KEYS[2], client)
    moved = moved + 1
  else
    redis.call('DEL', ARGV[1] .. client)
  end
end
redis.call('DEL', KEYS[1])
return moved
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
/// A user's epoch is the counter `{prefix}epoch:{user id}`, which never expires.
///
/// Insert, compare-and-swap and the two user-wide operations (signing a user out, moving
/// a user's sessions) are Lua scripts, so each runs atomically in Redis: of any number of
/// concurrent swaps from one version, exactly one matches, and an insert is either before
/// a user's sign-out (and deleted by it) or after it (and refused). The user-wide scripts
/// reach the sessions through the user's set, by keys they build from the prefix: on a
/// Redis Cluster, give the store a prefix with a hash tag (`{rotauth}:`) so that every key
/// is in one slot.
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
    delete_user_sessions: Arc<Script>,
    rename_user: Arc<Script>,
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
            delete_user_sessions: Arc::new(Script::new(DELETE_USER_SESSIONS)),
            rename_user: Arc::new(Script::new(RENAME_USER)),
        }
    }

    /// Puts every key under `prefix` instead (several apps on one Redis, tests).
    #[must_use]
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    fn session_prefix(&self) -> String {
        format!("{}session:", self.prefix)
    }

    fn session_key(&self, client_id: ClientId) -> String {
        format!("{}session:{client_id}", self.prefix)
    }

    fn user_key(&self, user_id: &str) -> String {
        format!("{}user:{user_id}", self.prefix)
    }

    fn epoch_key(&self, user_id: &str) -> String {
        format!("{}epoch:{user_id}", self.prefix)
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

    async fn epoch(&self, user_id: &str) -> Result<u64, StoreError> {
        let epoch: Option<u64> = self
            .conn()
            .get(self.epoch_key(user_id))
            .await
            .map_err(StoreError::backend)?;
        Ok(epoch.unwrap_or(0))
    }

    async fn insert(&self, user_id: &str, epoch: u64, record: &Record) -> Result<(), StoreError> {
        let inserted: i64 = self
            .insert
            .key(self.session_key(record.client_id()))
            .key(self.user_key(user_id))
            .key(self.epoch_key(user_id))
            .arg(user_id)
            .arg(record.as_bytes())
            .arg(record.version())
            .arg(expiry_ms(record))
            .arg(record.client_id().to_string())
            .arg(epoch)
            .invoke_async(&mut self.conn())
            .await
            .map_err(StoreError::backend)?;
        match inserted {
            1 => Ok(()),
            0 => Err(StoreError::Duplicate),
            _ => Err(StoreError::EpochChanged),
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
        let deleted: u64 = self
            .delete_user_sessions
            .key(self.user_key(user_id))
            .key(self.epoch_key(user_id))
            .arg(self.session_prefix())
            .arg(keep.map(|keep| keep.to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await
            .map_err(StoreError::backend)?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    async fn rename_user(&self, from: &str, to: &str) -> Result<usize, StoreError> {
        let moved: u64 = self
            .rename_user
            .key(self.user_key(from))
            .key(self.user_key(to))
            .key(self.epoch_key(from))
            .arg(self.session_prefix())
            .arg(to)
            .invoke_async(&mut self.conn())
            .await
            .map_err(StoreError::backend)?;
        Ok(usize::try_from(moved).unwrap_or(usize::MAX))
    }

    async fn sessions_per_key(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(rotauth::KeyId, u64)>, StoreError> {
        let mut conn = self.conn();
        let pattern = format!("{}*", self.session_prefix());
        let mut census = KeyCensus::default();
        let mut cursor: u64 = 0;
        loop {
            // SCAN walks the keyspace a page at a time without blocking Redis; a key may
            // be returned twice across pages only while keys are added or dropped, which a
            // census of live sessions tolerates.
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(StoreError::backend)?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.hget(key, "record");
                }
                let records: Vec<Option<Vec<u8>>> = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(StoreError::backend)?;
                for bytes in records.into_iter().flatten() {
                    census.count_bytes(&Zeroizing::new(bytes), now);
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(census.into_counts())
    }
}
