use std::time::Duration;

use clap::Parser as _;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use test_kit::{SpawnedService, TestAmqp, TestPostgres, TestRedis};

/// The gateway in front of a real auth service; users and chat point at a
/// closed port (these tests do not reach them).
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    _db: TestPostgres,
    _redis: TestRedis,
    _amqp: TestAmqp,
    gateway: Option<SpawnedService>,
    auth: Option<SpawnedService>,
}

pub struct Options {
    pub max_body_bytes: usize,
    pub cors_origins: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            cors_origins: "https://app.example.com",
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        test_kit::init_tracing();
        let db = TestPostgres::new().await.unwrap();
        let redis = TestRedis::new().await.unwrap();
        let amqp = TestAmqp::new().await.unwrap();
        let auth_admin = service_kit::net::bind_loopback().unwrap();
        let auth_admin_addr = auth_admin.local_addr().unwrap();
        let auth_config = auth::Config::try_parse_from([
            "auth".to_owned(),
            format!("--database-url={}", db.url().expose_secret()),
            format!("--redis-url={}", test_kit::redis_url()),
            format!("--redis-key-prefix={}", redis.prefix),
            format!("--amqp-url={}", test_kit::amqp_url()),
            format!("--amqp-exchange={}", amqp.exchange.name),
            "--bcrypt-cost=4".to_owned(),
            "--shutdown-grace=2s".to_owned(),
        ])
        .unwrap();
        let auth = SpawnedService::spawn(move |listener, shutdown| {
            auth::serve(auth_config, listener, auth_admin, shutdown)
        })
        .await
        .unwrap();
        test_kit::wait_ready(auth_admin_addr, "auth").await;

        let closed = format!(
            "http://{}",
            service_kit::net::bind_loopback()
                .unwrap()
                .local_addr()
                .unwrap()
        );
        let gateway_admin = service_kit::net::bind_loopback().unwrap();
        let config = gateway::Config::try_parse_from([
            "gateway".to_owned(),
            format!("--auth-grpc-url={}", auth.http_url()),
            format!("--users-url={closed}"),
            format!("--chat-url={closed}"),
            format!("--cors-origins={}", options.cors_origins),
            format!("--max-body-bytes={}", options.max_body_bytes),
            "--shutdown-grace=2s".to_owned(),
        ])
        .unwrap();
        let gateway = SpawnedService::spawn(move |listener, shutdown| {
            gateway::serve(config, listener, gateway_admin, shutdown)
        })
        .await
        .unwrap();
        let app = Self {
            base: gateway.http_url(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _db: db,
            _redis: redis,
            _amqp: amqp,
            gateway: Some(gateway),
            auth: Some(auth),
        };
        // The gateway fetches auth's keys at start-up; wait until it serves.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while app
            .http
            .get(app.url("/api/v1/openapi.json"))
            .send()
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway never served"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends JSON (with a bearer token if given); returns status and body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, self.url(path))
            .header("user-agent", "gateway-tests/1.0");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Registers and logs in `username`; returns the login's token pair.
    pub async fn signed_in(&self, username: &str) -> Value {
        let (status, _) = self
            .call(
                Method::POST,
                "/api/v1/auth/register",
                None,
                Some(json!({
                    "username": username,
                    "email": format!("{username}@example.com"),
                    "password": "correct horse battery",
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, pair) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({
                    "login": username,
                    "password": "correct horse battery",
                    "device_name": "laptop",
                })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{pair}");
        pair
    }

    pub async fn stop(mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.stop().await.unwrap();
        }
        if let Some(auth) = self.auth.take() {
            auth.stop().await.unwrap();
        }
    }
}
