use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser as _;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::auth::v1::{LoginRequest, RegisterRequest};
use proto::bots::v1::bots_service_client::BotsServiceClient;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use proto::chat::v1::{
    Conversation, CreateGroupConversationRequest, CreatePrivateConversationRequest,
    GetHistoryRequest, Message, MessageKind, SendMessageRequest,
};
use proto::users::v1::GetProfilesRequest;
use proto::users::v1::users_service_client::UsersServiceClient;
use secrecy::ExposeSecret as _;
use test_kit::{SpawnedService, TestAmqp, TestMongo, TestPostgres, TestRedis, wait_ready};
pub use test_kit::{authed, next_event};
use tonic::transport::Channel;

/// The credential bots presents to auth in these tests.
const SERVICE_TOKEN: &str = "bots-test-service-credential";

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// The bots service with the real auth, users and chat services, on fresh
/// stores sharing one test exchange; bot definitions in a temporary file.
pub struct TestApp {
    pub chat: ChatServiceClient<Channel>,
    pub users: UsersServiceClient<Channel>,
    pub auth: AuthServiceClient<Channel>,
    pub bots: BotsServiceClient<Channel>,
    pub amqp: TestAmqp,
    pub definitions: PathBuf,
    pub bots_admin: SocketAddr,
    bots_config: bots::Config,
    bots_service: Option<SpawnedService>,
    services: Vec<SpawnedService>,
    dir: PathBuf,
    _auth_db: TestPostgres,
    _users_db: TestPostgres,
    _redis: TestRedis,
    _mongo: TestMongo,
}

fn channel(service: &SpawnedService) -> Channel {
    Channel::from_shared(service.http_url())
        .unwrap()
        .connect_lazy()
}

