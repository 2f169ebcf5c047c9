//! Several `devise_server` instances sharing one PostgreSQL database, tested with
//! the built example binary as real child processes on 127.0.0.1:
//!
//! - two instances, clients sending each request of their parallel bursts to a random
//!   instance (no affinity) and following their tokens: zero 401, zero 5xx, one consistent
//!   record per session in the database;
//! - the same with the instances' clocks 2 s apart;
//! - the same load on one instance with SQLite.
//!
//! An instance stopped or killed in the middle of the load, and restarted, is in
//! `tests/devise_lifecycle.rs`.
//!
//! The PostgreSQL tests need `ROTAUTH_TEST_DATABASE_URL` and FAIL without it (run
//! `bash scripts/with-postgres.sh cargo test`); each creates its own database.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not reach,
// and test arithmetic on known small values, which no clippy.toml setting covers.
#![allow(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

#[allow(dead_code)]
#[path = "support/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "support/cluster.rs"]
mod cluster;

use axum::http::Method;
use client::{Auth, Http, JsonBody, TempDir};
use cluster::{
    Instance, PASSWORD, Plan, TestDb, assert_all_ok, assert_records, run_load, start_all,
};
use rotauth::Session;

const CLIENTS: usize = 50;
const REQUESTS: usize = 200;

async fn report(http: &Http, label: &str, instances: &[&Instance], totals: &cluster::Totals) {
    let mut conflicts = 0;
    let mut served = Vec::new();
    for instance in instances {
        let http = http.at(instance.addr);
        conflicts += http.metric("rotauth_cas_conflicts_total").await;
        let metrics = http.metrics().await;
        served.push(
            metrics
                .iter()
                .filter(|(n, _)| n.starts_with("rotauth_decisions_total"))
                .map(|(_, v)| v)
                .sum::<u64>(),
        );
    }
    eprintln!(
        "{label}: {} requests, all 200; decisions per instance {served:?}; \
         {conflicts} compare-and-swap conflicts decided again; {} resent after a transport error",
        totals.requests, totals.retries
    );
}

