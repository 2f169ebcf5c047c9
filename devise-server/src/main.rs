//! A devise_token_auth-compatible auth server on rotauth: the headers, routes and bodies
//! that ng-token-auth, vue-auth's devise driver, devise-token-auth-client, j-toker and
//! redux-token-auth speak,
//! with rotauth-axum's request loop deciding every token, its SQLite (or PostgreSQL, shared
//! by several instances) session store keeping one row per session, and argon2 hashing
//! passwords.
//!
//! ```text
//! cargo run -p devise-server                     # http://127.0.0.1:3000
//! cargo run -p devise-server -- --help           # flags
//! ROTAUTH_KEY=$(openssl rand -hex 32) cargo run -p devise-server
//! cargo run -p devise-server -- --key-file /run/secrets/rotauth_key
//! cargo run -p devise-server -- --database-url postgres://postgres@127.0.0.1:5432/rotauth
//! ```
//!
//! Routes (mounted at `/auth` as devise_token_auth does): `POST /auth` (sign up),
//! `POST /auth/sign_in`, `GET /auth/validate_token`, `DELETE /auth/sign_out`,
//! `PUT /auth/password` (new password, signs out every other session of the user) and the
//! protected `GET /demo/members_only`; `GET /healthz` and `GET /readyz` for load balancers.
//! SIGTERM or SIGINT drains the server before it exits. See this package's README.
//!
//! The server itself is the `devise_server` library of this package, which the tests run
//! on an ephemeral port and talk to over HTTP.

use devise_server::db::{self, Database};
use devise_server::{app, cli, connections, keys};

fn main() -> std::process::ExitCode {
    use std::process::ExitCode;

    // Request lines and the server's own messages go to stderr through tracing.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .init();

    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = match command {
        cli::Command::Help => {
            print!("{}", cli::usage());
            return ExitCode::SUCCESS;
        }
        cli::Command::Run(cli) => *cli,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut cli: cli::Cli) -> Result<(), String> {
    if cli.fast_hashing {
        // A block on stderr before anything else, at every start, and a log line.
        eprint!("{}", cli::fast_hashing_warning());
        tracing::warn!("--insecure-fast-hashing: password hashes are cheap to crack (tests only)");
    }
    // Every connection is a descriptor: raise the soft limit to the hard one, and keep the
    // connection limit below it with room for the database and the listener.
    const RESERVED_FDS: u64 = 256;
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let fit = nofile.saturating_sub(RESERVED_FDS).max(16);
    if cli.max_connections > fit {
        if cli.max_connections != 25_000 {
            tracing::warn!(
                "--max-connections {} lowered to {fit} (open-file limit {nofile})",
                cli.max_connections
            );
        }
        cli.max_connections = fit;
    }
    // The keys from the environment or a file only: a flag would show them in the process
    // list.
    let env = match (
        std::env::var_os(keys::KEY_ENV),
        std::env::var_os(keys::KEYS_ENV),
    ) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "both {} and {} are set; give the keys in one of them",
                keys::KEY_ENV,
                keys::KEYS_ENV
            ));
        }
        (Some(value), None) => Some((keys::KEY_ENV, value)),
        (None, Some(value)) => Some((keys::KEYS_ENV, value)),
        (None, None) => None,
    };
    let key = keys::signing_key(
        cli.key_file.as_deref(),
        env.as_ref().map(|(name, value)| (*name, value.as_os_str())),
    )?;
    drop(env);
    for warning in &key.warnings {
        tracing::warn!("{warning}");
    }
    let key_file = key.file.clone();
    let settings = cli::settings(&cli, key.keyring, app::LogSink::Stderr)?;
    if key.generated {
        tracing::warn!(
            "ROTAUTH_KEY is not set; using a random key, so sessions will not survive a restart"
        );
    }
    #[cfg(feature = "test-clock")]
    if let Some(path) = &cli.test_clock_file {
        tracing::warn!(
            "--test-clock-file {}: this server's clock is read from a file (tests only)",
            path.display()
        );
    }
    if cli.clock_offset_ms != 0 {
        tracing::warn!(
            "--clock-offset-ms {}: this server's clock is shifted (tests only)",
            cli.clock_offset_ms
        );
    }
    // The request handling is generic over the database: one monomorphic server each.
    let connections = u32::try_from(cli.pool_size).unwrap_or(u32::MAX);
    match cli.database_url.as_deref() {
        Some(url) => {
            let db = db::Postgres::open(url, connections)
                .await
                .map_err(|e| format!("database: {e}"))?;
            serve(&cli, app::AppState::new(db, settings)?, key_file).await
        }
        None => {
            let db = db::Sqlite::open(&cli.db, connections)
                .await
                .map_err(|e| format!("database {}: {e}", cli.db))?;
            serve(&cli, app::AppState::new(db, settings)?, key_file).await
        }
    }
}

