//! PostgreSQL on tokio-postgres, with connections of the store's own.

use std::sync::Arc;
use std::time::Duration;

use rotauth::{ClientId, KeyId, Timestamp};
use tokio_postgres::Config;

use super::pg_clients::{Clients, Sql, backend};
use super::statements::{CENSUS_PAGE, pg};
use super::{
    KeyCensus, Record, SessionStore, SessionSummary, StoreError, StoredSession, Swap,
    client_id_from_bytes, sql_int,
};

/// Sessions in PostgreSQL through tokio-postgres: the same tables, statements and
/// guarantees as `PostgresStore` of the `postgres` feature (the two can serve the same
/// database side by side), on connections the store opens itself, each keeping its
/// prepared statements.
///
/// On the repository's devise server, every request rotating on a 2-core machine, this
/// store served more requests per second than the sqlx one: a request's two statements
/// (the load and the compare-and-swap) cost one round trip each with either driver, but
/// less CPU in the server with this one (see the crate's README for the figures).
///
/// The store opens up to `max_connections` connections as the load needs them and keeps
/// them for as long as they work: a connection whose statement failed is dropped, one the
/// server closed is dropped when next found, and the authenticator tries again on another
/// within its [`store_patience`](crate::Authenticator::store_patience). Connections have
/// no TLS (a loopback address, a unix socket or a TLS proxy, as with the `postgres`
/// feature); set a connect timeout on the [`Config`].
///
/// ```no_run
/// use rotauth_axum::TokioPostgresStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config: tokio_postgres::Config = "postgres://app@localhost/app".parse()?;
/// let store = TokioPostgresStore::new(config, 16);
/// store.migrate().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TokioPostgresStore {
    clients: Arc<Clients>,
}

impl TokioPostgresStore {
    /// How long a statement waits for a free connection unless told otherwise.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

    /// A store on `config` with up to `max_connections` connections (at least one).
    #[must_use]
    pub fn new(config: Config, max_connections: usize) -> Self {
        Self::with_acquire_timeout(config, max_connections, Self::DEFAULT_ACQUIRE_TIMEOUT)
    }

    /// A store whose statements wait `timeout` at most for a free connection, then fail
    /// with [`StoreError::Backend`].
    #[must_use]
    pub fn with_acquire_timeout(config: Config, max_connections: usize, timeout: Duration) -> Self {
        Self {
            clients: Arc::new(Clients::new(config, max_connections, timeout)),
        }
    }

    /// The connection settings.
    #[must_use]
    pub fn config(&self) -> &Config {
        self.clients.config()
    }

    /// Creates the tables and the index if they do not exist, as `PostgresStore::migrate`
    /// does: in one transaction under an advisory lock, so safe to run from several
    /// replicas starting at once.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when PostgreSQL fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.clients
            .lease()
            .await?
            .batch_in_transaction(&pg::MIGRATION)
            .await
    }

    /// The user's epoch, if the user has a row.
    async fn epoch_row(&self, user_id: &str) -> Result<Option<i64>, StoreError> {
        let row = self
            .clients
            .lease()
            .await?
            .query_opt(Sql::SelectEpoch, &[&user_id])
            .await?;
        row.map(|row| row.try_get(0).map_err(backend)).transpose()
    }
}

impl SessionStore for TokioPostgresStore {
    async fn load(&self, client_id: ClientId) -> Result<Option<StoredSession>, StoreError> {
        let key = &client_id.as_bytes()[..];
        let row = self
            .clients
            .lease()
            .await?
            .query_opt(Sql::Load, &[&key])
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user_id: String = row.try_get(0).map_err(backend)?;
        let bytes: &[u8] = row.try_get(1).map_err(backend)?;
        Ok(Some(StoredSession {
            user_id,
            record: Record::from_bytes(bytes)?,
        }))
    }

    async fn epoch(&self, user_id: &str) -> Result<u64, StoreError> {
        let epoch = match self.epoch_row(user_id).await? {
            Some(epoch) => epoch,
            None => {
                self.clients
                    .lease()
                    .await?
                    .execute(Sql::CreateEpoch, &[&user_id])
                    .await?;
                self.epoch_row(user_id)
                    .await?
                    .ok_or_else(|| StoreError::backend("the epoch row vanished"))?
            }
        };
        u64::try_from(epoch).map_err(|_| StoreError::backend("negative epoch"))
    }

