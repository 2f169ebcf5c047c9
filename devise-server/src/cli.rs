//! Command-line flags (the signing keys are not among them: see `keys`).

use core::time::Duration;
use std::path::PathBuf;

use clap::builder::{EnumValueParser, TypedValueParser as _};
use rotauth::{Config, Keyring, Mode, ReplayPolicy};

use rotauth_axum::{BatchToken, CookieProtocol, DeviseProtocol};

use crate::app::{LogSink, Settings, Transport};
use crate::limits::Limits;

/// The flags, parsed by clap; `DATABASE_URL` may come from the environment. The signing
/// keys are not among them: see [`crate::keys`].
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "devise_server",
    args_override_self = true,
    about = "A devise_token_auth-compatible auth server on rotauth",
    after_help = "Environment: ROTAUTH_KEY (or ROTAUTH_KEYS), the signing key in hex, at least 32 bytes\n\
                  (64 hex digits), not all one byte value (e.g. `openssl rand -hex 32`); or several keys\n\
                  as ID:HEX,ID:HEX, the first of them primary. Or give the same text in a file with\n\
                  --key-file, which SIGHUP reads again; never on the command line. Without either a\n\
                  random key is generated and sessions do not survive a restart.\n\
                  DATABASE_URL, as --database-url.\n\n\
                  The first line on stdout is `... listening on http://ADDR`; logs go to stderr.\n\
                  Open http://ADDR/ in a browser for the page that shows rotation live."
)]
pub struct Cli {
    /// Listen address; port 0 picks a free one.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:3000")]
    pub addr: String,
    /// SQLite database file, or :memory:.
    #[arg(long, value_name = "PATH", default_value = "rotauth-demo.sqlite3")]
    pub db: String,
    /// The batch window W, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub batch_window_ms: u64,
    /// Sliding token lifespan, in seconds (14 days).
    #[arg(long, value_name = "SECS", default_value_t = 14 * 24 * 60 * 60)]
    pub lifespan_secs: u64,
    /// What T(n-1) may do after the window: strict or recover.
    #[arg(long, value_name = "strict|recover", default_value = "strict",
          value_parser = EnumValueParser::<ModeFlag>::new().map(Mode::from))]
    pub mode: Mode,
    /// What a replayed token does to its session: reject or revoke.
    #[arg(long, value_name = "reject|revoke", default_value = "reject",
          value_parser = EnumValueParser::<ReplayFlag>::new().map(ReplayPolicy::from))]
    pub replay: ReplayPolicy,
    /// Keep one token per session (devise's change_headers_on_each_request = false).
    #[arg(long = "no-rotation", action = clap::ArgAction::SetFalse)]
    pub rotate: bool,
    /// access-token of batch responses: " " (blank) or T(n) (current).
    #[arg(long, value_name = "blank|current", default_value = "blank",
          value_parser = EnumValueParser::<BatchTokenFlag>::new().map(BatchToken::from))]
    pub batch_token: BatchToken,
    /// Allow this browser origin (or *) and expose the auth headers; repeat the flag or
    /// separate origins by commas for several.
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// How credentials travel: devise's headers, or one httpOnly `__Host-rotauth` cookie
    /// (for browser apps on this server's origin; an unsafe request whose Origin is not
    /// this server's or a --cors-origin is refused with 403).
    #[arg(long, value_name = "devise|cookie", default_value = "devise",
          value_parser = EnumValueParser::<CredentialsFlag>::new())]
    pub credentials: CredentialsFlag,
    /// No per-request log lines.
    #[arg(long)]
    pub quiet: bool,
    /// PostgreSQL instead of SQLite: `postgres://USER[:PASS]@HOST:PORT/DB`; several instances
    /// may share it.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL", value_parser = parse_database_url)]
    pub database_url: Option<String>,
    /// Database connections per instance that the session store keeps, and as many
    /// again at most for the accounts.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub pool_size: u64,
    /// Serve GET /metrics (decision and compare-and-swap counters, Prometheus text).
    #[arg(long)]
    pub metrics: bool,
    /// Password hashes at once [default: the number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrent_hashes: Option<u64>,
    /// Sign-ins + sign-ups per minute per client address (an IPv6 client: its /64); 0 = off.
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub throttle_per_address: u32,
    /// Sign-ins + sign-ups per minute from one client address for one email; 0 = off. Never
    /// per email alone: someone else's guesses do not lock the owner out.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10,
        alias = "throttle-per-account"
    )]
    pub throttle_per_address_account: u32,
    /// Open connections at most (capped below the open-file limit).
    #[arg(long, value_name = "N", default_value_t = 25_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Time to send a request head, and idle time between requests, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// After SIGTERM or SIGINT: keep serving this long, with GET /readyz answering 503,
    /// before the listener closes (time for a load balancer's checks to see it leave).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub shutdown_delay_ms: u64,
    /// Then the time requests in flight have to finish; after it the server exits anyway.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,
    /// TESTS ONLY: shift this server's clock by MS (signed).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub clock_offset_ms: i64,
    /// TESTS ONLY (a build with the `test-clock` feature): this server's clock reads the
    /// Unix milliseconds written in PATH, at every decision, instead of the system clock.
    #[cfg(feature = "test-clock")]
    #[arg(long, value_name = "PATH")]
    pub test_clock_file: Option<PathBuf>,
    /// TESTS ONLY: argon2 with 1 MiB and one pass, so test suites can sign up hundreds of
    /// users quickly; never in production.
    #[arg(long = "insecure-fast-hashing")]
    pub fast_hashing: bool,
    /// A file holding the signing key in hex, or keys as ID:HEX,ID:HEX with the primary
    /// first (commas or line breaks between them), instead of ROTAUTH_KEY; read again on
    /// SIGHUP. It should be readable by its owner only: otherwise a warning is logged.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Refused: a key on the command line shows in the process list (`/proc/PID/cmdline`)
    /// to every user of the machine. Defined only to refuse it with a useful message,
    /// never echoing its value.
    #[arg(
        long = "key",
        value_name = "HEX",
        hide = true,
        num_args = 0..=1,
        default_missing_value = "",
        value_parser = refuse_key_flag
    )]
    pub key: Option<KeyFlag>,
}

