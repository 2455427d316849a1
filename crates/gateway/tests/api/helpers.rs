use std::time::Duration;

use clap::Parser as _;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use test_kit::{SpawnedService, TcpProxy, TestAmqp, TestMongo, TestPostgres, TestRedis};

/// The gateway in front of the real auth, users and chat services, on
/// fresh stores, sharing one test exchange (auth's `user.registered` creates
/// the profile in users, as in production).
pub struct TestApp {
    pub base: String,
    /// The first gateway's admin port (`/readyz`).
    pub admin: std::net::SocketAddr,
    /// Between the gateway and chat, when asked for.
    pub chat_proxy: Option<TcpProxy>,
    /// Further gateway replicas (Options::gateways > 1).
    pub replicas: Vec<String>,
    pub http: reqwest::Client,
    _auth_db: TestPostgres,
    _users_db: TestPostgres,
    _redis: TestRedis,
    _amqp: TestAmqp,
    _mongo: TestMongo,
    services: Vec<SpawnedService>,
}

/// The credential gateway, users and chat share in these tests.
const SERVICE_TOKEN: &str = "gateway-test-service-credential";

pub struct Options {
    pub max_body_bytes: usize,
    pub cors_origins: &'static str,
    pub gateways: usize,
    /// Put a cuttable proxy between the gateway and chat.
    pub chat_proxy: bool,
    pub auth_rate_limit: &'static str,
    pub send_rate_limit: &'static str,
    /// users' PRESENCE_TTL, and how often the gateway renews it.
    pub presence_ttl: &'static str,
    pub presence_heartbeat: &'static str,
    /// SOCKET_PING_INTERVAL / SOCKET_PING_TIMEOUT.
    pub socket_ping: (&'static str, &'static str),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            cors_origins: "https://app.example.com",
            gateways: 1,
            chat_proxy: false,
            auth_rate_limit: "1000/1m",
            send_rate_limit: "1000/1m",
            presence_ttl: "60s",
            presence_heartbeat: "20s",
            socket_ping: ("25s", "20s"),
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

        let jwks_from_auth = format!("--auth-grpc-url={}", auth.http_url());

        let users_db = TestPostgres::new().await.unwrap();
        let queue = format!("{}.users", amqp.exchange.name);
        for name in [
            queue.clone(),
            format!("{queue}.retry"),
            format!("{queue}.dlq"),
        ] {
            amqp.track_queue(name);
        }
        let users_admin = service_kit::net::bind_loopback().unwrap();
        let users_admin_addr = users_admin.local_addr().unwrap();
        let users_config = users::Config::try_parse_from([
            "users".to_owned(),
            format!("--database-url={}", users_db.url().expose_secret()),
            format!("--redis-url={}", test_kit::redis_url()),
            format!("--redis-key-prefix={}users:", redis.prefix),
            format!("--amqp-url={}", test_kit::amqp_url()),
            format!("--amqp-exchange={}", amqp.exchange.name),
            jwks_from_auth.clone(),
            format!("--queue={queue}"),
            format!("--presence-ttl={}", options.presence_ttl),
            "--presence-sweep-interval=100ms".to_owned(),
            format!("--service-token={SERVICE_TOKEN}"),
            "--shutdown-grace=2s".to_owned(),
        ])
        .unwrap();
        let users = SpawnedService::spawn(move |listener, shutdown| {
            users::serve(users_config, listener, users_admin, shutdown)
        })
        .await
        .unwrap();
        test_kit::wait_ready(users_admin_addr, "users").await;
        while !test_kit::queue_exists(&queue).await.unwrap() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let mongo = TestMongo::new().await.unwrap();
        let chat_admin = service_kit::net::bind_loopback().unwrap();
        let chat_admin_addr = chat_admin.local_addr().unwrap();
        let chat_config = chat::Config::try_parse_from([
            "chat".to_owned(),
            format!("--mongodb-url={}", test_kit::mongodb_url()),
            format!("--mongodb-database={}", mongo.name),
            format!("--amqp-url={}", test_kit::amqp_url()),
            format!("--amqp-exchange={}", amqp.exchange.name),
            jwks_from_auth,
            format!("--users-grpc-url={}", users.http_url()),
            "--users-cache-ttl=100ms".to_owned(),
            format!("--service-token={SERVICE_TOKEN}"),
            "--shutdown-grace=2s".to_owned(),
        ])
        .unwrap();
        let chat = SpawnedService::spawn(move |listener, shutdown| {
            chat::serve(chat_config, listener, chat_admin, shutdown)
        })
        .await
        .unwrap();
        test_kit::wait_ready(chat_admin_addr, "chat").await;

