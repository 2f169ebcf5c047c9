//! A rotation's store I/O on the SQL stores, against the same statements through sqlx's
//! pool, measured side by side in one run:
//!
//! ```text
//! cargo bench -p rotauth-axum --features sqlite,postgres --bench sql_stores
//! bash scripts/with-postgres.sh cargo bench -p rotauth-axum --features sqlite,postgres --bench sql_stores
//! bash scripts/with-postgres.sh cargo bench -p rotauth-axum --features sqlite,postgres,tokio-postgres --bench sql_stores
//! ```
//!
//! 50 sessions, each loaded and compare-and-swapped by a task of its own, all at once, as
//! 50 clients that rotate on every request make a server do: through [`SqliteStore`] and
//! [`PostgresStore`], and through the pool the stores are made from, with the stores'
//! own `SELECT` and `UPDATE` issued on it (a connection from the pool per statement, as the
//! stores ran them before they kept connections of their own). The swap writes the record
//! it read back under the same version: the same statement, the same row written.
//! PostgreSQL runs when `ROTAUTH_TEST_DATABASE_URL` is set (scripts/with-postgres.sh).
//! With the `tokio-postgres` feature, [`TokioPostgresStore`](rotauth_axum::TokioPostgresStore)
//! is measured against [`PostgresStore`] too, on the same sessions, with as many
//! connections.
//!
//! After criterion's figures the bench measures each pair again in interleaved rounds and
//! prints the time per rotation of each and their ratio.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rotauth::{ClientId, Config, KeyId, Keyring, Rotator};
use rotauth_axum::{Authenticator, PostgresStore, SessionStore, SqliteStore, Swap};
use sqlx::Pool;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use tokio::runtime::Runtime;

/// Sessions rotated at once.
const CLIENTS: usize = 50;
/// Connections in the pool, as the devise server's default.
const CONNECTIONS: u32 = 16;

const LOAD: &str = "SELECT user_id, record FROM rotauth_sessions WHERE client_id = $1";
const SWAP: &str = "UPDATE rotauth_sessions SET record = $1, version = $2, expires_at = $3
                     WHERE client_id = $4 AND version = $5";

