//! Sessions die with their account and credentials. A sign-in holds the password check
//! open while another request deletes the account, changes the password or changes the
//! email: the sign-in is parked in its session insert (before the write reaches the store,
//! and after), the change runs to its end, then the sign-in goes on. Whatever the order, no
//! session of the old account, password or email works afterwards. Then the same races
//! unparked, as an attacker would run them, and the account ids SQLite hands out.
//!
//! Then what an outsider can do to an account without its password: guessing from one
//! address never locks the owner out from another, a weak hash is upgraded at the owner's
//! next sign-in, and a body a page of another origin can send unasked is refused.
//!
//! Every scenario runs on SQLite and on PostgreSQL (`bash scripts/with-postgres.sh`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    unreachable_pub
)]

#[allow(dead_code)]
#[path = "support/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "support/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "support/parked.rs"]
mod parked;
#[allow(dead_code)]
#[path = "support/support.rs"]
mod support;

use std::time::Duration;

use axum::http::Method;
use client::{Auth, Http, JsonBody, Resp, random_suffix};
use devise_server::db::Database;
use parked::ParkingDb;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a new horse battery staple";

fn email(label: &str) -> String {
    format!("{label}-{}@example.test", random_suffix())
}

async fn sign_in(http: &Http, email: &str, password: &str) -> Resp {
    http.post(
        "/auth/sign_in",
        &json!({"email": email, "password": password}).to_string(),
    )
    .await
}

/// A signed-up account: its session and its id.
async fn sign_up(http: &Http, email: &str) -> (Auth, i64) {
    let body = json!({"email": email, "password": PASSWORD, "password_confirmation": PASSWORD});
    let resp = http.post("/auth", &body.to_string()).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    (
        Auth::from_response(&resp).expect("a response with the auth headers"),
        resp.json()["data"]["id"].as_i64().unwrap(),
    )
}

/// Whether a session opens the members-only page.
async fn works(http: &Http, auth: &Auth) -> bool {
    http.get("/demo/members_only", auth).await.status == 200
}

/// The sign-in racing a change: parked in its insert, released after `change`. Returns its
/// answer; a sign-in whose write came first must have answered 200 and one whose write
/// came after 401 without a token, and in both cases no session of it works.
async fn sign_in_around<D: Database>(
    db: &ParkingDb<D>,
    http: &Http,
    email: &str,
    password: &str,
    after: bool,
    change: impl Future<Output = ()>,
) -> Resp {
    let parked = db.park_next_insert(after);
    let racer = tokio::spawn({
        let (http, email, password) = (http.clone(), email.to_owned(), password.to_owned());
        async move { sign_in(&http, &email, &password).await }
    });
    parked.arrived().await;
    change.await;
    parked.release().await;
    let resp = racer.await.unwrap();
    if after {
        assert_eq!(resp.status, 200, "stored before the change: {}", resp.text);
        let auth = Auth::from_response(&resp).expect("a response with the auth headers");
        assert!(
            !works(http, &auth).await,
            "the racing sign-in's session outlived the change"
        );
    } else {
        assert_eq!(resp.status, 401, "stored after the change: {}", resp.text);
        assert!(resp.token().is_none());
    }
    resp
}

async fn delete_account(http: &Http, auth: &Auth) -> Resp {
    http.send(Method::DELETE, "/auth", &auth.headers(), None)
        .await
}

/// DELETE /auth while a sign-in of the account checks its password: the sign-in's session
/// never works, and no later account is given the deleted account's id.
async fn a_deletion_racing_a_sign_in_leaves_no_session<D: Database>(
    db: &ParkingDb<D>,
    http: &Http,
) {
    for after in [false, true] {
        let attacker = email("deleted");
        let (session, id) = sign_up(http, &attacker).await;
        sign_in_around(db, http, &attacker, PASSWORD, after, async {
            let resp = delete_account(http, &session).await;
            assert_eq!(resp.status, 200, "{}", resp.text);
        })
        .await;
        assert!(!works(http, &session).await);
        assert_eq!(sign_in(http, &attacker, PASSWORD).await.status, 401);
        let (_, next) = sign_up(http, &email("victim")).await;
        assert!(next > id, "the deleted id {id} was given again ({next})");
    }
}

