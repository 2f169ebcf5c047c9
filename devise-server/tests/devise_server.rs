//! The devise_token_auth-compatible example server, tested over real HTTP on
//! 127.0.0.1 with an ephemeral port and a temporary SQLite file: every endpoint and error
//! of the devise protocol, the design-notes stories, bad input, a failing database, a restart, and
//! 50 clients under load following their tokens.
//!
//! The server is the example's own code (`examples/devise_server/*.rs`, included below),
//! run in the test's runtime; one test also spawns the built example binary.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not reach,
// and test arithmetic on known small values, which no clippy.toml setting covers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects
)]

#[allow(dead_code)]
#[path = "support/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "support/support.rs"]
mod support;

use std::collections::HashSet;
use std::time::Duration;

use axum::http::Method;
use base64ct::{Base64, Encoding};
use client::{Auth, Http, JsonBody, Resp, TempDir, assert_record};
use devise_server::cli;
use rotauth::Token;
use serde_json::{Value, json};
use support::{KEY, TestServer};

const PASSWORD: &str = "correct horse battery";
const MEMBERS_401: &str = r#"{"errors":["You need to sign in or sign up before continuing."]}"#;
const VALIDATE_401: &str = r#"{"success":false,"errors":["Invalid login credentials"]}"#;

async fn server(flags: &[&str]) -> (TempDir, TestServer) {
    let dir = TempDir::new();
    let server = TestServer::start_on(&dir.db(), &KEY, flags).await;
    (dir, server)
}

fn json_eq(resp: &Resp, expected: &str) {
    let expected: Value = serde_json::from_str(expected).unwrap();
    assert_eq!(resp.json(), expected, "status {}", resp.status);
}

/// The five devise headers with a real token.
fn assert_auth_headers(resp: &Resp, uid: &str) {
    let token = resp.token().expect("access-token");
    assert!(Token::from_text(&token).is_ok(), "not a rotauth token");
    assert_eq!(resp.header("token-type"), Some("Bearer"));
    assert_eq!(resp.header("client").map(str::len), Some(22));
    assert_eq!(resp.header("uid"), Some(uid));
    let expiry: u64 = resp.header("expiry").unwrap().parse().unwrap();
    assert!(
        expiry > rotauth::Timestamp::now().unix_secs(),
        "expiry in the past"
    );
}

fn assert_batch_headers(resp: &Resp, auth: &Auth) {
    // `" "` on the wire; HTTP parsers (hyper's, browsers') strip it to "".
    assert_eq!(
        resp.header("access-token").map(str::trim),
        Some(""),
        "batch sends a blank"
    );
    assert_eq!(resp.header("expiry").map(str::trim), Some(""));
    assert!(
        resp.header("authorization").is_none(),
        "no token in a batch response"
    );
    assert_eq!(resp.header("token-type"), Some("Bearer"));
    assert_eq!(resp.header("client"), Some(auth.client.as_str()));
    assert_eq!(resp.header("uid"), Some(auth.uid.as_str()));
}

fn no_token(resp: &Resp) {
    assert!(resp.header("access-token").is_none(), "{resp:?}");
    assert!(resp.header("authorization").is_none(), "{resp:?}");
}

async fn pause_past(window_ms: u64) {
    // Only to let the batch window pass; nothing asserts how long anything took.
    tokio::time::sleep(Duration::from_millis(window_ms + 150)).await;
}

fn user(id: i64, email: &str) -> Value {
    json!({"id": id, "email": email, "uid": email, "provider": "email"})
}

