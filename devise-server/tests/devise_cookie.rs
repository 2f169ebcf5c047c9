//! The server in cookie mode (`--credentials cookie`), over real HTTP: sign-in sets the
//! httpOnly cookie, a request with it rotates it (and a batch member's sets nothing), a
//! cross-site unsafe request is 403 and leaves the session alone, and sign-out clears it.
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

use std::time::Duration;

use axum::http::Method;
use client::{Http, JsonBody, Resp, TempDir};
use rotauth::Token;
use serde_json::json;
use support::{KEY, TestServer};

const PASSWORD: &str = "correct horse battery";
const WINDOW_MS: u64 = 300;

/// Every `Set-Cookie` of a response.
fn set_cookies(resp: &Resp) -> Vec<String> {
    resp.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The one credentials cookie a response sets, as the `Cookie` header that sends it back.
fn cookie(resp: &Resp) -> String {
    let sets = set_cookies(resp);
    assert_eq!(sets.len(), 1, "{sets:?}");
    let set = sets.first().unwrap();
    assert!(
        set.ends_with("; Secure; HttpOnly; SameSite=Lax") && set.contains("; Path=/; Expires="),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

fn generation(cookie: &str) -> u64 {
    let (_, value) = cookie.split_once('=').unwrap();
    let (_, token) = value.split_once('.').unwrap();
    Token::from_text(token).unwrap().generation()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_mode_signs_in_rotates_and_refuses_a_cross_site_request() {
    let dir = TempDir::new();
    let window = WINDOW_MS.to_string();
    let flags = ["--credentials", "cookie", "--batch-window-ms", &window];
    let server = TestServer::start_on(&dir.db(), &KEY, &flags).await;
    let http = Http::new(server.addr);
    let own = ("origin".to_owned(), format!("http://{}", server.addr));
    let evil = ("origin".to_owned(), "https://evil.example".to_owned());
    let send = |method: Method, path: &'static str, headers: Vec<(String, String)>| {
        let http = http.clone();
        async move { http.send(method, path, &headers, None).await }
    };

    let body = json!({"email": "ada@example.com", "password": PASSWORD, "password_confirmation": PASSWORD});
    let signed_up = http
        .send(
            Method::POST,
            "/auth",
            std::slice::from_ref(&own),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(signed_up.status, 200, "{}", signed_up.text);
    let body = json!({"email": "ada@example.com", "password": PASSWORD});
    // A cross-site sign-in (login CSRF) is refused before the password is checked.
    let forged = http
        .send(
            Method::POST,
            "/auth/sign_in",
            std::slice::from_ref(&evil),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    assert!(set_cookies(&forged).is_empty());
    let signed_in = http
        .send(
            Method::POST,
            "/auth/sign_in",
            std::slice::from_ref(&own),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text);
    assert!(
        signed_in.token().is_none(),
        "no devise headers in cookie mode"
    );
    let first = cookie(&signed_in);
    assert!(first.starts_with("__Host-rotauth="), "{first}");
    assert_eq!(generation(&first), 0);
    let with = |cookie: &str| vec![("cookie".to_owned(), cookie.to_owned())];

    // A batch member: served, nothing set.
    let resp = send(Method::GET, "/auth/validate_token", with(&first)).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.json()["data"]["email"], "ada@example.com");
    assert!(set_cookies(&resp).is_empty());

    // After the window: rotated into the cookie.
    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 100)).await;
    let resp = send(Method::GET, "/auth/validate_token", with(&first)).await;
    assert_eq!(resp.status, 200);
    let second = cookie(&resp);
    assert_eq!(generation(&second), 1);

    // A cross-site sign-out: 403 naming why, no cookie touched, the session alive.
    let mut forged = with(&second);
    forged.push(evil);
    let resp = send(Method::DELETE, "/auth/sign_out", forged).await;
    assert_eq!(resp.status, 403, "{}", resp.text);
    assert_eq!(
        resp.json(),
        json!({"errors": ["forbidden"], "reason": "cross_origin"})
    );
    assert!(set_cookies(&resp).is_empty());
    let resp = send(Method::DELETE, "/auth/sign_out", with(&second)).await;
    assert_eq!(resp.status, 403, "no Origin and no Sec-Fetch-Site");
    let resp = send(Method::GET, "/auth/validate_token", with(&second)).await;
    assert_eq!(resp.status, 200, "the session is alive");

    // A late request with the first token after the window: refused, the cookie kept.
    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 100)).await;
    let resp = send(Method::GET, "/auth/validate_token", with(&first)).await;
    assert_eq!(resp.status, 401);
    assert!(set_cookies(&resp).is_empty());

    // A same-origin sign-out: both cookies cleared, the session gone.
    let mut signing_out = with(&second);
    signing_out.push(own);
    let resp = send(Method::DELETE, "/auth/sign_out", signing_out).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let cleared = set_cookies(&resp);
    assert_eq!(cleared.len(), 2, "{cleared:?}");
    assert!(cleared.iter().all(|c| c.contains("=; Path=/; Max-Age=0;")));
    let resp = send(Method::GET, "/auth/validate_token", with(&second)).await;
    assert_eq!(resp.status, 401);
}
