//! PostgreSQL on an sqlx pool.

use std::sync::Arc;

use rotauth::ClientId;
use sqlx::{PgPool, Row};
use zeroize::Zeroizing;

use super::connections::Connections;
use super::{
    Record, SessionStore, SessionSummary, StoreError, StoredSession, Swap, client_id_from_bytes,
    sql_int,
};

/// Sessions in PostgreSQL, on connections from the app's [`PgPool`], in the table
/// `rotauth_sessions` and their users' epochs in `rotauth_user_epochs` (both created by
/// [`migrate`](Self::migrate)).
///
/// The compare-and-swap is `UPDATE … WHERE client_id = $4 AND version = $5`: under
/// PostgreSQL's row locking a concurrent update of the same row waits for the first to
/// commit, then re-checks `version` against the committed row, so exactly one of them
/// matches.
///
/// The store takes up to the pool's `max_connections` connections from the pool and
/// keeps them, beside the pool's own (so allow PostgreSQL twice that many per app
/// instance): sqlx's pool pings a connection, a round trip, every time one goes back to
/// it, whatever `test_before_acquire` says, which is as much again as the statement. The
/// pool's acquire timeout, idle timeout and maximum lifetime hold for them too; its
/// `before_acquire`, `after_release` and `test_before_acquire` do not: a connection that
/// died since its last statement fails the next one and is dropped, and the authenticator
/// tries again on another within its
/// [`store_patience`](crate::Authenticator::store_patience). On the repository's devise
/// server, every request rotating, the store costs a third less CPU per request, in the
/// server and in PostgreSQL alike, than when it ran each statement on the pool.
///
/// ```no_run
/// use rotauth_axum::PostgresStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::PgPool::connect("postgres://app@localhost/app").await?;
/// let store = PostgresStore::new(pool);
/// store.migrate().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    connections: Arc<Connections<sqlx::Postgres>>,
}

impl PostgresStore {
    /// A store on `pool`: it takes up to the pool's `max_connections` connections from
    /// it and keeps them (see the type's docs).
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self {
            connections: Arc::new(Connections::new(pool.clone())),
            pool,
        }
    }

    /// The pool.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the tables and the index if they do not exist. Safe to run from several
    /// replicas starting at once: the statements run in one transaction under an advisory
    /// lock, since PostgreSQL's `IF NOT EXISTS` alone can still fail on a concurrent create.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when PostgreSQL fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::backend)?;
        for statement in super::statements::pg::MIGRATION {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        }
        tx.commit().await.map_err(StoreError::backend)
    }
}

super::sql::sql_session_store!(PostgresStore, super::statements::pg::INSERT);
