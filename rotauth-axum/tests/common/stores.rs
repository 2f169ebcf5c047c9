//! The stores the suites run on: a fresh SQLite file, the PostgreSQL and Redis servers of
//! `scripts/with-services.sh` (their tests fail, naming the script, when the URL is not set).

#[cfg(feature = "postgres")]
use rotauth_axum::PostgresStore;
#[cfg(feature = "redis")]
use rotauth_axum::RedisStore;
#[cfg(feature = "sqlite")]
use rotauth_axum::SqliteStore;
#[cfg(feature = "tokio-postgres")]
use rotauth_axum::TokioPostgresStore;

/// A fresh database file, in WAL mode, removed by the OS temp cleaner.
#[cfg(feature = "sqlite")]
pub async fn sqlite() -> SqliteStore {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    let path = std::env::temp_dir().join(format!("{}.db", super::unique("rotauth-axum")));
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .unwrap();
    let store = SqliteStore::new(pool);
    store.migrate().await.unwrap();
    store
}

/// `ROTAUTH_TEST_DATABASE_URL`.
#[cfg(any(feature = "postgres", feature = "tokio-postgres"))]
fn postgres_url() -> String {
    const VAR: &str = "ROTAUTH_TEST_DATABASE_URL";
    std::env::var(VAR).unwrap_or_else(|_| {
        panic!(
            "{VAR} is not set: run the PostgreSQL tests under `bash scripts/with-postgres.sh` \
             or `bash scripts/with-services.sh` (e.g. `bash scripts/with-services.sh cargo \
             test -p rotauth-axum --all-features`)"
        )
    })
}

/// The database of `ROTAUTH_TEST_DATABASE_URL`, migrated.
#[cfg(feature = "postgres")]
pub async fn postgres() -> PostgresStore {
    let url = postgres_url();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .unwrap();
    let store = PostgresStore::new(pool);
    // Concurrent `CREATE TABLE IF NOT EXISTS` can collide in PostgreSQL's catalog; one
    // test at a time migrates.
    static MIGRATED: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);
    let mut migrated = MIGRATED.lock().await;
    if !*migrated {
        store.migrate().await.unwrap();
        *migrated = true;
    }
    store
}

/// The database of `ROTAUTH_TEST_DATABASE_URL` through tokio-postgres, migrated, in a
/// schema of its own: the suites count what is in the tables (sessions per key, a user's
/// sessions), and the sqlx store's tests run at the same time on the default schema.
#[cfg(feature = "tokio-postgres")]
pub async fn tokio_postgres() -> TokioPostgresStore {
    const SCHEMA: &str = "rotauth_tokio_postgres";
    static READY: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);
    let url = postgres_url();
    let mut config: ::tokio_postgres::Config = url.parse().unwrap();
    config.options(format!("-c search_path={SCHEMA}"));
    let store = TokioPostgresStore::new(config, 16);
    let mut ready = READY.lock().await;
    if !*ready {
        let (client, connection) = ::tokio_postgres::connect(&url, ::tokio_postgres::NoTls)
            .await
            .unwrap();
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            .await
            .unwrap();
        drop(client);
        connection.await.unwrap().unwrap();
        store.migrate().await.unwrap();
        *ready = true;
    }
    store
}

/// The server of `ROTAUTH_TEST_REDIS_URL`, under a key prefix of the test's own.
#[cfg(feature = "redis")]
pub async fn redis() -> RedisStore {
    const VAR: &str = "ROTAUTH_TEST_REDIS_URL";
    let url = std::env::var(VAR).unwrap_or_else(|_| {
        panic!(
            "{VAR} is not set: run the Redis tests under `bash scripts/with-redis.sh` or \
             `bash scripts/with-services.sh` (e.g. `bash scripts/with-services.sh cargo \
             test -p rotauth-axum --all-features`)"
        )
    });
    let client = ::redis::Client::open(url).unwrap();
    let manager = ::redis::aio::ConnectionManager::new(client).await.unwrap();
    RedisStore::new(manager).with_prefix(&format!("{}:", super::unique("t")))
}
