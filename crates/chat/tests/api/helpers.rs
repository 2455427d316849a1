use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser as _;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use proto::chat::v1::{
    Conversation, CreateGroupConversationRequest, CreatePrivateConversationRequest,
    GetHistoryRequest, Message, MessageKind, SendMessageRequest,
};
use proto::common::v1::PageRequest;
use proto::events::v1::UserRegistered;
use proto::users::v1::GetProfilesRequest;
use proto::users::v1::users_service_client::UsersServiceClient;
use secrecy::ExposeSecret as _;
use service_kit::amqp::EventPublisher;
use service_kit::token::{SigningKey, TokenSigner, TokenSubject};
use service_kit::{ApiError, ErrorCode, events};
use test_kit::{SpawnedService, TestAmqp, TestMongo, TestPostgres, TestRedis, wait_ready};
pub use test_kit::{authed, next_event};
use tonic::transport::Channel;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

pub struct Options {
    /// Reach RabbitMQ (for chat) through this address instead (a proxy).
    pub chat_amqp_addr: Option<SocketAddr>,
    pub max_group_members: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            chat_amqp_addr: None,
            max_group_members: 1000,
        }
    }
}

/// The chat service and the real users service it asks, on fresh stores.
pub struct TestApp {
    pub chat: ChatServiceClient<Channel>,
    pub users: UsersServiceClient<Channel>,
    pub mongo: TestMongo,
    pub amqp: TestAmqp,
    publisher: EventPublisher,
    signer: TokenSigner,
    _db: TestPostgres,
    _redis: TestRedis,
    chat_service: Option<SpawnedService>,
    users_service: Option<SpawnedService>,
}

fn amqp_url_via(addr: Option<SocketAddr>) -> String {
    let url = test_kit::amqp_url();
    match addr {
        None => url,
        Some(addr) => {
            let (credentials, rest) = url.split_once('@').unwrap();
            let path = rest.split_once('/').map_or("", |(_, path)| path);
            format!("{credentials}@{addr}/{path}")
        }
    }
}

