//! The connections a SQL store runs its statements on: taken from the app's pool once,
//! then kept by the store and reused without going back to the pool.
//!
//! Every time a connection goes back to an sqlx pool, the pool pings it on a task of its
//! own (a round trip to PostgreSQL, a hop to and from SQLite's worker thread), whatever
//! `test_before_acquire` says. A request that rotates runs two statements, each on a
//! connection of its own from the pool: half the exchanges with the database were those
//! pings. On the repository's devise server, every request rotating, the pooled stores
//! spent a third (SQLite) to a half (PostgreSQL) more CPU per request than these kept
//! connections do.
//!
//! What the store keeps instead is the pool's own kind of connection, opened by the pool
//! (so with its connect options and its `after_connect`) and then detached from it: up to
//! the pool's `max_connections` of them, beside the pool's own. A connection goes back to
//! the store's idle list as soon as its statement is done. A connection whose statement
//! failed is dropped, and the next statement takes a new one from the pool: a dead
//! connection fails the one statement that finds it, which the authenticator tries again
//! within its patience. The pool's `acquire_timeout`, `idle_timeout` and `max_lifetime`
//! apply to these connections as well; its `before_acquire`, `after_release` and
//! `test_before_acquire` do not.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::pool::PoolOptions;
use sqlx::{Connection, Database, Pool};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::StoreError;

/// The connections of one store (shared by its clones).
pub(crate) struct Connections<DB: Database> {
    /// Where new connections come from, and the timeouts and lifetimes they keep.
    pool: Pool<DB>,
    /// Connections between two statements, the most recently used last.
    idle: Mutex<VecDeque<Idle<DB>>>,
    /// One per connection the store may hold.
    permits: Semaphore,
}

/// A connection between two statements.
struct Idle<DB: Database> {
    conn: DB::Connection,
    opened: Instant,
    since: Instant,
}

/// A connection on loan for a statement or a transaction; back to the idle list when
/// dropped, unless a statement on it failed ([`Lease::check`]).
pub(crate) struct Lease<'a, DB: Database> {
    conn: Option<DB::Connection>,
    opened: Instant,
    home: &'a Connections<DB>,
    _permit: SemaphorePermit<'a>,
}

impl<DB: Database> Connections<DB> {
    /// Up to `pool`'s `max_connections` connections, opened by `pool` when needed.
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        let size = usize::try_from(pool.options().get_max_connections())
            .unwrap_or(Semaphore::MAX_PERMITS)
            .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            pool,
            idle: Mutex::new(VecDeque::new()),
            permits: Semaphore::new(size),
        }
    }

    /// A connection: an idle one, or a new one from the pool; waits for one to be free
    /// for the pool's `acquire_timeout` at most.
    pub(crate) async fn lease(&self) -> Result<Lease<'_, DB>, StoreError> {
        let options = self.pool.options();
        let permit = tokio::time::timeout(options.get_acquire_timeout(), self.permits.acquire())
            .await
            .map_err(|_| StoreError::backend("timed out waiting for a database connection"))?
            .map_err(StoreError::backend)?;
        // The connection idle the longest is closed once past the pool's limits, one per
        // lease: those the load leaves unused go in time, not only those it takes.
        if let Some(stale) = self.take_oldest_if_stale(options) {
            stale.close().await;
        }
        while let Some(idle) = self.take_last_used() {
            if idle.is_stale(options) {
                idle.close().await;
                continue;
            }
            return Ok(Lease {
                conn: Some(idle.conn),
                opened: idle.opened,
                home: self,
                _permit: permit,
            });
        }
        // Boxed: sqlx's acquire is a future of several kilobytes, which would otherwise
        // make every statement's future (and the request's, which holds it) as large, to
        // be copied each time it is moved, for a path taken only to open a connection.
        let conn = Box::pin(self.pool.acquire())
            .await
            .map_err(StoreError::backend)?;
        Ok(Lease {
            conn: Some(conn.detach()),
            opened: Instant::now(),
            home: self,
            _permit: permit,
        })
    }

    /// The idle connection used last: the one most likely still in the database's caches.
    fn take_last_used(&self) -> Option<Idle<DB>> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_back()
    }

    fn take_oldest_if_stale(&self, options: &PoolOptions<DB>) -> Option<Idle<DB>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.front().is_some_and(|oldest| oldest.is_stale(options)) {
            idle.pop_front()
        } else {
            None
        }
    }
}

impl<DB: Database> Idle<DB> {
    /// Past the pool's `max_lifetime`, or idle for its `idle_timeout`.
    fn is_stale(&self, options: &PoolOptions<DB>) -> bool {
        let beyond = |limit: Option<Duration>, from: Instant| {
            limit.is_some_and(|limit| from.elapsed() >= limit)
        };
        beyond(options.get_max_lifetime(), self.opened)
            || beyond(options.get_idle_timeout(), self.since)
    }

    async fn close(self) {
        // A connection too broken to close politely is dropped all the same. Boxed, as
        // the pool's acquire is (see `lease`).
        let _ = Box::pin(self.conn.close()).await;
    }
}

impl<DB: Database> fmt::Debug for Connections<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Connections")
            .field("idle", &idle)
            .field("free", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl<DB: Database> Lease<'_, DB> {
    /// The connection, to run a statement on.
    pub(crate) fn conn(&mut self) -> Result<&mut DB::Connection, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::backend("the database connection broke"))
    }

    /// What a statement on this connection returned, its error as a [`StoreError`]. A
    /// connection whose statement failed is dropped, whatever the error: a database error
    /// can be the last word of a server that then hangs up (PostgreSQL's `FATAL`), and
    /// the statements of a store fail only when something is wrong, when a new connection
    /// costs little next to the outage.
    pub(crate) fn check<T>(&mut self, result: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        result.map_err(|e| {
            self.conn = None;
            StoreError::backend(e)
        })
    }
}

impl<DB: Database> Drop for Lease<'_, DB> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A statement cut short (its request was dropped) leaves the connection with
            // replies to read; sqlx reads them before the next statement.
            self.home
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(Idle {
                    conn,
                    opened: self.opened,
                    since: Instant::now(),
                });
        }
    }
}
