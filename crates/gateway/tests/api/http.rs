use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp};

/// Every route the OpenAPI document lists, as "METHOD path". The tests in
/// `auth.rs`, `users.rs` and `chat.rs` exercise each of them; this list
/// must change with the document.
const DOCUMENTED: [&str; 35] = [
    "DELETE /api/v1/auth/sessions",
    "DELETE /api/v1/auth/sessions/{session_id}",
    "GET /api/v1/auth/sessions",
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/logout",
    "POST /api/v1/auth/password",
    "POST /api/v1/auth/refresh",
    "POST /api/v1/auth/register",
    "GET /api/v1/users/me",
    "PATCH /api/v1/users/me",
    "GET /api/v1/users",
    "GET /api/v1/users/search",
    "GET /api/v1/users/me/blocks",
    "PUT /api/v1/users/me/blocks/{user_id}",
    "DELETE /api/v1/users/me/blocks/{user_id}",
    "GET /api/v1/users/me/contacts",
    "PUT /api/v1/users/me/contacts/{user_id}",
    "DELETE /api/v1/users/me/contacts/{user_id}",
    "GET /api/v1/users/me/privacy",
    "PATCH /api/v1/users/me/privacy",
    "GET /api/v1/presence",
    "GET /api/v1/conversations",
    "POST /api/v1/conversations/private",
    "POST /api/v1/conversations/group",
    "GET /api/v1/conversations/unread",
    "GET /api/v1/conversations/{id}",
    "PATCH /api/v1/conversations/{id}",
    "GET /api/v1/conversations/{id}/members",
    "POST /api/v1/conversations/{id}/members",
    "DELETE /api/v1/conversations/{id}/members/{user_id}",
    "GET /api/v1/conversations/{id}/messages",
    "POST /api/v1/conversations/{id}/messages",
    "PATCH /api/v1/conversations/{id}/messages/{message_id}",
    "DELETE /api/v1/conversations/{id}/messages/{message_id}",
    "POST /api/v1/conversations/{id}/read",
];

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = TestApp::spawn().await;
    let (status, doc) = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                operation["responses"].is_object(),
                "{method} {path} has responses"
            );
            routes.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert_eq!(routes, DOCUMENTED.iter().map(|r| (*r).to_owned()).collect());
    // Every $ref resolves to a schema in the document.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "missing schema {name}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let docs = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.text().await.unwrap().contains("swagger"),
        "Swagger UI is served"
    );
    app.stop().await;
}

#[tokio::test]
async fn errors_are_json_with_a_code_and_the_field() {
    let app = TestApp::spawn_with(Options {
        max_body_bytes: 1024,
        ..Options::default()
    })
    .await;
    let (status, error) = app.call(Method::GET, "/api/v1/nope", None, None).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );

    // A missing field, a wrong type, broken JSON, no JSON content type.
    let (status, error) = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "login": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], "INVALID_ARGUMENT");
    assert!(
        error["message"].as_str().unwrap().contains("password"),
        "{error}"
    );
    let (status, error) = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "login": 5, "password": "x" })),
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("login"))
    );
    let response = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "INVALID_ARGUMENT");
    let response = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .body("login=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Bodies over the limit: 413 with the same JSON shape.
    let (status, error) = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "login": "x".repeat(2000), "password": "y" })),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("PAYLOAD_TOO_LARGE"))
    );
    app.stop().await;
}

#[tokio::test]
async fn request_ids_and_cors() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let response = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .header("x-request-id", "client-chosen-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-1");

    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, app.url("/api/v1/auth/login"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    app.stop().await;
}

