//! The server as browsers and attackers meet it: CORS for devise's JavaScript clients,
//! form-encoded bodies, account update and deletion, `Cache-Control`, the order of a
//! password change against a locked database, `--batch-token current` against stale
//! tokens, the database file's mode, sign-in throttling, and where the signing key may come
//! from.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    unreachable_pub
)]

#[allow(dead_code)]
#[path = "support/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "support/support.rs"]
mod support;

use std::time::Duration;

use axum::http::Method;
use client::{Auth, JsonBody, Resp, TempDir};
use rotauth::Token;
use serde_json::{Value, json};
use support::{KEY, TestServer};

const PASSWORD: &str = "correct horse battery";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

async fn server(flags: &[&str]) -> (TempDir, TestServer) {
    let dir = TempDir::new();
    let server = TestServer::start_on(&dir.db(), &KEY, flags).await;
    (dir, server)
}

fn with(auth: &Auth, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut headers = auth.headers();
    headers.extend(
        extra
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    headers
}

fn form_headers() -> Vec<(String, String)> {
    vec![(FORM.0.to_owned(), FORM.1.to_owned())]
}

fn user(id: i64, email: &str) -> Value {
    json!({"id": id, "email": email, "uid": email, "provider": "email"})
}

fn generation(resp: &Resp) -> Option<u64> {
    resp.token()
        .map(|t| Token::from_text(&t).unwrap().generation())
}

// ---------------------------------------------------------------------------------------
// CORS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_allows_the_headers_devise_clients_send() {
    let (_dir, server) = server(&[
        "--cors-origin",
        "https://a.example, https://b.example",
        "--cors-origin",
        "http://localhost:8080",
    ])
    .await;
    let http = server.http();
    let asked = "if-modified-since, access-token, client, uid, expiry, token-type";
    for origin in [
        "https://a.example",
        "https://b.example",
        "http://localhost:8080",
    ] {
        for (method, path) in [
            ("GET", "/auth/validate_token"),
            ("PUT", "/auth"),
            ("DELETE", "/auth/sign_out"),
        ] {
            let resp = http
                .send(
                    Method::OPTIONS,
                    path,
                    &[
                        ("origin".into(), origin.into()),
                        ("access-control-request-method".into(), method.into()),
                        ("access-control-request-headers".into(), asked.into()),
                    ],
                    None,
                )
                .await;
            assert!(matches!(resp.status, 200 | 204), "{}", resp.status);
            assert_eq!(resp.header("access-control-allow-origin"), Some(origin));
            let allowed = resp
                .header("access-control-allow-headers")
                .unwrap()
                .to_ascii_lowercase();
            for name in asked.split(", ") {
                assert!(allowed.contains(name), "{name} not allowed: {allowed}");
            }
            let methods = resp.header("access-control-allow-methods").unwrap();
            assert!(methods.contains(method), "{methods}");
            assert_eq!(resp.header("access-control-max-age"), Some("600"));
            let vary: Vec<String> = resp
                .headers
                .get_all("vary")
                .iter()
                .flat_map(|v| v.to_str().unwrap().split(','))
                .map(|v| v.trim().to_ascii_lowercase())
                .collect();
            for name in [
                "origin",
                "access-control-request-method",
                "access-control-request-headers",
            ] {
                assert!(
                    vary.iter().any(|v| v == name),
                    "Vary lacks {name}: {vary:?}"
                );
            }
        }
    }
    // Another origin gets no grant, preflight or not.
    let resp = http
        .send(
            Method::OPTIONS,
            "/auth/validate_token",
            &[
                ("origin".into(), "https://evil.example".into()),
                ("access-control-request-method".into(), "GET".into()),
                ("access-control-request-headers".into(), asked.into()),
            ],
            None,
        )
        .await;
    assert!(resp.header("access-control-allow-origin").is_none());
    // A real cross-origin request exposes the auth headers.
    let auth = http.sign_up("cors@example.com", PASSWORD).await;
    let resp = http
        .send(
            Method::GET,
            "/auth/validate_token",
            &with(&auth, &[("origin", "https://b.example")]),
            None,
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://b.example")
    );
    let exposed = resp
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "access-token",
        "client",
        "uid",
        "expiry",
        "token-type",
        "authorization",
    ] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_any_origin() {
    let (_dir, server) = server(&["--cors-origin", "*"]).await;
    let resp = server
        .http()
        .send(
            Method::OPTIONS,
            "/auth/sign_in",
            &[
                ("origin".into(), "https://anywhere.example".into()),
                ("access-control-request-method".into(), "POST".into()),
                (
                    "access-control-request-headers".into(),
                    "content-type, if-modified-since".into(),
                ),
            ],
            None,
        )
        .await;
    assert!(matches!(resp.status, 200 | 204));
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    assert!(
        resp.header("access-control-allow-headers")
            .unwrap()
            .contains("if-modified-since")
    );
}