/// PUT /auth/password while a sign-in with the old password checks it: the old password's
/// session never works; the old password no longer signs in, the new one does.
async fn a_password_change_racing_a_sign_in_leaves_no_old_password_session<D: Database>(
    db: &ParkingDb<D>,
    http: &Http,
) {
    for after in [false, true] {
        let address = email("password");
        let (mut owner, _) = sign_up(http, &address).await;
        let other_device = Auth::from_response(&sign_in(http, &address, PASSWORD).await)
            .expect("a response with the auth headers");
        sign_in_around(db, http, &address, PASSWORD, after, async {
            let body = json!({
                "password": NEW_PASSWORD,
                "password_confirmation": NEW_PASSWORD,
                "current_password": PASSWORD,
            });
            let resp = http
                .send(
                    Method::PUT,
                    "/auth/password",
                    &owner.headers(),
                    Some(&body.to_string()),
                )
                .await;
            assert_eq!(resp.status, 200, "{}", resp.text);
            owner.follow(&resp);
        })
        .await;
        assert!(
            !works(http, &other_device).await,
            "another device outlived the change"
        );
        assert!(
            works(http, &owner).await,
            "the session that changed it goes on"
        );
        assert_eq!(sign_in(http, &address, PASSWORD).await.status, 401);
        assert_eq!(sign_in(http, &address, NEW_PASSWORD).await.status, 200);
    }
}

/// PUT /auth with a new email while a sign-in with the old email checks its password: no
/// session works under the old email; the renamed session deletes the account, and then
/// nothing of it works.
async fn an_email_change_racing_a_sign_in_leaves_no_old_email_session<D: Database>(
    db: &ParkingDb<D>,
    http: &Http,
) {
    for after in [false, true] {
        let (old, new) = (email("old"), email("new"));
        let (mut owner, _) = sign_up(http, &old).await;
        let resp = sign_in_around(db, http, &old, PASSWORD, after, async {
            let body = json!({"email": new}).to_string();
            let resp = http
                .send(Method::PUT, "/auth", &owner.headers(), Some(&body))
                .await;
            assert_eq!(resp.status, 200, "{}", resp.text);
            assert_eq!(resp.header("uid"), Some(new.as_str()));
            owner.follow(&resp);
            owner.uid.clone_from(&new);
        })
        .await;
        if after {
            assert_eq!(resp.header("uid"), Some(old.as_str()));
        }
        assert_eq!(sign_in(http, &old, PASSWORD).await.status, 401);
        let fresh = Auth::from_response(&sign_in(http, &new, PASSWORD).await)
            .expect("a response with the auth headers");
        assert!(works(http, &owner).await);
        let resp = delete_account(http, &owner).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        assert!(
            !works(http, &fresh).await,
            "a session outlived the deletion"
        );
        assert_eq!(sign_in(http, &new, PASSWORD).await.status, 401);
    }
}

/// The attack as it was reported, unparked: a sign-in started, then DELETE /auth a moment
/// later, twenty times. Whichever finishes first, no sign-in leaves a working session.
async fn twenty_racing_deletions_leave_no_working_session<D: Database>(
    _db: &ParkingDb<D>,
    http: &Http,
) {
    let mut signed_in = 0;
    for round in 0..20u64 {
        let attacker = email("racer");
        let (session, _) = sign_up(http, &attacker).await;
        let racer = tokio::spawn({
            let (http, attacker) = (http.clone(), attacker.clone());
            async move { sign_in(&http, &attacker, PASSWORD).await }
        });
        tokio::time::sleep(Duration::from_micros(round * 2_000)).await;
        assert_eq!(delete_account(http, &session).await.status, 200);
        let resp = racer.await.unwrap();
        if resp.status == 200 {
            signed_in += 1;
            assert!(
                !works(
                    http,
                    &Auth::from_response(&resp).expect("a response with the auth headers")
                )
                .await,
                "round {round}: the sign-in's session outlived the account"
            );
        }
    }
    eprintln!("{signed_in} of 20 racing sign-ins answered 200 before the deletion; none works");
}

