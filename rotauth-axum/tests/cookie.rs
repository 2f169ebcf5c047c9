//! The cookie protocol behind the layer: the cookie is set on rotation and never on a
//! batch, a refusal keeps it and only a revocation or sign-out clears it, its attributes
//! are exact, duplicates of its name are refused, and a request another site may have
//! forged is answered 403 before the loop spends a rotation on it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::rotator;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use rotauth::{Config, RejectReason, ReplayPolicy, Timestamp, Token};
use rotauth_axum::{
    AuthLayer, Authenticated, Authenticator, CookieProtocol, Decided, Forbidden, MemoryStore,
    Protocol, Refusal, SameSite, SignedIn,
};
use tower::ServiceExt;

const WINDOW_MS: u64 = 1_000;
const T0: u64 = 1_700_000_000_000;
const HOST: &str = "app.example";

struct Harness {
    auth: Authenticator<MemoryStore>,
    protocol: CookieProtocol,
    millis: Arc<AtomicU64>,
}

impl Harness {
    fn new(protocol: CookieProtocol, replay: ReplayPolicy) -> Self {
        let millis = Arc::new(AtomicU64::new(T0));
        let clock = Arc::clone(&millis);
        let config = Config::builder()
            .batch_window(Duration::from_millis(WINDOW_MS))
            .replay_policy(replay)
            .build()
            .unwrap();
        let auth = Authenticator::new(rotator(config), MemoryStore::new())
            .clock(move || Timestamp::from_unix_millis(clock.load(Ordering::SeqCst)));
        Self {
            auth,
            protocol,
            millis,
        }
    }

    fn advance(&self) {
        self.millis.fetch_add(WINDOW_MS + 1, Ordering::SeqCst);
    }

    async fn sign_in(&self) -> SignedIn {
        let pending = self.auth.begin_sign_in("ada").await.unwrap();
        self.auth.sign_in(pending).await.unwrap()
    }

    /// `method /me` with `headers`, through the layer.
    async fn call(&self, method: &str, headers: &[(&str, &str)]) -> Response<Body> {
        let app = Router::new()
            .route(
                "/me",
                get(|who: Authenticated| async move { who.user_id })
                    .post(|who: Authenticated| async move { who.user_id }),
            )
            .layer(AuthLayer::new(self.auth.clone(), self.protocol.clone()));
        let mut request = Request::builder()
            .method(method)
            .uri("/me")
            .header("host", HOST);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        app.oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }
}