// ---------------------------------------------------------------------------------------
// Bodies: JSON or form

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_encoded_bodies_work_on_every_endpoint_with_a_body() {
    let (_dir, server) = server(&["--batch-window-ms", "0"]).await;
    let http = server.http();
    // j-toker's sign-up: jQuery's form encoding, extra fields ignored.
    let resp = http
        .send(
            Method::POST,
            "/auth",
            &form_headers(),
            Some("email=Jo%40Example.com&password=correct+horse+battery&password_confirmation=correct+horse+battery&confirm_success_url=http%3A%2F%2Fx%2F"),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(
        resp.json(),
        json!({"status": "success", "data": user(1, "jo@example.com")})
    );
    // Form validation errors are devise's 422, as for JSON.
    let resp = http
        .send(
            Method::POST,
            "/auth",
            &form_headers(),
            Some("email=x&password=short&password_confirmation=short"),
        )
        .await;
    assert_eq!(resp.status, 422);
    assert_eq!(
        resp.json()["errors"]["full_messages"],
        json!([
            "Email is not an email",
            "Password is too short (minimum is 8 characters)"
        ])
    );
    let resp = http
        .send(
            Method::POST,
            "/auth/sign_in",
            &form_headers(),
            Some("email=jo%40example.com&password=correct+horse+battery"),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let mut auth = Auth::from_response(&resp).expect("a response with the auth headers");
    let resp = http
        .send(
            Method::POST,
            "/auth/sign_in",
            &form_headers(),
            Some("email=jo%40example.com&password=wrong+password"),
        )
        .await;
    assert_eq!(resp.status, 401);
    let resp = http
        .send(
            Method::PUT,
            "/auth/password",
            &with(&auth, &[FORM]),
            Some("current_password=correct+horse+battery&password=a+new+password&password_confirmation=a+new+password"),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert!(auth.follow(&resp));
    let resp = http
        .send(
            Method::PUT,
            "/auth",
            &with(&auth, &[FORM]),
            Some("email=jo2%40example.com"),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.json()["data"]["uid"], "jo2@example.com");
    http.sign_in("jo2@example.com", "a new password").await;
    // One error shape for both encodings.
    for (headers, body) in [
        (form_headers(), "email=a&email=b&password=x"),
        (form_headers(), "password=x&password=y"),
        (Vec::new(), "{not json"),
    ] {
        let resp = http
            .send(Method::POST, "/auth/sign_in", &headers, Some(body))
            .await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text);
        let json = resp.json();
        assert_eq!(json["success"], false);
        assert!(json["errors"][0].as_str().unwrap().starts_with("Malformed"));
    }
}

/// A body is read only as JSON (`application/json`, `application/*+json`) or as a form,
/// by its `Content-Type`: `text/plain` or none, which a page of another origin may send
/// without a CORS preflight, is 415 in devise's error shape, before anything is looked up,
/// hashed or stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_without_a_json_or_form_content_type_are_415_and_change_nothing() {
    let (_dir, server) = server(&["--batch-window-ms", "0"]).await;
    let http = server.http();
    let auth = http.sign_up("mia@example.com", PASSWORD).await;
    let sign_in = json!({"email": "mia@example.com", "password": PASSWORD}).to_string();
    let sign_up = json!({"email": "new@example.com", "password": PASSWORD,
                         "password_confirmation": PASSWORD})
    .to_string();
    let password = json!({"current_password": PASSWORD, "password": "another password",
                          "password_confirmation": "another password"})
    .to_string();
    let before = server.snapshot();
    let unsupported = json!({"success": false, "errors":
        ["Unsupported Content-Type: send application/json or application/x-www-form-urlencoded."]});
    let requests = [
        (Method::POST, "/auth/sign_in", &sign_in, Vec::new()),
        (Method::POST, "/auth", &sign_up, Vec::new()),
        (Method::PUT, "/auth/password", &password, auth.headers()),
        (Method::PUT, "/auth", &password, auth.headers()),
    ];
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "application/+json",
        "json",
    ] {
        for (method, path, body, headers) in &requests {
            let mut headers = headers.clone();
            headers.push(("content-type".to_owned(), content_type.to_owned()));
            let resp = http.send(method.clone(), path, &headers, Some(body)).await;
            assert_eq!(resp.status, 415, "{content_type} {path}: {}", resp.text);
            assert_eq!(resp.json(), unsupported, "{content_type} {path}");
            assert!(resp.token().is_none(), "{content_type} {path}");
        }
    }
    // No Content-Type at all: raw bytes, as a typed client adds one.
    for (method, path, body, headers) in &requests {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        let (status, text) = http.raw(request.as_bytes()).await;
        assert_eq!(status, 415, "no Content-Type, {path}: {text}");
        let json = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<Value>(json).unwrap(),
            unsupported,
            "{path}"
        );
    }
    assert_eq!(
        server.snapshot(),
        before,
        "a refused body changed something"
    );
    let lines = server.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("POST /auth/sign_in 415 bad_request")),
        "{lines:#?}"
    );
    // JSON under its other names, and forms, with parameters and in any case.
    for content_type in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/json;charset=UTF-8",
        "application/vnd.api+json",
    ] {
        let headers = [("content-type".to_owned(), content_type.to_owned())];
        let resp = http
            .send(Method::POST, "/auth/sign_in", &headers, Some(&sign_in))
            .await;
        assert_eq!(resp.status, 200, "{content_type}: {}", resp.text);
    }
    let headers = [(
        "content-type".to_owned(),
        "application/x-www-form-urlencoded; charset=UTF-8".to_owned(),
    )];
    let resp = http
        .send(
            Method::POST,
            "/auth/sign_in",
            &headers,
            Some("email=mia%40example.com&password=correct+horse+battery"),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(
        server.count("users"),
        1,
        "the refused sign-up created no user"
    );
}

