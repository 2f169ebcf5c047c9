//! The database: accounts (email and password hash) in a `users` table of the server's
//! own, sessions in rotauth-axum's `rotauth_sessions` table through its store, both on
//! one sqlx pool, in SQLite or PostgreSQL.
//!
//! A session is stored under `"{id} {email}"` ([`User::session_owner`]): the numeric id,
//! which never changes and is never given to another account (SQLite's `AUTOINCREMENT`,
//! PostgreSQL's identity), and the email, devise's `uid`, which may change. rotauth-axum
//! checks a request's `uid` against the email part inside its loop, before anything is
//! written, and the handlers read the user from the session without a query. Every write
//! to an account names both the id and the email the session holds, so a session that
//! somehow outlived its account or its email changes nothing.

use std::future::Future;
use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use rotauth::Timestamp;
use rotauth_axum::{PostgresStore, SessionStore, SqliteStore, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row as _, SqlitePool};

/// A signed-up user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The database id; sessions belong to it.
    pub id: i64,
    /// The email, lowercased; devise's `uid` for the email provider.
    pub email: String,
}

impl User {
    /// The user id the session store keeps the user's sessions under: `"{id} {email}"`
    /// (emails hold no spaces).
    pub fn session_owner(&self) -> String {
        format!("{} {}", self.id, self.email)
    }

    /// The user a session is stored under; `None` if `owner` is not a
    /// [`session_owner`](Self::session_owner).
    pub fn from_session_owner(owner: &str) -> Option<Self> {
        let (id, email) = owner.split_once(' ')?;
        Some(Self {
            id: id.parse().ok()?,
            email: email.to_owned(),
        })
    }
}

/// The `uid` part of a [`User::session_owner`], what a request claims.
pub fn uid_in_session_owner(owner: &str) -> &str {
    owner.split_once(' ').map_or(owner, |(_, email)| email)
}

/// What [`Database::set_email`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailChange {
    /// The email is changed.
    Changed,
    /// Another account has the email; nothing changed.
    Taken,
    /// No account has this id and email (deleted, or its email changed meanwhile).
    NoUser,
}

/// A user with the PHC string of their password hash.
pub struct UserWithHash {
    /// The user.
    pub user: User,
    /// The argon2 PHC string.
    pub password_hash: String,
}

