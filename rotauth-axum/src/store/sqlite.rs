//! SQLite on an sqlx pool.

use rotauth::ClientId;
use sqlx::{Row, SqlitePool};
use zeroize::Zeroizing;

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

/// Sessions in SQLite, on the app's [`SqlitePool`], in the table `rotauth_sessions`
/// (created by [`migrate`](Self::migrate)).
///
/// The compare-and-swap is `UPDATE … WHERE client_id = $4 AND version = $5`; SQLite runs
/// each statement atomically. Open the pool in WAL mode with a busy timeout (sqlx's
/// default is 5 s) so that concurrent writers wait instead of failing:
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
}

impl SqliteStore {
    /// A store on `pool`.
    #[must_use]
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// The pool.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates the table and its index if they do not exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when SQLite fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query(CREATE_TABLE)
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        sqlx::query(CREATE_INDEX)
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }
}

super::sql::sql_session_store!(SqliteStore);
