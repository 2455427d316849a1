//! The minimal web chat client (`crates/gateway/web/`), compiled into the
//! binary and served from the gateway's origin, so it talks to the REST API
//! and Socket.IO without CORS.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../web/index.html");
const APP: &str = include_str!("../web/app.js");
const STYLE: &str = include_str!("../web/style.css");
/// socket.io-client 4.8.1's browser build (MIT), vendored unmodified.
const SOCKET_IO: &str = include_str!("../web/socket.io.min.js");

/// Only this origin: the page's scripts, its API and its WebSocket.
const POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                      object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_SECURITY_POLICY, POLICY)],
                    asset("text/html; charset=utf-8", INDEX),
                )
            }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/socket.io.min.js",
            get(|| async { asset("text/javascript; charset=utf-8", SOCKET_IO) }),
        )
}
