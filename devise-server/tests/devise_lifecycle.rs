//! The server's lifecycle as a process manager sees it, through the built binary: a stop
//! signal sent as soon as the server listens.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not reach,
// and test arithmetic on known small values, which no clippy.toml setting covers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[allow(dead_code)]
#[path = "support/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "support/cluster.rs"]
mod cluster;

use std::io::Write as _;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use client::TempDir;
use cluster::Instance;

// ---------------------------------------------------------------------------------------
// Stop signals, on the built binary with SQLite

/// Waits for the instance to exit, for at most 30 s.
fn wait_for_exit(instance: &mut Instance) -> ExitStatus {
    let start = Instant::now();
    while !instance.exited() {
        assert!(start.elapsed() < Duration::from_secs(30), "did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    instance.wait()
}

fn sqlite_instance(dir: &TempDir, flags: &[&str]) -> Instance {
    let file = dir.db().display().to_string();
    let mut args = vec!["--db", file.as_str()];
    args.extend_from_slice(flags);
    Instance::ready(Instance::launch(&args, &dir.0, "sqlite", false))
}

/// The handlers are in place before the address is announced: a process manager that
/// stops the server as soon as it listens gets a drain and exit status 0, never the
/// default action's kill (status 143). Five times, as the window was a few milliseconds.
#[test]
fn a_sigterm_as_soon_as_the_server_listens_drains_it_too() {
    let dir = TempDir::new();
    for _ in 0..5 {
        // A shell already waiting for the pid: its built-in kill sends the signal within
        // microseconds of the address line, where spawning kill(1) takes milliseconds.
        let mut kill = std::process::Command::new("sh")
            .args(["-c", "read pid; kill -TERM \"$pid\""])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut instance = sqlite_instance(&dir, &[]);
        let mut pid = kill.stdin.take().unwrap();
        writeln!(pid, "{}", instance.pid()).unwrap();
        drop(pid);
        assert!(kill.wait().unwrap().success());
        let status = wait_for_exit(&mut instance);
        let log = instance.log_text();
        assert_eq!(status.code(), Some(0), "{status}: {log}");
        assert!(log.contains("SIGTERM: shutting down"), "{log}");
    }
}
