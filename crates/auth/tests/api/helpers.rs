use std::net::SocketAddr;

use clap::Parser as _;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::auth::v1::{ClientInfo, LoginRequest, RegisterRequest, RegisterResponse, TokenPair};
use secrecy::ExposeSecret as _;
use service_kit::{ApiError, ErrorCode};
use test_kit::{SpawnedService, TestAmqp, TestPostgres, TestRedis};
use tonic::transport::Channel;

pub const PASSWORD: &str = "correct horse battery";
pub const SERVICE_TOKEN: &str = "test-service-credential";

pub struct TestApp {
    pub client: AuthServiceClient<Channel>,
    pub admin: SocketAddr,
    pub db: TestPostgres,
    pub amqp: TestAmqp,
    /// Held for its key prefix's lifetime (cleaned up on drop).
    _redis: TestRedis,
    service: Option<SpawnedService>,
}

pub struct Options {
    pub bcrypt_cost: u32,
    /// Route RabbitMQ through this address (a cuttable proxy).
    pub amqp_addr: Option<SocketAddr>,
    /// A known Ed25519 PKCS#8 PEM signing key (tests that forge tokens).
    pub signing_key_pem: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bcrypt_cost: 4,
            amqp_addr: None,
            signing_key_pem: None,
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
        let amqp_url = match options.amqp_addr {
            Some(addr) => format!("amqp://guest:guest@{addr}/%2f"),
            None => test_kit::amqp_url(),
        };
        let admin_listener = service_kit::net::bind_loopback().unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let mut args: Vec<String> = Vec::new();
        if let Some(pem) = &options.signing_key_pem {
            args.extend([
                format!("--signing-key={pem}"),
                "--signing-key-id=test-key".to_owned(),
            ]);
        }
        let config = auth::Config::try_parse_from(
            [
                "auth",
                "--database-url",
                db.url().expose_secret(),
                "--redis-url",
                &test_kit::redis_url(),
                "--redis-key-prefix",
                &redis.prefix,
                "--amqp-url",
                &amqp_url,
                "--amqp-exchange",
                &amqp.exchange.name,
                "--bcrypt-cost",
                &options.bcrypt_cost.to_string(),
                "--service-token",
                SERVICE_TOKEN,
                "--shutdown-grace",
                "2s",
            ]
            .into_iter()
            .map(str::to_owned)
            .chain(args),
        )
        .unwrap();
        let service = SpawnedService::spawn(move |listener, shutdown| {
            auth::serve(config, listener, admin_listener, shutdown)
        })
        .await
        .unwrap();
        let channel = Channel::from_shared(service.http_url())
            .unwrap()
            .connect_lazy();
        let mut app = Self {
            client: AuthServiceClient::new(channel),
            admin,
            db,
            amqp,
            _redis: redis,
            service: Some(service),
        };
        app.wait_ready().await;
        app
    }

    async fn wait_ready(&mut self) {
        test_kit::wait_ready(self.admin, "auth").await;
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = test_kit::http()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn register(&self, username: &str) -> RegisterResponse {
        self.try_register(username, &format!("{username}@example.com"), PASSWORD)
            .await
            .unwrap_or_else(|error| panic!("register {username}: {error:?}"))
    }

    pub async fn try_register(
        &self,
        username: &str,
        email: &str,
        password: &str,
    ) -> Result<RegisterResponse, ApiError> {
        self.client
            .clone()
            .register(RegisterRequest {
                username: username.into(),
                email: email.into(),
                password: password.into(),
                display_name: String::new(),
                client: Some(client_info("test-agent/1.0")),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| ApiError::from_status(&status))
    }

    pub async fn login(
        &self,
        login: &str,
        password: &str,
        user_agent: &str,
    ) -> Result<TokenPair, ApiError> {
        self.client
            .clone()
            .login(LoginRequest {
                login: login.into(),
                password: password.into(),
                client: Some(client_info(user_agent)),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| ApiError::from_status(&status))
    }

    pub async fn stop(mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await.unwrap();
        }
    }
}

/// A fresh Ed25519 key as PKCS#8 PEM.
pub fn signing_key_pem() -> String {
    use base64::Engine as _;
    let der =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
}

pub fn client_info(user_agent: &str) -> ClientInfo {
    ClientInfo {
        user_agent: user_agent.into(),
        ip: "203.0.113.7".into(),
        device_name: "test device".into(),
    }
}

pub use test_kit::authed;

pub fn assert_code(error: &ApiError, code: ErrorCode) {
    assert_eq!(error.code, code, "{error:?}");
}
