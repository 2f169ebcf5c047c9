//! Abuse measurements against a running `devise_server` on loopback, each bounded and
//! stopping by itself (`scripts/flood.sh` starts the server and runs both):
//!
//! ```text
//! devise_flood sign-in --addr 127.0.0.1:3000 --pid PID [--concurrency 200] [--rounds 3]
//! devise_flood slow    --addr 127.0.0.1:3000 --pid PID [--connections 20000] [--wait-close-secs 15]
//! ```
//!
//! `sign-in` ([`sign_in`]): one signed-in client sends requests one after the other,
//! following its tokens, while `--concurrency` sign-ins with unknown emails are in flight
//! at once, for `--rounds` rounds; prints the server's peak resident memory (`VmHWM`), its
//! peak thread count, its resident memory afterwards, the flood's statuses, and the
//! client's latency percentiles during the flood.
//!
//! `slow` ([`slow`]): opens `--connections` connections that send half a request head and
//! then nothing (from several holder processes of 5 000, `devise_flood hold`, so that no
//! process needs more descriptors than a container allows); while they are open, times a
//! real request; then waits for the server's header-read timeout to close them and counts
//! how many it closed.
//!
//! Both read `/proc/PID/status` of the server (Linux). HTTP goes through the package's
//! devise client (`devise_server::client`), the one the tests use. Loopback only: a test
//! tool.

mod sign_in;
mod slow;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser as _;

/// The flags.
#[derive(clap::Parser)]
#[command(
    name = "devise_flood",
    about = "Abuse measurements against a devise_server on loopback"
)]
struct Flags {
    #[command(subcommand)]
    command: Command,
}

/// What to measure.
#[derive(clap::Subcommand)]
enum Command {
    /// Concurrent sign-ins with unknown emails while a signed-in client is served.
    SignIn {
        #[command(flatten)]
        server: Server,
        /// Sign-ins in flight at once.
        #[arg(long, value_name = "N", default_value_t = 200)]
        concurrency: usize,
        /// Rounds of them.
        #[arg(long, value_name = "N", default_value_t = 3)]
        rounds: usize,
    },
    /// Connections that send half a request head, while a real request is timed.
    Slow {
        #[command(flatten)]
        server: Server,
        #[command(flatten)]
        held: Held,
    },
    /// A holder process of `slow` (started by it).
    #[command(hide = true)]
    Hold {
        /// The server's address.
        #[arg(long, value_name = "HOST:PORT", value_parser = loopback)]
        addr: SocketAddr,
        #[command(flatten)]
        held: Held,
    },
}

/// The server measured.
#[derive(clap::Args)]
struct Server {
    /// Its address (loopback).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:3000", value_parser = loopback)]
    addr: SocketAddr,
    /// Its process id, whose `/proc/PID/status` is read.
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pid: u32,
}

/// The slow connections.
#[derive(clap::Args, Clone, Copy)]
struct Held {
    /// How many.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    connections: usize,
    /// How long to wait for the server to close them, in seconds.
    #[arg(long = "wait-close-secs", value_name = "SECS", default_value = "15", value_parser = secs)]
    wait_close: Duration,
}

fn loopback(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|_| "expected HOST:PORT".to_owned())?;
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err("must be a loopback address".to_owned())
    }
}

fn secs(text: &str) -> Result<Duration, String> {
    text.parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("expected seconds, got {text:?}"))
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
    let result = runtime.block_on(async {
        match flags.command {
            Command::SignIn {
                server,
                concurrency,
                rounds,
            } => sign_in::flood(server.addr, server.pid, concurrency, rounds).await,
            Command::Slow { server, held } => {
                slow::connections(server.addr, server.pid, held).await
            }
            Command::Hold { addr, held } => slow::hold(addr, held).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// The server's process

/// `(VmRSS, VmHWM)` in KiB and `Threads` from `/proc/PID/status`.
fn process_status(pid: u32) -> Result<(u64, u64, u64), String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:"), field("Threads:")))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn mib(kib: u64) -> f64 {
    // Display only.
    #[allow(clippy::cast_precision_loss)]
    let kib = kib as f64;
    kib / 1024.0
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let last = sorted.len().saturating_sub(1);
    let index = last.saturating_mul(p).checked_div(100).unwrap_or(0);
    sorted.get(index).copied().unwrap_or(Duration::ZERO)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
