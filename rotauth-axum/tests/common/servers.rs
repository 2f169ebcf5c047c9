//! Throwaway PostgreSQL clusters and Redis servers of a test's own, on free loopback ports,
//! which the test may restart, kill, promote or fail over without touching the servers the
//! other tests share. Found and run as `scripts/with-postgres.sh` and
//! `scripts/with-redis.sh` do (which install them from Debian's packages when missing):
//! PostgreSQL from `PATH` or Debian's `/usr/lib/postgresql/*/bin`, run as the `postgres`
//! user when the test runs as root (initdb refuses root).
//!
//! Every command runs on a blocking thread, so that the load keeps both runtime workers.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::unique;

/// A free loopback port (the kernel's pick; a rare race with another process taking it
/// before the server binds shows up as a failed start, which the callers retry).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn output(mut command: Command) -> Output {
    let shown = format!("{command:?}");
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{shown}: {e}"))
}

fn check(command: Command) -> Output {
    let shown = format!("{command:?}");
    let output = output(command);
    assert!(
        output.status.success(),
        "{shown} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn is_root() -> bool {
    let mut id = Command::new("id");
    id.arg("-u");
    String::from_utf8_lossy(&check(id).stdout).trim() == "0"
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

/// The directory of PostgreSQL's server programs: Debian's newest
/// `/usr/lib/postgresql/*/bin`, else where `initdb` in `PATH` really is.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("initdb"))
        .find(|initdb| initdb.exists())
        .and_then(|initdb| Some(initdb.canonicalize().ok()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL's initdb not found: run the tests under `bash scripts/with-services.sh` \
                 (or `bash scripts/with-postgres.sh`), which installs PostgreSQL from Debian's \
                 packages when it is missing"
            )
        })
}

/// How PostgreSQL's programs run: as `postgres` when we are root (creating the system user
/// as `scripts/with-postgres.sh` does if it is missing), as ourselves otherwise.
#[derive(Clone)]
struct AsPostgres {
    bin: PathBuf,
    root: bool,
}

impl AsPostgres {
    fn new() -> Self {
        let root = is_root();
        let mut id = Command::new("id");
        id.arg("postgres");
        if root && !output(id).status.success() {
            let mut useradd = Command::new("useradd");
            useradd.args([
                "--system",
                "--home-dir",
                "/var/lib/postgresql",
                "--shell",
                "/bin/sh",
                "postgres",
            ]);
            check(useradd);
        }
        Self {
            bin: postgres_bin(),
            root,
        }
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// A fresh directory under the system's temporary directory that `postgres` owns.
    fn directory(&self) -> PathBuf {
        let dir = std::env::temp_dir().join(unique("rotauth-pg"));
        std::fs::create_dir(&dir).unwrap();
        let mut chmod = Command::new("chmod");
        chmod.arg("700").arg(&dir);
        check(chmod);
        if self.root {
            let mut chown = Command::new("chown");
            chown.arg("postgres:").arg(&dir);
            check(chown);
        }
        dir
    }
}

/// A PostgreSQL cluster of the test's own: data in `{dir}/data`, its unix socket in `dir`,
/// listening on `127.0.0.1:{port}` only, trust authentication, `fsync` off (the data is
/// thrown away and no test crashes the operating system; a killed server keeps what it
/// wrote). Stopped (immediately) and removed on drop.
pub struct Postgres {
    run: AsPostgres,
    dir: PathBuf,
    pub port: u16,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = self.pg_ctl();
        stop.args(["-m", "immediate", "-w", "stop"]);
        let _ = output(stop);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Postgres {
    /// A new cluster, started.
    pub async fn start() -> Self {
        blocking(|| {
            let run = AsPostgres::new();
            let dir = run.directory();
            let mut initdb = run.command("initdb");
            initdb.arg("-D").arg(dir.join("data")).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "-N",
            ]);
            check(initdb);
            let mut cluster = Self { run, dir, port: 0 };
            cluster.start_on_a_free_port();
            cluster
        })
        .await
    }

    /// A streaming standby of the cluster that listens at `primary` (the cluster's port or
    /// a proxy in front of it), made by `pg_basebackup -R` (which writes `primary`
    /// into the standby's `primary_conninfo`), started.
    pub async fn standby_of(primary: SocketAddr) -> Self {
        blocking(move || {
            let run = AsPostgres::new();
            let dir = run.directory();
            let mut backup = run.command("pg_basebackup");
            backup
                .args(["-h", "127.0.0.1", "-p", &primary.port().to_string()])
                .args(["-U", "postgres", "-D"])
                .arg(dir.join("data"))
                .args(["-R", "-X", "stream", "-c", "fast"]);
            check(backup);
            let mut cluster = Self { run, dir, port: 0 };
            cluster.start_on_a_free_port();
            cluster
        })
        .await
    }

    fn pg_ctl(&self) -> Command {
        let mut command = self.run.command("pg_ctl");
        command.arg("-D").arg(self.dir.join("data"));
        command
    }

