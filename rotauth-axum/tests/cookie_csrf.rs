//! The cookie protocol's CSRF screening, behind the layer and in the per-route
//! extractors: a request another site may have forged is answered 403 before the loop
//! spends a rotation on it, and the cookie stays.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

mod common;

use common::cookie::{
    HOST, Harness, SAME_ORIGIN, body, cookie_of, decided, generation, set_cookies,
};

use axum::Router;
use axum::body::Body;
use http::{Request, Response, StatusCode};
use rotauth::ReplayPolicy;
use rotauth_axum::{Authenticator, CookieProtocol, Forbidden, MemoryStore, Protocol};
use tower::ServiceExt;

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