// ---------------------------------------------------------------------------------------
// PUT /auth, DELETE /auth

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_account_changes_email_and_password_as_devise_does() {
    let (_dir, server) = server(&["--batch-window-ms", "0"]).await;
    let http = server.http();
    let mut auth = http.sign_up("kim@example.com", PASSWORD).await;
    let other = http.sign_in("kim@example.com", PASSWORD).await;
    http.sign_up("taken@example.com", PASSWORD).await;

    // Nothing to update.
    let resp = http
        .send(
            Method::PUT,
            "/auth",
            &auth.headers(),
            Some(r#"{"name":"x"}"#),
        )
        .await;
    assert_eq!(resp.status, 422);
    assert_eq!(
        resp.json(),
        json!({"status": "error", "errors": ["Please submit proper account update data in request body."]})
    );
    // Not signed in: 404, devise's wording.
    let mut stale = auth.clone();
    stale.token = "garbage".into();
    let resp = http
        .send(
            Method::PUT,
            "/auth",
            &stale.headers(),
            Some(r#"{"email":"a@b.c"}"#),
        )
        .await;
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.json(),
        json!({"status": "error", "errors": ["User not found."]})
    );

    // Validation: 422 in the registrations shape, with the auth headers (a rotation).
    let before = server.snapshot();
    let cases = [
        (
            json!({"email": "taken@example.com"}),
            json!({"email": ["has already been taken"], "full_messages": ["Email has already been taken"]}),
        ),
        (
            json!({"email": "nope"}),
            json!({"email": ["is not an email"], "full_messages": ["Email is not an email"]}),
        ),
        (
            json!({"password": "a new password", "password_confirmation": "a new password"}),
            json!({"current_password": ["can't be blank"], "full_messages": ["Current password can't be blank"]}),
        ),
        (
            json!({"password": "a new password", "password_confirmation": "a new password", "current_password": "wrong one"}),
            json!({"current_password": ["is invalid"], "full_messages": ["Current password is invalid"]}),
        ),
        (
            json!({"password": "a new password", "password_confirmation": "different", "current_password": PASSWORD}),
            json!({"password_confirmation": ["doesn't match Password"], "full_messages": ["Password confirmation doesn't match Password"]}),
        ),
    ];
    for (body, errors) in cases {
        let resp = http
            .send(
                Method::PUT,
                "/auth",
                &auth.headers(),
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(resp.status, 422, "{body}");
        assert_eq!(
            resp.json(),
            json!({"status": "error", "errors": errors}),
            "{body}"
        );
        assert!(auth.follow(&resp), "a 422 still carries the new token");
    }
    // Only the token moved.
    let after = server.snapshot();
    assert_eq!(before.len(), after.len());
    assert_eq!(before[..2], after[..2], "users unchanged");

    // An email change inside the batch window still hands out a token: the uid changed,
    // and clients take new headers only from responses with a token.
    {
        let (_dir2, windowed) = self::server(&["--batch-window-ms", "60000"]).await;
        let http = windowed.http();
        let mut auth = http.sign_up("win@example.com", PASSWORD).await;
        let resp = http
            .send(
                Method::PUT,
                "/auth",
                &auth.headers(),
                Some(r#"{"email":"win2@example.com"}"#),
            )
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        assert_eq!(resp.header("uid"), Some("win2@example.com"));
        assert!(
            auth.follow(&resp),
            "an email change inside the window sent no token"
        );
        auth.uid = "win2@example.com".into();
        assert_eq!(http.get("/auth/validate_token", &auth).await.status, 200);
    }

    // Email change: the new uid in the body and the headers; the old email is free.
    let resp = http
        .send(
            Method::PUT,
            "/auth",
            &auth.headers(),
            Some(r#"{"email":" Kim2@Example.com "}"#),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(
        resp.json(),
        json!({"status": "success", "data": user(1, "kim2@example.com")})
    );
    assert_eq!(resp.header("uid"), Some("kim2@example.com"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert!(auth.follow(&resp));
    auth.uid = "kim2@example.com".into();
    let resp = http.get("/auth/validate_token", &auth).await;
    assert_eq!(resp.status, 200);
    assert!(auth.follow(&resp));
    // The other device still sends the old uid: refused, as devise refuses it, with
    // nothing stored. Its session moved with the account: under the new uid it is served.
    let mut other = other;
    assert_eq!(http.get("/auth/validate_token", &other).await.status, 401);
    other.uid = "kim2@example.com".into();
    let resp = http.get("/auth/validate_token", &other).await;
    assert_eq!(resp.status, 200);
    assert!(other.follow(&resp));

    // Password change: current password required; every other session signed out.
    let body = json!({"password": "a new password", "password_confirmation": "a new password",
                      "current_password": PASSWORD});
    let resp = http
        .send(
            Method::PUT,
            "/auth",
            &auth.headers(),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert!(auth.follow(&resp));
    assert_eq!(http.get("/auth/validate_token", &auth).await.status, 200);
    assert_eq!(
        http.get("/auth/validate_token", &other).await.status,
        401,
        "signed out by the password change"
    );
    http.sign_in("kim2@example.com", "a new password").await;
    let resp = http
        .post(
            "/auth/sign_in",
            &json!({"email": "kim2@example.com", "password": PASSWORD}).to_string(),
        )
        .await;
    assert_eq!(resp.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_account_removes_the_user_and_every_session() {
    let (_dir, server) = server(&[]).await;
    let http = server.http();
    let auth = http.sign_up("lee@example.com", PASSWORD).await;
    let second = http.sign_in("lee@example.com", PASSWORD).await;
    let keep = http.sign_up("stay@example.com", PASSWORD).await;
    let mut bad = auth.clone();
    bad.token = "garbage".into();
    let not_found =
        json!({"status": "error", "errors": ["Unable to locate account for destruction."]});
    let resp = http
        .send(Method::DELETE, "/auth", &bad.headers(), None)
        .await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json(), not_found);
    assert_eq!(server.count("users"), 2);

    let resp = http
        .send(Method::DELETE, "/auth", &auth.headers(), None)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(
        resp.json(),
        json!({"status": "success", "message": "Account with UID 'lee@example.com' has been destroyed."})
    );
    assert!(resp.header("access-token").is_none());
    assert_eq!(server.count("users"), 1);
    assert_eq!(
        server.count("rotauth_sessions"),
        1,
        "both of lee's sessions are gone"
    );
    for gone in [&auth, &second] {
        assert_eq!(http.get("/auth/validate_token", gone).await.status, 401);
    }
    let resp = http
        .send(Method::DELETE, "/auth", &auth.headers(), None)
        .await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json(), not_found);
    assert_eq!(http.get("/auth/validate_token", &keep).await.status, 200);
    // The email can sign up again.
    http.sign_up("lee@example.com", PASSWORD).await;
}

// ---------------------------------------------------------------------------------------
// Caching

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_with_tokens_are_no_store() {
    let (_dir, server) = server(&["--cors-origin", "https://a.example"]).await;
    let http = server.http();
    let body = json!({"email": "nia@example.com", "password": PASSWORD,
                      "password_confirmation": PASSWORD});
    let sign_up = http.post("/auth", &body.to_string()).await;
    let auth = Auth::from_response(&sign_up).expect("a response with the auth headers");
    let sign_in = http
        .post(
            "/auth/sign_in",
            &json!({"email": "nia@example.com", "password": PASSWORD}).to_string(),
        )
        .await;
    let batch = http.get("/demo/members_only", &auth).await;
    let rotated = http.get("/auth/validate_token?unbatch=true", &auth).await;
    let refused = http
        .send(
            Method::GET,
            "/demo/members_only",
            &[("origin".into(), "https://a.example".into())],
            None,
        )
        .await;
    for resp in [&sign_up, &sign_in, &batch, &rotated, &refused] {
        assert_eq!(resp.header("cache-control"), Some("no-store"), "{resp:?}");
        let vary: String = resp
            .headers
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            vary.contains("access-token") && vary.contains("origin"),
            "{vary}"
        );
    }
    assert!(rotated.token().is_some() && sign_in.token().is_some());
}

// ---------------------------------------------------------------------------------------
// Password change against a locked database

/// The database's write lock held by another connection (`BEGIN IMMEDIATE`) while a
/// password change runs. Whatever happens, a response without a token must mean that no
/// rotation was committed (the client's token still works), and a committed rotation
/// must come with its token, whether or not the password change after it got through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_never_commits_a_rotation_it_does_not_send() {
    let (_dir, server) = server(&["--batch-window-ms", "0"]).await;
    let http = server.http();
    let mut auth = http.sign_up("ola@example.com", PASSWORD).await;
    let mut password = PASSWORD.to_owned();
    // Lock held from before the request until after the store's busy timeout (5 s): 503,
    // nothing committed. Then locked the moment the session row moves, for as long: the
    // rotation is committed, the password change after it fails, and the 503 carries the
    // token.
    for lock_on_first_commit in [false, true] {
        let before = server.session(&auth.client).unwrap().0.generation();
        let new_password = format!("{password}!");
        let body = json!({"current_password": password, "password": new_password,
                          "password_confirmation": new_password})
        .to_string();
        let db = server.db.clone();
        let client_id = auth.client.clone();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
        let locker = std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            let version = |conn: &rusqlite::Connection| -> i64 {
                conn.query_row(
                    "SELECT version FROM rotauth_sessions WHERE client_id = ?1",
                    [client::client_bytes(&client_id)],
                    |r| r.get(0),
                )
                .unwrap()
            };
            if lock_on_first_commit {
                let start = version(&conn);
                locked_tx.send(()).unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while version(&conn) == start && std::time::Instant::now() < deadline {
                    std::hint::spin_loop();
                }
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                // Longer than the store's busy timeout: the writes after the rotation fail
                // now, and their answer must still carry the rotation's token.
                std::thread::sleep(Duration::from_millis(5_500));
            } else {
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                locked_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(5_500));
            }
            conn.execute_batch("ROLLBACK").unwrap();
        });
        locked_rx.recv().unwrap();
        let resp = http
            .send(Method::PUT, "/auth/password", &auth.headers(), Some(&body))
            .await;
        locker.join().unwrap();
        let after = server.session(&auth.client).unwrap().0.generation();
        if after > before {
            assert_eq!(
                generation(&resp),
                Some(after),
                "committed rotation without its token: {} {}",
                resp.status,
                resp.text
            );
            assert!(auth.follow(&resp));
            if resp.status == 200 {
                password = new_password;
            } else {
                assert_eq!(resp.status, 503, "{}", resp.text);
            }
        } else {
            assert!(resp.token().is_none());
            assert_eq!(resp.status, 503, "{}", resp.text);
            let resp = http.get("/auth/validate_token", &auth).await;
            assert_eq!(resp.status, 200, "the token the client holds still works");
            assert!(auth.follow(&resp));
        }
        assert_eq!(after > before, lock_on_first_commit, "{}", resp.text);
    }
    // The password is the one the answers said it is.
    http.sign_in("ola@example.com", &password).await;
}

// ---------------------------------------------------------------------------------------
// --batch-token current

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_token_current_never_upgrades_a_token_two_generations_old() {
    let (_dir, server) = server(&["--batch-token", "current", "--batch-window-ms", "5000"]).await;
    let http = server.http();
    let t0 = http.sign_up("pat@example.com", PASSWORD).await;
    let mut t1 = t0.clone();
    assert!(t1.follow(&http.get("/demo/members_only?unbatch=true", &t0).await));
    let mut t2 = t1.clone();
    assert!(t2.follow(&http.get("/demo/members_only?unbatch=true", &t1).await));
    assert_eq!(
        generation(&http.get("/demo/members_only", &t2).await),
        Some(2)
    );
    // T(1) = T(n-1) inside the window: T(n).
    let resp = http.get("/demo/members_only", &t1).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.token().as_deref(), Some(t2.token.as_str()));
    // T(0) = T(n-2) inside the window: served, but blank, never T(n).
    let resp = http.get("/demo/members_only", &t0).await;
    assert_eq!(resp.status, 200);
    assert!(resp.token().is_none(), "T(n-2) was upgraded to T(n)");
    assert_eq!(resp.header("access-token").map(str::trim), Some(""));
}

// ---------------------------------------------------------------------------------------
// The database file

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    // A world-readable file left by an older version is tightened too.
    let old = dir.0.join("old.sqlite3");
    std::fs::write(&old, b"").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    for db in [dir.db(), old] {
        let server = TestServer::start_on(&db, &KEY, &[]).await;
        server.http().sign_up("pam@example.com", PASSWORD).await;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            let mode = std::fs::metadata(&name).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name:?} is {mode:o}");
        }
        server.stop().await;
    }
}

