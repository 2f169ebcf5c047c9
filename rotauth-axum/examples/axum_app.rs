//! rotauth in an axum app: sign-in, a protected route and sign-out, sessions in SQLite.
//!
//! ```text
//! cargo run -p rotauth-axum --example axum_app --features sqlite
//! curl -si -X POST localhost:3000/sign_in -H 'content-type: application/json' \
//!      -d '{"user":"alice","password":"wonderland"}'          # -> rotauth-token: C.T
//! curl -si localhost:3000/me -H 'authorization: Rotauth C.T'  # -> hello alice, maybe a new rotauth-token
//! ```
//!
//! Keep the newest `rotauth-token` a response carries; a response without one (a batch
//! member) means: keep what you have.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rotauth::{Config, KeyId, Keyring, Rotator};
use rotauth_axum::SqliteStore;
use rotauth_axum::{AuthLayer, Authenticated, Authenticator, BearerProtocol, Error, Protocol};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};

type Auth = Authenticator<SqliteStore>;

#[derive(serde::Deserialize)]
struct SignIn {
    user: String,
    password: String,
}

async fn sign_in(State(auth): State<Auth>, Json(form): Json<SignIn>) -> Result<Response, Error> {
    // Begin before reading the password hash: a password change or account deletion in
    // between makes this sign-in fail instead of outliving the change.
    let pending = auth.begin_sign_in(&form.user).await?;
    // TOY CHECK for the example only: look the user up and verify an argon2 hash instead.
    if form.password != "wonderland" {
        return Ok((StatusCode::UNAUTHORIZED, "wrong user or password").into_response());
    }
    let signed_in = auth.sign_in(pending).await?;
    Ok((
        BearerProtocol::new().sign_in_headers(&signed_in),
        "signed in",
    )
        .into_response())
}

async fn me(who: Authenticated) -> String {
    format!("hello {}", who.user_id)
}

async fn sign_out(State(auth): State<Auth>, who: Authenticated) -> Result<&'static str, Error> {
    auth.sign_out(who.client_id).await?;
    Ok("signed out")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = SqliteConnectOptions::new()
        .filename("axum_app.db")
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let store = SqliteStore::new(SqlitePool::connect_with(db).await?);
    store.migrate().await?;
    // Load the key from your secret store; a random one signs everybody out on restart.
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)?;
    let rotator = Rotator::new(Keyring::new(KeyId(1), &key)?, Config::default());
    let auth = Authenticator::new(rotator, store);
    let app = Router::new()
        .route("/me", get(me))
        .route("/sign_out", post(sign_out))
        .layer(AuthLayer::new(auth.clone(), BearerProtocol::new()))
        .route("/sign_in", post(sign_in)) // added after the layer: not behind it
        .with_state(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}
