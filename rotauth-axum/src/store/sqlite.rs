//! SQLite on an sqlx pool.

use std::sync::Arc;

use rotauth::ClientId;
use sqlx::{Row, SqlitePool};
use zeroize::Zeroizing;

use super::connections::Connections;
use super::{
    Record, SessionStore, SessionSummary, StoreError, StoredSession, Swap, client_id_from_bytes,
    sql_int,
};

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS rotauth_sessions (
    client_id BLOB PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    record BLOB NOT NULL,
    version INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
)";
const CREATE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS rotauth_sessions_user_id ON rotauth_sessions (user_id)";
const CREATE_EPOCHS: &str = "CREATE TABLE IF NOT EXISTS rotauth_user_epochs (
    user_id TEXT PRIMARY KEY NOT NULL,
    epoch INTEGER NOT NULL
)";
/// The session, if the user's epoch is still the one the sign-in read (a user without a
/// row is at 0). SQLite runs one writing statement at a time, so no sign-out comes between
/// the check and the write. The WHERE clause also keeps SQLite's parser from taking
/// `ON CONFLICT` for part of the SELECT.
const INSERT: &str =
    "INSERT INTO rotauth_sessions (client_id, user_id, record, version, expires_at)
    SELECT $1, $2, $3, $4, $5
    WHERE COALESCE((SELECT epoch FROM rotauth_user_epochs WHERE user_id = $2), 0) = $6
    ON CONFLICT (client_id) DO NOTHING";

/// Sessions in SQLite, on connections from the app's [`SqlitePool`], in the table
/// `rotauth_sessions` and their users' epochs in `rotauth_user_epochs` (both created by
/// [`migrate`](Self::migrate)).
///
/// The compare-and-swap is `UPDATE … WHERE client_id = $4 AND version = $5`; SQLite runs
/// each statement atomically. Open the pool in WAL mode with a busy timeout (sqlx's
/// default is 5 s) so that concurrent writers wait instead of failing.
///
/// The store takes up to the pool's `max_connections` connections from the pool and
/// keeps them, beside the pool's own: sqlx's pool pings a connection (a hop to its worker
/// thread and back) every time one goes back to it, as much again as the statement. The
/// pool's acquire timeout, idle timeout and maximum lifetime hold for them too; its
/// `before_acquire`, `after_release` and `test_before_acquire` do not. A shared in-memory
/// database (`sqlite::memory:`) is fine: the store's connections share it with the pool's.
/// Its connections lock tables rather than the file, and SQLite answers a statement that
/// finds one locked with "database table is locked" at once, without the busy timeout: the
/// `sqlite` feature turns on sqlx's `sqlite-unlock-notify`, with which such a statement
/// waits for the lock instead (without it, 20 sign-ins at once failed about one run in
/// four).
///
/// Every connection writes: SQLite lets one write at a time, and a connection that finds
/// the lock taken sleeps in SQLite's busy handler (1 ms, then longer) before trying again.
/// One writer connection that requests wait for in turn would sleep never, but each
/// statement's wait would then include the hops to sqlx's worker thread and back, one
/// statement after the other: on the repository's devise server, every request rotating,
/// that served about half as many requests per second as writers on every connection.
///
/// ```no_run
/// use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
/// use rotauth_axum::SqliteStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let options = SqliteConnectOptions::new()
///     .filename("app.db")
///     .create_if_missing(true)
///     .journal_mode(SqliteJournalMode::Wal);
/// let pool = SqlitePoolOptions::new().connect_with(options).await?;
/// let store = SqliteStore::new(pool);
/// store.migrate().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    connections: Arc<Connections<sqlx::Sqlite>>,
}

impl SqliteStore {
    /// A store on `pool`: it takes up to the pool's `max_connections` connections from
    /// it and keeps them (see the type's docs).
    #[must_use]
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            connections: Arc::new(Connections::new(pool.clone())),
            pool,
        }
    }

    /// The pool.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates the tables and the index if they do not exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when SQLite fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        for statement in [CREATE_TABLE, CREATE_INDEX, CREATE_EPOCHS] {
            sqlx::query(statement)
                .execute(&self.pool)
                .await
                .map_err(StoreError::backend)?;
        }
        Ok(())
    }
}

super::sql::sql_session_store!(SqliteStore, INSERT);
