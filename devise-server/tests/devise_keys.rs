//! Changing the signing key while serving, as an operator does it: two instances of the
//! built binary on one PostgreSQL database read their keys from one `--key-file`, clients
//! follow their tokens across both under load, and the keys change in the documented three
//! steps, each applied to both instances (SIGHUP) before the next: add the new key, make it
//! primary, and once `/metrics` shows no session left on the old key, remove it. Nobody is
//! signed out.
//!
//! Needs `ROTAUTH_TEST_DATABASE_URL` (`bash scripts/with-postgres.sh cargo test`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    unreachable_pub
)]

#[allow(dead_code)]
#[path = "support/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "support/cluster.rs"]
mod cluster;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use client::{Auth, Http, TempDir};
use cluster::{Instance, PASSWORD, TestDb};
use rand::{RngExt, SeedableRng};
use rotauth::{KeyId, Token};

const OLD: &str = "3f0a9c1e5b7d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a";
const NEW: &str = "a1c3e5f7092b4d6f8e0a2c4e6b8d1f3a5c7e9b0d2f4a6c8e1b3d5f7a9c0e2b4d";
const CLIENTS: usize = 20;

/// Writes the key file (owner-only, as the server asks) and tells every instance to read it.
fn set_keys(file: &Path, text: &str, instances: &[Instance]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(file, text).unwrap();
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    for instance in instances {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &instance.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// The value of one series of an instance's `/metrics`, 0 when absent.
async fn series(http: &Http, addr: SocketAddr, name: &str) -> u64 {
    http.at(addr)
        .metrics()
        .await
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| v)
}

/// Waits until `name` is `value` on every instance (a reload took effect, the sessions
/// moved); how long that took.
async fn until(http: &Http, addrs: &[SocketAddr], name: &str, value: u64) -> Duration {
    let start = Instant::now();
    loop {
        let mut all = true;
        for &addr in addrs {
            all &= series(http, addr, name).await == value;
        }
        if all {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} never reached {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One client until `stop`: bursts of three requests, each to a random instance, with the
/// token it holds, following the one new token a burst may bring. Every status it got.
async fn client(
    http: Http,
    addrs: Arc<[SocketAddr]>,
    i: usize,
    stop: Arc<AtomicBool>,
) -> (Auth, Vec<u16>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
    let mut auth = http
        .at(addrs[i % addrs.len()])
        .sign_up(&format!("keys{i}@example.com"), PASSWORD)
        .await;
    let mut statuses = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut burst = Vec::new();
        for j in 0..3 {
            let (http, auth) = (
                http.at(addrs[rng.random_range(0..addrs.len())]),
                auth.clone(),
            );
            let path = if j % 2 == 0 {
                "/demo/members_only"
            } else {
                "/auth/validate_token"
            };
            burst.push(tokio::spawn(async move { http.get(path, &auth).await }));
        }
        for request in burst {
            let resp = request.await.unwrap();
            statuses.push(resp.status);
            auth.follow(&resp);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
    }
    (auth, statuses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_change_in_three_steps_under_load_and_sign_nobody_out() {
    let db = TestDb::create().await;
    let dir = TempDir::new();
    let file = dir.0.join("keys");
    std::fs::write(&file, format!("1:{OLD}")).unwrap();
    let key_file = file.display().to_string();
    let args = [
        "--database-url",
        db.url.as_str(),
        "--key-file",
        key_file.as_str(),
        "--batch-window-ms",
        "300",
    ];
    // The first creates the schema; the second finds it.
    let instances = [
        Instance::spawn_with_key_file(&args, &dir.0, "instance0"),
        Instance::spawn_with_key_file(&args, &dir.0, "instance1"),
    ];
    let addrs: Arc<[SocketAddr]> = instances.iter().map(|i| i.addr).collect();
    let http = Http::new(addrs[0]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(client(
                http.clone(),
                Arc::clone(&addrs),
                i,
                Arc::clone(&stop),
            ))
        })
        .collect();
    let on_old = r#"rotauth_sessions_by_key{key_id="1"}"#;
    until(&http, &addrs, on_old, CLIENTS as u64).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. The new key, everywhere, not yet signing.
    set_keys(&file, &format!("1:{OLD},2:{NEW}"), &instances);
    until(
        &http,
        &addrs,
        r#"rotauth_keys{key_id="2",primary="false"}"#,
        1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 2. The new key signs, everywhere; sessions move onto it as they rotate.
    set_keys(&file, &format!("2:{NEW},1:{OLD}"), &instances);
    until(
        &http,
        &addrs,
        r#"rotauth_keys{key_id="2",primary="true"}"#,
        1,
    )
    .await;
    let moved = until(&http, &addrs, on_old, 0).await;
    // 3. No session is left on the old key: it goes.
    set_keys(&file, &format!("2:{NEW}"), &instances);
    until(
        &http,
        &addrs,
        r#"rotauth_keys{key_id="1",primary="false"}"#,
        0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    let mut finals = Vec::new();
    for client in clients {
        let (auth, seen) = client.await.unwrap();
        statuses.extend(seen);
        finals.push(auth);
    }
    let count = |status| statuses.iter().filter(|&&s| s == status).count();
    eprintln!(
        "key change under load: {} requests from {CLIENTS} clients across 2 instances, {} x 200, \
         {} x 401, {} x 5xx; every session on the new key {} ms after it became primary",
        statuses.len(),
        count(200),
        count(401),
        statuses.iter().filter(|&&s| s >= 500).count(),
        moved.as_millis()
    );
    assert_eq!(count(401), 0, "a client was signed out");
    assert_eq!(count(200), statuses.len(), "every request was served");
    for auth in &finals {
        assert_eq!(Token::from_text(&auth.token).unwrap().key_id(), KeyId(2));
        let resp = http.get("/auth/validate_token", auth).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
    }
    for instance in &instances {
        let log = instance.log_text();
        assert_eq!(log.matches("SIGHUP: keys reloaded").count(), 3, "{log}");
        assert!(!log.contains(OLD) && !log.contains(NEW), "a key was logged");
    }
}
