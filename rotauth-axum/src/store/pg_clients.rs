//! The connections of the tokio-postgres store: opened when needed up to a limit, kept
//! with their prepared statements, and lent to one statement or transaction at a time.
//!
//! Each connection prepares a statement the first time it runs it and keeps it for as
//! long as it lives, so a statement after the first costs one round trip (Bind, Execute,
//! Sync) and no parsing or planning of its text by PostgreSQL. A connection goes back to
//! the idle list as soon as its statement is done; one whose statement failed is dropped
//! (a database error can be the last word of a server that then hangs up), and one the
//! server closed is dropped when next found, so the statement after an outage opens a
//! new one.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use super::StoreError;
use super::statements::{self, pg};

/// The statements the store runs, each prepared once per connection.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Sql {
    Load,
    SelectEpoch,
    CreateEpoch,
    NextEpoch,
    Insert,
    Taken,
    Swap,
    Delete,
    List,
    DeleteUserSessions,
    RenameUser,
    Census,
    Ping,
}

impl Sql {
    fn text(self) -> &'static str {
        match self {
            Self::Load => statements::LOAD,
            Self::SelectEpoch => statements::SELECT_EPOCH,
            Self::CreateEpoch => statements::CREATE_EPOCH,
            Self::NextEpoch => statements::NEXT_EPOCH,
            Self::Insert => pg::INSERT,
            Self::Taken => statements::TAKEN,
            Self::Swap => statements::SWAP,
            Self::Delete => statements::DELETE,
            Self::List => statements::LIST,
            Self::DeleteUserSessions => statements::DELETE_USER_SESSIONS,
            Self::RenameUser => statements::RENAME_USER,
            Self::Census => statements::CENSUS,
            Self::Ping => statements::PING,
        }
    }
}

/// One connection and the statements it has prepared.
struct Conn {
    client: Client,
    /// By [`Sql`] discriminant; grown as statements are first run.
    prepared: Vec<Option<Statement>>,
}

impl Conn {
    /// `sql`, prepared on this connection (a round trip the first time only).
    async fn statement(&mut self, sql: Sql) -> Result<Statement, tokio_postgres::Error> {
        let index = sql as usize;
        if let Some(Some(statement)) = self.prepared.get(index) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql.text()).await?;
        if self.prepared.len() <= index {
            self.prepared.resize(index.saturating_add(1), None);
        }
        if let Some(slot) = self.prepared.get_mut(index) {
            *slot = Some(statement.clone());
        }
        Ok(statement)
    }
}

/// The connections of one store (shared by its clones).
pub(crate) struct Clients {
    config: Config,
    /// Connections between two statements, the most recently used last.
    idle: Mutex<Vec<Conn>>,
    /// One per connection the store may hold.
    permits: Semaphore,
    acquire_timeout: Duration,
}

/// A connection on loan; back to the idle list when dropped, unless a statement on it
/// failed.
pub(crate) struct Lease<'a> {
    conn: Option<Conn>,
    home: &'a Clients,
    _permit: SemaphorePermit<'a>,
}