// ---------------------------------------------------------------------------------------
// Endpoints of the devise protocol

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_returns_the_user_and_the_five_headers() {
    let (_dir, server) = server(&[]).await;
    let http = server.http();
    let body = json!({"email": " Alice@Example.COM ", "password": PASSWORD,
                      "password_confirmation": PASSWORD});
    let resp = http.post("/auth", &body.to_string()).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.json(),
        json!({"status": "success", "data": user(1, "alice@example.com")})
    );
    assert_auth_headers(&resp, "alice@example.com");
    // `Authorization: Bearer <base64 JSON of the five>`, as devise_token_auth ≥ 1.1.
    let bearer = resp.header("authorization").unwrap();
    let mut buf = [0u8; 1024];
    let decoded = Base64::decode(bearer.strip_prefix("Bearer ").unwrap(), &mut buf).unwrap();
    let fields: Value = serde_json::from_slice(decoded).unwrap();
    assert_eq!(fields["access-token"], resp.header("access-token").unwrap());
    assert_eq!(fields["client"], resp.header("client").unwrap());
    assert_eq!(fields["uid"], "alice@example.com");
    assert_eq!(fields["expiry"], resp.header("expiry").unwrap());
    assert_eq!(server.count("users"), 1);
    assert_eq!(server.count("rotauth_sessions"), 1);
    // The password is stored as an argon2 PHC string only.
    let hash: String = server
        .sql()
        .query_row("SELECT password_hash FROM users", [], |r| r.get(0))
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_errors_are_422_in_devise_shape_and_write_nothing() {
    let (_dir, server) = server(&[]).await;
    let http = server.http();
    http.sign_up("taken@example.com", PASSWORD).await;
    let before = server.snapshot();
    let cases = [
        (
            json!({"email": "not-an-email", "password": PASSWORD, "password_confirmation": PASSWORD}),
            json!({"email": ["is not an email"], "full_messages": ["Email is not an email"]}),
        ),
        (
            json!({"email": "", "password": PASSWORD}),
            json!({"email": ["can't be blank"], "full_messages": ["Email can't be blank"]}),
        ),
        (
            json!({"email": "bob@example.com", "password": "short", "password_confirmation": "short"}),
            json!({"password": ["is too short (minimum is 8 characters)"],
                   "full_messages": ["Password is too short (minimum is 8 characters)"]}),
        ),
        (
            json!({"email": "bob@example.com", "password": PASSWORD, "password_confirmation": "other password"}),
            json!({"password_confirmation": ["doesn't match Password"],
                   "full_messages": ["Password confirmation doesn't match Password"]}),
        ),
        (
            json!({"email": "TAKEN@example.com", "password": PASSWORD, "password_confirmation": PASSWORD}),
            json!({"email": ["has already been taken"], "full_messages": ["Email has already been taken"]}),
        ),
    ];
    for (body, expected_errors) in cases {
        let resp = http.post("/auth", &body.to_string()).await;
        assert_eq!(resp.status, 422, "{body}");
        let json = resp.json();
        assert_eq!(json["status"], "error");
        assert_eq!(json["errors"], expected_errors, "{body}");
        assert_eq!(json["data"]["id"], Value::Null);
        no_token(&resp);
    }
    for body in ["{}", "[]", r#"{"name":"x"}"#, "42"] {
        let resp = http.post("/auth", body).await;
        assert_eq!(resp.status, 422, "{body}");
        json_eq(
            &resp,
            r#"{"status":"error","errors":["Please submit proper sign up data in request body."]}"#,
        );
    }
    assert_eq!(
        server.snapshot(),
        before,
        "a refused sign-up wrote something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_opens_a_new_session_or_answers_401() {
    let (_dir, server) = server(&[]).await;
    let http = server.http();
    let first = http.sign_up("carol@example.com", PASSWORD).await;
    let body = json!({"email": "Carol@Example.com", "password": PASSWORD});
    let resp = http.post("/auth/sign_in", &body.to_string()).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"data": user(1, "carol@example.com")}));
    assert_auth_headers(&resp, "carol@example.com");
    assert_ne!(
        resp.header("client"),
        Some(first.client.as_str()),
        "a new session"
    );
    assert_eq!(server.count("rotauth_sessions"), 2);

    let before = server.snapshot();
    let invalid = r#"{"success":false,"errors":["Invalid login credentials. Please try again."]}"#;
    for body in [
        json!({"email": "carol@example.com", "password": "wrong password"}),
        json!({"email": "nobody@example.com", "password": PASSWORD}),
        json!({"email": "carol@example.com"}),
        json!({"password": PASSWORD}),
        json!({"email": 5, "password": true}),
        json!([]),
    ] {
        let resp = http.post("/auth/sign_in", &body.to_string()).await;
        assert_eq!(resp.status, 401, "{body}");
        json_eq(&resp, invalid);
        no_token(&resp);
    }
    assert_eq!(server.snapshot(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_token_and_members_only_serve_or_refuse() {
    let (_dir, server) = server(&[]).await;
    let http = server.http();
    let mut auth = http.sign_up("dave@example.com", PASSWORD).await;

    let resp = http.get("/auth/validate_token", &auth).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.json(),
        json!({"success": true, "data": user(1, "dave@example.com")})
    );
    auth.follow(&resp);
    let resp = http.get("/demo/members_only", &auth).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.json(),
        json!({"data": {"message": "Welcome dave@example.com", "user": user(1, "dave@example.com")}})
    );

    let before = server.snapshot();
    let mut wrong_uid = auth.clone();
    wrong_uid.uid = "eve@example.com".into();
    let mut unknown_client = auth.clone();
    unknown_client.client = "AAAAAAAAAAAAAAAAAAAAAA".into();
    let mut bogus = auth.clone();
    bogus.token = "x".repeat(55);
    let mut blank = auth.clone();
    blank.token = " ".into();
    for bad in [&wrong_uid, &unknown_client, &bogus, &blank] {
        let resp = http.get("/auth/validate_token", bad).await;
        assert_eq!(resp.status, 401);
        json_eq(&resp, VALIDATE_401);
        no_token(&resp);
        let resp = http.get("/demo/members_only", bad).await;
        assert_eq!(resp.status, 401);
        json_eq(&resp, MEMBERS_401);
        no_token(&resp);
    }
    let resp = http
        .send(Method::GET, "/demo/members_only", &[], None)
        .await;
    assert_eq!(resp.status, 401);
    json_eq(&resp, MEMBERS_401);
    assert_eq!(server.snapshot(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_authorization_bearer_and_any_header_case() {
    let (_dir, server) = server(&["--batch-window-ms", "0"]).await;
    let http = server.http();
    let mut auth = http.sign_up("fay@example.com", PASSWORD).await;

    // Only `Authorization: Bearer <base64 of the JSON>`.
    let json = json!({"access-token": auth.token, "token-type": "Bearer", "client": auth.client,
                      "expiry": "0", "uid": auth.uid})
    .to_string();
    let mut buf = [0u8; 1024];
    let bearer = format!(
        "Bearer {}",
        Base64::encode(json.as_bytes(), &mut buf).unwrap()
    );
    let resp = http
        .send(
            Method::GET,
            "/auth/validate_token",
            &[("authorization".into(), bearer.clone())],
            None,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert!(auth.follow(&resp), "window 0: every request rotates");

    // A blank access-token counts as absent: the bearer's token (now replayed) is used.
    let resp = http
        .send(
            Method::GET,
            "/auth/validate_token",
            &[
                ("access-token".into(), " ".into()),
                ("authorization".into(), bearer),
            ],
            None,
        )
        .await;
    assert_eq!(resp.status, 401, "the bearer's token was rotated away");

    // Header names in any case, on the wire.
    let request = format!(
        "GET /demo/members_only HTTP/1.1\r\nHost: x\r\nACCESS-TOKEN: {}\r\nClient: {}\r\nUID: {}\r\nToken-Type: Bearer\r\nConnection: close\r\n\r\n",
        auth.token, auth.client, auth.uid
    );
    let (status, text) = http.raw(request.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Welcome fay@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_deletes_the_session_then_answers_404() {
    let (_dir, server) = server(&[]).await;
    let http = server.http();
    let auth = http.sign_up("gus@example.com", PASSWORD).await;
    let other = http.sign_in("gus@example.com", PASSWORD).await;

    let mut forged = auth.clone();
    forged.token = other.token.clone(); // a real token, of another session
    let resp = http
        .send(Method::DELETE, "/auth/sign_out", &forged.headers(), None)
        .await;
    assert_eq!(resp.status, 404);
    assert!(
        server.session(&auth.client).is_some(),
        "a bad token signs nothing out"
    );

    let resp = http
        .send(Method::DELETE, "/auth/sign_out", &auth.headers(), None)
        .await;
    assert_eq!(resp.status, 200);
    json_eq(&resp, r#"{"success":true}"#);
    no_token(&resp);
    assert!(server.session(&auth.client).is_none());
    assert!(
        server.session(&other.client).is_some(),
        "other sessions stay"
    );

    let resp = http.get("/auth/validate_token", &auth).await;
    assert_eq!(resp.status, 401);
    let resp = http
        .send(Method::DELETE, "/auth/sign_out", &auth.headers(), None)
        .await;
    assert_eq!(resp.status, 404);
    json_eq(
        &resp,
        r#"{"success":false,"errors":["User was not found or was not logged in."]}"#,
    );
    let resp = http.send(Method::DELETE, "/auth/sign_out", &[], None).await;
    assert_eq!(resp.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_keeps_at_most_ten_sessions_per_user() {
    let (_dir, server) = server(&[]).await;
    let http = server.http();
    let first = http.sign_up("hal@example.com", PASSWORD).await;
    let mut later = Vec::new();
    for _ in 0..10 {
        later.push(http.sign_in("hal@example.com", PASSWORD).await);
    }
    assert_eq!(server.count("rotauth_sessions"), 10);
    // The one expiring first (the oldest) was evicted.
    assert!(server.session(&first.client).is_none());
    assert_eq!(http.get("/auth/validate_token", &first).await.status, 401);
    for auth in &later {
        assert_eq!(http.get("/auth/validate_token", auth).await.status, 200);
    }
}

// ---------------------------------------------------------------------------------------
// The design-notes stories

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_rotates_and_an_invalidated_token_fails() {
    let (_dir, server) = server(&["--batch-window-ms", "0"]).await;
    let http = server.http();
    let mut auth = http.sign_up("ida@example.com", PASSWORD).await;
    let mut seen = HashSet::from([auth.token.clone()]);
    for _ in 0..5 {
        let old = auth.clone();
        let resp = http.get("/demo/members_only", &auth).await;
        assert_eq!(resp.status, 200);
        assert_auth_headers(&resp, "ida@example.com");
        assert!(auth.follow(&resp));
        assert!(seen.insert(auth.token.clone()), "tokens never repeat");
        // The token just used is invalidated by this request.
        let resp = http.get("/demo/members_only", &old).await;
        assert_eq!(resp.status, 401);
        json_eq(&resp, MEMBERS_401);
    }
    let (session, version) = server.session(&auth.client).unwrap();
    assert_eq!(session.generation(), 5);
    assert_eq!(u64::try_from(version).unwrap(), session.version());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bogus_token_is_401_and_changes_nothing() {
    let (_dir, server) = server(&[]).await;
    let http = server.http();
    let auth = http.sign_up("jo@example.com", PASSWORD).await;
    let other = http.sign_in("jo@example.com", PASSWORD).await;
    let before = server.snapshot();
    let mut flipped = auth.token.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let forged_tokens = [
        String::from_utf8(flipped).unwrap(), // MAC does not verify
        other.token.clone(),                 // genuine, but another session's
        "A".repeat(55),                      // parses, wrong MAC
        "not a token".into(),                // malformed
        "é".repeat(30),                      // not base64url
    ];
    for token in forged_tokens {
        let mut bad = auth.clone();
        bad.token = token;
        let resp = http.get("/demo/members_only", &bad).await;
        assert_eq!(resp.status, 401);
        json_eq(&resp, MEMBERS_401);
        no_token(&resp);
    }
    assert_eq!(server.snapshot(), before);
    assert_eq!(http.get("/demo/members_only", &auth).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_requests_share_one_token_and_exactly_one_rotates() {
    const W: u64 = 1000;
    let (_dir, server) = server(&["--batch-window-ms", "1000"]).await;
    let http = server.http();
    let auth = http.sign_up("kim@example.com", PASSWORD).await;
    pause_past(W).await; // the sign-in's window is over: the next request rotates
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (http, auth) = (http.clone(), auth.clone());
        let path = if i % 2 == 0 {
            "/demo/members_only"
        } else {
            "/auth/validate_token"
        };
        tasks.push(tokio::spawn(async move { http.get(path, &auth).await }));
    }
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(task.await.unwrap());
    }
    assert!(responses.iter().all(|r| r.status == 200), "{responses:?}");
    let new_tokens: Vec<String> = responses.iter().filter_map(Resp::token).collect();
    assert_eq!(new_tokens.len(), 1, "exactly one response rotates");
    assert_ne!(new_tokens[0], auth.token);
    for resp in responses.iter().filter(|r| r.token().is_none()) {
        assert_batch_headers(resp, &auth);
    }
    let (session, _) = server.session(&auth.client).unwrap();
    assert_eq!(session.generation(), 1, "one rotation stored");
    // The client follows the one new token.
    let mut next = auth.clone();
    next.token = new_tokens[0].clone();
    assert_eq!(http.get("/demo/members_only", &next).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbatch_forces_rotation_inside_the_window() {
    let (_dir, server) = server(&[]).await; // the default 5 s window
    let http = server.http();
    let mut auth = http.sign_up("lee@example.com", PASSWORD).await;
    let resp = http.get("/demo/members_only", &auth).await;
    assert_eq!(resp.status, 200);
    assert_batch_headers(&resp, &auth);
    for query in ["?unbatch=true", "?x=1&unbatch=1"] {
        let resp = http.get(&format!("/demo/members_only{query}"), &auth).await;
        assert_eq!(resp.status, 200);
        assert_auth_headers(&resp, "lee@example.com");
        assert!(auth.follow(&resp), "{query}: unbatch rotates");
    }
    let resp = http.get("/demo/members_only?unbatch=false", &auth).await;
    assert_eq!(resp.status, 200);
    assert_batch_headers(&resp, &auth);
    // devise's exact bytes: `access-token: " "` and `expiry: " "`.
    let request = format!(
        "GET /demo/members_only HTTP/1.1\r\nHost: x\r\naccess-token: {}\r\nclient: {}\r\nuid: {}\r\nConnection: close\r\n\r\n",
        auth.token, auth.client, auth.uid
    );
    let (status, text) = http.raw(request.as_bytes()).await;
    assert_eq!(status, 200);
    assert!(text.contains("access-token:  \r\n"), "{text}");
    assert!(text.contains("expiry:  \r\n"), "{text}");
    assert_eq!(server.session(&auth.client).unwrap().0.generation(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_times_out() {
    const W: u64 = 400;
    let (_dir, server) = server(&["--batch-window-ms", "400"]).await;
    let http = server.http();
    let t0 = http.sign_up("max@example.com", PASSWORD).await;
    let resp = http.get("/demo/members_only", &t0).await;
    assert_batch_headers(&resp, &t0); // inside the sign-in's window
    pause_past(W).await;
    let resp = http.get("/demo/members_only", &t0).await;
    assert_eq!(resp.status, 200);
    let mut t1 = t0.clone();
    assert!(t1.follow(&resp), "after the window the same token rotates");
    // T0 is still part of the batch of the rotation that just happened...
    let resp = http.get("/demo/members_only", &t0).await;
    assert_eq!(resp.status, 200);
    assert_batch_headers(&resp, &t0);
    pause_past(W).await;
    // ...but not after that batch's window.
    let resp = http.get("/demo/members_only", &t0).await;
    assert_eq!(resp.status, 401);
    let resp = http.get("/demo/members_only", &t1).await;
    assert_eq!(resp.status, 200);
    assert!(t1.follow(&resp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_token_is_401_and_revoke_deletes_only_that_session() {
    // Default policy: refused, the session lives on.
    let (_dir, server) = server(&["--batch-window-ms", "0"]).await;
    let http = server.http();
    let t0 = http.sign_up("ned@example.com", PASSWORD).await;
    let mut t1 = t0.clone();
    assert!(t1.follow(&http.get("/demo/members_only", &t0).await));
    assert_eq!(http.get("/demo/members_only", &t0).await.status, 401);
    assert_eq!(http.get("/demo/members_only", &t1).await.status, 200);
    drop(server);

    let (_dir, server) = server_revoke().await;
    let http = server.http();
    let t0 = http.sign_up("ned@example.com", PASSWORD).await;
    let other = http.sign_in("ned@example.com", PASSWORD).await;
    let mut t1 = t0.clone();
    assert!(t1.follow(&http.get("/demo/members_only", &t0).await));
    let resp = http.get("/demo/members_only", &t0).await;
    assert_eq!(resp.status, 401);
    assert!(server.session(&t0.client).is_none(), "revoked");
    assert_eq!(
        http.get("/demo/members_only", &t1).await.status,
        401,
        "the whole session is gone, the thief's and the client's token alike"
    );
    assert_eq!(http.get("/demo/members_only", &other).await.status, 200);
    assert!(
        server
            .log_lines()
            .iter()
            .any(|l| l.contains("session revoked"))
    );
}

async fn server_revoke() -> (TempDir, TestServer) {
    server(&["--batch-window-ms", "0", "--replay", "revoke"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_signs_out_every_other_session() {
    let (_dir, server) = server(&[]).await;
    let http = server.http();
    let mut phone = http.sign_up("oda@example.com", PASSWORD).await;
    let laptop = http.sign_in("oda@example.com", PASSWORD).await;
    let tablet = http.sign_in("oda@example.com", PASSWORD).await;
    let new_password = "a brand new password";
    let put = |auth: &Auth, body: Value| {
        let (http, headers) = (http.clone(), auth.headers());
        async move {
            http.send(
                Method::PUT,
                "/auth/password?unbatch=true",
                &headers,
                Some(&body.to_string()),
            )
            .await
        }
    };

    let resp = http
        .send(
            Method::PUT,
            "/auth/password",
            &[],
            Some(&json!({"password": new_password}).to_string()),
        )
        .await;
    assert_eq!(resp.status, 401);
    json_eq(&resp, r#"{"success":false,"errors":["Unauthorized"]}"#);

    let resp = put(
        &phone,
        json!({"current_password": "wrong", "password": new_password,
               "password_confirmation": new_password}),
    )
    .await;
    assert_eq!(resp.status, 422);
    assert_eq!(
        resp.json()["errors"]["current_password"],
        json!(["is invalid"])
    );
    assert!(
        phone.follow(&resp),
        "a 422 after authentication still carries the new token"
    );
    let resp = put(
        &phone,
        json!({"current_password": PASSWORD, "password": new_password,
               "password_confirmation": "typo"}),
    )
    .await;
    assert_eq!(resp.status, 422);
    assert!(phone.follow(&resp));
    assert_eq!(
        server.count("rotauth_sessions"),
        3,
        "failed changes sign no one out"
    );

    let resp = put(
        &phone,
        json!({"current_password": PASSWORD, "password": new_password,
               "password_confirmation": new_password}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.json()["success"], true);
    assert_eq!(resp.json()["signed_out_sessions"], 2);
    assert!(phone.follow(&resp));
    assert_eq!(server.count("rotauth_sessions"), 1);
    assert_eq!(http.get("/demo/members_only", &laptop).await.status, 401);
    assert_eq!(http.get("/demo/members_only", &tablet).await.status, 401);
    assert_eq!(http.get("/demo/members_only", &phone).await.status, 200);

    let old = json!({"email": "oda@example.com", "password": PASSWORD}).to_string();
    assert_eq!(http.post("/auth/sign_in", &old).await.status, 401);
    http.sign_in("oda@example.com", new_password).await;
}

// ---------------------------------------------------------------------------------------
// Options

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_token_current_echoes_the_current_token() {
    let (_dir, server) = server(&["--batch-token", "current", "--batch-window-ms", "5000"]).await;
    let http = server.http();
    let t0 = http.sign_up("pia@example.com", PASSWORD).await;
    // Inside the sign-in's window: a batch response, carrying T(0) itself.
    let resp = http.get("/demo/members_only", &t0).await;
    assert_eq!(resp.token().as_deref(), Some(t0.token.as_str()));
    let resp = http.get("/demo/members_only?unbatch=true", &t0).await;
    let mut t1 = t0.clone();
    assert!(t1.follow(&resp));
    // T(0) is now a batch member: the response carries T(1), never the older T(0).
    let resp = http.get("/demo/members_only", &t0).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.token().as_deref(), Some(t1.token.as_str()));
    assert_auth_headers(&resp, "pia@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rotation_keeps_one_token() {
    let (_dir, server) = server(&["--no-rotation", "--batch-window-ms", "0"]).await;
    let http = server.http();
    let auth = http.sign_up("quinn@example.com", PASSWORD).await;
    for query in ["", "?unbatch=true", ""] {
        let resp = http.get(&format!("/demo/members_only{query}"), &auth).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.token().as_deref(), Some(auth.token.as_str()));
    }
    assert_eq!(server.session(&auth.client).unwrap().0.generation(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_mode_reissues_a_lost_response_once() {
    const W: u64 = 300;
    let (_dir, server) = server(&["--mode", "recover", "--batch-window-ms", "300"]).await;
    let http = server.http();
    let t0 = http.sign_up("rae@example.com", PASSWORD).await;
    pause_past(W).await;
    let lost = http.get("/demo/members_only", &t0).await; // the client never sees this
    let t1 = lost.token().unwrap();
    pause_past(W).await;
    let resp = http.get("/demo/members_only", &t0).await;
    assert_eq!(
        resp.status, 200,
        "T(n-1) after the window, T(n) never used: reissue"
    );
    assert_eq!(resp.token().as_deref(), Some(t1.as_str()));
    let mut auth = t0.clone();
    auth.token = t1;
    assert_eq!(http.get("/demo/members_only", &auth).await.status, 200);
    pause_past(W).await;
    assert_eq!(
        http.get("/demo/members_only", &t0).await.status,
        401,
        "T(n) was used: T(n-1) is a replay now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_exposed_headers() {
    let origin = "https://app.example.com";
    let (_dir, server) = server(&["--cors-origin", origin]).await;
    let http = server.http();
    let resp = http
        .send(
            Method::OPTIONS,
            "/auth/validate_token",
            &[
                ("origin".into(), origin.into()),
                ("access-control-request-method".into(), "GET".into()),
                (
                    "access-control-request-headers".into(),
                    "access-token, client, uid".into(),
                ),
            ],
            None,
        )
        .await;
    assert!(matches!(resp.status, 200 | 204), "{}", resp.status);
    assert_eq!(resp.header("access-control-allow-origin"), Some(origin));
    assert!(
        resp.header("access-control-allow-headers")
            .unwrap()
            .contains("access-token")
    );
    let auth = http.sign_up("sam@example.com", PASSWORD).await;
    let mut headers = auth.headers();
    headers.push(("origin".into(), origin.into()));
    let resp = http
        .send(Method::GET, "/auth/validate_token", &headers, None)
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("access-control-allow-origin"), Some(origin));
    let exposed = resp.header("access-control-expose-headers").unwrap();
    for name in [
        "access-token",
        "client",
        "uid",
        "expiry",
        "token-type",
        "authorization",
    ] {
        assert!(exposed.contains(name), "{name} not exposed");
    }
    let mut headers = auth.headers();
    headers.push(("origin".into(), "https://evil.example".into()));
    let resp = http
        .send(Method::GET, "/auth/validate_token", &headers, None)
        .await;
    assert!(resp.header("access-control-allow-origin").is_none());
}

// ---------------------------------------------------------------------------------------
// Bad input, failures, restarts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_in_devise_shape_and_writes_nothing() {
    let (_dir, server) = server(&[]).await;
    let http = server.http();
    let auth = http.sign_up("tia@example.com", PASSWORD).await;
    let before = server.snapshot();
    let big = format!(r#"{{"email":"{}"}}"#, "a".repeat(64 * 1024));
    let json_cases: [(Method, &str, &str, u16); 8] = [
        (Method::POST, "/auth", "{not json", 400),
        (Method::POST, "/auth/sign_in", r#"{"email": "#, 400),
        (Method::PUT, "/auth/password", "\u{0}\u{1}", 400),
        (Method::POST, "/auth", &big, 413),
        (Method::POST, "/auth/sign_in", &big, 413),
        (Method::GET, "/no/such/route", "", 404),
        (Method::GET, "/auth/sign_in", "", 405),
        (Method::POST, "/demo/members_only", "{}", 405),
    ];
    for (method, path, body, status) in json_cases {
        let resp = http
            .send(method.clone(), path, &auth.headers(), Some(body))
            .await;
        assert_eq!(resp.status, status, "{method} {path}");
        let json = resp.json();
        assert_eq!(json["success"], false, "{method} {path}: {json}");
        assert!(json["errors"][0].is_string(), "{method} {path}: {json}");
        no_token(&resp);
    }

    // Credentials a typed client would refuse to send: raw bytes on the wire.
    let long = "A".repeat(10_000);
    let garbage: [&[u8]; 7] = [
        b"access-token: \xff\xfe\x00garbage\r\nclient: x\r\nuid: tia@example.com\r\n",
        b"access-token: t\r\nclient: \xc3\x28\r\nuid: tia@example.com\r\n",
        b"authorization: Bearer !!!!not-base64!!!!\r\n",
        b"authorization: Bearer WzEsMiwzXQ==\r\n", // base64 of [1,2,3]
        b"authorization: Basic dGlhOnBhc3N3b3Jk\r\n",
        b"access-token: \r\nclient: \r\nuid: \r\n",
        long.as_bytes(),
    ];
    for (i, headers) in garbage.iter().enumerate() {
        let mut request =
            b"GET /demo/members_only HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
        if i == garbage.len() - 1 {
            request.extend_from_slice(b"access-token: ");
            request.extend_from_slice(headers);
            request.extend_from_slice(
                format!("\r\nclient: {}\r\nuid: {}\r\n", auth.client, auth.uid).as_bytes(),
            );
        } else {
            request.extend_from_slice(headers);
        }
        request.extend_from_slice(b"\r\n");
        let (status, text) = http.raw(&request).await;
        assert!((400..500).contains(&status), "case {i}: {text}");
        if status == 401 {
            assert!(text.ends_with(MEMBERS_401), "case {i}: {text}");
        }
    }
    // A request line no HTTP parser accepts.
    let (status, _) = http.raw(b"\x16\x03\x01 garbage\r\n\r\n").await;
    assert!(status == 0 || (400..500).contains(&status));

    assert_eq!(server.snapshot(), before, "bad input wrote something");
    assert_eq!(
        http.get("/demo/members_only", &auth).await.status,
        200,
        "still serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_is_503_without_a_token() {
    let (_dir, server) = server(&["--batch-window-ms", "0"]).await;
    let http = server.http();
    let auth = http.sign_up("uma@example.com", PASSWORD).await;
    server
        .sql()
        .execute_batch("DROP TABLE rotauth_sessions")
        .unwrap();
    // The protocol's 503 (rotauth-axum's `DeviseProtocol`), for the loop's failures and
    // the server's own alike.
    let unavailable = r#"{"errors":["Service unavailable, please try again later."]}"#;
    let resp = http.get("/demo/members_only", &auth).await;
    assert_eq!(resp.status, 503);
    json_eq(&resp, unavailable);
    assert_eq!(resp.header("retry-after"), Some("1"));
    no_token(&resp);
    let body = json!({"email": "uma@example.com", "password": PASSWORD}).to_string();
    let resp = http.post("/auth/sign_in", &body).await;
    assert_eq!(resp.status, 503);
    json_eq(&resp, unavailable);
    assert_eq!(resp.header("retry-after"), Some("1"));
    no_token(&resp);
    let resp = http
        .send(Method::DELETE, "/auth/sign_out", &auth.headers(), None)
        .await;
    assert_eq!(resp.status, 503);
    assert!(
        server
            .log_lines()
            .iter()
            .any(|l| l.contains(" 503 store_error"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_same_key_keeps_everyone_signed_in() {
    let dir = TempDir::new();
    let server = TestServer::start_on(&dir.db(), &KEY, &["--batch-window-ms", "0"]).await;
    let http = server.http();
    let mut a = http.sign_up("vic@example.com", PASSWORD).await;
    let mut b = http.sign_up("wyn@example.com", PASSWORD).await;
    assert!(a.follow(&http.get("/demo/members_only", &a).await));
    server.stop().await;

    let server = TestServer::start_on(&dir.db(), &KEY, &["--batch-window-ms", "0"]).await;
    let http = server.http();
    for auth in [&mut a, &mut b] {
        let resp = http.get("/demo/members_only", auth).await;
        assert_eq!(resp.status, 200, "signed in across the restart");
        assert!(auth.follow(&resp));
    }
    server.stop().await;

    // Another key: every token fails to verify (what happens without ROTAUTH_KEY).
    let server = TestServer::start_on(&dir.db(), &[9; 32], &["--batch-window-ms", "0"]).await;
    assert_eq!(
        server.http().get("/demo/members_only", &a).await.status,
        401
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_log_line_per_request_and_never_a_secret() {
    let (_dir, server) = server(&["--batch-window-ms", "0"]).await;
    let http = server.http();
    let mut auth = http.sign_up("xia@example.com", PASSWORD).await;
    let mut tokens = vec![auth.token.clone()];
    let mut requests = 1;
    for path in [
        "/demo/members_only",
        "/auth/validate_token?unbatch=true&access-token=secret",
    ] {
        let resp = http.get(path, &auth).await;
        requests += 1;
        assert!(auth.follow(&resp));
        tokens.push(auth.token.clone());
    }
    let mut stale = auth.clone();
    stale.token = tokens[0].clone();
    http.get("/demo/members_only", &stale).await;
    http.post(
        "/auth/sign_in",
        &json!({"email": "xia@example.com", "password": PASSWORD}).to_string(),
    )
    .await;
    http.post("/auth", "{oops").await;
    http.send(Method::DELETE, "/auth/sign_out", &auth.headers(), None)
        .await;
    requests += 4;
    let lines = server.log_lines();
    assert_eq!(lines.len(), requests, "{lines:#?}");
    let kinds = [
        "sign_up",
        "rotate",
        "rotate",
        "reject",
        "sign_in",
        "bad_request",
        "sign_out",
    ];
    for (line, kind) in lines.iter().zip(kinds) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(["GET", "POST", "DELETE"].contains(&fields[0]), "{line}");
        assert!(fields[1].starts_with('/'), "{line}");
        assert!(fields[2].parse::<u16>().is_ok(), "{line}");
        assert_eq!(fields[3], kind, "{line}");
        assert!(line.ends_with("ms"), "{line}");
        assert!(
            !line.contains('?'),
            "query strings are never logged: {line}"
        );
        assert!(!line.contains(PASSWORD), "{line}");
        for token in &tokens {
            assert!(!line.contains(token.as_str()), "token in log: {line}");
            assert!(!line.contains(&token[..20]), "token prefix in log: {line}");
        }
    }
    assert!(lines[3].contains("replayed token"), "{}", lines[3]);
}

// ---------------------------------------------------------------------------------------
// Load

/// 50 clients × 200 requests, each client firing bursts of 3–5 parallel requests with the
/// token it holds and following the one new token a burst may bring, with every third
/// burst's first request asking to `unbatch` (it rotates inside the window while the
/// others race it as batch members; bursts after the window all race to rotate): zero
/// 401, zero 5xx, at most one new token per burst, and in the database one record per
/// session whose generation is exactly the number of new tokens its client received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_in_bursts_following_their_tokens() {
    const CLIENTS: usize = 50;
    const REQUESTS: usize = 200;
    let (_dir, server) = server(&["--batch-window-ms", "1000"]).await;
    let http = server.http();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let http = http.clone();
        clients.push(tokio::spawn(async move {
            let mut auth = http
                .sign_up(&format!("load{i}@example.com"), PASSWORD)
                .await;
            let mut sent = 0usize;
            let mut statuses = Vec::new();
            let mut burst_no = 0usize;
            let mut unbatched = 0u64;
            while sent < REQUESTS {
                let size = (3 + (i + burst_no) % 3).min(REQUESTS - sent);
                let mut burst = Vec::new();
                let mut answers = Vec::new();
                if burst_no.is_multiple_of(3) {
                    unbatched += 1;
                }
                for j in 0..size {
                    let (http, auth) = (http.clone(), auth.clone());
                    // Every third burst asks for its new token with its first request and
                    // only then fires the rest: a forced rotation rotates from any batch
                    // member, so a forced request racing the others (which rotate after the
                    // window) would rotate a second time.
                    let forced = burst_no.is_multiple_of(3) && j == 0;
                    let path = match (forced, j % 2) {
                        (true, _) => "/demo/members_only?unbatch=true",
                        (false, 0) => "/demo/members_only",
                        (false, _) => "/auth/validate_token",
                    };
                    let request = tokio::spawn(async move { http.get(path, &auth).await });
                    if forced {
                        answers.push(request.await.unwrap());
                    } else {
                        burst.push(request);
                    }
                }
                for request in burst {
                    answers.push(request.await.unwrap());
                }
                let mut new_tokens = 0;
                for resp in answers {
                    statuses.push(resp.status);
                    if auth.follow(&resp) {
                        new_tokens += 1;
                    }
                }
                assert!(new_tokens <= 1, "a burst brought {new_tokens} new tokens");
                sent += size;
                burst_no += 1;
            }
            (auth, statuses, unbatched)
        }));
    }
    let mut results = Vec::new();
    for client in clients {
        results.push(client.await.unwrap());
    }
    let total: usize = results.iter().map(|(_, s, _)| s.len()).sum();
    let unauthorized = results
        .iter()
        .flat_map(|(_, s, _)| s)
        .filter(|&&s| s == 401)
        .count();
    let server_errors = results
        .iter()
        .flat_map(|(_, s, _)| s)
        .filter(|&&s| s >= 500)
        .count();
    let ok = results
        .iter()
        .flat_map(|(_, s, _)| s)
        .filter(|&&s| s == 200)
        .count();
    assert_eq!(total, CLIENTS * REQUESTS);
    assert_eq!(unauthorized, 0, "401s under load");
    assert_eq!(server_errors, 0, "5xx under load");
    assert_eq!(ok, total);

    assert_eq!(
        server.count("rotauth_sessions"),
        i64::try_from(CLIENTS).unwrap()
    );
    let mut rotations = 0;
    for (auth, _, unbatched) in &results {
        let (session, version) = server.session(&auth.client).unwrap();
        assert_record(&session, version, auth, *unbatched, true);
        rotations += auth.received;
    }
    let lines = server.log_lines();
    assert_eq!(
        lines.len(),
        total + CLIENTS,
        "one line per request (and per sign-up)"
    );
    let retried = lines
        .iter()
        .filter(|l| l.contains("after CAS conflict"))
        .count();
    eprintln!(
        "load: {total} requests, {rotations} rotations, {retried} decided again after a lost CAS, all 200"
    );
    for (auth, _, _) in results.iter().take(5) {
        assert_eq!(http.get("/auth/validate_token", auth).await.status, 200);
    }
}

// ---------------------------------------------------------------------------------------
// The binary and its flags

#[test]
fn flags_parse_and_bad_ones_are_refused() {
    let parse = |args: &[&str]| cli::parse(args.iter().map(|s| (*s).to_owned()));
    let cli::Command::Run(cli) = parse(&[]).unwrap() else {
        panic!()
    };
    assert_eq!(cli.addr, "127.0.0.1:3000");
    assert_eq!(cli.db, "rotauth-demo.sqlite3");
    assert_eq!(cli.batch_window_ms, 5000);
    assert_eq!(cli.lifespan_secs, 1_209_600);
    assert!(cli.rotate);
    assert_eq!(cli.batch_token, rotauth_axum::BatchToken::Blank);
    let cli::Command::Run(cli) = parse(&[
        "--addr=0.0.0.0:80",
        "--db",
        ":memory:",
        "--batch-window-ms",
        "10",
        "--lifespan-secs=60",
        "--mode",
        "recover",
        "--replay",
        "revoke",
        "--no-rotation",
        "--batch-token",
        "current",
        "--cors-origin",
        "*",
        "--quiet",
    ])
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        (cli.addr.as_str(), cli.db.as_str()),
        ("0.0.0.0:80", ":memory:")
    );
    assert_eq!((cli.batch_window_ms, cli.lifespan_secs), (10, 60));
    assert_eq!(cli.mode, rotauth::Mode::Recover);
    assert_eq!(cli.replay, rotauth::ReplayPolicy::RevokeSession);
    assert!(!cli.rotate && cli.quiet);
    assert_eq!(cli.batch_token, rotauth_axum::BatchToken::Current);
    assert!(matches!(parse(&["-h"]), Ok(cli::Command::Help)));
    for bad in [
        &["--mode", "lax"][..],
        &["--replay"],
        &["--batch-window-ms", "-1"],
        &["--batch-token", "stale"],
        &["--bogus"],
        &["--no-rotation=yes"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    // A flag of fixed values names them, without repeating what was given.
    let refused = parse(&["--mode", "lax"]).unwrap_err();
    assert!(refused.contains("expected strict or recover"), "{refused}");
    assert!(!refused.contains("lax"), "{refused}");
    let cli::Command::Run(cli) =
        parse(&["--batch-window-ms", "100000", "--lifespan-secs", "10"]).unwrap()
    else {
        panic!()
    };
    assert!(cli::config(&cli).unwrap_err().contains("window"));
    use devise_server::keys;
    assert!(keys::keyring("00ff").is_err(), "short key");
    assert!(keys::keyring(&"zz".repeat(32)).is_err(), "not hex");
    assert!(
        keys::keyring(&"ab".repeat(32)).is_err(),
        "one byte repeated"
    );
    assert!(
        keys::keyring("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff").is_ok()
    );
    assert!(keys::signing_key(None, None).is_ok_and(|key| key.generated));
}

/// The built binary itself (cargo builds it for the package's tests): first stdout line, a
/// sign-up, a rotation, logs on stderr without tokens, SIGTERM.
#[test]
fn the_example_binary_serves_and_logs_no_token() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_devise_server"));
    let bad = Command::new(&bin).arg("--bogus").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unexpected argument"));

    let dir = TempDir::new();
    let mut child = Command::new(&bin)
        .args(["--addr", "127.0.0.1:0", "--batch-window-ms", "0", "--db"])
        .arg(dir.db())
        .env(
            "ROTAUTH_KEY",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr: std::net::SocketAddr = first
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("first line {first:?}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tokens = runtime.block_on(async {
        let http = Http::new(addr);
        let mut auth = http.sign_up("yan@example.com", PASSWORD).await;
        let mut tokens = vec![auth.token.clone()];
        let resp = http.get("/demo/members_only", &auth).await;
        assert_eq!(resp.status, 200);
        assert!(auth.follow(&resp));
        tokens.push(auth.token.clone());
        tokens
    });
    // SIGTERM: a graceful stop.
    let killed = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("POST /auth 200 sign_up"), "{stderr}");
    assert!(
        stderr.contains("GET /demo/members_only 200 rotate"),
        "{stderr}"
    );
    assert!(!stderr.contains("ROTAUTH_KEY is not set"), "{stderr}");
    for token in tokens {
        assert!(!stderr.contains(&token[..20]), "token in the log");
    }
}
