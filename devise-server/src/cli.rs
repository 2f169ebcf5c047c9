//! Command-line flags and the signing key.

use core::time::Duration;

use rotauth::rand_core::TryRng;
use rotauth::{Config, KeyId, Keyring, Mode, ReplayPolicy};

use crate::app::{BatchToken, Limits, LogSink, Settings};

/// `--help`.
pub const USAGE: &str = "\
devise_server: a devise_token_auth-compatible auth server on rotauth

USAGE: cargo run --example devise_server -- [FLAGS]

FLAGS (defaults in brackets):
  --addr HOST:PORT           listen address [127.0.0.1:3000]; port 0 picks a free one
  --db PATH                  SQLite database file, or :memory: [rotauth-demo.sqlite3]
  --database-url URL         PostgreSQL instead of SQLite: postgres://USER[:PASS]@HOST:PORT/DB;
                             several instances may share it
  --pool-size N              PostgreSQL connections per instance [16]
  --batch-window-ms MS       batch window W [5000]
  --lifespan-secs SECS       sliding token lifespan [1209600 = 14 days]
  --mode strict|recover      what T(n-1) may do after the window [strict]
  --replay reject|revoke     what a replayed token does to its session [reject]
  --no-rotation              keep one token per session (change_headers_on_each_request = false)
  --batch-token blank|current  access-token of batch responses: \" \" or T(n) [blank]
  --cors-origin ORIGIN       allow this browser origin (or *) and expose the auth headers;
                             repeat the flag or separate origins by commas for several
  --concurrent-hashes N      password hashes at once [number of cores]
  --throttle-per-address N   sign-ins + sign-ups per minute per client address; 0 = off [60]
  --throttle-per-account N   sign-ins + sign-ups per minute per email; 0 = off [10]
  --max-connections N        open connections at most [25000, capped below the open-file limit]
  --header-read-timeout-ms MS  time to send a request head, and idle time between requests [10000]
  --quiet                    no per-request log lines
  --metrics                  serve GET /metrics (decision and compare-and-swap counters)
  --clock-offset-ms MS       TESTS ONLY: shift this server's clock by MS (signed) [0]
  --insecure-fast-hashing    TESTS ONLY: argon2 with 1 MiB and one pass, so test suites can
                             sign up hundreds of users quickly; never in production
  -h, --help                 this text

ENVIRONMENT:
  ROTAUTH_KEY   signing key, hex, at least 32 bytes (64 hex digits). Without it a random
                key is generated and sessions do not survive a restart.

The first line on stdout is `... listening on http://ADDR`; logs go to stderr.
";

/// The parsed flags.
#[derive(Clone, Debug)]
pub struct Cli {
    /// `--addr`: where to listen.
    pub addr: String,
    /// `--db`: the SQLite file (`:memory:` for none).
    pub db: String,
    /// `--batch-window-ms`.
    pub batch_window_ms: u64,
    /// `--lifespan-secs`.
    pub lifespan_secs: u64,
    /// `--mode`.
    pub mode: Mode,
    /// `--replay`.
    pub replay: ReplayPolicy,
    /// Off with `--no-rotation`.
    pub rotate: bool,
    /// `--batch-token`.
    pub batch_token: BatchToken,
    /// `--cors-origin`, each occurrence split at commas.
    pub cors_origins: Vec<String>,
    /// `--concurrent-hashes`, `--throttle-*`, `--max-connections`, `--header-read-timeout-ms`.
    pub limits: Limits,
    /// `--quiet`: no request log.
    pub quiet: bool,
    /// `--database-url`: PostgreSQL instead of the SQLite file of `db`.
    pub database_url: Option<String>,
    /// `--pool-size`: PostgreSQL connections.
    pub pool_size: usize,
    /// `--metrics`: serve `GET /metrics`.
    pub metrics: bool,
    /// `--clock-offset-ms`: added to the wall clock, to test instances whose clocks
    /// disagree.
    pub clock_offset_ms: i64,
    /// `--insecure-fast-hashing`: cheap argon2 parameters for test suites.
    pub fast_hashing: bool,
}

impl Default for Cli {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:3000".to_owned(),
            db: "rotauth-demo.sqlite3".to_owned(),
            batch_window_ms: 5_000,
            lifespan_secs: 14 * 24 * 60 * 60,
            mode: Mode::Strict,
            replay: ReplayPolicy::Reject,
            rotate: true,
            batch_token: BatchToken::Blank,
            cors_origins: Vec::new(),
            limits: Limits::default(),
            quiet: false,
            database_url: None,
            pool_size: 16,
            metrics: false,
            clock_offset_ms: 0,
            fast_hashing: false,
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Start the server.
    Run(Cli),
    /// Print the usage.
    Help,
}

