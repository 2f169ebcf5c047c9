//! The HTTP side: devise_token_auth's routes on axum, over any [`Database`].
//!
//! The server maps nothing of the request loop: routes that authenticate take
//! rotauth-axum's extractors, which read devise's headers with its `DeviseProtocol` and
//! decide with its `Authenticator`: a `Session` (`Rotation`) for the routes that rotate,
//! stored before the handler runs and written into the response it is returned with, or a
//! `Checked` (`Check`) for the ones that store nothing (sign-out, account deletion) or
//! rotate after slow work (account changes). A route chooses only the body of its
//! refusal; a 503 is always the protocol's. The handlers answer errors with `?` (`error`),
//! read bodies with one extractor (`body`), and note what they did for the log, which one
//! middleware writes and which also counts every decision (`log`).

mod account;
mod auth;
mod body;
mod error;
mod log;
mod pages;
mod responses;
mod sign_in;
mod state;
mod transport;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use rotauth_axum::DeviseProtocol;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

pub(crate) use log::{Event, note};
pub(crate) use responses::{errors, json_response};
pub use state::{AppState, LogSink, Settings};
pub use transport::Transport;

use crate::bodies::BODY_LIMIT;
use crate::db::Database;
use crate::health;

/// devise_token_auth's routes plus `PUT /auth/password`, with the body limit, CORS,
/// `Cache-Control` and the log.
pub fn router<D: Database>(state: AppState<D>) -> Router {
    let router = Router::new()
        .route("/", get(pages::page::<D>))
        .route(
            "/auth",
            post(sign_in::sign_up::<D>)
                .put(account::update_account::<D>)
                .patch(account::update_account::<D>)
                .delete(account::delete_account::<D>),
        )
        .route("/auth/sign_in", post(sign_in::sign_in::<D>))
        .route("/auth/validate_token", get(auth::validate_token::<D>))
        .route("/auth/sign_out", delete(auth::sign_out::<D>))
        .route(
            "/auth/password",
            put(account::change_password::<D>).patch(account::change_password::<D>),
        )
        .route("/demo/members_only", get(auth::members_only::<D>))
        .merge(health::routes());
    let router = if state.0.serve_metrics {
        router.route("/metrics", get(pages::metrics::<D>))
    } else {
        router
    };
    let router = router
        .fallback(responses::not_found)
        .method_not_allowed_fallback(responses::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(no_store));
    let router = match cors_layer(&state.0.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    // tower-http's span per request carries the method and the path only: never the query
    // string (it may carry credentials) nor any header.
    let trace = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let path: String = request.uri().path().chars().take(200).collect();
            tracing::info_span!("request", method = %request.method(), path = %path)
        })
        .on_request(())
        .on_response(())
        .on_body_chunk(())
        .on_eos(())
        .on_failure(());
    router
        .layer(middleware::from_fn_with_state(
            state.clone(),
            log::observe::<D>,
        ))
        .layer(trace)
        .with_state(state)
}

/// rack-cors with `headers: :any` on tower-http: the origins of `--cors-origin`, the
/// request headers a preflight asks for mirrored back (ng-token-auth and j-toker send
/// `If-Modified-Since`), the auth headers exposed, preflights cached for ten minutes, and
/// `Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers`.
fn cors_layer(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o.as_bytes() == b"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().cloned())
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(ExposeHeaders::list(DeviseProtocol::RESPONSE_HEADERS))
            .max_age(Duration::from_secs(600)),
    )
}

/// Every answer of this API is about one user and may carry a token in custom headers,
/// which shared caches do not know to keep private: `Cache-Control: no-store`, and
/// `Vary` on the credentials for caches that ignore `no-store`.
async fn no_store(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.append(
        header::VARY,
        HeaderValue::from_static("access-token, client, uid, authorization"),
    );
    response
}
