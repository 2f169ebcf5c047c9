//! rotauth in an axum app: sign-in, a protected route and sign-out, sessions in SQLite,
//! credentials in a Bearer header or in an httpOnly cookie.
//!
//! ```text
//! cargo run -p rotauth-axum --example axum_app --features sqlite
//! curl -si -X POST localhost:3000/sign_in -H 'content-type: application/json' \
//!      -d '{"user":"alice","password":"wonderland"}'          # -> rotauth-token: C.T
//! curl -si localhost:3000/me -H 'authorization: Rotauth C.T'  # -> hello alice, maybe a new rotauth-token
//! curl -si 'localhost:3000/me?unbatch=true' -H 'authorization: Rotauth C.T'  # -> always a new one
//! ```
//!
//! Keep the newest `rotauth-token` a response carries; a response without one (a batch
//! member) means: keep what you have. `?unbatch=true` on any route behind the layer rotates
//! even inside the batch window: a page that lost a rotating response to a reload asks for
//! one there (`rotauth/client`'s `refreshUrl: '/me'`).
//!
//! Settings come from the environment, all optional:
//!
//! | variable | default | what |
//! |---|---|---|
//! | `AXUM_APP_ADDR` | `127.0.0.1:3000` | listen address; port 0 picks a free one |
//! | `AXUM_APP_DB` | `axum_app.db` | the SQLite file of the sessions |
//! | `AXUM_APP_PROTOCOL` | `bearer` | `bearer`, or `cookie`: one httpOnly `__Host-rotauth` cookie, unsafe requests from other origins refused 403 |
//! | `AXUM_APP_WINDOW_MS` | `5000` | the batch window |
//! | `AXUM_APP_MODE` | `strict` | `strict`, or `recover` (a client that lost a response gets its token again, once) |
//!
//! The first line on stdout is `listening on http://ADDR`.

use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rotauth::{Config, KeyId, Keyring, Mode, Rotator};
use rotauth_axum::{AuthLayer, Authenticated, Authenticator, Check, Error, Protocol, SqliteStore};
use rotauth_axum::{BearerProtocol, CookieProtocol};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};

type Auth = Authenticator<SqliteStore>;

/// What the handlers share: the authenticator and the protocol.
#[derive(Clone)]
struct App<P> {
    auth: Auth,
    protocol: P,
}

impl<P: Clone> FromRef<App<P>> for Auth {
    fn from_ref(app: &App<P>) -> Self {
        app.auth.clone()
    }
}

#[derive(serde::Deserialize)]
struct SignIn {
    user: String,
    password: String,
}

async fn sign_in<P: Protocol>(
    State(app): State<App<P>>,
    parts: Parts,
    Json(form): Json<SignIn>,
) -> Result<Response, Error> {
    // No layer guards this route: with a cookie, screen it as the layer would, so that
    // another site cannot sign the browser in to an account of its choosing.
    if let Err(why) = app.protocol.screen(&parts) {
        return Ok(app.protocol.forbidden(why));
    }
    // Begin before reading the password hash: a password change or account deletion in
    // between makes this sign-in fail instead of outliving the change.
    let pending = app.auth.begin_sign_in(&form.user).await?;
    // TOY CHECK for the example only: look the user up and verify an argon2 hash instead.
    if form.password != "wonderland" {
        return Ok((StatusCode::UNAUTHORIZED, "wrong user or password").into_response());
    }
    let signed_in = app.auth.sign_in(pending).await?;
    Ok((app.protocol.sign_in_headers(&signed_in), "signed in").into_response())
}

async fn me(who: Authenticated) -> String {
    format!("hello {}", who.user_id)
}

/// A [`Check`], not the layer: the session is judged without storing a rotation that the
/// sign-out would delete a moment later.
async fn sign_out<P: Protocol>(
    State(app): State<App<P>>,
    check: Check<SqliteStore, P>,
) -> Result<Response, Error> {
    app.auth.sign_out(check.who().client_id).await?;
    // The cookie protocol clears its cookies; Bearer has nothing to clear.
    Ok((app.protocol.sign_out_headers(), "signed out").into_response())
}

fn router<P>(auth: Auth, protocol: P) -> Router
where
    P: Protocol + FromRef<App<P>>,
{
    let app = App {
        auth: auth.clone(),
        protocol: protocol.clone(),
    };
    Router::new()
        .route("/me", get(me))
        .layer(AuthLayer::new(auth, protocol))
        // Added after the layer: not behind it.
        .route("/sign_in", post(sign_in::<P>))
        .route("/sign_out", post(sign_out::<P>))
        .with_state(app)
}

impl FromRef<App<BearerProtocol>> for BearerProtocol {
    fn from_ref(app: &App<BearerProtocol>) -> Self {
        app.protocol
    }
}

impl FromRef<App<CookieProtocol>> for CookieProtocol {
    fn from_ref(app: &App<CookieProtocol>) -> Self {
        app.protocol.clone()
    }
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let window: u64 = setting("AXUM_APP_WINDOW_MS", "5000").parse()?;
    let mode = match setting("AXUM_APP_MODE", "strict").as_str() {
        "strict" => Mode::Strict,
        "recover" => Mode::Recover,
        other => return Err(format!("AXUM_APP_MODE: strict or recover, not {other:?}").into()),
    };
    let config = Config::builder()
        .batch_window(Duration::from_millis(window))
        .mode(mode)
        .build()?;

    let db = SqliteConnectOptions::new()
        .filename(setting("AXUM_APP_DB", "axum_app.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let store = SqliteStore::new(SqlitePool::connect_with(db).await?);
    store.migrate().await?;
    // Load the key from your secret store; a random one signs everybody out on restart.
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)?;
    let auth = Authenticator::new(Rotator::new(Keyring::new(KeyId(1), &key)?, config), store);

    let app = match setting("AXUM_APP_PROTOCOL", "bearer").as_str() {
        "bearer" => router(auth, BearerProtocol::new()),
        "cookie" => router(auth, CookieProtocol::new()),
        other => return Err(format!("AXUM_APP_PROTOCOL: bearer or cookie, not {other:?}").into()),
    };
    let listener =
        tokio::net::TcpListener::bind(setting("AXUM_APP_ADDR", "127.0.0.1:3000")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