// ---------------------------------------------------------------------------------------
// Throttling

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_throttled_per_address_and_account_and_per_address_with_retry_after() {
    let (_dir, server) = server(&[
        "--throttle-per-address-account",
        "3",
        "--throttle-per-address",
        "6",
    ])
    .await;
    let http = server.http();
    let attempt = |email: &'static str| {
        let http = http.clone();
        async move {
            http.post(
                "/auth/sign_in",
                &json!({"email": email, "password": "wrong password"}).to_string(),
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(attempt("victim@example.com").await.status, 401);
    }
    let resp = attempt(" VICTIM@example.com").await;
    assert_eq!(
        resp.status, 429,
        "the same account from the same address, however spelt"
    );
    let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(resp.json()["success"], false);
    // Other accounts from the same address, up to the address's quota (4 used so far,
    // the refused one counted too).
    assert_eq!(attempt("a@example.com").await.status, 401);
    assert_eq!(attempt("b@example.com").await.status, 401);
    let resp = attempt("c@example.com").await;
    assert_eq!(resp.status, 429, "{}", resp.text);
    assert!(resp.header("retry-after").is_some());
    let lines = server.log_lines();
    assert!(
        lines.iter().any(|l| l.contains(" 429 throttled")),
        "{lines:#?}"
    );
}

/// `--throttle-per-account`, the flag's name before it counted per address, still sets it.
#[test]
fn the_former_throttle_flag_name_still_sets_the_per_address_account_quota() {
    for flag in ["--throttle-per-account", "--throttle-per-address-account"] {
        let devise_server::cli::Command::Run(cli) =
            devise_server::cli::parse([flag.to_owned(), "7".to_owned()]).unwrap()
        else {
            panic!("{flag}: not a run");
        };
        assert_eq!(cli.limits().per_address_account_per_minute, 7, "{flag}");
    }
    assert!(!devise_server::cli::usage().contains("--throttle-per-account "));
}

// ---------------------------------------------------------------------------------------
// The signing key

/// A test key with varied bytes (not a secret).
const KEY_HEX: &str = "3f2a91c4077be0d5186ea3f94c2b7d60e85a1fc3946b02d7a8e13c5f60b9d24e";

/// The built `devise_server` with `args` and the environment `env` (and no `ROTAUTH_KEY`
/// but the one given), until it exits by itself: `(exit code, stdout, stderr)`.
fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_devise_server"))
        .args(args)
        .env_remove("ROTAUTH_KEY")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The built `devise_server` serving `db` on 127.0.0.1:0 with `args` and `env` (and no
/// `ROTAUTH_KEY` but the one given), once it listens.
fn start_binary(
    db: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_devise_server"))
        .args(["--addr", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(args)
        .env_remove("ROTAUTH_KEY")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first.trim().rsplit("http://").next().unwrap().parse();
    let Ok(addr) = addr else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "the server did not start: {first:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    (child, addr)
}

/// SIGTERM, then the server's stderr once it has exited.
fn stop_binary(child: std::process::Child) -> String {
    let killed = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A key on the command line would be readable by every user in the process list: the
/// flag is refused, whatever its form, pointing at the two ways that are taken, and its
/// value is never echoed.
#[test]
fn a_key_on_the_command_line_is_refused() {
    let with_value = format!("--key={KEY_HEX}");
    for args in [&["--key", KEY_HEX][..], &[with_value.as_str()], &["--key"]] {
        let (code, stdout, stderr) = run_binary(args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(
            stderr.contains("ROTAUTH_KEY") && stderr.contains("--key-file"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains(&KEY_HEX[..16]), "the key echoed: {stderr}");
    }
    let refused = devise_server::cli::parse(["--key".to_owned(), KEY_HEX.to_owned()]).unwrap_err();
    assert!(refused.contains("ROTAUTH_KEY"), "{refused}");
    assert!(!devise_server::cli::usage().contains("--key "));
}

/// A key of one byte value repeated (all zeros, all 0x07...) is a placeholder anyone can
/// guess: the server refuses to start with it, saying where the key came from and never
/// showing it.
#[test]
fn a_key_of_one_repeated_byte_is_refused() {
    let dir = TempDir::new();
    let db = dir.db();
    let db = db.to_str().unwrap();
    for key in ["00".repeat(32), "07".repeat(32), "FF".repeat(48)] {
        let (code, stdout, stderr) = run_binary(
            &["--addr", "127.0.0.1:0", "--db", db],
            &[("ROTAUTH_KEY", &key)],
        );
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stdout.is_empty(),
            "listening with a placeholder key: {stdout}"
        );
        assert!(stderr.contains("ROTAUTH_KEY"), "{stderr}");
        assert!(stderr.contains("same value"), "{stderr}");
        assert!(!stderr.contains(&key[..16]), "the key echoed: {stderr}");
    }
    let file = dir.0.join("key");
    std::fs::write(&file, "07".repeat(32)).unwrap();
    let refused = devise_server::keys::signing_key(Some(&file), None)
        .err()
        .unwrap();
    assert!(refused.starts_with("--key-file "), "{refused}");
    assert!(refused.contains("same value"), "{refused}");
    // A key of varied bytes is taken, in either case.
    for key in [KEY_HEX.to_owned(), KEY_HEX.to_ascii_uppercase()] {
        let taken = devise_server::keys::signing_key(
            None,
            Some(("ROTAUTH_KEY", std::ffi::OsStr::new(&key))),
        );
        assert!(taken.is_ok_and(|k| !k.generated && k.warnings.is_empty()));
    }
}

/// `--key-file`: the key in hex with trailing whitespace ignored; tokens it signs are
/// accepted by a server given the same key in `ROTAUTH_KEY`, so it is the key used. A file
/// other users may read is used with a warning; `ROTAUTH_KEY` and `--key-file` together are
/// refused.
#[cfg(unix)]
#[test]
fn a_key_file_gives_the_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let file = dir.0.join("rotauth.key");
    std::fs::write(&file, format!("{KEY_HEX}\n \n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file_arg = file.to_str().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (child, addr) = start_binary(
        &dir.db(),
        &["--key-file", file_arg, "--insecure-fast-hashing"],
        &[],
    );
    let auth = runtime.block_on(client::Http::new(addr).sign_up("kay@example.com", PASSWORD));
    let stderr = stop_binary(child);
    assert!(!stderr.contains("ROTAUTH_KEY is not set"), "{stderr}");
    assert!(!stderr.contains("other users"), "{stderr}");

    let (child, addr) = start_binary(
        &dir.db(),
        &["--insecure-fast-hashing"],
        &[("ROTAUTH_KEY", KEY_HEX)],
    );
    let status = runtime
        .block_on(client::Http::new(addr).get("/auth/validate_token", &auth))
        .status;
    stop_binary(child);
    assert_eq!(status, 200, "a token signed with the file's key");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let key = devise_server::keys::signing_key(Some(&file), None).unwrap();
    assert!(!key.generated);
    assert_eq!(key.warnings.len(), 1, "{:?}", key.warnings);
    assert!(key.warnings[0].contains("chmod 600"), "{:?}", key.warnings);
    assert!(!key.warnings[0].contains(&KEY_HEX[..16]));

    let (code, _, stderr) = run_binary(
        &["--key-file", file_arg, "--db", ":memory:"],
        &[("ROTAUTH_KEY", KEY_HEX)],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("both ROTAUTH_KEY and --key-file"),
        "{stderr}"
    );
    let missing = dir.0.join("missing.key");
    let refused = devise_server::keys::signing_key(Some(&missing), None)
        .err()
        .unwrap();
    assert!(refused.contains("cannot open"), "{refused}");
}

// ---------------------------------------------------------------------------------------
// --insecure-fast-hashing

/// `--insecure-fast-hashing` says at every start, in a block on stderr before anything
/// else, that the password hashes are cheap to crack and that the flag is for tests only;
/// without the flag nothing of it is said.
#[test]
fn fast_hashing_warns_in_a_block_at_every_start() {
    let dir = TempDir::new();
    let key = [("ROTAUTH_KEY", KEY_HEX)];
    for start in 0..2 {
        let (child, _) = start_binary(&dir.db(), &["--insecure-fast-hashing"], &key);
        let stderr = stop_binary(child);
        let lines: Vec<&str> = stderr.lines().collect();
        let end = 1 + lines[1..]
            .iter()
            .position(|l| l.starts_with("+--"))
            .unwrap_or_else(|| panic!("start {start}: no block: {stderr}"));
        let block = &lines[..=end];
        assert!(block[0].starts_with("+--") && block.len() >= 5, "{stderr}");
        let width = block[0].chars().count();
        assert!(block.iter().all(|l| l.chars().count() == width), "{stderr}");
        assert!(
            block[1..end]
                .iter()
                .all(|l| l.starts_with("| ") && l.ends_with(" |")),
            "{stderr}"
        );
        let text = block.join("\n");
        assert!(
            block[1].contains("WARNING: --insecure-fast-hashing") && text.contains("TESTS ONLY"),
            "{stderr}"
        );
        assert!(text.contains("cheap to crack"), "{stderr}");
        assert_eq!(stderr.matches("WARNING").count(), 1, "{stderr}");
    }
    let (child, _) = start_binary(&dir.db(), &[], &key);
    let stderr = stop_binary(child);
    assert!(!stderr.contains("WARNING"), "{stderr}");
    assert!(!stderr.contains("insecure-fast-hashing"), "{stderr}");
}