/// `--key` as parsed: never, the parser refuses every value.
#[derive(Clone, Debug)]
pub enum KeyFlag {}

/// The message for `--key`, whatever its value.
fn refuse_key_flag(_: &str) -> Result<KeyFlag, String> {
    Err(KEY_FLAG_REFUSED.to_owned())
}

const KEY_FLAG_REFUSED: &str = "the signing key is never taken from the command line, where \
    every user of the machine can read it: set ROTAUTH_KEY in the environment or use --key-file PATH";

impl Cli {
    /// The clock these flags set.
    pub fn clock(&self) -> crate::clock::Clock {
        #[cfg(feature = "test-clock")]
        if let Some(path) = &self.test_clock_file {
            return crate::clock::Clock::from_file(path.clone(), self.clock_offset_ms);
        }
        crate::clock::Clock::shifted(self.clock_offset_ms)
    }

    /// The abuse limits these flags set.
    pub fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            concurrent_hashes: self
                .concurrent_hashes
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(defaults.concurrent_hashes),
            per_address_per_minute: self.throttle_per_address,
            per_address_account_per_minute: self.throttle_per_address_account,
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            shutdown_delay: Duration::from_millis(self.shutdown_delay_ms),
            shutdown_timeout: Duration::from_millis(self.shutdown_timeout_ms),
            ..defaults
        }
    }
}

/// `--mode`, as clap reads it.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeFlag {
    Strict,
    Recover,
}

impl From<ModeFlag> for Mode {
    fn from(flag: ModeFlag) -> Self {
        match flag {
            ModeFlag::Strict => Self::Strict,
            ModeFlag::Recover => Self::Recover,
        }
    }
}

/// `--replay`, as clap reads it.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ReplayFlag {
    Reject,
    Revoke,
}

impl From<ReplayFlag> for ReplayPolicy {
    fn from(flag: ReplayFlag) -> Self {
        match flag {
            ReplayFlag::Reject => Self::Reject,
            ReplayFlag::Revoke => Self::RevokeSession,
        }
    }
}

/// `--credentials`, as clap reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CredentialsFlag {
    /// devise_token_auth's headers.
    Devise,
    /// rotauth-axum's `CookieProtocol`.
    Cookie,
}

/// `--batch-token`, as clap reads it.
#[derive(Clone, Copy, clap::ValueEnum)]
enum BatchTokenFlag {
    Blank,
    Current,
}

impl From<BatchTokenFlag> for BatchToken {
    fn from(flag: BatchTokenFlag) -> Self {
        match flag {
            BatchTokenFlag::Blank => Self::Blank,
            BatchTokenFlag::Current => Self::Current,
        }
    }
}

