//! Storage: users and one row per session holding rotauth's record bytes.
//!
//! The request handling sees only the [`Store`] trait, so another database (PostgreSQL,
//! say) is one more implementation of it. The one rule every implementation must keep is
//! The storage contract: [`Store::swap_session`] is a compare-and-swap on the version the caller read.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rotauth::{ClientId, Session};
use rusqlite::{Connection, OptionalExtension, params};
use zeroize::Zeroizing;

/// A signed-up user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The database id.
    pub id: i64,
    /// The email, lowercased; devise's `uid` for the email provider.
    pub email: String,
}

/// A user with the PHC string of their password hash.
pub struct UserWithHash {
    /// The user.
    pub user: User,
    /// The argon2 PHC string.
    pub password_hash: String,
}

/// A session row as read: its owner, rotauth's record bytes and the version column.
pub struct StoredSession {
    /// The session's owner.
    pub user: User,
    /// `Session::encode()` output. It holds the seed, so it is wiped when dropped.
    pub record: Zeroizing<Vec<u8>>,
    /// Mirrors `Session::version()` of `record`: what the next update compares against.
    pub version: u64,
}

/// The database failed (unreachable, locked for too long, schema gone, disk full...).
/// The request answers 503 and sends no token.
#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// What the request handling needs from a database.
pub trait Store: Clone + Send + Sync + 'static {
    /// Creates a user; `None` if the email is taken.
    fn create_user(
        &self,
        email: String,
        password_hash: String,
    ) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// The user with this (lowercased) email.
    fn user_by_email(
        &self,
        email: String,
    ) -> impl Future<Output = Result<Option<UserWithHash>, StoreError>> + Send;

    /// The session row of `client_id` with its user.
    fn session(
        &self,
        client_id: ClientId,
    ) -> impl Future<Output = Result<Option<StoredSession>, StoreError>> + Send;

    /// Stores a new session of `user_id`, first dropping the user's expired sessions, then,
    /// beyond `max_per_user`, the ones expiring first. Returns how many were dropped.
    fn insert_session(
        &self,
        user_id: i64,
        session: &Session,
        max_per_user: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Replaces the record of `session.client_id()` if its version is still
    /// `expected_version`. `false`: another request changed or deleted it first; re-read
    /// and decide again.
    fn swap_session(
        &self,
        expected_version: u64,
        session: &Session,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes the session; `false` if it was not there.
    fn delete_session(
        &self,
        client_id: ClientId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Commits an account update together with the request's session record, in one
    /// transaction: the compare-and-swap of `session` on `expected_version` (the record may
    /// be unchanged, which still checks that no other request moved the session on), then
    /// the new email and/or password hash of `change`; a new password deletes every other
    /// session of the user. Nothing is written unless all of it is.
    fn update_account(
        &self,
        expected_version: u64,
        session: &Session,
        change: &AccountChange,
    ) -> impl Future<Output = Result<AccountUpdate, StoreError>> + Send;

    /// Deletes the user and, by the foreign key, every session of theirs; `false` if the
    /// user was not there.
    fn delete_user(&self, user_id: i64) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// What `PUT /auth` and `PUT /auth/password` change, committed with the rotation.
#[derive(Clone)]
pub struct AccountChange {
    /// Whose account.
    pub user_id: i64,
    /// A new (lowercased, validated) email, which is also the new `uid`.
    pub email: Option<String>,
    /// A new argon2 PHC string; every session but the request's own is signed out.
    pub password_hash: Option<Zeroizing<String>>,
}

/// How [`Store::update_account`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountUpdate {
    /// Committed; this many other sessions were signed out.
    Done {
        /// Sessions deleted by a password change.
        signed_out: usize,
    },
    /// The session's version moved on (or the session is gone): nothing written; re-read
    /// and decide again.
    Conflict,
    /// The new email belongs to another user: nothing written.
    EmailTaken,
}

/// SQLite through rusqlite. One connection behind a mutex, used from tokio's blocking pool:
/// SQLite serialises writers anyway, and each statement takes microseconds. The CAS still
/// matters, because a request reads, decides and writes in three separate steps and other
/// requests run in between.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    client_id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    record BLOB NOT NULL,
    version INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_id, expires_at);
";

/// SQL integers are signed (SQLite's and PostgreSQL's `BIGINT`); versions and timestamps
/// are `u64`. The bits are kept as they are, so equality (all the CAS needs) and the order
/// of real timestamps survive.
/// A `u64` in an SQL `BIGINT`, bit for bit.
pub fn to_sql(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// The inverse of [`to_sql`].
pub fn from_sql(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

/// The columns a session's row is written with, prepared the same way by every store.
pub struct SessionRow {
    /// `client_id`: the base64url text, the primary key.
    pub key: String,
    /// `record`: `Session::encode()` output. It holds the seed, so it is wiped when dropped.
    pub record: Zeroizing<[u8; Session::ENCODED_LEN]>,
    /// `version`: mirrors `Session::version()`, what the compare-and-swap compares.
    pub version: i64,
    /// `expires_at`: Unix milliseconds, for purging and for evicting the oldest.
    pub expires_at: i64,
}

impl SessionRow {
    /// The row of `session`.
    pub fn new(session: &Session) -> Self {
        Self {
            key: session.client_id().to_string(),
            record: Zeroizing::new(*session.encode().as_bytes()),
            version: to_sql(session.version()),
            expires_at: to_sql(session.expires_at().unix_millis()),
        }
    }
}

/// The per-user cap on sessions as an SQL integer; one beyond `i64::MAX` is no cap.
pub fn cap_to_sql(max_per_user: usize) -> i64 {
    i64::try_from(max_per_user).unwrap_or(i64::MAX)
}

/// The wall clock in Unix milliseconds, as SQL stores it.
pub fn now_millis() -> i64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    to_sql(ms)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`; `:memory:` is a private
    /// in-memory database that lives as long as the server.
    pub fn open(path: &str) -> Result<Self, StoreError> {
        let conn = if path == ":memory:" {
            Connection::open_in_memory()?
        } else {
            create_private(Path::new(path))?;
            let conn = Connection::open(Path::new(path))?;
            // WAL: readers don't block the writer; NORMAL: no fsync per commit in WAL mode
            // (a power cut may lose the last commits, never corrupt the file).
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        if path != ":memory:" {
            restrict_companions(Path::new(path))?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection in tokio's blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard: MutexGuard<'_, Connection> = conn
                .lock()
                .map_err(|_| StoreError("database connection poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError(format!("database task failed: {e}")))?
    }
}

impl Store for SqliteStore {
    async fn create_user(
        &self,
        email: String,
        password_hash: String,
    ) -> Result<Option<User>, StoreError> {
        self.with_conn(move |conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO users (email, password_hash, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (email) DO NOTHING",
                )?
                .execute(params![email, password_hash, now_millis()])?;
            if inserted == 0 {
                return Ok(None);
            }
            Ok(Some(User {
                id: conn.last_insert_rowid(),
                email,
            }))
        })
        .await
    }

    async fn user_by_email(&self, email: String) -> Result<Option<UserWithHash>, StoreError> {
        self.with_conn(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id, email, password_hash FROM users WHERE email = ?1")?
                .query_row(params![email], |row| {
                    Ok(UserWithHash {
                        user: User {
                            id: row.get(0)?,
                            email: row.get(1)?,
                        },
                        password_hash: row.get(2)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn session(&self, client_id: ClientId) -> Result<Option<StoredSession>, StoreError> {
        let key = client_id.to_string();
        self.with_conn(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT users.id, users.email, sessions.record, sessions.version
                     FROM sessions JOIN users ON users.id = sessions.user_id
                     WHERE sessions.client_id = ?1",
                )?
                .query_row(params![key], |row| {
                    Ok(StoredSession {
                        user: User {
                            id: row.get(0)?,
                            email: row.get(1)?,
                        },
                        record: Zeroizing::new(row.get(2)?),
                        version: from_sql(row.get(3)?),
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn insert_session(
        &self,
        user_id: i64,
        session: &Session,
        max_per_user: usize,
    ) -> Result<usize, StoreError> {
        let row = SessionRow::new(session);
        let max = cap_to_sql(max_per_user);
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let expired = tx
                .prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND expires_at <= ?2")?
                .execute(params![user_id, now_millis()])?;
            tx.prepare_cached(
                "INSERT INTO sessions (client_id, user_id, record, version, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                row.key,
                user_id,
                &row.record[..],
                row.version,
                row.expires_at
            ])?;
            // Beyond the cap, evict the sessions expiring first; the new one expires last.
            let evicted = tx
                .prepare_cached(
                    "DELETE FROM sessions WHERE client_id IN (
                        SELECT client_id FROM sessions WHERE user_id = ?1
                        ORDER BY expires_at ASC, rowid ASC
                        LIMIT max(0, (SELECT count(*) FROM sessions WHERE user_id = ?1) - ?2))",
                )?
                .execute(params![user_id, max])?;
            tx.commit()?;
            Ok(expired.saturating_add(evicted))
        })
        .await
    }

    async fn swap_session(
        &self,
        expected_version: u64,
        session: &Session,
    ) -> Result<bool, StoreError> {
        let row = SessionRow::new(session);
        let expected = to_sql(expected_version);
        self.with_conn(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE sessions SET record = ?1, version = ?2, expires_at = ?3
                     WHERE client_id = ?4 AND version = ?5",
                )?
                .execute(params![
                    &row.record[..],
                    row.version,
                    row.expires_at,
                    row.key,
                    expected
                ])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn delete_session(&self, client_id: ClientId) -> Result<bool, StoreError> {
        let key = client_id.to_string();
        self.with_conn(move |conn| {
            let deleted = conn
                .prepare_cached("DELETE FROM sessions WHERE client_id = ?1")?
                .execute(params![key])?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn update_account(
        &self,
        expected_version: u64,
        session: &Session,
        change: &AccountChange,
    ) -> Result<AccountUpdate, StoreError> {
        let row = SessionRow::new(session);
        let expected = to_sql(expected_version);
        let change = change.clone();
        self.with_conn(move |conn| {
            // IMMEDIATE: take the write lock first, so a busy database fails (or waits out
            // its busy timeout) before anything is decided inside the transaction.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let swapped = tx
                .prepare_cached(
                    "UPDATE sessions SET record = ?1, version = ?2, expires_at = ?3
                     WHERE client_id = ?4 AND version = ?5",
                )?
                .execute(params![
                    &row.record[..],
                    row.version,
                    row.expires_at,
                    row.key,
                    expected
                ])?;
            if swapped != 1 {
                return Ok(AccountUpdate::Conflict);
            }
            if let Some(email) = &change.email {
                let updated = tx
                    .prepare_cached(
                        "UPDATE users SET email = ?1 WHERE id = ?2
                         AND NOT EXISTS (SELECT 1 FROM users WHERE email = ?1 AND id <> ?2)",
                    )?
                    .execute(params![email, change.user_id])?;
                if updated != 1 {
                    return Ok(AccountUpdate::EmailTaken);
                }
            }
            let mut signed_out = 0;
            if let Some(hash) = &change.password_hash {
                tx.prepare_cached("UPDATE users SET password_hash = ?1 WHERE id = ?2")?
                    .execute(params![hash.as_str(), change.user_id])?;
                signed_out = tx
                    .prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND client_id <> ?2")?
                    .execute(params![change.user_id, row.key])?;
            }
            tx.commit()?;
            Ok(AccountUpdate::Done { signed_out })
        })
        .await
    }

    async fn delete_user(&self, user_id: i64) -> Result<bool, StoreError> {
        self.with_conn(move |conn| {
            let deleted = conn
                .prepare_cached("DELETE FROM users WHERE id = ?1")?
                .execute(params![user_id])?;
            Ok(deleted == 1)
        })
        .await
    }
}

/// Creates the database file readable and writable by its owner only (it holds password
/// hashes and session seeds), whatever the umask, and tightens an existing one. SQLite
/// creates `-wal` and `-shm` with the database file's mode; [`restrict_companions`] makes
/// sure of it.
#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e: std::io::Error| StoreError(format!("{}: {e}", path.display()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// `0600` on the `-wal` and `-shm` files next to `path`, where they exist.
#[cfg(unix)]
fn restrict_companions(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let companion = std::path::PathBuf::from(name);
        if companion.exists() {
            std::fs::set_permissions(&companion, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| StoreError(format!("{}: {e}", companion.display())))?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_companions(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}