/// Chat goes away: calls that need it answer 503 (fast once the circuit
/// opens, with Retry-After), readiness says so, and both recover.
#[tokio::test]
async fn a_downstream_outage_gives_503_and_recovers() {
    let app = TestApp::spawn_with(Options {
        chat_proxy: true,
        ..Options::default()
    })
    .await;
    let (_, token) = app.user("alice").await;
    let list = || app.call(Method::GET, "/api/v1/conversations", Some(&token), None);
    let ready = || async {
        app.http
            .get(format!("http://{}/readyz", app.admin))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(list().await.0, StatusCode::OK);
    assert_eq!(ready().await, StatusCode::OK);

    app.chat_proxy.as_ref().unwrap().cut();
    let mut open_circuit = None;
    for _ in 0..10 {
        let response = app
            .http
            .get(app.url("/api/v1/conversations"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let has_retry = response.headers().get("retry-after").cloned();
        let text = response.text().await.unwrap();
        if let Some(after) = has_retry {
            open_circuit = Some(after.to_str().unwrap().to_owned());
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["code"], "UNAVAILABLE");
            assert!(body["message"].as_str().unwrap().contains("chat"), "{body}");
            break;
        }
    }
    assert!(
        open_circuit.is_some(),
        "the breaker opens and says when to retry"
    );
    assert_eq!(ready().await, StatusCode::SERVICE_UNAVAILABLE);
    // Routes that do not need chat keep working.
    assert_eq!(
        app.call(Method::GET, "/api/v1/users/me", Some(&token), None)
            .await
            .0,
        StatusCode::OK
    );

    app.chat_proxy.as_ref().unwrap().restore();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while list().await.0 != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    while ready().await != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never recovered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    app.stop().await;
}

/// Login attempts per client address and sends per user are limited (state
/// in Redis, shared by replicas): 429 with Retry-After, then allowed again.
#[tokio::test]
async fn rate_limits_trigger_and_recover() {
    let app = TestApp::spawn_with(Options {
        auth_rate_limit: "4/2s",
        send_rate_limit: "3/1s",
        ..Options::default()
    })
    .await;
    let pair = app.signed_in("mallory").await;
    let attempt = |ip: &'static str| {
        app.http
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", ip)
            .json(&json!({ "login": "mallory", "password": "guess guess guess" }))
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(attempt("203.0.113.7").await.unwrap().status());
    }
    assert_eq!(statuses, [StatusCode::UNAUTHORIZED; 4], "the burst of 4");
    let limited = attempt("203.0.113.7").await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED");
    // Another address has its own budget.
    assert_eq!(
        attempt("198.51.100.2").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(
        attempt("203.0.113.7").await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "recovered"
    );

    // Sends per user.
    let token = pair["access_token"].as_str().unwrap();
    let (bob, bob_token) = app.user("bob").await;
    let (status, conversation) = app
        .call(
            Method::POST,
            "/api/v1/conversations/private",
            Some(token),
            Some(json!({ "peer_id": bob })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{conversation}");
    let path = format!(
        "/api/v1/conversations/{}/messages",
        conversation["id"].as_str().unwrap()
    );
    for i in 0..3 {
        let (status, _) = app
            .call(
                Method::POST,
                &path,
                Some(token),
                Some(json!({ "content": format!("m{i}") })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, error) = app
        .call(
            Method::POST,
            &path,
            Some(token),
            Some(json!({ "content": "too fast" })),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("RATE_LIMITED"))
    );
    let (status, _) = app
        .call(
            Method::POST,
            &path,
            Some(&bob_token),
            Some(json!({ "content": "bob is fine" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "the limit is per user");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (status, _) = app
        .call(
            Method::POST,
            &path,
            Some(token),
            Some(json!({ "content": "again" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "recovered");
    app.stop().await;
}

/// One trace, started by the client's `traceparent`, runs through the
/// gateway's HTTP span, chat's gRPC span, RabbitMQ (the event carries the
/// trace) and the fan-out consumer's Socket.IO emit.
#[tokio::test]
async fn one_trace_spans_http_grpc_rabbitmq_and_the_socketio_emit() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.user("alice").await;
    let (bob, _) = app.user("bob").await;
    let (status, conversation) = app
        .call(
            Method::POST,
            "/api/v1/conversations/private",
            Some(&alice),
            Some(json!({ "peer_id": bob })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let response = app
        .http
        .post(app.url(&format!(
            "/api/v1/conversations/{}/messages",
            conversation["id"].as_str().unwrap()
        )))
        .bearer_auth(&alice)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({ "content": "traced" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let attribute = |span: &test_kit::RecordedSpan, key: &str| {
        span.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let wanted = |spans: &[test_kit::RecordedSpan]| {
        let has = |name: &str, check: &dyn Fn(&test_kit::RecordedSpan) -> bool| {
            spans.iter().any(|s| s.name == name && check(s))
        };
        has("http", &|s| {
            s.kind == "Server" && attribute(s, "url.path").ends_with("/messages")
        }) && has("rpc", &|s| {
            s.kind == "Server" && attribute(s, "rpc.method").ends_with("/SendMessage")
        }) && has("event", &|s| {
            s.kind == "Consumer" && attribute(s, "event.type") == "message.created"
        }) && has("socket.io emit", &|s| {
            s.kind == "Producer" && attribute(s, "socketio.event") == "message:new"
        })
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let spans = test_kit::spans_of_trace(&trace_id);
        if wanted(&spans) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trace {trace_id} is missing a hop: {:#?}",
            spans.iter().map(|s| (&s.name, &s.kind)).collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.stop().await;
}