    fn options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.port,
            self.dir.display()
        )
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn start_on_a_free_port(&mut self) {
        for _ in 0..5 {
            self.port = free_port();
            let mut start = self.pg_ctl();
            start.arg("-l").arg(self.log()).args([
                "-w",
                "-t",
                "60",
                "-o",
                &self.options(),
                "start",
            ]);
            if output(start).status.success() {
                return;
            }
        }
        panic!(
            "PostgreSQL did not start; its log:\n{}",
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// The URL of database `postgres` at `addr` (the cluster, or a proxy in front of it).
    pub fn url(addr: SocketAddr) -> String {
        format!("postgres://postgres@{addr}/postgres")
    }

    /// `pg_ctl restart -m fast`: sessions are ended, their transactions rolled back, and the
    /// server comes back on the same port. Returns when it accepts connections again.
    pub async fn restart_fast(&self) {
        let mut restart = self.pg_ctl();
        restart.arg("-l").arg(self.log()).args([
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "-o",
            &self.options(),
            "restart",
        ]);
        blocking(move || check(restart)).await;
    }

    /// `pg_ctl stop -m immediate`: the server is killed, as a crash would.
    pub async fn kill(&self) {
        let mut stop = self.pg_ctl();
        stop.args(["-m", "immediate", "-w", "stop"]);
        blocking(move || check(stop)).await;
    }

    /// `pg_ctl promote`: a standby becomes a primary. Returns once it accepts writes.
    pub async fn promote(&self) {
        let mut promote = self.pg_ctl();
        promote.args(["-w", "-t", "60", "promote"]);
        blocking(move || check(promote)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Redis

/// Whether a Redis server keeps its data over a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// No RDB snapshots, no append-only file: a restart starts empty.
    None,
    /// `appendonly yes`, `appendfsync always`: every write acknowledged is in the
    /// append-only file, and a restart loads it.
    AppendOnly,
}

/// How a Redis server runs: its port, files and role.
#[derive(Clone, Debug)]
struct RedisConfig {
    port: u16,
    dir: PathBuf,
    persistence: Persistence,
    replica_of: Option<SocketAddr>,
}

impl RedisConfig {
    /// Starts a server; `None` if it did not come up.
    fn spawn(&self) -> Option<Child> {
        let mut command = Command::new(redis_server());
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--daemonize", "no", "--logfile"])
            .arg(self.dir.join("server.log"))
            // A replica's first synchronisation starts at once, not after the default
            // 5 s that a primary waits for more replicas to share it.
            .args(["--repl-diskless-sync-delay", "0"]);
        match self.persistence {
            Persistence::None => command.args(["--appendonly", "no"]),
            Persistence::AppendOnly => {
                command.args(["--appendonly", "yes", "--appendfsync", "always"])
            }
        };
        if let Some(primary) = self.replica_of {
            command.args([
                "--replicaof",
                &primary.ip().to_string(),
                &primary.port().to_string(),
            ]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            if ping(self.port) {
                return Some(child);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

/// A Redis server of the test's own on `127.0.0.1:{port}`, its files in a fresh directory
/// under the system's temporary directory. Killed and removed on drop.
pub struct Redis {
    child: Option<Child>,
    config: RedisConfig,
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.config.dir);
    }
}

fn redis_server() -> &'static str {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "redis-server not found: run the tests under `bash scripts/with-services.sh` (or \
         `bash scripts/with-redis.sh`), which installs it from Debian's packages when it is \
         missing"
    );
    "redis-server"
}

impl Redis {
    /// A new server, started, replicating `replica_of` if given.
    pub async fn start(persistence: Persistence, replica_of: Option<SocketAddr>) -> Self {
        blocking(move || {
            let dir = std::env::temp_dir().join(unique("rotauth-redis"));
            std::fs::create_dir(&dir).unwrap();
            let mut config = RedisConfig {
                port: 0,
                dir,
                persistence,
                replica_of,
            };
            for _ in 0..5 {
                config.port = free_port();
                if let Some(child) = config.spawn() {
                    return Self {
                        child: Some(child),
                        config,
                    };
                }
            }
            panic!(
                "redis-server did not start; its log:\n{}",
                std::fs::read_to_string(config.dir.join("server.log")).unwrap_or_default()
            );
        })
        .await
    }

    pub fn port(&self) -> u16 {
        self.config.port
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.config.port)
    }

    pub fn url(addr: SocketAddr) -> String {
        format!("redis://{addr}/")
    }

    /// Stops the server with SIGTERM (as a service manager does) and starts it again on
    /// the same port and files. Returns once it answers PING (its data loaded).
    pub async fn restart(&mut self) {
        let child = self.child.take();
        let config = self.config.clone();
        let child = blocking(move || {
            if let Some(mut child) = child {
                let mut term = Command::new("kill");
                term.args(["-TERM", &child.id().to_string()]);
                check(term);
                child.wait().unwrap();
            }
            config.spawn()
        })
        .await;
        assert!(child.is_some(), "redis-server did not start again");
        self.child = child;
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            blocking(move || {
                child.kill().unwrap();
                child.wait().unwrap();
            })
            .await;
        }
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }
}

/// Whether a Redis server answers PING on `port` (and has its data loaded).
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