/// What the request handling needs from a database: the accounts, and a session store on
/// the same database. Errors are the session store's: [`StoreError::Backend`] answers 503.
pub trait Database: Clone + Send + Sync + 'static {
    /// The session store on this database.
    type Sessions: SessionStore;

    /// The session store on this database's pool.
    fn sessions(&self) -> Self::Sessions;

    /// Creates a user; `None` if the email is taken.
    fn create_user(
        &self,
        email: &str,
        password_hash: &str,
    ) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// The user with this (lowercased) email.
    fn user_by_email(
        &self,
        email: &str,
    ) -> impl Future<Output = Result<Option<UserWithHash>, StoreError>> + Send;

    /// Sets the email of `user` (its id with its current email).
    fn set_email(
        &self,
        user: &User,
        email: &str,
    ) -> impl Future<Output = Result<EmailChange, StoreError>> + Send;

    /// Sets the password hash of `user`; `false` if there is no such user (deleted, or
    /// its email changed).
    fn set_password_hash(
        &self,
        user: &User,
        password_hash: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Replaces the password hash of `user` with a stronger hash of the same password, if
    /// it is still `old` (a password change in between wins); `false` if it was not.
    fn upgrade_password_hash(
        &self,
        user: &User,
        old: &str,
        new: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes `user`; `false` if there is no such user. Its sessions are signed out
    /// around it by the caller (`Authenticator::change_credentials`).
    fn delete_user(&self, user: &User) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether the database answers and its tables are there (`GET /readyz`): a row at
    /// most of the `users` table, then the session store's own check
    /// (`SessionStore::ping`), so a missing table or a lost permission shows as well as a
    /// database that does not answer. The caller bounds its time.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Where the database is, without any password: for the start-up log line.
    fn describe(&self) -> String;
}

/// `impl Database for $db` on its `pool` field. The statements use `$N` placeholders,
/// which SQLite and PostgreSQL both take, so one text serves both (as in rotauth-axum's
/// own SQL stores).
macro_rules! sql_database {
    ($db:ident, $sessions:ident) => {
        impl Database for $db {
            type Sessions = $sessions;

            fn sessions(&self) -> $sessions {
                $sessions::new(self.pool.clone())
            }

            async fn create_user(
                &self,
                email: &str,
                password_hash: &str,
            ) -> Result<Option<User>, StoreError> {
                let row = sqlx::query(
                    "INSERT INTO users (email, password_hash, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (email) DO NOTHING RETURNING id",
                )
                .bind(email)
                .bind(password_hash)
                .bind(i64::try_from(Timestamp::now().unix_millis()).unwrap_or(i64::MAX))
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::backend)?;
                row.map(|row| {
                    Ok(User {
                        id: row.try_get(0).map_err(StoreError::backend)?,
                        email: email.to_owned(),
                    })
                })
                .transpose()
            }

            async fn user_by_email(&self, email: &str) -> Result<Option<UserWithHash>, StoreError> {
                let row = sqlx::query("SELECT id, password_hash FROM users WHERE email = $1")
                    .bind(email)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::backend)?;
                row.map(|row| {
                    Ok(UserWithHash {
                        user: User {
                            id: row.try_get(0).map_err(StoreError::backend)?,
                            email: email.to_owned(),
                        },
                        password_hash: row.try_get(1).map_err(StoreError::backend)?,
                    })
                })
                .transpose()
            }

            async fn set_email(&self, user: &User, email: &str) -> Result<EmailChange, StoreError> {
                let done = sqlx::query("UPDATE users SET email = $1 WHERE id = $2 AND email = $3")
                    .bind(email)
                    .bind(user.id)
                    .bind(&user.email)
                    .execute(&self.pool)
                    .await;
                match done {
                    Ok(done) if done.rows_affected() == 1 => Ok(EmailChange::Changed),
                    Ok(_) => Ok(EmailChange::NoUser),
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        Ok(EmailChange::Taken)
                    }
                    Err(e) => Err(StoreError::backend(e)),
                }
            }

            async fn set_password_hash(
                &self,
                user: &User,
                password_hash: &str,
            ) -> Result<bool, StoreError> {
                let done =
                    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND email = $3")
                        .bind(password_hash)
                        .bind(user.id)
                        .bind(&user.email)
                        .execute(&self.pool)
                        .await
                        .map_err(StoreError::backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn upgrade_password_hash(
                &self,
                user: &User,
                old: &str,
                new: &str,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE users SET password_hash = $1
                     WHERE id = $2 AND email = $3 AND password_hash = $4",
                )
                .bind(new)
                .bind(user.id)
                .bind(&user.email)
                .bind(old)
                .execute(&self.pool)
                .await
                .map_err(StoreError::backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_user(&self, user: &User) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM users WHERE id = $1 AND email = $2")
                    .bind(user.id)
                    .bind(&user.email)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1 FROM users LIMIT 1")
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::backend)?;
                self.sessions().ping().await
            }

            fn describe(&self) -> String {
                self.describe.clone()
            }
        }
    };
}

/// How long a statement waits for SQLite's write lock, or a request for a pooled
/// connection, before the request answers 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

// Both pools hand out connections without pinging them first (sqlx pings by default, a
// round trip per statement, which cost a fifth of the throughput): a connection that died
// since its last use fails its statement, that one request answers 503 with `Retry-After`
// (never a logout: nothing is sent that was not stored), and sqlx drops the connection.

