use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser as _;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use proto::events::v1::UserRegistered;
use proto::users::v1::users_service_client::UsersServiceClient;
use proto::users::v1::{GetProfilesRequest, Profile};
use secrecy::ExposeSecret as _;
use service_kit::amqp::EventPublisher;
use service_kit::token::{SigningKey, TokenSigner, TokenSubject};
use service_kit::{ApiError, events};
use test_kit::{SpawnedService, TestAmqp, TestPostgres, TestRedis};
pub use test_kit::{authed, next_event};
use tonic::transport::Channel;
use uuid::Uuid;

/// The service credential these tests configure.
pub const SERVICE_TOKEN: &str = "users-test-service-credential";

pub struct User {
    pub id: Uuid,
    pub token: String,
}

pub struct TestApp {
    pub client: UsersServiceClient<Channel>,
    pub admin: SocketAddr,
    pub db: TestPostgres,
    pub amqp: TestAmqp,
    pub publisher: EventPublisher,
    signer: TokenSigner,
    _redis: TestRedis,
    service: Option<SpawnedService>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with_presence_ttl(Duration::from_secs(60)).await
    }

    pub async fn spawn_with_presence_ttl(ttl: Duration) -> Self {
        test_kit::init_tracing();
        let db = TestPostgres::new().await.unwrap();
        let redis = TestRedis::new().await.unwrap();
        let amqp = TestAmqp::new().await.unwrap();
        let key = SigningKey::generate("users-test").unwrap();
        let jwks = serde_json::to_string(&[key.public_jwk()]).unwrap();
        let signer = TokenSigner::new(
            key,
            "chat-platform-auth",
            "chat-platform",
            Duration::from_secs(900),
        );
        let queue = format!("{}.users", amqp.exchange.name);
        amqp.track_queue(&queue);
        amqp.track_queue(format!("{queue}.retry"));
        amqp.track_queue(format!("{queue}.dlq"));
        let admin_listener = service_kit::net::bind_loopback().unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let config = users::Config::try_parse_from([
            "users".to_owned(),
            format!("--database-url={}", db.url().expose_secret()),
            format!("--redis-url={}", test_kit::redis_url()),
            format!("--redis-key-prefix={}", redis.prefix),
            format!("--amqp-url={}", test_kit::amqp_url()),
            format!("--amqp-exchange={}", amqp.exchange.name),
            format!("--jwt-jwks={jwks}"),
            format!("--presence-ttl={}ms", ttl.as_millis()),
            "--presence-sweep-interval=100ms".to_owned(),
            format!("--service-token={SERVICE_TOKEN}"),
            format!("--queue={queue}"),
            "--shutdown-grace=2s".to_owned(),
        ])
        .unwrap();
        let service = SpawnedService::spawn(move |listener, shutdown| {
            users::serve(config, listener, admin_listener, shutdown)
        })
        .await
        .unwrap();
        let publisher = EventPublisher::new(amqp.broker.clone(), amqp.exchange.clone());
        let app = Self {
            client: UsersServiceClient::new(
                Channel::from_shared(service.http_url())
                    .unwrap()
                    .connect_lazy(),
            ),
            admin,
            db,
            amqp,
            publisher,
            signer,
            _redis: redis,
            service: Some(service),
        };
        app.wait_ready(&queue).await;
        app
    }

    /// Ready, and its consumer's queue declared: events published before the
    /// queue exists have no route and RabbitMQ drops them.
    async fn wait_ready(&self, queue: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !test_kit::queue_exists(queue).await.unwrap() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "consumer queue never declared"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        test_kit::wait_ready(self.admin, "users").await;
    }

    pub fn token_for(&self, id: Uuid, username: &str) -> String {
        self.signer
            .sign(&TokenSubject {
                user_id: id,
                session_id: Uuid::now_v7(),
                username,
                bot: false,
            })
            .unwrap()
            .0
    }

    pub fn registered_event(id: Uuid, username: &str, display_name: &str) -> proto::EventEnvelope {
        events::envelope(
            "auth",
            id.to_string(),
            proto::EventPayload::UserRegistered(UserRegistered {
                user_id: id.to_string(),
                username: username.into(),
                email: format!("{username}@example.com"),
                is_bot: false,
                display_name: display_name.into(),
            }),
        )
    }

    /// Publishes `user.registered` and waits for the profile to appear.
    pub async fn register(&self, username: &str, display_name: &str) -> User {
        let id = Uuid::now_v7();
        let event = Self::registered_event(id, username, display_name);
        let user = User {
            id,
            token: self.token_for(id, username),
        };
        // Republished every 2 s until the profile appears: the consumer's
        // queue may exist a moment before its binding does, and an event in
        // that moment has no route. Replays are harmless (idempotent).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut next_publish = tokio::time::Instant::now();
        while self.profiles(&user, &[id]).await.unwrap().is_empty() {
            let now = tokio::time::Instant::now();
            assert!(now < deadline, "profile of {username} never appeared");
            if now >= next_publish {
                self.publisher.publish(&event).await.unwrap();
                next_publish = now + Duration::from_secs(2);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        user
    }

    pub async fn profiles(&self, viewer: &User, ids: &[Uuid]) -> Result<Vec<Profile>, ApiError> {
        self.client
            .clone()
            .get_profiles(authed(
                GetProfilesRequest {
                    user_ids: ids.iter().map(Uuid::to_string).collect(),
                },
                &viewer.token,
            ))
            .await
            .map(|r| r.into_inner().profiles)
            .map_err(|status| ApiError::from_status(&status))
    }

    pub async fn profile(&self, viewer: &User, id: Uuid) -> Profile {
        self.profiles(viewer, &[id]).await.unwrap().remove(0)
    }

    /// A consumer of this app's events with the given routing keys.
    pub async fn listen(&self, name: &str, bindings: &[&str]) -> lapin::Consumer {
        let spec = self.amqp.consumer_spec(name, bindings);
        let channel = self.amqp.broker.channel().await.unwrap();
        spec.declare(&channel, &self.amqp.exchange).await.unwrap();
        channel
            .basic_consume(
                spec.queue.as_str().into(),
                name.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await.unwrap();
        }
    }
}
