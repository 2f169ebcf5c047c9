//! The cookie protocol behind the layer: the cookie is set on rotation and never on a
//! batch, a refusal keeps it and only a revocation or sign-out clears it, its attributes
//! are exact, and duplicates of its name are refused (the CSRF screening: `cookie_csrf.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

mod common;

use common::cookie::{Harness, body, cookie_of, decided, generation, set_cookies};

use std::time::Duration;

use http::StatusCode;
use rotauth::{RejectReason, ReplayPolicy};
use rotauth_axum::{CookieProtocol, Protocol, Refusal, SameSite};

#[tokio::test]
async fn rotation_sets_the_cookie_with_exact_attributes_and_a_batch_sets_nothing() {
    let h = Harness::new(CookieProtocol::new(), ReplayPolicy::Reject);
    let signed_in = h.sign_in().await;
    let sign_in = h.protocol.sign_in_headers(&signed_in);
    let set = sign_in.get("set-cookie").unwrap().to_str().unwrap();
    let cookie = cookie_of(set);
    assert_eq!(
        cookie,
        *h.protocol
            .cookie_header(&signed_in.client_id, &signed_in.token)
    );
    let expires = httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + Duration::from_millis(signed_in.expires_at.unix_millis()),
    );
    assert_eq!(
        set,
        format!("{cookie}; Path=/; Expires={expires}; Secure; HttpOnly; SameSite=Lax")
    );
    assert_eq!(sign_in["cache-control"], "no-store");

    // Inside the window: a batch member, no Set-Cookie at all.
    let response = h.call("GET", &[("cookie", &cookie)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(set_cookies(&response).is_empty());
    assert!(response.headers().get("cache-control").is_none());

    // After it: the next token in the cookie, with the session's new expiry.
    h.advance();
    let response = h.call("GET", &[("cookie", &cookie)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let sets = set_cookies(&response);
    assert_eq!(sets.len(), 1, "{sets:?}");
    let next = cookie_of(&sets[0]);
    assert_eq!(generation(&next), 1);
    assert!(next.starts_with(&format!("__Host-rotauth={}.", signed_in.client_id)));
    assert!(
        sets[0].ends_with("; Secure; HttpOnly; SameSite=Lax"),
        "{}",
        sets[0]
    );
    assert_eq!(body(response).await, "ada");

    let strict = CookieProtocol::new().same_site(SameSite::Strict);
    let set = strict.sign_in_headers(&signed_in);
    assert!(
        set["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("; Secure; HttpOnly; SameSite=Strict")
    );
}

#[tokio::test]
async fn a_refusal_keeps_the_cookie_and_a_revocation_clears_it() {
    let h = Harness::new(CookieProtocol::new(), ReplayPolicy::Reject);
    let signed_in = h.sign_in().await;
    let first = cookie_of(
        h.protocol.sign_in_headers(&signed_in)["set-cookie"]
            .to_str()
            .unwrap(),
    );
    h.advance();
    let response = h.call("GET", &[("cookie", &first)]).await;
    let second = cookie_of(&set_cookies(&response)[0]);
    // A late request with the token the session rotated past: 401, and no Set-Cookie that
    // would wipe the second one from the browser.
    h.advance();
    let response = h.call("GET", &[("cookie", &first)]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(matches!(
        decided(&response).refusal(),
        Some(Refusal::Rejected(_))
    ));
    assert!(set_cookies(&response).is_empty());
    assert_eq!(body(response).await, r#"{"errors":["unauthorized"]}"#);
    let response = h.call("GET", &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookies(&response).is_empty());
    assert_eq!(
        h.call("GET", &[("cookie", &second)]).await.status(),
        StatusCode::OK
    );

    // The same replay where the policy revokes: the session is gone, the cookie cleared.
    let h = Harness::new(CookieProtocol::new(), ReplayPolicy::RevokeSession);
    let signed_in = h.sign_in().await;
    let first = cookie_of(
        h.protocol.sign_in_headers(&signed_in)["set-cookie"]
            .to_str()
            .unwrap(),
    );
    h.advance();
    assert_eq!(
        set_cookies(&h.call("GET", &[("cookie", &first)]).await).len(),
        1
    );
    h.advance();
    let response = h.call("GET", &[("cookie", &first)]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(matches!(
        decided(&response).refusal(),
        Some(Refusal::Revoked(RejectReason::Replayed { .. }))
    ));
    assert_eq!(set_cookies(&response), clearing());
}

/// What clears both cookies.
fn clearing() -> Vec<String> {
    [("__Host-rotauth", "; HttpOnly"), ("__Host-rotauth-csrf", "")]
        .iter()
        .map(|(name, http_only)| {
            format!(
                "{name}=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure{http_only}; SameSite=Lax"
            )
        })
        .collect()
}

#[test]
fn sign_out_clears_both_cookies() {
    let headers = CookieProtocol::new().sign_out_headers();
    let sets: Vec<_> = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(sets, clearing());
}

#[tokio::test]
async fn duplicates_of_the_name_are_refused_unless_they_agree() {
    let h = Harness::new(CookieProtocol::new(), ReplayPolicy::Reject);
    let signed_in = h.sign_in().await;
    let cookie = h
        .protocol
        .cookie_header(&signed_in.client_id, &signed_in.token)
        .to_string();
    let other = h.sign_in().await;
    let tossed = h
        .protocol
        .cookie_header(&other.client_id, &other.token)
        .to_string();
    // Our cookie among others, in one header or many, the same value twice: read.
    for headers in [
        vec![("cookie", format!("a=1; {cookie};b=2"))],
        vec![("cookie", format!("  {cookie}  ;{cookie}"))],
        vec![("cookie", "a=1".to_owned()), ("cookie", cookie.clone())],
    ] {
        let headers: Vec<_> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = h.call("GET", &headers).await;
        assert_eq!(response.status(), StatusCode::OK, "{headers:?}");
    }
    // Two values of the name, whichever comes first, in one header or two: malformed.
    for headers in [
        vec![("cookie", format!("{cookie}; {tossed}"))],
        vec![("cookie", format!("{tossed}; {cookie}"))],
        vec![("cookie", tossed.clone()), ("cookie", cookie.clone())],
        vec![("cookie", format!("{cookie}; __Host-rotauth="))],
    ] {
        let headers: Vec<_> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = h.call("GET", &headers).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(
            decided(&response).refusal(),
            Some(Refusal::MalformedCredentials)
        );
    }
    for (value, refusal) in [
        ("__Host-rotauth=", Refusal::MissingCredentials),
        ("__host-rotauth=x.y", Refusal::MissingCredentials),
        ("__Host-rotauth=nodot", Refusal::MalformedCredentials),
        ("__Host-rotauth=\"a.b\"", Refusal::MalformedCredentials),
    ] {
        let response = h.call("GET", &[("cookie", value)]).await;
        assert_eq!(decided(&response).refusal(), Some(refusal), "{value}");
    }
}

#[test]
fn cookie_names_must_be_tokens_and_differ() {
    assert!(
        CookieProtocol::new()
            .name("__Host-sid", "__Host-csrf")
            .is_ok()
    );
    for (name, csrf) in [
        ("", "c"),
        ("a b", "c"),
        ("a;", "c"),
        ("a=", "c"),
        ("s", "s"),
    ] {
        assert!(CookieProtocol::new().name(name, csrf).is_err(), "{name:?}");
    }
}