/// The host:port of the local RabbitMQ.
pub async fn rabbitmq_addr() -> SocketAddr {
    let url = test_kit::amqp_url();
    let host = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    tokio::net::lookup_host(host).await.unwrap().next().unwrap()
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
        let mongo = TestMongo::new().await.unwrap();
        let key = SigningKey::generate("chat-test").unwrap();
        let jwks = serde_json::to_string(&[key.public_jwk()]).unwrap();
        let signer = TokenSigner::new(
            key,
            "chat-platform-auth",
            "chat-platform",
            Duration::from_secs(900),
        );

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
            format!("--database-url={}", db.url().expose_secret()),
            format!("--redis-url={}", test_kit::redis_url()),
            format!("--redis-key-prefix={}", redis.prefix),
            format!("--amqp-url={}", test_kit::amqp_url()),
            format!("--amqp-exchange={}", amqp.exchange.name),
            format!("--jwt-jwks={jwks}"),
            format!("--queue={queue}"),
            "--shutdown-grace=2s".to_owned(),
        ])
        .unwrap();
        let users_service = SpawnedService::spawn(move |listener, shutdown| {
            users::serve(users_config, listener, users_admin, shutdown)
        })
        .await
        .unwrap();

        let chat_admin = service_kit::net::bind_loopback().unwrap();
        let chat_admin_addr = chat_admin.local_addr().unwrap();
        let chat_config = chat::Config::try_parse_from([
            "chat".to_owned(),
            format!("--mongodb-url={}", test_kit::mongodb_url()),
            format!("--mongodb-database={}", mongo.name),
            format!("--amqp-url={}", amqp_url_via(options.chat_amqp_addr)),
            format!("--amqp-exchange={}", amqp.exchange.name),
            format!("--jwt-jwks={jwks}"),
            format!("--users-grpc-url={}", users_service.http_url()),
            "--users-cache-ttl=100ms".to_owned(),
            format!("--max-group-members={}", options.max_group_members),
            "--shutdown-grace=2s".to_owned(),
        ])
        .unwrap();
        let chat_service = SpawnedService::spawn(move |listener, shutdown| {
            chat::serve(chat_config, listener, chat_admin, shutdown)
        })
        .await
        .unwrap();

        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !test_kit::queue_exists(&queue).await.unwrap() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "users queue never declared"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        wait_ready(users_admin_addr, "users").await;
        wait_ready(chat_admin_addr, "chat").await;
        let publisher = EventPublisher::new(amqp.broker.clone(), amqp.exchange.clone());
        Self {
            chat: ChatServiceClient::new(
                Channel::from_shared(chat_service.http_url())
                    .unwrap()
                    .connect_lazy(),
            ),
            users: UsersServiceClient::new(
                Channel::from_shared(users_service.http_url())
                    .unwrap()
                    .connect_lazy(),
            ),
            mongo,
            amqp,
            publisher,
            signer,
            _db: db,
            _redis: redis,
            chat_service: Some(chat_service),
            users_service: Some(users_service),
        }
    }

    fn token_for(&self, id: Uuid, username: &str, bot: bool) -> String {
        self.signer
            .sign(&TokenSubject {
                user_id: id,
                session_id: Uuid::now_v7(),
                username,
                bot,
            })
            .unwrap()
            .0
    }

    /// A user registered the real way (`user.registered`), once users has
    /// created the profile.
    pub async fn register(&self, username: &str) -> User {
        self.register_as(username, false).await
    }

    pub async fn register_as(&self, username: &str, is_bot: bool) -> User {
        let id = Uuid::now_v7();
        let event = events::envelope(
            "auth",
            id.to_string(),
            proto::EventPayload::UserRegistered(UserRegistered {
                user_id: id.to_string(),
                username: username.into(),
                email: format!("{username}@example.com"),
                is_bot,
                display_name: username.into(),
            }),
        );
        let user = User {
            id: id.to_string(),
            token: self.token_for(id, username, is_bot),
        };
        // Republished every 2 s until the profile appears: users' queue may
        // exist a moment before its binding does (replays are harmless).
        let mut next_publish = tokio::time::Instant::now();
        let deadline = next_publish + Duration::from_secs(15);
        loop {
            if tokio::time::Instant::now() >= next_publish {
                self.publisher.publish(&event).await.unwrap();
                next_publish = tokio::time::Instant::now() + Duration::from_secs(2);
            }
            let profiles = self
                .users
                .clone()
                .get_profiles(authed(
                    GetProfilesRequest {
                        user_ids: vec![user.id.clone()],
                    },
                    &user.token,
                ))
                .await
                .unwrap()
                .into_inner()
                .profiles;
            if !profiles.is_empty() {
                return user;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "profile of {username} never appeared"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn private(&self, a: &User, b: &User) -> Result<Conversation, ApiError> {
        self.chat
            .clone()
            .create_private_conversation(authed(
                CreatePrivateConversationRequest {
                    peer_id: b.id.clone(),
                },
                &a.token,
            ))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| ApiError::from_status(&status))
    }

    pub async fn group(&self, owner: &User, title: &str, members: &[&User]) -> Conversation {
        self.chat
            .clone()
            .create_group_conversation(authed(
                CreateGroupConversationRequest {
                    title: title.into(),
                    member_ids: members.iter().map(|m| m.id.clone()).collect(),
                },
                &owner.token,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn send_with(
        &self,
        user: &User,
        request: SendMessageRequest,
    ) -> Result<Message, ApiError> {
        self.chat
            .clone()
            .send_message(authed(request, &user.token))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| ApiError::from_status(&status))
    }

    pub async fn send(&self, user: &User, conversation_id: &str, text: &str) -> Message {
        self.send_with(user, text_message(conversation_id, text))
            .await
            .unwrap()
    }

    pub async fn history(
        &self,
        user: &User,
        request: GetHistoryRequest,
    ) -> Result<proto::chat::v1::GetHistoryResponse, ApiError> {
        self.chat
            .clone()
            .get_history(authed(request, &user.token))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| ApiError::from_status(&status))
    }

    /// A consumer of this app's events with the given routing keys
    /// (connected straight to RabbitMQ).
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
        if let Some(service) = self.chat_service.take() {
            service.stop().await.unwrap();
        }
        if let Some(service) = self.users_service.take() {
            service.stop().await.unwrap();
        }
    }
}

pub fn text_message(conversation_id: &str, text: &str) -> SendMessageRequest {
    SendMessageRequest {
        conversation_id: conversation_id.into(),
        kind: MessageKind::Text as i32,
        content: text.into(),
        ..SendMessageRequest::default()
    }
}

pub fn page(limit: u32, cursor: &str) -> Option<PageRequest> {
    Some(PageRequest {
        cursor: cursor.into(),
        limit,
    })
}

#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, ApiError>, code: ErrorCode) -> ApiError {
    let error = result.expect_err("expected an error");
    assert_eq!(error.code, code, "{error}");
    error
}

#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: ErrorCode) {
    assert_code(
        result.map_err(|status| ApiError::from_status(&status)),
        code,
    );
}