/// One round: every session loaded and swapped through the store, at once.
async fn through_store<S: SessionStore + Clone + 'static>(store: &S, sessions: &[ClientId]) {
    let tasks: Vec<_> = sessions
        .iter()
        .map(|&client_id| {
            let store = store.clone();
            tokio::spawn(async move {
                let stored = store.load(client_id).await.unwrap().unwrap();
                let version = stored.record.version();
                let swap = store.compare_and_swap(version, &stored.record).await;
                assert_eq!(swap.unwrap(), Swap::Swapped);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// The same statements through the pool, a connection from it per statement.
macro_rules! through_pool {
    ($name:ident, $db:ty) => {
        async fn $name(pool: &Pool<$db>, sessions: &[ClientId]) {
            use sqlx::Row as _;
            let tasks: Vec<_> = sessions
                .iter()
                .map(|&client_id| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        let id = &client_id.as_bytes()[..];
                        let row = sqlx::query(LOAD)
                            .bind(id)
                            .fetch_optional(&pool)
                            .await
                            .unwrap()
                            .unwrap();
                        let bytes: Vec<u8> = row.get(1);
                        let record = rotauth_axum::Record::from_bytes(&bytes).unwrap();
                        let version = i64::try_from(record.version()).unwrap();
                        let expires = i64::try_from(record.expires_at().unix_millis()).unwrap();
                        let done = sqlx::query(SWAP)
                            .bind(record.as_bytes())
                            .bind(version)
                            .bind(expires)
                            .bind(id)
                            .bind(version)
                            .execute(&pool)
                            .await
                            .unwrap();
                        assert_eq!(done.rows_affected(), 1);
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        }
    };
}
through_pool!(through_sqlite_pool, sqlx::Sqlite);
through_pool!(through_pg_pool, sqlx::Postgres);

/// `CLIENTS` users signed in on `store`.
async fn sessions<S: SessionStore>(store: S) -> Vec<ClientId> {
    let rotator = Rotator::new(
        Keyring::new(KeyId(1), &[9u8; 32]).unwrap(),
        Config::default(),
    );
    let auth = Authenticator::new(rotator, store);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut sessions = Vec::new();
    for i in 0..CLIENTS {
        let pending = auth
            .begin_sign_in(&format!("bench-{}-{run}-{i}", std::process::id()))
            .await
            .unwrap();
        sessions.push(auth.sign_in(pending).await.unwrap().client_id);
    }
    sessions
}

/// The bench's SQLite file (and its `-wal` and `-shm`).
fn sqlite_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("rotauth-bench-{}.db", std::process::id()))
}

async fn sqlite_pool() -> Pool<sqlx::Sqlite> {
    let path = sqlite_path();
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    SqlitePoolOptions::new()
        .max_connections(CONNECTIONS)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .unwrap()
}

async fn pg_pool(url: &str) -> Pool<sqlx::Postgres> {
    let pool = PgPoolOptions::new()
        .max_connections(CONNECTIONS)
        .test_before_acquire(false)
        .connect(url)
        .await
        .unwrap();
    sqlx::query("DROP TABLE IF EXISTS rotauth_sessions, rotauth_user_epochs")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

/// Criterion's figures for a batch of `CLIENTS` rotations each way, then the interleaved
/// rounds: `store` is measured, `pool` is the baseline.
fn compare<F1, F2>(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    (store_name, store): (&str, impl Fn() -> F1),
    (pool_name, pool): (&str, impl Fn() -> F2),
) where
    F1: Future<Output = ()>,
    F2: Future<Output = ()>,
{
    let mut group = c.benchmark_group(format!("{name}_{CLIENTS}_rotations_at_once"));
    group.bench_function(store_name, |b| b.to_async(rt).iter(&store));
    group.bench_function(pool_name, |b| b.to_async(rt).iter(&pool));
    group.finish();

    const ROUNDS: usize = 11;
    const PER_ROUND: u32 = 40;
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        for which in [round % 2, 1 - round % 2] {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                if which == 0 {
                    rt.block_on(store());
                } else {
                    rt.block_on(pool());
                }
            }
            times[which].push(start.elapsed() / (PER_ROUND * CLIENTS as u32));
        }
    }
    let [store_us, pool_us] = times.map(|mut t| {
        t.sort();
        t[ROUNDS / 2].as_secs_f64() * 1e6
    });
    println!(
        "{name}: a rotation's load and compare-and-swap, {CLIENTS} at once: {store_name} \
         {store_us:.1} µs, {pool_name} {pool_us:.1} µs (medians of {ROUNDS} interleaved rounds \
         of {PER_ROUND} x {CLIENTS}); {store_name} / {pool_name} = {:.2}",
        store_us / pool_us
    );
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let (store, pool, sessions_) = rt.block_on(async {
        let pool = sqlite_pool().await;
        let store = SqliteStore::new(pool.clone());
        store.migrate().await.unwrap();
        let sessions = sessions(store.clone()).await;
        (store, pool, sessions)
    });
    compare(
        c,
        &rt,
        "sqlite",
        ("store", || through_store(&store, &sessions_)),
        ("statements_on_the_pool", || {
            through_sqlite_pool(&pool, &sessions_)
        }),
    );
    rt.block_on(pool.close());
    for suffix in ["", "-wal", "-shm"] {
        let mut path = sqlite_path().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }

    let Ok(url) = std::env::var("ROTAUTH_TEST_DATABASE_URL") else {
        println!("postgres: not measured (ROTAUTH_TEST_DATABASE_URL is not set)");
        return;
    };
    let (store, pool, sessions_) = rt.block_on(async {
        let pool = pg_pool(&url).await;
        let store = PostgresStore::new(pool.clone());
        store.migrate().await.unwrap();
        let sessions = sessions(store.clone()).await;
        (store, pool, sessions)
    });
    compare(
        c,
        &rt,
        "postgres",
        ("store", || through_store(&store, &sessions_)),
        ("statements_on_the_pool", || {
            through_pg_pool(&pool, &sessions_)
        }),
    );
    #[cfg(feature = "tokio-postgres")]
    {
        let config = url.parse().unwrap();
        let native = rotauth_axum::TokioPostgresStore::new(config, CONNECTIONS as usize);
        compare(
            c,
            &rt,
            "postgres_drivers",
            ("tokio_postgres_store", || {
                through_store(&native, &sessions_)
            }),
            ("sqlx_store", || through_store(&store, &sessions_)),
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
