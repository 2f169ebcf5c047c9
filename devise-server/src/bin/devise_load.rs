//! A load client for `devise_server`: N clients, each signed up and then sending
//! M authenticated requests, following the tokens the responses hand them as devise's
//! JavaScript clients do (a generic tool such as `wrk` replays one token and measures 401s
//! once it rotates away). It speaks through the package's devise client
//! (`devise_server::client`), the one the tests use.
//!
//! ```text
//! cargo run --release -p devise-server --bin devise_server -- --addr 127.0.0.1:3000 --db :memory: --quiet &
//! cargo run --release -p devise-server --bin devise_load -- --addr 127.0.0.1:3000 --clients 50 --requests 400
//! ```
//!
//! Prints requests per second, statuses, rotations and latency percentiles, and, from
//! servers started with `--metrics`, how many compare-and-swaps the load made them lose and
//! decide again. Loopback only: it is a test tool.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser as _;
use devise_server::client::{Auth, Http};

/// The flags.
#[derive(clap::Parser)]
#[command(
    name = "devise_load",
    about = "Clients following their tokens against devise_server, with throughput and latency"
)]
struct Flags {
    /// The servers; with several, every request goes to a randomly chosen one (a load
    /// balancer without affinity).
    #[arg(
        long = "addr",
        value_name = "HOST:PORT",
        value_delimiter = ',',
        default_value = "127.0.0.1:3000"
    )]
    addrs: Vec<SocketAddr>,
    /// Clients, each signed up at the start.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    clients: u64,
    /// Requests per client.
    #[arg(long, value_name = "M", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    /// Parallel requests per step, all with the same token.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    burst: u64,
    /// The authenticated route.
    #[arg(long, value_name = "P", default_value = "/demo/members_only")]
    path: String,
    /// Every request asks to rotate (with a burst above 1 each request of a burst then
    /// rotates, so keep bursts at 1 with it).
    #[arg(long)]
    unbatch: bool,
}

fn main() -> std::process::ExitCode {
    let flags = Flags::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// What one client saw.
struct Seen {
    /// Each request's status (0: no response) and latency.
    replies: Vec<(u16, Duration)>,
    rotations: u64,
}

/// A small xorshift: which instance each request goes to needs no cryptography.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// One client: `requests` requests in bursts of `burst`, each to a random server of
/// `servers`, following the token a burst brings.
async fn client(servers: Vec<Http>, path: String, mut auth: Auth, plan: (u64, u64, u64)) -> Seen {
    let (requests, burst, mut random) = plan;
    let mut seen = Seen {
        replies: Vec::new(),
        rotations: 0,
    };
    let mut sent = 0;
    while sent < requests {
        let size = burst.min(requests.saturating_sub(sent));
        let mut tasks = Vec::new();
        for _ in 0..size {
            let pick = next_random(&mut random)
                .checked_rem(u64::try_from(servers.len()).unwrap_or(1))
                .and_then(|i| usize::try_from(i).ok())
                .unwrap_or(0);
            let Some(http) = servers.get(pick).or(servers.first()).cloned() else {
                break;
            };
            let (path, held) = (path.clone(), auth.clone());
            tasks.push(tokio::spawn(async move {
                let start = Instant::now();
                let response = http.get(&path, &held).await;
                (response, start.elapsed())
            }));
        }
        for task in tasks {
            match task.await {
                Ok((Ok(response), latency)) => {
                    if auth.follow(&response) {
                        seen.rotations = seen.rotations.saturating_add(1);
                    }
                    seen.replies.push((response.status, latency));
                }
                _ => seen.replies.push((0, Duration::ZERO)),
            }
        }
        sent = sent.saturating_add(size);
    }
    seen
}

/// `rotauth_cas_conflicts_total` summed over the servers; `None` if one does not serve
/// `/metrics` (started without `--metrics`).
async fn cas_conflicts(servers: &[Http]) -> Option<u64> {
    let mut total = 0u64;
    for http in servers {
        let value = http
            .metric("rotauth_cas_conflicts_total")
            .await
            .ok()
            .flatten()?;
        total = total.saturating_add(value);
    }
    Some(total)
}

async fn run(flags: Flags) -> Result<(), String> {
    let first = flags
        .addrs
        .first()
        .ok_or("--addr needs at least one HOST:PORT")?;
    let http = Http::new(*first);
    let servers: Vec<Http> = flags.addrs.iter().map(|addr| http.at(*addr)).collect();
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let mut auths = Vec::new();
    for (i, server) in (0..flags.clients).zip(servers.iter().cycle()) {
        let email = format!("load-{run_id}-{i}@example.com");
        let auth = server
            .sign_up(&email, "load-test-password")
            .await
            .map_err(|e| e.to_string())?;
        auths.push(auth);
    }
    let path = if flags.unbatch {
        format!("{}?unbatch=true", flags.path)
    } else {
        flags.path.clone()
    };
    let conflicts_before = cas_conflicts(&servers).await;
    let start = Instant::now();
    let tasks: Vec<_> = (0u64..)
        .zip(auths)
        .map(|(i, auth)| {
            // Any non-zero seed; distinct per client.
            let seed = 0x9e37_79b9_7f4a_7c15_u64 ^ i.wrapping_mul(0x2545_f491);
            let plan = (flags.requests, flags.burst, seed | 1);
            tokio::spawn(client(servers.clone(), path.clone(), auth, plan))
        })
        .collect();
    let mut replies = Vec::new();
    let mut rotations = 0u64;
    for task in tasks {
        let seen = task.await.map_err(|e| e.to_string())?;
        replies.extend(seen.replies);
        rotations = rotations.saturating_add(seen.rotations);
    }
    let elapsed = start.elapsed();
    let conflicts = match (conflicts_before, cas_conflicts(&servers).await) {
        (Some(before), Some(after)) => after.saturating_sub(before).to_string(),
        _ => "n/a (start the servers with --metrics)".to_owned(),
    };
    let count = |f: &dyn Fn(u16) -> bool| replies.iter().filter(|(s, _)| f(*s)).count();
    let mut latencies: Vec<Duration> = replies.iter().map(|(_, l)| *l).collect();
    latencies.sort_unstable();
    let percentile = |p: usize| {
        latencies
            .get(latencies.len().saturating_mul(p) / 100)
            .or(latencies.last())
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{} requests by {} clients (burst {}) to {} server(s) in {:.2}s: {:.0} req/s; 200: {}, 401: {}, 5xx: {}, failed: {}; rotations followed: {}; latency p50 {:.2}ms p99 {:.2}ms; compare-and-swap conflicts: {}",
        replies.len(),
        flags.clients,
        flags.burst,
        servers.len(),
        elapsed.as_secs_f64(),
        f64::from(u32::try_from(replies.len()).unwrap_or(u32::MAX)) / elapsed.as_secs_f64(),
        count(&|s| s == 200),
        count(&|s| s == 401),
        count(&|s| s >= 500),
        count(&|s| s == 0),
        rotations,
        percentile(50).as_secs_f64() * 1000.0,
        percentile(99).as_secs_f64() * 1000.0,
        conflicts,
    );
    Ok(())
}