/// The `name=value` of every `Set-Cookie`, and the whole headers.
fn set_cookies(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `Cookie` header that sends back what a `Set-Cookie` set.
fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn generation(cookie: &str) -> u64 {
    let value = cookie.split_once('=').unwrap().1;
    Token::from_text(value.split_once('.').unwrap().1)
        .unwrap()
        .generation()
}

async fn body(response: Response<Body>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn decided(response: &Response<Body>) -> Decided {
    *response.extensions().get::<Decided>().unwrap()
}

const SAME_ORIGIN: (&str, &str) = ("origin", "https://app.example");

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
async fn a_cross_site_post_is_403_before_the_loop_and_keeps_the_cookie() {
    let h = Harness::new(CookieProtocol::new(), ReplayPolicy::Reject);
    let signed_in = h.sign_in().await;
    let cookie = &*h
        .protocol
        .cookie_header(&signed_in.client_id, &signed_in.token);
    h.advance();
    for (headers, why) in [
        (
            vec![("origin", "https://evil.example")],
            Forbidden::CrossOrigin,
        ),
        (vec![("origin", "null")], Forbidden::CrossOrigin),
        (vec![("sec-fetch-site", "cross-site")], Forbidden::CrossSite),
        (vec![("sec-fetch-site", "same-site")], Forbidden::CrossSite),
        (vec![], Forbidden::UnknownOrigin),
    ] {
        let mut headers = headers;
        headers.push(("cookie", cookie));
        let response = h.call("POST", &headers).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert_eq!(decided(&response).forbidden(), Some(why));
        assert_eq!(decided(&response).decision(), None);
        assert!(set_cookies(&response).is_empty());
        assert_eq!(
            body(response).await,
            format!(r#"{{"errors":["forbidden"],"reason":"{}"}}"#, why.as_str())
        );
    }
    // No rotation was spent: the token of sign-in rotates now, to generation 1.
    let response = h.call("POST", &[("cookie", cookie), SAME_ORIGIN]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(generation(&cookie_of(&set_cookies(&response)[0])), 1);
    // A safe method is not screened.
    let response = h
        .call(
            "GET",
            &[("cookie", cookie), ("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn fetch_metadata_stands_in_for_a_missing_origin() {
    let protocol = CookieProtocol::new()
        .allow_origin("https://Admin.example/")
        .allow_same_site(true);
    let h = Harness::new(protocol, ReplayPolicy::Reject);
    let signed_in = h.sign_in().await;
    let cookie = &*h
        .protocol
        .cookie_header(&signed_in.client_id, &signed_in.token);
    for passing in [
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-site", "none"),
        ("sec-fetch-site", "same-site"),
        ("origin", "https://admin.example"),
        ("origin", "http://APP.example"),
    ] {
        let response = h.call("POST", &[("cookie", cookie), passing]).await;
        assert_eq!(response.status(), StatusCode::OK, "{passing:?}");
    }
    let response = h
        .call(
            "POST",
            &[("cookie", cookie), ("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Clients that are not browsers, when allowed.
    let h = Harness::new(
        CookieProtocol::new().allow_unknown_origin(true),
        ReplayPolicy::Reject,
    );
    let signed_in = h.sign_in().await;
    let cookie = &*h
        .protocol
        .cookie_header(&signed_in.client_id, &signed_in.token);
    assert_eq!(
        h.call("POST", &[("cookie", cookie)]).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        h.call(
            "POST",
            &[("cookie", cookie), ("origin", "https://evil.example")]
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn double_submit_needs_the_header_equal_to_the_readable_cookie() {
    let h = Harness::new(
        CookieProtocol::new().double_submit(true),
        ReplayPolicy::Reject,
    );
    let signed_in = h.sign_in().await;
    let sets: Vec<_> = h
        .protocol
        .sign_in_headers(&signed_in)
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(sets.len(), 2);
    let client = signed_in.client_id.to_string();
    let csrf = cookie_of(&sets[1]);
    assert_eq!(csrf, format!("__Host-rotauth-csrf={client}"));
    assert!(
        sets[1].ends_with("; Secure; SameSite=Lax"),
        "readable by scripts"
    );
    let both = format!("{}; {csrf}", cookie_of(&sets[0]));

    let forbidden = |response: &Response<Body>| {
        response.status() == StatusCode::FORBIDDEN
            && decided(response).forbidden() == Some(Forbidden::CsrfToken)
    };
    let response = h.call("POST", &[("cookie", &both), SAME_ORIGIN]).await;
    assert!(forbidden(&response), "no header");
    // Another client id: the first character changed.
    let first = if client.starts_with('B') { "C" } else { "B" };
    let wrong = format!("{first}{}", &client[1..]);
    let response = h
        .call(
            "POST",
            &[("cookie", &both), SAME_ORIGIN, ("x-csrf-token", &wrong)],
        )
        .await;
    assert!(forbidden(&response), "another value");
    // A token equal to a tossed-in CSRF cookie but not to the session's client id.
    let tossed = format!("{}; __Host-rotauth-csrf={wrong}", cookie_of(&sets[0]));
    let response = h
        .call(
            "POST",
            &[("cookie", &tossed), SAME_ORIGIN, ("x-csrf-token", &wrong)],
        )
        .await;
    assert!(forbidden(&response), "not the session's");
    let response = h
        .call(
            "POST",
            &[("cookie", &both), SAME_ORIGIN, ("x-csrf-token", &client)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // The origin checks still run first.
    let response = h
        .call(
            "POST",
            &[
                ("cookie", &both),
                ("origin", "https://evil.example"),
                ("x-csrf-token", &client),
            ],
        )
        .await;
    assert_eq!(decided(&response).forbidden(), Some(Forbidden::CrossOrigin));
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

/// The per-route extractors screen as the layer does, and a route's own refusal body is for
/// 401s, not for a 403.
#[tokio::test]
async fn the_extractors_screen_too() {
    use axum::extract::FromRef;
    use axum::response::IntoResponse;
    use rotauth_axum::{AuthRejection, Rotation};

    #[derive(Clone)]
    struct App {
        auth: Authenticator<MemoryStore>,
        protocol: CookieProtocol,
    }
    impl FromRef<App> for Authenticator<MemoryStore> {
        fn from_ref(app: &App) -> Self {
            app.auth.clone()
        }
    }
    impl FromRef<App> for CookieProtocol {
        fn from_ref(app: &App) -> Self {
            app.protocol.clone()
        }
    }
    type Session = Rotation<MemoryStore, CookieProtocol>;
    async fn me(
        session: Result<Session, AuthRejection<CookieProtocol>>,
    ) -> axum::response::Response {
        match session {
            Ok(session) => (session, "ok").into_response(),
            Err(rejection) => rejection.refused_with((StatusCode::NOT_FOUND, "own")),
        }
    }

    let h = Harness::new(CookieProtocol::new(), ReplayPolicy::Reject);
    let signed_in = h.sign_in().await;
    let cookie = h
        .protocol
        .cookie_header(&signed_in.client_id, &signed_in.token)
        .to_string();
    let app = Router::new()
        .route("/me", axum::routing::post(me))
        .with_state(App {
            auth: h.auth.clone(),
            protocol: h.protocol.clone(),
        });
    let call = |origin: &str| {
        let request = Request::builder()
            .method("POST")
            .uri("/me")
            .header("host", HOST)
            .header("origin", origin)
            .header("cookie", &cookie)
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request)
    };
    let response = call("https://evil.example").await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(decided(&response).forbidden(), Some(Forbidden::CrossOrigin));
    let response = call("https://app.example").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