impl Clients {
    /// Up to `max` connections to `config`, waiting `acquire_timeout` at most for one.
    pub(crate) fn new(config: Config, max: usize, acquire_timeout: Duration) -> Self {
        Self {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS)),
            acquire_timeout,
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// A connection: the idle one used last, or a new one.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, StoreError> {
        let permit = tokio::time::timeout(self.acquire_timeout, self.permits.acquire())
            .await
            .map_err(|_| StoreError::backend("timed out waiting for a database connection"))?
            .map_err(StoreError::backend)?;
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            // Those the server closed (a restart, `idle_session_timeout`) are dropped here.
            std::iter::from_fn(|| idle.pop()).find(|conn| !conn.client.is_closed())
        };
        let conn = match idle {
            Some(conn) => conn,
            // Boxed: opening a connection is a future of kilobytes, which would otherwise
            // make every statement's future as large, copied each time it is moved.
            None => Box::pin(self.connect()).await?,
        };
        Ok(Lease {
            conn: Some(conn),
            home: self,
            _permit: permit,
        })
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(backend)?;
        // The connection's I/O runs on a task of its own until the client is dropped or
        // the server goes away; `is_closed` then retires the client.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("PostgreSQL connection ended: {}", Sanitized::from(&e));
            }
        });
        Ok(Conn {
            client,
            prepared: Vec::new(),
        })
    }
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Clients")
            .field("idle", &idle)
            .field("free", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Lease<'_> {
    /// Runs `op` with `sql` prepared on the connection; a connection whose statement
    /// failed is not used again, whatever the error: the statements of a store fail only
    /// when something is wrong, when a new connection costs little next to the outage.
    pub(crate) async fn run<T>(
        &mut self,
        sql: Sql,
        op: impl AsyncFnOnce(&Client, Statement) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let conn = self.conn()?;
        let result = match conn.statement(sql).await {
            Ok(statement) => op(&conn.client, statement).await,
            Err(e) => Err(e),
        };
        self.check(result)
    }

    /// The rows `sql` affects with `params`.
    pub(crate) async fn execute(
        &mut self,
        sql: Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.run(sql, async |client, statement| {
            client.execute(&statement, params).await
        })
        .await
    }

    /// The row `sql` returns with `params`, if any.
    pub(crate) async fn query_opt(
        &mut self,
        sql: Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        self.run(sql, async |client, statement| {
            client.query_opt(&statement, params).await
        })
        .await
    }

    /// The rows `sql` returns with `params`.
    pub(crate) async fn query(
        &mut self,
        sql: Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.run(sql, async |client, statement| {
            client.query(&statement, params).await
        })
        .await
    }

    /// `first`, then `second`, in one transaction: the rows `second` affects.
    pub(crate) async fn execute_both(
        &mut self,
        first: (Sql, &[&(dyn ToSql + Sync)]),
        second: (Sql, &[&(dyn ToSql + Sync)]),
    ) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let result = async {
            let statements = (
                conn.statement(first.0).await?,
                conn.statement(second.0).await?,
            );
            // Dropped without commit (an error, a request cut short), it rolls back.
            let tx = conn.client.transaction().await?;
            tx.execute(&statements.0, first.1).await?;
            let done = tx.execute(&statements.1, second.1).await?;
            tx.commit().await?;
            Ok(done)
        }
        .await;
        self.check(result)
    }

    /// `batch`, one simple query after the other, in one transaction.
    pub(crate) async fn batch_in_transaction(&mut self, batch: &[&str]) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let result = async {
            let tx = conn.client.transaction().await?;
            for statement in batch {
                tx.batch_execute(statement).await?;
            }
            tx.commit().await
        }
        .await;
        self.check(result)
    }

    fn conn(&mut self) -> Result<&mut Conn, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::backend("the database connection broke"))
    }

    fn check<T>(&mut self, result: Result<T, tokio_postgres::Error>) -> Result<T, StoreError> {
        result.map_err(|e| {
            self.conn = None;
            backend(e)
        })
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A statement cut short (its request was dropped) is finished by the
            // connection's task; a transaction cut short is rolled back by tokio-postgres
            // before the next statement.
            self.home
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }
}

/// A tokio-postgres error as a [`StoreError::Backend`], without what it may quote of the
/// data.
pub(crate) fn backend(e: tokio_postgres::Error) -> StoreError {
    StoreError::backend(Sanitized::from(&e).0)
}

/// The text of a tokio-postgres error, without the server's `DETAIL` and `HINT`, which can
/// quote a row's values (a record, which holds the session's seed).
struct Sanitized(String);

impl From<&tokio_postgres::Error> for Sanitized {
    fn from(e: &tokio_postgres::Error) -> Self {
        Self(match e.as_db_error() {
            Some(db) => format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            ),
            None => e.to_string(),
        })
    }
}

impl fmt::Display for Sanitized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