impl TestApp {
    pub async fn spawn(definitions: &str) -> Self {
        test_kit::init_tracing();
        let auth_db = TestPostgres::new().await.unwrap();
        let users_db = TestPostgres::new().await.unwrap();
        let redis = TestRedis::new().await.unwrap();
        let amqp = TestAmqp::new().await.unwrap();
        let mongo = TestMongo::new().await.unwrap();
        let common = |name: &str| {
            vec![
                name.to_owned(),
                format!("--amqp-url={}", test_kit::amqp_url()),
                format!("--amqp-exchange={}", amqp.exchange.name),
                "--shutdown-grace=2s".to_owned(),
            ]
        };

        let auth_admin = service_kit::net::bind_loopback().unwrap();
        let auth_admin_addr = auth_admin.local_addr().unwrap();
        let mut args = common("auth");
        args.extend([
            format!("--database-url={}", auth_db.url().expose_secret()),
            format!("--redis-url={}", test_kit::redis_url()),
            format!("--redis-key-prefix={}auth:", redis.prefix),
            "--bcrypt-cost=4".to_owned(),
            format!("--service-token={SERVICE_TOKEN}"),
        ]);
        let auth_config = auth::Config::try_parse_from(args).unwrap();
        let auth = SpawnedService::spawn(move |listener, shutdown| {
            auth::serve(auth_config, listener, auth_admin, shutdown)
        })
        .await
        .unwrap();
        wait_ready(auth_admin_addr, "auth").await;
        let jwks_from_auth = format!("--auth-grpc-url={}", auth.http_url());

        let users_queue = format!("{}.users", amqp.exchange.name);
        let bots_queue = format!("{}.bots", amqp.exchange.name);
        for queue in [&users_queue, &bots_queue] {
            for name in [
                queue.clone(),
                format!("{queue}.retry"),
                format!("{queue}.dlq"),
            ] {
                amqp.track_queue(name);
            }
        }
        let users_admin = service_kit::net::bind_loopback().unwrap();
        let users_admin_addr = users_admin.local_addr().unwrap();
        let mut args = common("users");
        args.extend([
            format!("--database-url={}", users_db.url().expose_secret()),
            format!("--redis-url={}", test_kit::redis_url()),
            format!("--redis-key-prefix={}users:", redis.prefix),
            jwks_from_auth.clone(),
            format!("--queue={users_queue}"),
        ]);
        let users_config = users::Config::try_parse_from(args).unwrap();
        let users = SpawnedService::spawn(move |listener, shutdown| {
            users::serve(users_config, listener, users_admin, shutdown)
        })
        .await
        .unwrap();
        wait_ready(users_admin_addr, "users").await;
        while !test_kit::queue_exists(&users_queue).await.unwrap() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let chat_admin = service_kit::net::bind_loopback().unwrap();
        let chat_admin_addr = chat_admin.local_addr().unwrap();
        let mut args = common("chat");
        args.extend([
            format!("--mongodb-url={}", test_kit::mongodb_url()),
            format!("--mongodb-database={}", mongo.name),
            jwks_from_auth.clone(),
            format!("--users-grpc-url={}", users.http_url()),
            "--users-cache-ttl=100ms".to_owned(),
        ]);
        let chat_config = chat::Config::try_parse_from(args).unwrap();
        let chat = SpawnedService::spawn(move |listener, shutdown| {
            chat::serve(chat_config, listener, chat_admin, shutdown)
        })
        .await
        .unwrap();
        wait_ready(chat_admin_addr, "chat").await;

        let dir = std::env::temp_dir().join(format!("bots-test-{}", test_kit::unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let definitions_path = dir.join("bots.yaml");
        std::fs::write(&definitions_path, definitions).unwrap();
        let mut args = common("bots");
        args.extend([
            format!("--redis-url={}", test_kit::redis_url()),
            format!("--redis-key-prefix={}", redis.prefix),
            jwks_from_auth,
            format!("--auth-service-token={SERVICE_TOKEN}"),
            format!("--chat-grpc-url={}", chat.http_url()),
            format!("--users-grpc-url={}", users.http_url()),
            format!("--definitions={}", definitions_path.display()),
            "--reload-interval=100ms".to_owned(),
            format!("--queue={bots_queue}"),
        ]);
        let bots_config = bots::Config::try_parse_from(args).unwrap();

        let mut app = Self {
            chat: ChatServiceClient::new(channel(&chat)),
            users: UsersServiceClient::new(channel(&users)),
            auth: AuthServiceClient::new(channel(&auth)),
            bots: BotsServiceClient::new(Channel::from_static("http://127.0.0.1:1").connect_lazy()),
            amqp,
            definitions: definitions_path,
            bots_admin: "127.0.0.1:1".parse().unwrap(),
            bots_config,
            bots_service: None,
            services: vec![chat, users, auth],
            dir,
            _auth_db: auth_db,
            _users_db: users_db,
            _redis: redis,
            _mongo: mongo,
        };
        app.start_bots().await;
        app
    }

    /// Starts (or restarts) the bots service and waits until it is ready
    /// (definitions loaded, accounts provisioned, queue declared).
    pub async fn start_bots(&mut self) {
        let admin = service_kit::net::bind_loopback().unwrap();
        self.bots_admin = admin.local_addr().unwrap();
        let config = self.bots_config.clone();
        let service = SpawnedService::spawn(move |listener, shutdown| {
            bots::serve(config, listener, admin, shutdown)
        })
        .await
        .unwrap();
        self.bots = BotsServiceClient::new(channel(&service));
        self.bots_service = Some(service);
        wait_ready(self.bots_admin, "bots").await;
        while !test_kit::queue_exists(&self.bots_config.queue)
            .await
            .unwrap()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop_bots(&mut self) {
        if let Some(service) = self.bots_service.take() {
            service.stop().await.unwrap();
        }
    }

    /// Registers and logs in through auth; waits until users has the profile.
    pub async fn register(&self, username: &str) -> User {
        let mut auth = self.auth.clone();
        auth.register(RegisterRequest {
            username: username.into(),
            email: format!("{username}@example.com"),
            password: "correct horse battery".into(),
            display_name: format!("{username} (display)"),
            client: None,
        })
        .await
        .unwrap();
        let pair = auth
            .login(LoginRequest {
                login: username.into(),
                password: "correct horse battery".into(),
                client: None,
            })
            .await
            .unwrap()
            .into_inner();
        let user = User {
            id: pair.user_id,
            token: pair.access_token,
        };
        self.wait_for_profile(&user, &user.id).await;
        user
    }

    /// Waits until users knows `id` (bots' accounts arrive by event too).
    pub async fn wait_for_profile(&self, viewer: &User, id: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let profiles = self
                .users
                .clone()
                .get_profiles(authed(
                    GetProfilesRequest {
                        user_ids: vec![id.to_owned()],
                    },
                    &viewer.token,
                ))
                .await
                .unwrap()
                .into_inner()
                .profiles;
            if !profiles.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "profile {id} never appeared"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The platform user id of a bot (its profile exists in users).
    pub async fn bot_user(&self, viewer: &User, name: &str) -> String {
        let id = self
            .bots
            .clone()
            .get_bot(authed(
                proto::bots::v1::GetBotRequest { name: name.into() },
                &viewer.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .user_id;
        assert!(!id.is_empty(), "{name} has no account");
        self.wait_for_profile(viewer, &id).await;
        id
    }

    pub async fn private_with(&self, user: &User, peer_id: &str) -> Conversation {
        self.chat
            .clone()
            .create_private_conversation(authed(
                CreatePrivateConversationRequest {
                    peer_id: peer_id.into(),
                },
                &user.token,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn group(&self, owner: &User, member_ids: &[String]) -> Conversation {
        self.chat
            .clone()
            .create_group_conversation(authed(
                CreateGroupConversationRequest {
                    title: "bots".into(),
                    member_ids: member_ids.to_vec(),
                },
                &owner.token,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn send(&self, user: &User, conversation_id: &str, text: &str) -> Message {
        self.chat
            .clone()
            .send_message(authed(
                SendMessageRequest {
                    conversation_id: conversation_id.into(),
                    kind: MessageKind::Text as i32,
                    content: text.into(),
                    ..SendMessageRequest::default()
                },
                &user.token,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// Every message of the conversation, oldest first.
    pub async fn history(&self, user: &User, conversation_id: &str) -> Vec<Message> {
        self.chat
            .clone()
            .get_history(authed(
                GetHistoryRequest {
                    conversation_id: conversation_id.into(),
                    page: Some(proto::common::v1::PageRequest {
                        limit: 200,
                        cursor: String::new(),
                    }),
                    ..GetHistoryRequest::default()
                },
                &user.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .messages
    }

    /// Waits until `count` messages from `sender` exist after `after_seq`; returns them.
    pub async fn replies(
        &self,
        user: &User,
        conversation_id: &str,
        sender: &str,
        after_seq: u64,
        count: usize,
    ) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let replies: Vec<Message> = self
                .history(user, conversation_id)
                .await
                .into_iter()
                .filter(|m| m.sender_id == sender && m.seq > after_seq)
                .collect();
            if replies.len() >= count {
                return replies;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {count} replies from {sender}, got {replies:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `text` and returns the bot's single reply to it.
    pub async fn ask(&self, user: &User, conversation_id: &str, bot: &str, text: &str) -> Message {
        let sent = self.send(user, conversation_id, text).await;
        let mut replies = self.replies(user, conversation_id, bot, sent.seq, 1).await;
        replies.remove(0)
    }

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

    pub async fn readyz(&self) -> serde_json::Value {
        test_kit::http()
            .get(format!("http://{}/readyz", self.bots_admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        self.stop_bots().await;
        for service in self.services.drain(..) {
            service.stop().await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