/// SQLite, one file (or `:memory:`).
#[derive(Clone)]
pub struct Sqlite {
    pool: SqlitePool,
    describe: String,
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path` with at most `connections`
    /// connections, readable by its owner only; `:memory:` is a private in-memory database
    /// on one connection that lives as long as the server.
    pub async fn open(path: &str, connections: u32) -> Result<Self, String> {
        let memory = path == ":memory:";
        let options = if memory {
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(|e| e.to_string())?
        } else {
            create_private(Path::new(path))?;
            // WAL: readers don't block the writer; NORMAL: no fsync per commit in WAL mode
            // (a power cut may lose the last commits, never corrupt the file).
            SqliteConnectOptions::new()
                .filename(path)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        };
        let options = options.busy_timeout(BUSY_TIMEOUT);
        // Every connection to `:memory:` is a database of its own: one connection, kept.
        let pool = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(if memory { 1 } else { connections.max(1) })
            .min_connections(u32::from(memory))
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| e.to_string())?;
        migrate_users(&pool).await.map_err(|e| e.to_string())?;
        SqliteStore::new(pool.clone())
            .migrate()
            .await
            .map_err(|e| e.to_string())?;
        if !memory {
            restrict_companions(Path::new(path))?;
        }
        Ok(Self {
            pool,
            describe: path.to_owned(),
        })
    }
}

sql_database!(Sqlite, SqliteStore);

/// The SQLite `users` table. `AUTOINCREMENT` keeps SQLite from giving a deleted user's id
/// to the next sign-up (a plain `INTEGER PRIMARY KEY` reuses the highest id once it is
/// deleted).
const SQLITE_USERS: &str = "CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
)";

/// Creates the `users` table, or moves a table made without `AUTOINCREMENT` (by earlier
/// versions) into one with it, keeping every row and id, in one transaction. Ids deleted
/// before the move and above the highest one left can be handed out once more; every
/// write to an account also names its email, so a session left from such an id changes
/// nothing of the new account.
async fn migrate_users(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let existing: Option<String> =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'users'")
            .fetch_optional(&mut *tx)
            .await?;
    match existing {
        None => {
            sqlx::query(SQLITE_USERS).execute(&mut *tx).await?;
        }
        Some(sql) if !sql.to_ascii_uppercase().contains("AUTOINCREMENT") => {
            for statement in [
                "ALTER TABLE users RENAME TO users_before_autoincrement",
                SQLITE_USERS,
                "INSERT INTO users (id, email, password_hash, created_at)
                 SELECT id, email, password_hash, created_at FROM users_before_autoincrement",
                "DROP TABLE users_before_autoincrement",
            ] {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
        }
        Some(_) => {}
    }
    tx.commit().await
}

/// PostgreSQL, shared by any number of instances.
#[derive(Clone)]
pub struct Postgres {
    pool: PgPool,
    describe: String,
}

impl Postgres {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/dbname`) with at most
    /// `connections` connections, and creates the tables if they are missing.
    pub async fn open(url: &str, connections: u32) -> Result<Self, String> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| "not a valid PostgreSQL connection URL".to_owned())?
            .application_name("rotauth devise_server");
        let describe = format!(
            "postgres://{}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(default)"),
        );
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(connections.max(1))
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| e.to_string())?;
        // Instances starting together would race on `CREATE TABLE IF NOT EXISTS`: the
        // advisory lock (an arbitrary key, private to this table) makes them take turns.
        let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
        for statement in [
            "SELECT pg_advisory_xact_lock(7311179420)",
            "CREATE TABLE IF NOT EXISTS users (
                id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                email TEXT NOT NULL UNIQUE,
                password_hash TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )",
        ] {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        PostgresStore::new(pool.clone())
            .migrate()
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { pool, describe })
    }
}

sql_database!(Postgres, PostgresStore);

/// Creates the database file readable and writable by its owner only (it holds password
/// hashes and session seeds), whatever the umask, and tightens an existing one. SQLite
/// creates `-wal` and `-shm` with the database file's mode; [`restrict_companions`] makes
/// sure of it.
#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
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
fn create_private(_path: &Path) -> Result<(), String> {
    Ok(())
}

/// `0600` on the `-wal` and `-shm` files next to `path`, where they exist.
#[cfg(unix)]
fn restrict_companions(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let companion = std::path::PathBuf::from(name);
        if companion.exists() {
            std::fs::set_permissions(&companion, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("{}: {e}", companion.display()))?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_companions(_path: &Path) -> Result<(), String> {
    Ok(())
}
