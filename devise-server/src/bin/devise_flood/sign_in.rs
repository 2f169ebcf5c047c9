//! `sign-in`: a flood of sign-ins with unknown emails while a signed-in client is served.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use devise_server::client::Http;
use hyper::Method;

use super::{mib, ms, percentile, process_status};

/// Longest a flood request may take: a sign-in queued behind 200 password hashes.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `rounds` of `concurrency` sign-ins with unknown emails at once against the server
/// at `addr` (process `pid`), while one signed-in client sends requests one after the
/// other; fails if that client is refused meanwhile.
pub(super) async fn flood(
    addr: SocketAddr,
    pid: u32,
    concurrency: usize,
    rounds: usize,
) -> Result<(), String> {
    let (rss_before, _, threads_before) = process_status(pid)?;
    // The signed-in client, on a kept-alive connection as a browser's.
    let http = Http::new(addr).timeout(TIMEOUT);
    let suffix = std::process::id();
    let email = format!("flood-victim-{suffix}@example.com");
    let mut auth = http
        .sign_up(&email, "correct horse battery")
        .await
        .map_err(|e| e.to_string())?;

    let done = Arc::new(AtomicBool::new(false));
    // The server's threads, sampled every 20 ms.
    let sampler = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut peak_threads = 0;
            while !done.load(Ordering::Relaxed) {
                if let Ok((_, _, threads)) = process_status(pid) {
                    peak_threads = peak_threads.max(threads);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak_threads
        })
    };
    // The flood: one connection per sign-in, none left open to weigh on the server.
    let flooding = Http::new(addr).timeout(TIMEOUT).closing_connections();
    let flood = tokio::spawn(async move {
        let mut statuses = BTreeMap::<u16, usize>::new();
        for round in 0..rounds {
            let mut tasks = Vec::with_capacity(concurrency);
            for i in 0..concurrency {
                let body = format!(
                    r#"{{"email":"nobody-{suffix}-{round}-{i}@example.com","password":"guess number {i}"}}"#
                );
                let http = flooding.clone();
                tasks.push(tokio::spawn(async move {
                    http.post("/auth/sign_in", &body).await
                }));
            }
            for task in tasks {
                let status = match task.await {
                    Ok(Ok(response)) => response.status,
                    _ => 0,
                };
                let entry = statuses.entry(status).or_insert(0);
                *entry = entry.saturating_add(1);
            }
        }
        statuses
    });
    // The signed-in client, one request after another while the flood lasts.
    let mut latencies = Vec::new();
    let mut client_statuses = BTreeMap::<u16, usize>::new();
    let started = Instant::now();
    while !flood.is_finished() && started.elapsed() < Duration::from_secs(300) {
        let t = Instant::now();
        let response = http
            .follow(Method::GET, "/demo/members_only", &mut auth)
            .await
            .map_err(|e| e.to_string())?;
        latencies.push(t.elapsed());
        let entry = client_statuses.entry(response.status).or_insert(0);
        *entry = entry.saturating_add(1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let flood_statuses = flood.await.map_err(|e| e.to_string())?;
    let flood_time = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let peak_threads = sampler.await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_after, hwm, threads_after) = process_status(pid)?;
    latencies.sort();
    println!(
        "sign-in flood: {rounds} x {concurrency} concurrent sign-ins with unknown emails in {:.1} s, statuses {flood_statuses:?}",
        flood_time.as_secs_f64(),
    );
    println!(
        "  server memory: {:.0} MiB before, peak {:.0} MiB (VmHWM), {:.0} MiB after; threads {threads_before} before, peak {peak_threads}, {threads_after} after",
        mib(rss_before),
        mib(hwm),
        mib(rss_after),
    );
    println!(
        "  signed-in client during the flood: {} requests, statuses {client_statuses:?}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 99)),
        ms(latencies.last().copied().unwrap_or(Duration::ZERO))
    );
    if client_statuses.keys().any(|&s| s != 200) {
        return Err("the signed-in client was refused during the flood".to_owned());
    }
    Ok(())
}