        let fanout = format!("{}.fanout", amqp.exchange.name);
        for name in [
            fanout.clone(),
            format!("{fanout}.retry"),
            format!("{fanout}.dlq"),
        ] {
            amqp.track_queue(name);
        }
        // One or more replicas sharing Redis (the adapter) and the fan-out
        // queue, as behind one load balancer.
        let chat_proxy = if options.chat_proxy {
            Some(TcpProxy::start(chat.addr).await.unwrap())
        } else {
            None
        };
        let chat_url = chat_proxy.as_ref().map_or_else(
            || chat.http_url(),
            |proxy| format!("http://{}", proxy.addr()),
        );
        let mut gateways = Vec::new();
        let mut admins = Vec::new();
        for _ in 0..options.gateways.max(1) {
            let gateway_admin = service_kit::net::bind_loopback().unwrap();
            admins.push(gateway_admin.local_addr().unwrap());
            let config = gateway::Config::try_parse_from([
                "gateway".to_owned(),
                format!("--auth-grpc-url={}", auth.http_url()),
                format!("--users-url={}", users.http_url()),
                format!("--chat-url={chat_url}"),
                format!("--cors-origins={}", options.cors_origins),
                format!("--redis-url={}", test_kit::redis_url()),
                format!("--redis-key-prefix={}gateway:", redis.prefix),
                format!("--amqp-url={}", test_kit::amqp_url()),
                format!("--amqp-exchange={}", amqp.exchange.name),
                format!("--fanout-queue={fanout}"),
                format!("--max-body-bytes={}", options.max_body_bytes),
                format!("--auth-rate-limit={}", options.auth_rate_limit),
                format!("--send-rate-limit={}", options.send_rate_limit),
                format!("--users-service-token={SERVICE_TOKEN}"),
                format!("--chat-service-token={SERVICE_TOKEN}"),
                format!("--presence-heartbeat={}", options.presence_heartbeat),
                format!("--socket-ping-interval={}", options.socket_ping.0),
                format!("--socket-ping-timeout={}", options.socket_ping.1),
                "--shutdown-grace=2s".to_owned(),
            ])
            .unwrap();
            gateways.push(
                SpawnedService::spawn(move |listener, shutdown| {
                    gateway::serve(config, listener, gateway_admin, shutdown)
                })
                .await
                .unwrap(),
            );
        }
        let gateway = gateways.remove(0);
        let replicas: Vec<String> = gateways.iter().map(SpawnedService::http_url).collect();
        let mut services = vec![gateway];
        services.extend(gateways);
        services.extend([chat, users, auth]);
        let app = Self {
            admin: admins[0],
            chat_proxy,
            base: services[0].http_url(),
            replicas,
            http: test_kit::http(),
            _auth_db: db,
            _users_db: users_db,
            _redis: redis,
            _amqp: amqp,
            _mongo: mongo,
            services,
        };
        // The gateway fetches auth's keys at start-up; wait until it serves
        // and its fan-out queue exists.
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
        while !test_kit::queue_exists(&fanout).await.unwrap() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fan-out queue never declared"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
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

    /// Registers, logs in, and waits until users created the profile.
    pub async fn user(&self, username: &str) -> (String, String) {
        let pair = self.signed_in(username).await;
        let token = pair["access_token"].as_str().unwrap().to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self
            .call(Method::GET, "/api/v1/users/me", Some(&token), None)
            .await
            .0
            != StatusCode::OK
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "profile of {username} never appeared"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (pair["user_id"].as_str().unwrap().to_owned(), token)
    }

    pub async fn stop(mut self) {
        for service in self.services.drain(..) {
            service.stop().await.unwrap();
        }
    }
}
