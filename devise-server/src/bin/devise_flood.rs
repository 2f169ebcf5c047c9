//! Abuse measurements against a running `devise_server` on loopback, each bounded and
//! stopping by itself (`scripts/flood.sh` starts the server and runs both):
//!
//! ```text
//! devise_flood sign-in --addr 127.0.0.1:3000 --pid PID [--concurrency 200] [--rounds 3]
//! devise_flood slow    --addr 127.0.0.1:3000 --pid PID [--connections 20000] [--wait-close-secs 15]
//! ```
//!
//! `sign-in`: one signed-in client sends requests one after the other, following its
//! tokens, while `--concurrency` sign-ins with unknown emails are in flight at once, for
//! `--rounds` rounds; prints the server's peak resident memory (`VmHWM`), its peak thread
//! count, its resident memory afterwards, the flood's statuses, and the client's latency
//! percentiles during the flood.
//!
//! `slow`: opens `--connections` connections that send half a request head and then
//! nothing (from several holder processes of 5 000, `devise_flood hold`, so that no
//! process needs more descriptors than a container allows); while they are open, times a
//! real request; then waits for the server's header-read timeout to close them and counts
//! how many it closed.
//!
//! Both read `/proc/PID/status` of the server (Linux). Loopback only: a test tool.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() -> std::process::ExitCode {
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
    match runtime.block_on(run(std::env::args().skip(1).collect())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

struct Flags {
    command: String,
    addr: SocketAddr,
    pid: u32,
    concurrency: usize,
    rounds: usize,
    connections: usize,
    wait_close: Duration,
}

fn parse(args: Vec<String>) -> Result<Flags, String> {
    let mut args = args.into_iter();
    let command = args.next().ok_or("expected sign-in or slow")?;
    let mut flags = Flags {
        command,
        addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
        pid: 0,
        concurrency: 200,
        rounds: 3,
        connections: 20_000,
        wait_close: Duration::from_secs(15),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || -> Result<u64, String> {
            value
                .parse()
                .map_err(|_| format!("{flag}: expected a number, got {value:?}"))
        };
        let count = || usize::try_from(number()?).map_err(|e| e.to_string());
        match flag.as_str() {
            "--addr" => flags.addr = value.parse().map_err(|_| "--addr: HOST:PORT")?,
            "--pid" => flags.pid = u32::try_from(number()?).map_err(|e| e.to_string())?,
            "--concurrency" => flags.concurrency = count()?,
            "--rounds" => flags.rounds = count()?,
            "--connections" => flags.connections = count()?,
            "--wait-close-secs" => flags.wait_close = Duration::from_secs(number()?),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if !flags.addr.ip().is_loopback() {
        return Err("--addr must be a loopback address".to_owned());
    }
    if flags.pid == 0 {
        return Err("--pid of the server is needed".to_owned());
    }
    Ok(flags)
}

async fn run(args: Vec<String>) -> Result<(), String> {
    let flags = parse(args)?;
    match flags.command.as_str() {
        "sign-in" => sign_in_flood(&flags).await,
        "slow" => slow_connections(&flags).await,
        "hold" => hold(&flags).await,
        other => Err(format!("unknown command {other:?}: sign-in or slow")),
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

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client: one request per connection, read to the end.

struct Answer {
    status: u16,
    head: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Answer, String> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        text.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        text.push_str("\r\n");
    }
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream
            .write_all(text.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        stream
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(bytes)
    };
    let bytes = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .map_err(|_| "timed out".to_owned())??;
    let text = String::from_utf8_lossy(&bytes);
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "no status line in {:?}",
                head.chars().take(80).collect::<String>()
            )
        })?;
    Ok(Answer { status, head })
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

// ---------------------------------------------------------------------------------------
// sign-in

async fn sign_in_flood(flags: &Flags) -> Result<(), String> {
    let addr = flags.addr;
    let (rss_before, _, threads_before) = process_status(flags.pid)?;
    // The signed-in client.
    let suffix = std::process::id();
    let email = format!("flood-victim-{suffix}@example.com");
    let body = format!(
        r#"{{"email":"{email}","password":"correct horse battery","password_confirmation":"correct horse battery"}}"#
    );
    let signed_up = request(addr, "POST", "/auth", &[], Some(&body)).await?;
    if signed_up.status != 200 {
        return Err(format!("sign-up answered {}", signed_up.status));
    }
    let client = signed_up.header("client").unwrap_or("").to_owned();
    let mut token = signed_up.header("access-token").unwrap_or("").to_owned();

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The server's memory and threads, sampled every 20 ms.
    let sampler = {
        let (pid, done) = (flags.pid, std::sync::Arc::clone(&done));
        tokio::spawn(async move {
            let mut peak_threads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((_, _, threads)) = process_status(pid) {
                    peak_threads = peak_threads.max(threads);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak_threads
        })
    };
    // The flood: `concurrency` sign-ins with unknown emails at once, `rounds` times.
    let flood = {
        let (concurrency, rounds) = (flags.concurrency, flags.rounds);
        tokio::spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            for round in 0..rounds {
                let mut tasks = Vec::with_capacity(concurrency);
                for i in 0..concurrency {
                    let body = format!(
                        r#"{{"email":"nobody-{suffix}-{round}-{i}@example.com","password":"guess number {i}"}}"#
                    );
                    tasks.push(tokio::spawn(async move {
                        request(addr, "POST", "/auth/sign_in", &[], Some(&body)).await
                    }));
                }
                for task in tasks {
                    let status = match task.await {
                        Ok(Ok(answer)) => answer.status,
                        _ => 0,
                    };
                    let entry = statuses.entry(status).or_insert(0);
                    *entry = entry.saturating_add(1);
                }
            }
            statuses
        })
    };
    // The signed-in client, one request after another while the flood lasts.
    let mut latencies = Vec::new();
    let mut client_statuses = std::collections::BTreeMap::<u16, usize>::new();
    let started = Instant::now();
    while !flood.is_finished() && started.elapsed() < Duration::from_secs(300) {
        let t = Instant::now();
        let answer = request(
            addr,
            "GET",
            "/demo/members_only",
            &[
                ("access-token", token.as_str()),
                ("client", client.as_str()),
                ("uid", email.as_str()),
            ],
            None,
        )
        .await?;
        latencies.push(t.elapsed());
        let entry = client_statuses.entry(answer.status).or_insert(0);
        *entry = entry.saturating_add(1);
        if let Some(next) = answer.header("access-token").filter(|t| !t.is_empty()) {
            token = next.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let flood_statuses = flood.await.map_err(|e| e.to_string())?;
    let flood_time = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_threads = sampler.await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_after, hwm, threads_after) = process_status(flags.pid)?;
    latencies.sort();
    println!(
        "sign-in flood: {} x {} concurrent sign-ins with unknown emails in {:.1} s, statuses {:?}",
        flags.rounds,
        flags.concurrency,
        flood_time.as_secs_f64(),
        flood_statuses
    );
    println!(
        "  server memory: {:.0} MiB before, peak {:.0} MiB (VmHWM), {:.0} MiB after; threads {} before, peak {}, {} after",
        mib(rss_before),
        mib(hwm),
        mib(rss_after),
        threads_before,
        peak_threads,
        threads_after
    );
    println!(
        "  signed-in client during the flood: {} requests, statuses {:?}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        client_statuses,
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 99)),
        ms(latencies.last().copied().unwrap_or(Duration::ZERO))
    );
    if client_statuses.keys().any(|&s| s != 200) {
        return Err("the signed-in client was refused during the flood".to_owned());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// slow

/// Connections per holder process: several processes hold the flood, so that no single
/// one needs more descriptors than a container's limit allows.
const PER_HOLDER: usize = 5_000;

async fn slow_connections(flags: &Flags) -> Result<(), String> {
    use std::io::BufRead as _;

    let addr = flags.addr;
    let (rss_before, _, _) = process_status(flags.pid)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let opened_at = Instant::now();
    let mut holders = Vec::new();
    let mut remaining = flags.connections;
    while remaining > 0 {
        let count = remaining.min(PER_HOLDER);
        let mut child = std::process::Command::new(&exe)
            .args([
                "hold",
                "--addr",
                &addr.to_string(),
                "--pid",
                &flags.pid.to_string(),
            ])
            .args(["--connections", &count.to_string()])
            .args(["--wait-close-secs", &flags.wait_close.as_secs().to_string()])
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
    let server_fds = open_fds(flags.pid);
    let (rss_open, _, _) = process_status(flags.pid)?;
    // A real request while they are open.
    let t = Instant::now();
    let answer = request(addr, "GET", "/auth/validate_token", &[], None).await;
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
        open_fds(flags.pid)
    );
    if status == 0 || answered_in > Duration::from_secs(1) {
        return Err("the real request was not answered within 1 s".to_owned());
    }
    Ok(())
}

/// A holder process: opens `--connections` connections, each sending half a request head
/// and then nothing; prints `opened N failed F`, then waits up to `--wait-close-secs` for
/// the server to close them and prints `closed C`.
async fn hold(flags: &Flags) -> Result<(), String> {
    use std::io::Write as _;

    let addr = flags.addr;
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