async fn stored_session(db: &TestDb, client: &str) -> Session {
    let row = db
        .client()
        .await
        .query_one(
            "SELECT record FROM rotauth_sessions WHERE client_id = $1",
            &[&client::client_bytes(client)],
        )
        .await
        .unwrap();
    Session::decode(row.get::<_, &[u8]>(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_database_under_load() {
    let db = TestDb::create().await;
    let dir = TempDir::new();
    let flags: &[&str] = &["--batch-window-ms", "2000"];
    let instances = start_all(&db, &dir.0, &[flags, flags]);
    let addrs: Vec<_> = instances.iter().map(|i| i.addr).collect();
    let http = Http::new(addrs[0]);
    let plan = Plan {
        clients: CLIENTS,
        requests: REQUESTS,
        seed: 1,
    };
    let (outcomes, totals) = run_load(&http, &addrs, &plan).await;
    assert_all_ok(&totals, &plan);
    assert_records(&outcomes, &db.sessions().await, true);
    // Both instances decided a fair share: the balancing really spread the sessions.
    let refs: Vec<&Instance> = instances.iter().collect();
    for instance in &refs {
        let decided: u64 = http
            .at(instance.addr)
            .metrics()
            .await
            .iter()
            .filter(|(n, _)| n.starts_with("rotauth_decisions_total"))
            .map(|(_, v)| v)
            .sum();
        assert!(
            decided > (CLIENTS * REQUESTS / 4) as u64,
            "instance decided only {decided}"
        );
    }
    report(&http, "two instances", &refs, &totals).await;
}

/// Instance 0 runs 2 s ahead. A rotation it stamps lies in the future for instance 1, whose
/// requests then see age 0 (saturating): inside the window, a batch. A rotation stamped by
/// instance 1 looks 2 s old to instance 0, so the window must exceed 2 s plus a burst's
/// spread: the default 5 s does (devise's `batch_request_buffer_throttle`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_two_seconds_apart_still_log_no_one_out() {
    let db = TestDb::create().await;
    let dir = TempDir::new();
    let instances = start_all(&db, &dir.0, &[&["--clock-offset-ms", "2000"], &[]]);
    let (fast, slow) = (instances[0].addr, instances[1].addr);
    let http = Http::new(fast);

    // One client by hand, to see what the skew does to the record.
    let mut auth = http.at(slow).sign_up("skew@example.com", PASSWORD).await;
    let wall_before = rotauth::Timestamp::now().unix_millis();
    let resp = http
        .at(fast)
        .get("/demo/members_only?unbatch=true", &auth)
        .await;
    assert_eq!(resp.status, 200);
    assert!(auth.follow(&resp), "unbatch rotates");
    let stamped = stored_session(&db, &auth.client).await.rotated_at();
    assert!(
        stamped.unix_millis() >= wall_before + 2000,
        "the fast instance stamps its own clock"
    );
    // The slow instance sees that rotation in its future: a batch, not a refusal.
    let resp = http.at(slow).get("/demo/members_only", &auth).await;
    assert_eq!(resp.status, 200);
    auth.follow(&resp);
    // A forced rotation on the slow instance never moves rotated_at backwards.
    let resp = http
        .at(slow)
        .get("/auth/validate_token?unbatch=true", &auth)
        .await;
    assert_eq!(resp.status, 200);
    assert!(auth.follow(&resp));
    let session = stored_session(&db, &auth.client).await;
    assert!(session.rotated_at() >= stamped, "rotated_at went backwards");
    assert_eq!(session.generation(), auth.received);
    // The token it received passes on both.
    for addr in [fast, slow] {
        let resp = http.at(addr).get("/auth/validate_token", &auth).await;
        assert_eq!(resp.status, 200);
        auth.follow(&resp);
    }

    let plan = Plan {
        clients: CLIENTS,
        requests: REQUESTS,
        seed: 2,
    };
    let (outcomes, totals) = run_load(&http, &[fast, slow], &plan).await;
    assert_all_ok(&totals, &plan);
    let rows: Vec<_> = db
        .sessions()
        .await
        .into_iter()
        .filter(|(client, _, _)| *client != auth.client)
        .collect();
    assert_records(&outcomes, &rows, true);
    report(
        &http,
        "clocks 2 s apart",
        &[&instances[0], &instances[1]],
        &totals,
    )
    .await;
}

/// The same load on one instance with the default SQLite store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_on_sqlite_passes_the_same_load() {
    let dir = TempDir::new();
    let file = dir.0.join("cluster.sqlite3");
    let file_arg = file.display().to_string();
    let instance = Instance::spawn(
        &["--db", &file_arg, "--batch-window-ms", "2000"],
        &dir.0,
        "sqlite",
    );
    let http = Http::new(instance.addr);
    let plan = Plan {
        clients: CLIENTS,
        requests: REQUESTS,
        seed: 4,
    };
    let (outcomes, totals) = run_load(&http, &[instance.addr], &plan).await;
    assert_all_ok(&totals, &plan);
    let conn = rusqlite::Connection::open(&file).unwrap();
    let mut stmt = conn
        .prepare("SELECT client_id, record, version FROM rotauth_sessions")
        .unwrap();
    let rows: Vec<(String, Vec<u8>, i64)> = stmt
        .query_map([], |r| {
            Ok((
                client::client_text(&r.get::<_, Vec<u8>>(0)?),
                r.get(1)?,
                r.get(2)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_records(&outcomes, &rows, true);
    report(&http, "one instance, SQLite", &[&instance], &totals).await;
}

/// The new flags, through the binary: bad values exit 2 with a message; an unreachable
/// database exits 1 and names neither the password nor the URL's secrets.
#[test]
fn bad_database_flags_are_refused_without_echoing_the_password() {
    use std::process::Command;

    let bin = cluster::server_binary();
    for (args, expected) in [
        (
            &["--database-url", "mysql://u:pw@127.0.0.1/x"][..],
            "expected postgres://",
        ),
        (&["--clock-offset-ms", "soon"], "--clock-offset-ms"),
        (&["--pool-size", "0"], "--pool-size"),
        (&["--metrics=yes"], "--metrics"),
    ] {
        let out = Command::new(&bin).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("pw@"), "password echoed: {stderr}");
    }
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let out = Command::new(&bin)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--database-url",
            "postgres://rotauth:s3cret-pw@127.0.0.1:1/rotauth",
        ])
        .env("ROTAUTH_KEY", cluster::KEY_HEX)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("database:"), "{stderr}");
    assert!(
        !stderr.contains("s3cret-pw"),
        "password in the log: {stderr}"
    );
    assert!(out.stdout.is_empty(), "listening without a database");
}

/// `PUT /auth` and `DELETE /auth` on PostgreSQL: the account change is committed with the
/// rotation in one transaction, an email taken on another instance is refused, and the
/// deletion takes every session of the user with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_update_and_deletion_on_postgres() {
    let db = TestDb::create().await;
    let dir = TempDir::new();
    let flags: &[&str] = &["--batch-window-ms", "0"];
    let instances = start_all(&db, &dir.0, &[flags, flags]);
    let a = Http::new(instances[0].addr);
    let b = a.at(instances[1].addr);
    let mut auth = a.sign_up("pg@example.com", PASSWORD).await;
    let other = b.sign_in("pg@example.com", PASSWORD).await;
    b.sign_up("taken@example.com", PASSWORD).await;

    let put = |http: &Http, auth: &Auth, body: serde_json::Value| {
        let (http, headers) = (http.clone(), auth.headers());
        async move {
            http.send(Method::PUT, "/auth", &headers, Some(&body.to_string()))
                .await
        }
    };
    let resp = put(&a, &auth, serde_json::json!({"email": "taken@example.com"})).await;
    assert_eq!(resp.status, 422, "{}", resp.text);
    assert!(auth.follow(&resp));
    let resp = put(
        &b,
        &auth,
        serde_json::json!({"email": "pg2@example.com", "password": "another password",
                           "password_confirmation": "another password",
                           "current_password": PASSWORD}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.header("uid"), Some("pg2@example.com"));
    assert!(auth.follow(&resp));
    auth.uid = "pg2@example.com".to_owned();
    let mut other = other;
    other.uid = "pg2@example.com".to_owned();
    assert_eq!(
        a.get("/auth/validate_token", &other).await.status,
        401,
        "signed out"
    );
    let resp = a.get("/auth/validate_token", &auth).await;
    assert_eq!(resp.status, 200);
    assert!(auth.follow(&resp));
    let second = a.sign_in("pg2@example.com", "another password").await;

    let resp = b.send(Method::DELETE, "/auth", &auth.headers(), None).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(
        resp.json()["message"],
        "Account with UID 'pg2@example.com' has been destroyed."
    );
    let rows = db.sessions().await;
    assert!(
        !rows
            .iter()
            .any(|(client, _, _)| client == &auth.client || client == &second.client),
        "a session of the deleted user is left"
    );
    let resp = a.send(Method::DELETE, "/auth", &auth.headers(), None).await;
    assert_eq!(resp.status, 404);
}