    async fn insert(&self, user_id: &str, epoch: u64, record: &Record) -> Result<(), StoreError> {
        let client_id = record.client_id();
        let key = &client_id.as_bytes()[..];
        let (version, expires_at, epoch) = (
            sql_int(record.version())?,
            sql_int(record.expires_at().unix_millis())?,
            sql_int(epoch)?,
        );
        let mut lease = self.clients.lease().await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &key,
            &user_id,
            &record.as_bytes(),
            &version,
            &expires_at,
            &epoch,
        ];
        if lease.execute(Sql::Insert, &params).await? == 1 {
            return Ok(());
        }
        // Nothing written: a taken client id, or the epoch moved.
        Err(if lease.query_opt(Sql::Taken, &[&key]).await?.is_some() {
            StoreError::Duplicate
        } else {
            StoreError::EpochChanged
        })
    }

    async fn compare_and_swap(
        &self,
        expected_version: u64,
        record: &Record,
    ) -> Result<Swap, StoreError> {
        let client_id = record.client_id();
        let (version, expires_at, expected) = (
            sql_int(record.version())?,
            sql_int(record.expires_at().unix_millis())?,
            sql_int(expected_version)?,
        );
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &record.as_bytes(),
            &version,
            &expires_at,
            &&client_id.as_bytes()[..],
            &expected,
        ];
        let swapped = self
            .clients
            .lease()
            .await?
            .execute(Sql::Swap, &params)
            .await?;
        Ok(if swapped == 1 {
            Swap::Swapped
        } else {
            Swap::Lost
        })
    }

    async fn delete(&self, client_id: ClientId) -> Result<bool, StoreError> {
        let key = &client_id.as_bytes()[..];
        let deleted = self
            .clients
            .lease()
            .await?
            .execute(Sql::Delete, &[&key])
            .await?;
        Ok(deleted > 0)
    }

    async fn list(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
        let rows = self
            .clients
            .lease()
            .await?
            .query(Sql::List, &[&user_id])
            .await?;
        rows.iter()
            .map(|row| {
                let client: &[u8] = row.try_get(0).map_err(backend)?;
                let expires: i64 = row.try_get(1).map_err(backend)?;
                Ok(SessionSummary {
                    client_id: client_id_from_bytes(client)?,
                    expires_at: Timestamp::from_unix_millis(u64::try_from(expires).unwrap_or(0)),
                })
            })
            .collect()
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        keep: Option<ClientId>,
    ) -> Result<usize, StoreError> {
        // No session has an empty client id: `keep = None` deletes them all.
        let keep = keep.map_or_else(Vec::new, |keep| keep.as_bytes().to_vec());
        let keep = &keep[..];
        // The epoch first: this waits for inserts that hold its row, so the delete sees
        // what they wrote.
        let deleted = self
            .clients
            .lease()
            .await?
            .execute_both(
                (Sql::NextEpoch, &[&user_id]),
                (Sql::DeleteUserSessions, &[&user_id, &keep]),
            )
            .await?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    async fn rename_user(&self, from: &str, to: &str) -> Result<usize, StoreError> {
        let moved = self
            .clients
            .lease()
            .await?
            .execute_both((Sql::NextEpoch, &[&from]), (Sql::RenameUser, &[&from, &to]))
            .await?;
        Ok(usize::try_from(moved).unwrap_or(usize::MAX))
    }

    async fn sessions_per_key(&self, now: Timestamp) -> Result<Vec<(KeyId, u64)>, StoreError> {
        let mut census = KeyCensus::default();
        let now_millis = sql_int(now.unix_millis())?;
        let mut after: Vec<u8> = Vec::new();
        loop {
            let rows = self
                .clients
                .lease()
                .await?
                .query(Sql::Census, &[&now_millis, &&after[..], &CENSUS_PAGE])
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get(0).map_err(backend)?;
            for row in &rows {
                let bytes: &[u8] = row.try_get(1).map_err(backend)?;
                census.count_bytes(bytes, now);
            }
            if i64::try_from(rows.len()).unwrap_or(i64::MAX) < CENSUS_PAGE {
                break;
            }
        }
        Ok(census.into_counts())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.clients
            .lease()
            .await?
            .execute(Sql::Ping, &[])
            .await
            .map(drop)
    }
}