async fn serve<D: Database>(
    cli: &cli::Cli,
    state: app::AppState<D>,
    key_file: Option<std::path::PathBuf>,
) -> Result<(), String> {
    use std::io::Write as _;

    // Signal handlers before the address is announced: a script may signal as soon as it
    // reads it.
    let shutdown = shutdown_signal()?;
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let listener = tokio::net::TcpListener::bind(&cli.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.addr))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("no local address: {e}"))?;
    #[cfg(unix)]
    let reloading = tokio::spawn(reload_keys_on_sighup(state.clone(), key_file, hangups));
    #[cfg(not(unix))]
    drop(key_file);
    // The first stdout line is the protocol for scripts and tests that pass port 0.
    println!("rotauth devise_server listening on http://{addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(
        "db={} batch_window={}ms lifespan={}s mode={:?} replay={:?} rotation={} batch_token={:?}",
        state.db().describe(),
        cli.batch_window_ms,
        cli.lifespan_secs,
        cli.mode,
        cli.replay,
        cli.rotate,
        cli.batch_token,
    );
    let result = connections::serve(listener, state.clone(), shutdown)
        .await
        .map_err(|e| format!("server failed: {e}"));
    #[cfg(unix)]
    reloading.abort();
    let metrics = state.metrics();
    tracing::info!(
        "stopped: {} compare-and-swap conflicts decided again, {} gave up",
        metrics
            .cas_conflicts
            .load(std::sync::atomic::Ordering::Relaxed),
        metrics
            .cas_exhausted
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    result
}

/// Reads the key file again at every SIGHUP and decides with its keys from then on; a file
/// that does not read or parse changes nothing (logged). Without a key file (keys from the
/// environment, which a running process cannot see change) SIGHUP only says so.
#[cfg(unix)]
async fn reload_keys_on_sighup<D: Database>(
    state: app::AppState<D>,
    key_file: Option<std::path::PathBuf>,
    hangups: Option<tokio::signal::unix::Signal>,
) {
    let Some(mut hangups) = hangups else {
        tracing::warn!("cannot listen for SIGHUP: keys are not reloaded");
        return;
    };
    while hangups.recv().await.is_some() {
        let Some(file) = &key_file else {
            tracing::warn!("SIGHUP: the keys come from the environment; restart to change them");
            continue;
        };
        match keys::reload(file) {
            Ok(key) => {
                for warning in &key.warnings {
                    tracing::warn!("{warning}");
                }
                let ids: Vec<u8> = key.keyring.ids().map(|id| id.0).collect();
                state.set_keyring(key.keyring);
                tracing::info!("SIGHUP: keys reloaded, ids {ids:?} (the first is primary)");
            }
            Err(e) => tracing::error!("SIGHUP: keys not reloaded, the old ones stay: {e}"),
        }
    }
}

/// SIGTERM (what `kill` and container runtimes send) or SIGINT (Ctrl-C): both start the
/// same drain (`connections::serve`). The handlers are installed when this is called, not
/// when the future is first polled: the server calls it before it announces its address,
/// so a stop sent as soon as it listens drains it too instead of killing it outright.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handler = |kind, name| signal(kind).map_err(|e| format!("cannot handle {name}: {e}"));
        let mut term = handler(SignalKind::terminate(), "SIGTERM")?;
        let mut int = handler(SignalKind::interrupt(), "SIGINT")?;
        Ok(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!("{name}: shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C: shutting down");
        })
    }
}
