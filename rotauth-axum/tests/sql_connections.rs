//! The connections the SQL stores hold beside the app's pool: no more than the pool's
//! `max_connections`, a dead one fails one statement and is replaced, the pool's lifetime
//! and idle timeout close them, and a shared in-memory SQLite database is one database for
//! all of them. PostgreSQL needs `bash scripts/with-services.sh` (or with-postgres.sh).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::missing_errors_doc,
    missing_docs
)]

mod common;

use std::str::FromStr as _;
use std::time::Duration;

use common::{default_rotator, sign_in_at, unique};
use rotauth::Timestamp;
use rotauth_axum::{Authenticator, PostgresStore, SessionStore, SqliteStore, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{PgPool, SqlitePool};

const VAR: &str = "ROTAUTH_TEST_DATABASE_URL";

fn url() -> String {
    std::env::var(VAR).unwrap_or_else(|_| {
        panic!(
            "{VAR} is not set: run under `bash scripts/with-postgres.sh` or \
             `bash scripts/with-services.sh`"
        )
    })
}

/// A store on a pool of `options` whose connections carry an application name of their
/// own, so that the test can find them in `pg_stat_activity`; and the name. The tables are
/// made beforehand on a pool of their own: the store's pool opens one connection, which
/// the store's first statement takes, and none other unless the store needs it.
async fn store(options: PgPoolOptions) -> (PostgresStore, String) {
    static MIGRATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    MIGRATED
        .get_or_init(|| async { PostgresStore::new(admin().await).migrate().await.unwrap() })
        .await;
    let name = unique("held");
    let connect = PgConnectOptions::from_str(&url())
        .unwrap()
        .application_name(&name);
    (
        PostgresStore::new(options.connect_with(connect).await.unwrap()),
        name,
    )
}

/// A connection of the test's own, to look at and end the store's.
async fn admin() -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(&url())
        .await
        .unwrap()
}

/// The backends of the connections named `name`.
async fn backends(admin: &PgPool, name: &str) -> Vec<i32> {
    sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid")
        .bind(name)
        .fetch_all(admin)
        .await
        .unwrap()
}

/// The backends of the connections named `name` once `done` holds of them: a backend
/// whose connection was closed takes a moment to leave `pg_stat_activity`.
async fn backends_once(admin: &PgPool, name: &str, done: impl Fn(&[i32]) -> bool) -> Vec<i32> {
    let mut pids = backends(admin, name).await;
    for _ in 0..100 {
        if done(&pids) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        pids = backends(admin, name).await;
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_holds_no_more_connections_than_the_pool_allows() {
    let (store, name) = store(PgPoolOptions::new().max_connections(3)).await;
    let auth = Authenticator::new(default_rotator(), store.clone());
    let now = Timestamp::now();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let auth = auth.clone();
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let signed_in = sign_in_at(&auth, &unique(&format!("bound-{i}")), now).await;
            assert!(store.load(signed_in.client_id).await.unwrap().is_some());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let held = backends(&admin().await, &name).await.len();
    assert!(
        (1..=3).contains(&held),
        "{held} connections for a pool of 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_dead_connection_fails_one_statement_and_is_replaced() {
    let (store, name) = store(PgPoolOptions::new().max_connections(4)).await;
    let user = unique("dead");
    assert_eq!(store.epoch(&user).await.unwrap(), 0);
    let admin = admin().await;
    let before = backends(&admin, &name).await;
    assert_eq!(
        before.len(),
        1,
        "one statement at a time needs one connection"
    );
    // Waits for the backend to exit (PostgreSQL 14 and later).
    sqlx::query(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .execute(&admin)
    .await
    .unwrap();
    assert!(
        matches!(store.epoch(&user).await, Err(StoreError::Backend(_))),
        "the dead connection fails the statement that finds it"
    );
    assert_eq!(store.epoch(&user).await.unwrap(), 0, "the next one works");
    let after = backends(&admin, &name).await;
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "on a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_past_the_pools_lifetime_are_closed() {
    let lifetime = Duration::from_millis(300);
    let (store, name) = store(
        PgPoolOptions::new()
            .max_connections(4)
            .max_lifetime(lifetime),
    )
    .await;
    let user = unique("lifetime");
    store.epoch(&user).await.unwrap();
    let admin = admin().await;
    let first = backends(&admin, &name).await;
    store.epoch(&user).await.unwrap();
    assert_eq!(
        backends(&admin, &name).await,
        first,
        "reused within its lifetime"
    );
    tokio::time::sleep(lifetime).await;
    store.epoch(&user).await.unwrap();
    let second = backends_once(&admin, &name, |pids| !pids.contains(&first[0])).await;
    assert_eq!(second.len(), 1, "the old one closed: {second:?}");
    assert_ne!(second, first, "a new one opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_idle_past_the_pools_timeout_are_closed() {
    let idle = Duration::from_millis(300);
    let (store, name) = store(PgPoolOptions::new().max_connections(4).idle_timeout(idle)).await;
    let users: Vec<String> = (0..4).map(|i| unique(&format!("idle-{i}"))).collect();
    // Four statements at once: four connections.
    let mut opened = 0;
    for _ in 0..20 {
        epochs_at_once(&store, &users).await;
        opened = backends(&admin().await, &name).await.len();
        if opened > 1 {
            break;
        }
    }
    assert!(
        opened > 1,
        "concurrent statements opened several connections"
    );
    tokio::time::sleep(idle).await;
    store.epoch(&users[0]).await.unwrap();
    let left = backends_once(&admin().await, &name, |pids| pids.len() == 1)
        .await
        .len();
    assert_eq!(
        left, 1,
        "of {opened} idle connections, the one just opened is left"
    );
}

/// The epochs of `users`, read at once.
async fn epochs_at_once(store: &PostgresStore, users: &[String]) {
    let mut tasks = Vec::new();
    for user in users {
        let (store, user) = (store.clone(), user.clone());
        tasks.push(tokio::spawn(
            async move { store.epoch(&user).await.unwrap() },
        ));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_shared_in_memory_database_is_one_database_for_every_connection() {
    let pool: SqlitePool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let store = SqliteStore::new(pool);
    store.migrate().await.unwrap();
    let auth = Authenticator::new(default_rotator(), store.clone());
    let now = Timestamp::now();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (auth, store) = (auth.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            let user = unique(&format!("memory-{i}"));
            let signed_in = sign_in_at(&auth, &user, now).await;
            let stored = store.load(signed_in.client_id).await.unwrap();
            assert_eq!(stored.map(|s| s.user_id), Some(user));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}