/// Someone guessing an account's password from one address uses up the quota of that
/// address for that account, not the account's: its owner, signing in from another
/// address with the right password, is served.
async fn guesses_from_one_address_never_lock_the_owner_out_from_another<D: Database>(
    _db: &ParkingDb<D>,
    attacker: &Http, // from 127.0.0.1
) {
    let owner = attacker.sending_from("127.0.0.2".parse().unwrap());
    owner.sign_up("lock@ex.test", PASSWORD).await;
    let guess = |email: &'static str, password: &'static str| {
        let attacker = attacker.clone();
        async move {
            attacker
                .post(
                    "/auth/sign_in",
                    &json!({"email": email, "password": password}).to_string(),
                )
                .await
        }
    };
    // The attacker's quota for this account runs out, whatever the spelling...
    let spellings = [
        "LOCK@ex.test",
        "lock@ex.test",
        " Lock@Ex.Test",
        "lock@EX.TEST",
    ];
    let mut wrong = 0;
    loop {
        let resp = guess(spellings[wrong % spellings.len()], "wrong password").await;
        if resp.status == 429 {
            break;
        }
        assert_eq!(resp.status, 401, "{}", resp.text);
        wrong += 1;
        assert!(wrong <= 3, "{wrong} guesses and not throttled");
    }
    // ...and stays out for it, the right password included.
    let resp = guess("lock@ex.test", PASSWORD).await;
    assert_eq!(resp.status, 429, "{}", resp.text);
    assert!(resp.header("retry-after").is_some());
    // The owner, from another address, is not refused because of someone else's guesses.
    let auth = owner.sign_in("LOCK@ex.test", PASSWORD).await;
    assert_eq!(auth.uid, "lock@ex.test");
    assert_eq!(owner.get("/auth/validate_token", &auth).await.status, 200);
}

/// A stored hash weaker than the server's parameters (`--insecure-fast-hashing`, an older
/// default) is replaced at the next sign-in with the right password, and only then; the
/// password goes on working.
async fn weak_password_hashes_are_upgraded_at_sign_in<D: Database>(db: &ParkingDb<D>, http: &Http) {
    use argon2::password_hash::PasswordHasher as _;
    let address = email("weak");
    sign_up(http, &address).await;
    let user = db.user_by_email(&address).await.unwrap().unwrap().user;
    let weak = argon2::Argon2::from(&argon2::Params::new(256, 1, 1, None).unwrap())
        .hash_password_with_salt(PASSWORD.as_bytes(), b"0123456789abcdef")
        .unwrap()
        .to_string();
    assert!(db.set_password_hash(&user, &weak).await.unwrap());
    let stored = || async {
        db.user_by_email(&address)
            .await
            .unwrap()
            .unwrap()
            .password_hash
    };
    assert_eq!(
        sign_in(http, &address, "a wrong password").await.status,
        401
    );
    assert_eq!(stored().await, weak, "a wrong password upgrades nothing");
    assert_eq!(sign_in(http, &address, PASSWORD).await.status, 200);
    let upgraded = stored().await;
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
        "the server's parameters: {upgraded}"
    );
    assert_eq!(sign_in(http, &address, PASSWORD).await.status, 200);
    assert_eq!(stored().await, upgraded, "a strong hash is kept");
}