/// The URL itself is never echoed: it may hold a password.
fn parse_database_url(url: &str) -> Result<String, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(url.to_owned())
    } else {
        Err("expected postgres://USER@HOST:PORT/DB".to_owned())
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Start the server.
    Run(Box<Cli>),
    /// Print the usage.
    Help,
}

/// The usage text (`--help`).
pub fn usage() -> String {
    use clap::CommandFactory as _;
    Cli::command().render_help().to_string()
}

/// Parses the flags (without the program name). Accepts `--flag value` and `--flag=value`.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    use clap::Parser as _;
    let args = std::iter::once("devise_server".to_owned()).chain(args);
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(Command::Run(Box::new(cli))),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => Ok(Command::Help),
        // A refused value is not repeated: it may hold a secret (a database URL's password).
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
            ) =>
        {
            let arg = match e.get(clap::error::ContextKind::InvalidArg) {
                Some(clap::error::ContextValue::String(arg)) => arg.clone(),
                _ => "a flag".to_owned(),
            };
            // A flag with a fixed set of values names them; others say why.
            let reason = match e.get(clap::error::ContextKind::ValidValue) {
                Some(clap::error::ContextValue::Strings(values)) => {
                    format!("expected {}", values.join(" or "))
                }
                _ => std::error::Error::source(&e)
                    .map_or_else(|| "invalid value".to_owned(), ToString::to_string),
            };
            Err(format!("{arg}: {reason}"))
        }
        Err(e) => Err(e
            .render()
            .to_string()
            .trim_start_matches("error: ")
            .trim_end()
            .to_owned()),
    }
}

/// The rotation policy the flags describe, validated by rotauth.
pub fn config(cli: &Cli) -> Result<Config, String> {
    Config::builder()
        .rotate(cli.rotate)
        .batch_window(Duration::from_millis(cli.batch_window_ms))
        .lifespan(Duration::from_secs(cli.lifespan_secs))
        .mode(cli.mode)
        .replay_policy(cli.replay)
        .build()
        .map_err(|e| format!("invalid configuration: {e}"))
}

/// The block printed on standard error at every start with `--insecure-fast-hashing`: one
/// log line among many would be missed, and a server holding real accounts must never run
/// with it.
pub fn fast_hashing_warning() -> String {
    const LINES: [&str; 6] = [
        "WARNING: --insecure-fast-hashing is set. FOR TESTS ONLY.",
        "",
        "Passwords are hashed with argon2 at 1 MiB and a single pass, so the",
        "password hashes in this server's database are cheap to crack if it",
        "leaks. The flag exists so that test suites can sign up hundreds of",
        "users quickly: never run a server that holds real accounts with it.",
    ];
    let width = LINES.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let rule = format!("+{}+\n", "-".repeat(width.saturating_add(2)));
    let mut block = rule.clone();
    for line in LINES {
        block.push_str(&format!("| {line:<width$} |\n"));
    }
    block.push_str(&rule);
    block
}

/// The protocol `--credentials` chose; in cookie mode the `--cors-origin`s (but `*`) may
/// send unsafe requests too.
fn transport(cli: &Cli) -> Transport {
    match cli.credentials {
        CredentialsFlag::Devise => Transport::Devise(DeviseProtocol::new()),
        CredentialsFlag::Cookie => Transport::Cookie(
            cli.cors_origins
                .iter()
                .map(|o| o.trim())
                .filter(|o| !o.is_empty() && *o != "*")
                .fold(CookieProtocol::new(), CookieProtocol::allow_origin),
        ),
    }
}

/// The server's settings for these flags and keys: the one place `main` and the tests
/// build them, so the tests run what `main` runs.
pub fn settings(cli: &Cli, keyring: Keyring, log: LogSink) -> Result<Settings, String> {
    let cors_origins = cli
        .cors_origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .map(axum::http::HeaderValue::from_str)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "--cors-origin is not a valid header value".to_owned())?;
    Ok(Settings {
        rotator: rotauth::Rotator::new(keyring, config(cli)?),
        batch_token: cli.batch_token,
        log: if cli.quiet { LogSink::Off } else { log },
        cors_origins,
        limits: cli.limits(),
        argon2: if cli.fast_hashing {
            argon2::Params::new(1024, 1, 1, None).map_err(|e| format!("argon2 parameters: {e}"))?
        } else {
            argon2::Params::default()
        },
        clock: cli.clock(),
        metrics: cli.metrics,
        transport: transport(cli),
    })
}
