//! `slow`: connections that send half a request head and stop, held by processes of
//! their own, while a real request is timed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use devise_server::client::Http;
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Held, mib, ms, open_fds, process_status};

/// Connections per holder process: several processes hold the flood, so that no single
/// one needs more descriptors than a container's limit allows.
const PER_HOLDER: usize = 5_000;

/// Opens `held.connections` slow connections to the server at `addr` (process `pid`) from
/// holder processes, times a real request while they are open, and counts how many the
/// server closes; fails if the real request is not answered within 1 s.
pub(super) async fn connections(addr: SocketAddr, pid: u32, held: Held) -> Result<(), String> {
    use std::io::BufRead as _;

    let (rss_before, _, _) = process_status(pid)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let opened_at = Instant::now();
    let mut holders = Vec::new();
    let mut remaining = held.connections;
    while remaining > 0 {
        let count = remaining.min(PER_HOLDER);
        let mut child = std::process::Command::new(&exe)
            .args(["hold", "--addr", &addr.to_string()])
            .args(["--connections", &count.to_string()])
            .args(["--wait-close-secs", &held.wait_close.as_secs().to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a holder: {e}"))?;
        let stdout = child.stdout.take().ok_or("no holder stdout")?;
        holders.push((child, std::io::BufReader::new(stdout)));
        remaining = remaining.saturating_sub(count);
    }
    // Each holder's first line: `opened N failed F`.
    let mut opened = 0usize;
    let mut failed = 0usize;
    let mut readers = Vec::new();
    for (child, mut reader) in holders {
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            (line, reader)
        })
        .await
        .map_err(|e| e.to_string())?;
        let numbers: Vec<usize> = line
            .0
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        opened = opened.saturating_add(numbers.first().copied().unwrap_or(0));
        failed = failed.saturating_add(numbers.get(1).copied().unwrap_or(0));
        readers.push((child, line.1));
    }
    let open_time = opened_at.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server_fds = open_fds(pid);
    let (rss_open, _, _) = process_status(pid)?;
    // A real request while they are open, on a connection of its own.
    let t = Instant::now();
    let answer = Http::new(addr)
        .timeout(Duration::from_secs(60))
        .send(Method::GET, "/auth/validate_token", &[], None)
        .await;
    let answered_in = t.elapsed();
    let status = answer.as_ref().map_or(0, |a| a.status);
    println!(
        "slow connections: {opened} opened in {:.1} s ({failed} failed) by {} processes; server holds {server_fds} descriptors, memory {:.0} MiB -> {:.0} MiB",
        open_time.as_secs_f64(),
        readers.len(),
        mib(rss_before),
        mib(rss_open)
    );
    println!(
        "  a real request while they are open: status {status}, answered in {:.1} ms",
        ms(answered_in)
    );
    // Each holder's second line: `closed C in S`: closed by the server (header-read timeout,
    // or room made for a newer connection).
    let mut closed = 0usize;
    for (mut child, mut reader) in readers {
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = child.wait();
            line
        })
        .await
        .map_err(|e| e.to_string())?;
        closed = closed.saturating_add(
            line.split_whitespace()
                .find_map(|w| w.parse::<usize>().ok())
                .unwrap_or(0),
        );
    }
    println!(
        "  closed by the server within {:.1} s of opening: {closed} of {opened}; server descriptors now {}",
        // From the first connection on, the real request's own wait included.
        opened_at.elapsed().as_secs_f64(),
        open_fds(pid)
    );
    if status == 0 || answered_in > Duration::from_secs(1) {
        return Err("the real request was not answered within 1 s".to_owned());
    }
    Ok(())
}

/// A holder process: opens `--connections` connections, each sending half a request head
/// and then nothing; prints `opened N failed F`, then waits up to `--wait-close-secs` for
/// the server to close them and prints `closed C`. Raw TCP: a half-sent head is what no
/// HTTP client sends.
pub(super) async fn hold(addr: SocketAddr, flags: Held) -> Result<(), String> {
    use std::io::Write as _;

    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut held = Vec::with_capacity(flags.connections);
    let mut failed = 0usize;
    let mut remaining = flags.connections;
    while remaining > 0 {
        let batch = remaining.min(500);
        let mut tasks = Vec::with_capacity(batch);
        for _ in 0..batch {
            tasks.push(tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.ok()?;
                stream
                    .write_all(b"GET /demo/members_only HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .await
                    .ok()?;
                Some(stream)
            }));
        }
        for task in tasks {
            match task.await {
                Ok(Some(stream)) => held.push(stream),
                _ => failed = failed.saturating_add(1),
            }
        }
        remaining = remaining.saturating_sub(batch);
    }
    println!("opened {} failed {failed}", held.len());
    let _ = std::io::stdout().flush();
    let deadline = Instant::now()
        .checked_add(flags.wait_close)
        .unwrap_or_else(Instant::now);
    let mut reads = Vec::with_capacity(held.len());
    for mut stream in held {
        reads.push(tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, stream.read(&mut buf)).await {
                    // Closed (possibly after an error response the server wrote first).
                    Ok(Ok(0) | Err(_)) => return true,
                    Ok(Ok(_)) => {}
                    Err(_) => return false,
                }
            }
        }));
    }
    let mut closed = 0usize;
    for read in reads {
        if matches!(read.await, Ok(true)) {
            closed = closed.saturating_add(1);
        }
    }
    println!("closed {closed}");
    let _ = std::io::stdout().flush();
    Ok(())
}