/// A sign-in or sign-up body sent as `text/plain` or without a type (what a page of
/// another origin may send without a preflight) is 415, and creates nothing.
async fn bodies_other_than_json_or_form_are_refused<D: Database>(db: &ParkingDb<D>, http: &Http) {
    let address = email("plain");
    let body = json!({"email": address, "password": PASSWORD, "password_confirmation": PASSWORD})
        .to_string();
    let plain = [("content-type".to_owned(), "text/plain".to_owned())];
    let resp = http.send(Method::POST, "/auth", &plain, Some(&body)).await;
    assert_eq!(resp.status, 415, "{}", resp.text);
    let raw = format!(
        "POST /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(http.raw(raw.as_bytes()).await.0, 415);
    assert!(db.user_by_email(&address).await.unwrap().is_none());
    sign_up(http, &address).await;
    let resp = http
        .send(Method::POST, "/auth/sign_in", &plain, Some(&body))
        .await;
    assert_eq!(resp.status, 415, "{}", resp.text);
    assert!(resp.token().is_none());
}

/// One test per scenario and database.
macro_rules! on_sqlite_and_postgres {
    ($($scenario:ident ($($flag:literal),*)),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let dir = client::TempDir::new();
                    let path = dir.db();
                    let sqlite = devise_server::db::Sqlite::open(&path.display().to_string(), 4)
                        .await
                        .unwrap();
                    let db = ParkingDb::new(sqlite);
                    let server =
                        support::TestServer::start_with(db.clone(), &path, &support::KEY, &[$($flag),*]).await;
                    super::$scenario(&db, &server.http()).await;
                    server.stop().await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let test_db = cluster::TestDb::create().await;
                    let postgres = devise_server::db::Postgres::open(&test_db.url, 4).await.unwrap();
                    let db = ParkingDb::new(postgres);
                    let server = support::TestServer::start_with(
                        db.clone(),
                        std::path::Path::new("postgres"),
                        &support::KEY,
                        &[$($flag),*],
                    )
                    .await;
                    super::$scenario(&db, &server.http()).await;
                    server.stop().await;
                }
            )*
        }
    };
}

on_sqlite_and_postgres!(
    a_deletion_racing_a_sign_in_leaves_no_session(),
    a_password_change_racing_a_sign_in_leaves_no_old_password_session(),
    an_email_change_racing_a_sign_in_leaves_no_old_email_session(),
    twenty_racing_deletions_leave_no_working_session(),
    guesses_from_one_address_never_lock_the_owner_out_from_another(
        "--throttle-per-address-account",
        "3",
        "--throttle-per-address",
        "100"
    ),
    weak_password_hashes_are_upgraded_at_sign_in(),
    bodies_other_than_json_or_form_are_refused(),
);

/// A database written by earlier versions (`users.id INTEGER PRIMARY KEY`, which SQLite
/// hands out again once the highest id is deleted) is moved to `AUTOINCREMENT` when the
/// server opens it: rows and ids kept, and a deleted highest id never given again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_sqlite_database_stops_reusing_ids() {
    let dir = client::TempDir::new();
    let path = dir.db();
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE users (
                 id INTEGER PRIMARY KEY,
                 email TEXT NOT NULL UNIQUE,
                 password_hash TEXT NOT NULL,
                 created_at INTEGER NOT NULL
             );
             INSERT INTO users VALUES (1, 'a@example.test', 'x', 0), (2, 'b@example.test', 'y', 0);",
        )
        .unwrap();
    }
    let sqlite = devise_server::db::Sqlite::open(&path.display().to_string(), 4)
        .await
        .unwrap();
    let db = ParkingDb::new(sqlite);
    let server = support::TestServer::start_with(db.clone(), &path, &support::KEY, &[]).await;
    let http = server.http();
    let schema: String = server
        .sql()
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'users'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(schema.contains("AUTOINCREMENT"), "{schema}");
    assert_eq!(server.count("users"), 2, "the rows moved with the table");
    let (session, id) = sign_up(&http, &email("third")).await;
    assert_eq!(id, 3);
    assert_eq!(delete_account(&http, &session).await.status, 200);
    let (_, next) = sign_up(&http, &email("fourth")).await;
    assert_eq!(next, 4, "the deleted highest id is not given again");
    server.stop().await;
}
