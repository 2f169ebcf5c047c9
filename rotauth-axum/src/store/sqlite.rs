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
/// The compare-and-swap is `UPDATE … WHERE client_id = ? AND version = ?`; SQLite runs
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

impl SessionStore for SqliteStore {
    async fn load(&self, client_id: ClientId) -> Result<Option<StoredSession>, StoreError> {
        let row = sqlx::query("SELECT user_id, record FROM rotauth_sessions WHERE client_id = ?")
            .bind(&client_id.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user_id: String = row.try_get(0).map_err(StoreError::backend)?;
        let bytes = Zeroizing::new(row.try_get::<Vec<u8>, _>(1).map_err(StoreError::backend)?);
        Ok(Some(StoredSession {
            user_id,
            record: Record::from_bytes(&bytes)?,
        }))
    }

    async fn insert(&self, user_id: &str, record: &Record) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO rotauth_sessions (client_id, user_id, record, version, expires_at)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(&record.client_id().as_bytes()[..])
        .bind(user_id)
        .bind(record.as_bytes())
        .bind(sql_int(record.version())?)
        .bind(sql_int(record.expires_at().unix_millis())?)
        .execute(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        if done.rows_affected() == 1 {
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
        let done = sqlx::query(
            "UPDATE rotauth_sessions SET record = ?, version = ?, expires_at = ?
             WHERE client_id = ? AND version = ?",
        )
        .bind(record.as_bytes())
        .bind(sql_int(record.version())?)
        .bind(sql_int(record.expires_at().unix_millis())?)
        .bind(&record.client_id().as_bytes()[..])
        .bind(sql_int(expected_version)?)
        .execute(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        Ok(if done.rows_affected() == 1 {
            Swap::Swapped
        } else {
            Swap::Lost
        })
    }

    async fn delete(&self, client_id: ClientId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM rotauth_sessions WHERE client_id = ?")
            .bind(&client_id.as_bytes()[..])
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
        let rows =
            sqlx::query("SELECT client_id, expires_at FROM rotauth_sessions WHERE user_id = ?")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::backend)?;
        rows.iter()
            .map(|row| {
                let client: Vec<u8> = row.try_get(0).map_err(StoreError::backend)?;
                let expires: i64 = row.try_get(1).map_err(StoreError::backend)?;
                Ok(SessionSummary {
                    client_id: client_id_from_bytes(&client)?,
                    expires_at: rotauth::Timestamp::from_unix_millis(
                        u64::try_from(expires).unwrap_or(0),
                    ),
                })
            })
            .collect()
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        keep: Option<ClientId>,
    ) -> Result<usize, StoreError> {
        let done = match keep {
            Some(keep) => {
                sqlx::query("DELETE FROM rotauth_sessions WHERE user_id = ? AND client_id <> ?")
                    .bind(user_id)
                    .bind(&keep.as_bytes()[..])
                    .execute(&self.pool)
                    .await
            }
            None => {
                sqlx::query("DELETE FROM rotauth_sessions WHERE user_id = ?")
                    .bind(user_id)
                    .execute(&self.pool)
                    .await
            }
        }
        .map_err(StoreError::backend)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }
}