/// Parses the flags (without the program name). Accepts `--flag value` and `--flag=value`.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut cli = Cli::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--addr" => cli.addr = value()?,
            "--db" => cli.db = value()?,
            "--batch-window-ms" => cli.batch_window_ms = number(&flag, &value()?)?,
            "--lifespan-secs" => cli.lifespan_secs = number(&flag, &value()?)?,
            "--mode" => {
                cli.mode = match value()?.as_str() {
                    "strict" => Mode::Strict,
                    "recover" => Mode::Recover,
                    other => {
                        return Err(format!("--mode: expected strict or recover, got {other:?}"));
                    }
                }
            }
            "--replay" => {
                cli.replay = match value()?.as_str() {
                    "reject" => ReplayPolicy::Reject,
                    "revoke" => ReplayPolicy::RevokeSession,
                    other => {
                        return Err(format!(
                            "--replay: expected reject or revoke, got {other:?}"
                        ));
                    }
                }
            }
            "--batch-token" => {
                cli.batch_token = match value()?.as_str() {
                    "blank" => BatchToken::Blank,
                    "current" => BatchToken::Current,
                    other => {
                        return Err(format!(
                            "--batch-token: expected blank or current, got {other:?}"
                        ));
                    }
                }
            }
            "--cors-origin" => cli.cors_origins.extend(
                value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(str::to_owned),
            ),
            "--concurrent-hashes" => {
                cli.limits.concurrent_hashes = usize::try_from(number(&flag, &value()?)?)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--concurrent-hashes: expected at least 1")?;
            }
            "--throttle-per-address" => {
                cli.limits.per_address_per_minute = u32::try_from(number(&flag, &value()?)?)
                    .map_err(|_| "--throttle-per-address: too large")?;
            }
            "--throttle-per-account" => {
                cli.limits.per_account_per_minute = u32::try_from(number(&flag, &value()?)?)
                    .map_err(|_| "--throttle-per-account: too large")?;
            }
            "--max-connections" => {
                cli.limits.max_connections = usize::try_from(number(&flag, &value()?)?)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--max-connections: expected at least 1")?;
            }
            "--header-read-timeout-ms" => {
                let ms = number(&flag, &value()?)?;
                if ms == 0 {
                    return Err("--header-read-timeout-ms: expected at least 1".to_owned());
                }
                cli.limits.header_read_timeout = Duration::from_millis(ms);
            }
            "--database-url" => {
                let url = value()?;
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err("--database-url: expected postgres://USER@HOST:PORT/DB".to_owned());
                }
                cli.database_url = Some(url);
            }
            "--pool-size" => {
                cli.pool_size = usize::try_from(number(&flag, &value()?)?)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--pool-size: expected at least 1")?;
            }
            "--clock-offset-ms" => {
                let text = value()?;
                cli.clock_offset_ms = text.parse().map_err(|_| {
                    format!("--clock-offset-ms: expected a whole number of ms, got {text:?}")
                })?;
            }
            "--metrics" if inline.is_none() => cli.metrics = true,
            "--insecure-fast-hashing" if inline.is_none() => cli.fast_hashing = true,
            "--no-rotation" if inline.is_none() => cli.rotate = false,
            "--quiet" if inline.is_none() => cli.quiet = true,
            other => return Err(format!("unknown flag {other:?} (see --help)")),
        }
    }
    Ok(Command::Run(cli))
}

fn number(flag: &str, text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{flag}: expected a whole number, got {text:?}"))
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

/// The signing key: `ROTAUTH_KEY` as hex, or a fresh random one (`true` = generated).
pub fn keyring(hex: Option<&str>) -> Result<(Keyring, bool), String> {
    let key = match hex {
        Some(hex) => (
            decode_hex(hex.trim()).ok_or("ROTAUTH_KEY must be hex digits")?,
            false,
        ),
        None => {
            let mut key = vec![0u8; 32];
            rand::rngs::SysRng
                .try_fill_bytes(&mut key)
                .map_err(|e| format!("system RNG failed: {e}"))?;
            (key, true)
        }
    };
    let (key, generated) = (zeroize::Zeroizing::new(key.0), key.1);
    let keyring = Keyring::new(KeyId(1), &key)
        .map_err(|e| format!("ROTAUTH_KEY: {e:?} (at least 32 bytes = 64 hex digits)"))?;
    Ok((keyring, generated))
}

/// The key from hex, upper or lower case, in constant time (no branch or table lookup
/// on the digits, so timing does not leak the key).
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    base16ct::mixed::decode_vec(text).ok()
}

/// The server's settings for these flags and keys: the one place `main` and the tests
/// build them, so the tests run what `main` runs.
pub fn settings(cli: &Cli, keyring: Keyring, log: LogSink) -> Result<Settings, String> {
    let cors_origins = cli
        .cors_origins
        .iter()
        .map(|o| axum::http::HeaderValue::from_str(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "--cors-origin is not a valid header value".to_owned())?;
    Ok(Settings {
        rotator: rotauth::Rotator::new(keyring, config(cli)?),
        batch_token: cli.batch_token,
        log: if cli.quiet { LogSink::Off } else { log },
        cors_origins,
        limits: cli.limits.clone(),
        argon2: if cli.fast_hashing {
            argon2::Params::new(1024, 1, 1, None).map_err(|e| format!("argon2 parameters: {e}"))?
        } else {
            argon2::Params::default()
        },
        clock_offset_ms: cli.clock_offset_ms,
        metrics: cli.metrics,
    })
}
