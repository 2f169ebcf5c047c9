//! SQLite: one file, created readable by its owner only, or `:memory:`.

use std::path::Path;
use std::str::FromStr as _;

use rotauth::Timestamp;
use rotauth_axum::{SessionStore, SqliteStore, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row as _, SqlitePool};

use super::sql::{BUSY_TIMEOUT, sql_database};
use super::{Database, EmailChange, User, UserWithHash};

/// SQLite, one file (or `:memory:`).
#[derive(Clone)]
pub struct Sqlite {
    pool: SqlitePool,
    sessions: SqliteStore,
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
        // `sqlite::memory:` is one database for the pool's connection and the one the
        // session store takes, while either is open: the pool keeps one, for good.
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
        let sessions = SqliteStore::new(pool.clone());
        sessions.migrate().await.map_err(|e| e.to_string())?;
        if !memory {
            restrict_companions(Path::new(path))?;
        }
        Ok(Self {
            pool,
            sessions,
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
