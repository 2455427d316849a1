//! Chat benchmark (not a test): `cargo bench -p chat`, with `scripts/deps.sh`
//! running. The chat service runs as its own process (its CPU time is read
//! from /proc), the users service in this process, both on fresh stores.
//!
//! 1. Sends to a 10-member group, each followed by every other member's
//!    delivered and read receipts: chat CPU per send, sends/s, and the
//!    MongoDB-protocol server's CPU for the same work.
//! 2. Receipts, ours (one watermark write per acknowledgement) against the
//!    peer: the seed's per-message `delivery_status` model, where "read up to
//!    N" rewrites every message up to N, done straight on the same server.
//! 3. History pages in a conversation of 100,000 messages; 4. the
//!    conversation list of a user in 5,000 conversations: p50/p99 through
//!    the gRPC API (data bulk-loaded straight into MongoDB).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic
)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser as _;
use mongodb::bson::{DateTime, Document, doc};
use proto::chat::v1::chat_service_client::ChatServiceClient;
use proto::chat::v1::{
    CreateGroupConversationRequest, Direction, GetHistoryRequest, ListConversationsRequest,
    MarkRequest, MessageKind, SendMessageRequest,
};
use proto::common::v1::PageRequest;
use proto::events::v1::UserRegistered;
use proto::users::v1::GetProfilesRequest;
use proto::users::v1::users_service_client::UsersServiceClient;
use secrecy::ExposeSecret as _;
use service_kit::amqp::EventPublisher;
use service_kit::events;
use service_kit::token::{SigningKey, TokenSigner, TokenSubject};
use test_kit::{SpawnedService, TestAmqp, TestMongo, TestPostgres, TestRedis};
use tonic::transport::Channel;
use uuid::Uuid;

const GROUP_SIZE: usize = 10;
const SENDS: usize = 200;
const SENDERS: usize = 4;
const HISTORY_MESSAGES: i64 = 100_000;
const CONVERSATIONS: i64 = 5_000;
const SAMPLES: usize = 300;
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

struct User {
    id: String,
    token: String,
}

fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / CLOCK_TICKS_PER_SECOND
}

fn mongo_server_pid() -> Option<u32> {
    let home = std::env::var("HOME").ok()?;
    let pid = std::fs::read_to_string(format!(
        "{home}/.cache/chat-platform/deps/secantusd-27017.pid"
    ))
    .ok()?;
    pid.trim().parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct ChatProcess {
    child: Child,
    url: String,
}

impl Drop for ChatProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_chat(
    mongo: &TestMongo,
    amqp: &TestAmqp,
    jwks: &str,
    users_url: &str,
) -> ChatProcess {
    let grpc = free_port();
    let admin = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_chat"))
        .env("GRPC_ADDR", format!("127.0.0.1:{grpc}"))
        .env("ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("MONGODB_URL", test_kit::mongodb_url())
        .env("MONGODB_DATABASE", &mongo.name)
        .env("AMQP_URL", test_kit::amqp_url())
        .env("AMQP_EXCHANGE", &amqp.exchange.name)
        .env("JWT_JWKS", jwks)
        .env("USERS_GRPC_URL", users_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = test_kit::http().get(&ready).send().await
            && response.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "chat did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ChatProcess {
        child,
        url: format!("http://127.0.0.1:{grpc}"),
    }
}

async fn register(
    publisher: &EventPublisher,
    users: &UsersServiceClient<Channel>,
    signer: &TokenSigner,
    name: &str,
) -> User {
    let id = Uuid::now_v7();
    let event = events::envelope(
        "auth",
        id.to_string(),
        proto::EventPayload::UserRegistered(UserRegistered {
            user_id: id.to_string(),
            username: name.into(),
            email: format!("{name}@example.com"),
            is_bot: false,
            display_name: name.into(),
        }),
    );
    publisher.publish(&event).await.unwrap();
    let token = signer
        .sign(&TokenSubject {
            user_id: id,
            session_id: id,
            username: name,
            bot: false,
        })
        .unwrap()
        .0;
    loop {
        let found = users
            .clone()
            .get_profiles(authed(
                GetProfilesRequest {
                    user_ids: vec![id.to_string()],
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
            .profiles;
        if !found.is_empty() {
            return User {
                id: id.to_string(),
                token,
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends from `SENDERS` concurrent members; after each send every other
/// member acknowledges delivery, then reading.
async fn send_with_receipts(
    chat: &ChatServiceClient<Channel>,
    group: &str,
    members: &[User],
    sends: usize,
) -> Duration {
    let started = Instant::now();
    let per_sender = sends / SENDERS;
    futures::future::join_all((0..SENDERS).map(|s| async move {
        for i in 0..per_sender {
            let sender = &members[s];
            let message = chat
                .clone()
                .send_message(authed(
                    SendMessageRequest {
                        conversation_id: group.into(),
                        kind: MessageKind::Text as i32,
                        content: format!("message {i} from sender {s}"),
                        client_msg_id: format!("bench-{sends}-{s}-{i}"),
                        ..SendMessageRequest::default()
                    },
                    &sender.token,
                ))
                .await
                .unwrap()
                .into_inner();
            for read in [false, true] {
                futures::future::join_all(members.iter().filter(|m| m.id != sender.id).map(|m| {
                    let mut chat = chat.clone();
                    let request = authed(
                        MarkRequest {
                            conversation_id: group.into(),
                            up_to_seq: message.seq,
                            ..Default::default()
                        },
                        &m.token,
                    );
                    async move {
                        if read {
                            chat.mark_read(request).await.unwrap();
                        } else {
                            chat.mark_delivered(request).await.unwrap();
                        }
                    }
                }))
                .await;
            }
        }
    }))
    .await;
    started.elapsed()
}

/// The peer's receipts: the seed's per-message `delivery_status` array,
/// where "read up to N" rewrites each unread message's entry.
async fn peer_receipts(
    database: &mongodb::Database,
    members: &[String],
    messages: i64,
) -> (Duration, u64) {
    let collection = database.collection::<Document>("peer_messages");
    let docs: Vec<Document> = (1..=messages)
        .map(|seq| {
            doc! {
                "conversation_id": "peer",
                "seq": seq,
                "content": "x",
                "delivery_status": members
                    .iter()
                    .map(|m| doc! { "user_id": m, "status": "sent" })
                    .collect::<Vec<_>>(),
            }
        })
        .collect();
    collection.insert_many(docs).await.unwrap();
    collection
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! { "conversation_id": 1, "seq": 1 })
                .build(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut modified = 0;
    // Each member reads every 10 messages, as a client scrolling would.
    for up_to in (10..=messages).step_by(10) {
        for member in members {
            let result = collection
                .update_many(
                    doc! {
                        "conversation_id": "peer",
                        "seq": { "$lte": up_to },
                        "delivery_status": { "$elemMatch": { "user_id": member, "status": { "$ne": "read" } } },
                    },
                    doc! { "$set": { "delivery_status.$.status": "read" } },
                )
                .await
                .unwrap();
            modified += result.modified_count;
        }
    }
    (started.elapsed(), modified)
}

async fn ours_receipts(
    chat: &ChatServiceClient<Channel>,
    group: &str,
    members: &[User],
    messages: u64,
) -> Duration {
    let started = Instant::now();
    for up_to in (10..=messages).step_by(10) {
        for member in members {
            chat.clone()
                .mark_read(authed(
                    MarkRequest {
                        conversation_id: group.into(),
                        up_to_seq: up_to,
                        ..Default::default()
                    },
                    &member.token,
                ))
                .await
                .unwrap();
        }
    }
    started.elapsed()
}

/// Bulk-loads a private conversation of `HISTORY_MESSAGES` messages.
async fn load_history(database: &mongodb::Database, a: &str, b: &str) -> String {
    let id = Uuid::now_v7().to_string();
    let now = DateTime::now().timestamp_millis();
    database
        .collection::<Document>("conversations")
        .insert_one(doc! {
            "_id": &id, "kind": "group", "title": "history", "member_ids": [a, b],
            "bot_ids": [], "last_seq": HISTORY_MESSAGES, "last_activity_at": DateTime::now(),
            "created_at": DateTime::now(), "updated_at": DateTime::now(), "created_by": a,
        })
        .await
        .unwrap();
    let members = database.collection::<Document>("members");
    for user in [a, b] {
        members
            .insert_one(doc! {
                "_id": format!("{id}:{user}"), "conversation_id": &id, "user_id": user,
                "role": "member", "joined_at": DateTime::now(), "delivered_seq": 0_i64,
                "read_seq": 0_i64, "is_bot": false,
            })
            .await
            .unwrap();
    }
    let messages = database.collection::<Document>("messages");
    for batch in 0..(HISTORY_MESSAGES / 1000) {
        let docs: Vec<Document> = (1..=1000)
            .map(|i| {
                let seq = batch * 1000 + i;
                doc! {
                    "_id": Uuid::now_v7().to_string(), "conversation_id": &id, "seq": seq,
                    "sender_id": if seq % 2 == 0 { a } else { b }, "kind": "text",
                    "content": format!("message number {seq} with some ordinary chat text"),
                    "sent_at": DateTime::from_millis(now - HISTORY_MESSAGES + seq), "deleted": false,
                }
            })
            .collect();
        messages.insert_many(docs).await.unwrap();
    }
    id
}

/// Bulk-loads `CONVERSATIONS` private conversations of `user`.
async fn load_conversations(database: &mongodb::Database, user: &str) {
    let now = DateTime::now().timestamp_millis();
    let conversations = database.collection::<Document>("conversations");
    let members = database.collection::<Document>("members");
    for batch in 0..(CONVERSATIONS / 500) {
        let mut conversation_docs = Vec::new();
        let mut member_docs = Vec::new();
        for i in 0..500 {
            let n = batch * 500 + i;
            let id = Uuid::now_v7().to_string();
            let peer = Uuid::now_v7().to_string();
            conversation_docs.push(doc! {
                "_id": &id, "kind": "private", "pair_key": format!("{user}:{peer}"),
                "title": "", "member_ids": [user, &peer], "bot_ids": [], "last_seq": n % 50,
                "last_message": { "id": Uuid::now_v7().to_string(), "seq": n % 50, "sender_id": &peer,
                    "kind": "text", "preview": "see you tomorrow", "sent_at": DateTime::from_millis(now - n), "deleted": false },
                "last_activity_at": DateTime::from_millis(now - n * 1000),
                "created_at": DateTime::from_millis(now - n * 1000),
                "updated_at": DateTime::from_millis(now - n * 1000), "created_by": &peer,
            });
            for member in [user, peer.as_str()] {
                member_docs.push(doc! {
                    "_id": format!("{id}:{member}"), "conversation_id": &id, "user_id": member,
                    "role": "member", "joined_at": DateTime::from_millis(now - n * 1000),
                    "delivered_seq": 0_i64, "read_seq": 0_i64, "is_bot": false,
                });
            }
        }
        conversations.insert_many(conversation_docs).await.unwrap();
        members.insert_many(member_docs).await.unwrap();
    }
}

/// CPU milliseconds per request of chat and of the database server since
/// the readings given.
fn cpu_per_request(
    chat_pid: u32,
    mongo_pid: Option<u32>,
    chat_before: f64,
    mongo_before: Option<f64>,
) -> (String, String) {
    let per = |seconds: f64| format!("{:.2} ms", seconds * 1000.0 / SAMPLES as f64);
    (
        per(cpu_seconds(chat_pid) - chat_before),
        mongo_pid.zip(mongo_before).map_or_else(
            || "n/a".to_owned(),
            |(pid, before)| per(cpu_seconds(pid) - before),
        ),
    )
}

async fn time_requests<F, Fut>(samples: usize, mut call: F) -> Vec<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        call(i).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

async fn run() {
    let db = TestPostgres::new().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let amqp = TestAmqp::new().await.unwrap();
    let mongo = TestMongo::new().await.unwrap();
    let key = SigningKey::generate("bench").unwrap();
    let jwks = serde_json::to_string(&[key.public_jwk()]).unwrap();
    let signer = TokenSigner::new(
        key,
        "chat-platform-auth",
        "chat-platform",
        Duration::from_secs(3600),
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
    let users_config = users::Config::try_parse_from([
        "users".to_owned(),
        format!("--database-url={}", db.url().expose_secret()),
        format!("--redis-url={}", test_kit::redis_url()),
        format!("--redis-key-prefix={}", redis.prefix),
        format!("--amqp-url={}", test_kit::amqp_url()),
        format!("--amqp-exchange={}", amqp.exchange.name),
        format!("--jwt-jwks={jwks}"),
        format!("--queue={queue}"),
        "--log-filter=warn".to_owned(),
    ])
    .unwrap();
    let users_service =
        SpawnedService::spawn(move |l, s| users::serve(users_config, l, users_admin, s))
            .await
            .unwrap();
    while !test_kit::queue_exists(&queue).await.unwrap() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let users = UsersServiceClient::new(
        Channel::from_shared(users_service.http_url())
            .unwrap()
            .connect_lazy(),
    );
    let publisher = EventPublisher::new(amqp.broker.clone(), amqp.exchange.clone());
    let chat_process = start_chat(&mongo, &amqp, &jwks, &users_service.http_url()).await;
    let chat = ChatServiceClient::new(
        Channel::from_shared(chat_process.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let chat_pid = chat_process.child.id();
    let mongo_pid = mongo_server_pid();

    let mut members = Vec::new();
    for i in 0..GROUP_SIZE {
        members.push(register(&publisher, &users, &signer, &format!("member{i}")).await);
    }
    let group = chat
        .clone()
        .create_group_conversation(authed(
            CreateGroupConversationRequest {
                title: "bench".into(),
                member_ids: members[1..].iter().map(|m| m.id.clone()).collect(),
            },
            &members[0].token,
        ))
        .await
        .unwrap()
        .into_inner();

    // 1. Sends with receipts.
    send_with_receipts(&chat, &group.id, &members, 20).await; // warm-up
    let chat_cpu = cpu_seconds(chat_pid);
    let mongo_cpu = mongo_pid.map(cpu_seconds);
    let elapsed = send_with_receipts(&chat, &group.id, &members, SENDS).await;
    let chat_cpu = cpu_seconds(chat_pid) - chat_cpu;
    let mongo_cpu = mongo_pid.map(|pid| cpu_seconds(pid) - mongo_cpu.unwrap_or(0.0));
    let acks = SENDS * (GROUP_SIZE - 1) * 2;
    println!(
        "\n## Chat: sends to a {GROUP_SIZE}-member group, each followed by {} delivered + {} read receipts",
        GROUP_SIZE - 1,
        GROUP_SIZE - 1
    );
    println!("| figure | value |\n|---|---|");
    println!(
        "| sends ({SENDERS} concurrent senders) | {SENDS} sends + {acks} receipt calls in {:.2} s |",
        elapsed.as_secs_f64()
    );
    println!(
        "| sends/s (bound by the MongoDB-protocol server) | {:.0} |",
        SENDS as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| chat CPU per send, receipts included (the service's own cost) | {:.2} ms |",
        chat_cpu * 1000.0 / SENDS as f64
    );
    if let Some(mongo_cpu) = mongo_cpu {
        println!(
            "| SecantusDB CPU per send, receipts included | {:.2} ms |",
            mongo_cpu * 1000.0 / SENDS as f64
        );
    }

    // 2. Receipts: watermarks against per-message statuses.
    let readers: Vec<&User> = members[1..].iter().collect();
    let reader_ids: Vec<String> = readers.iter().map(|m| m.id.clone()).collect();
    let peer_group = chat
        .clone()
        .create_group_conversation(authed(
            CreateGroupConversationRequest {
                title: "receipts".into(),
                member_ids: reader_ids.clone(),
            },
            &members[0].token,
        ))
        .await
        .unwrap()
        .into_inner();
    let receipt_messages: u64 = 100;
    for i in 0..receipt_messages {
        chat.clone()
            .send_message(authed(
                SendMessageRequest {
                    conversation_id: peer_group.id.clone(),
                    kind: MessageKind::Text as i32,
                    content: format!("m{i}"),
                    ..SendMessageRequest::default()
                },
                &members[0].token,
            ))
            .await
            .unwrap();
    }
    let reader_users: Vec<User> = readers
        .iter()
        .map(|m| User {
            id: m.id.clone(),
            token: m.token.clone(),
        })
        .collect();
    let ours = ours_receipts(&chat, &peer_group.id, &reader_users, receipt_messages).await;
    let (peer, peer_modified) =
        peer_receipts(&mongo.database, &reader_ids, receipt_messages as i64).await;
    let ack_count = (receipt_messages / 10) as usize * reader_ids.len();
    println!(
        "\n## Receipts: {} members each read {receipt_messages} messages in steps of 10 ({ack_count} acknowledgements)",
        reader_ids.len()
    );
    println!("| approach | documents written | time |\n|---|---|---|");
    println!(
        "| ours: per-member watermark, through the gRPC API (+ outbox event each) | {ack_count} | {:.2} s |",
        ours.as_secs_f64()
    );
    println!(
        "| peer: per-message `delivery_status` (seed model), straight on MongoDB | {peer_modified} | {:.2} s |",
        peer.as_secs_f64()
    );

    // 3. History in a conversation of 100,000 messages.
    let started = Instant::now();
    let history_id = load_history(&mongo.database, &members[0].id, &members[1].id).await;
    println!(
        "\n(loaded {HISTORY_MESSAGES} messages in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let reader = &members[1];
    let (chat_before, mongo_before) = (cpu_seconds(chat_pid), mongo_pid.map(cpu_seconds));
    let history = time_requests(SAMPLES, |i| {
        let mut chat = chat.clone();
        // Spread anchors over the whole conversation, newest page included.
        let anchor = if i % 10 == 0 {
            0
        } else {
            (i as u64 * 7919) % HISTORY_MESSAGES as u64 + 1
        };
        let request = authed(
            GetHistoryRequest {
                conversation_id: history_id.clone(),
                direction: Direction::Backward as i32,
                anchor_seq: anchor,
                page: Some(PageRequest {
                    cursor: String::new(),
                    limit: 50,
                }),
            },
            &reader.token,
        );
        async move {
            let page = chat.get_history(request).await.unwrap().into_inner();
            assert!(!page.messages.is_empty());
        }
    })
    .await;

    let history_cpu = cpu_per_request(chat_pid, mongo_pid, chat_before, mongo_before);

    // 4. The conversation list of a user in 5,000 conversations.
    let started = Instant::now();
    let busy = &members[2];
    load_conversations(&mongo.database, &busy.id).await;
    println!(
        "(loaded {CONVERSATIONS} conversations in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let (chat_before, mongo_before) = (cpu_seconds(chat_pid), mongo_pid.map(cpu_seconds));
    let cursor = std::cell::RefCell::new(String::new());
    let list = time_requests(SAMPLES, |_| {
        let mut chat = chat.clone();
        let request = authed(
            ListConversationsRequest {
                page: Some(PageRequest {
                    cursor: cursor.borrow().clone(),
                    limit: 50,
                }),
            },
            &busy.token,
        );
        let cursor = &cursor;
        async move {
            let page = chat.list_conversations(request).await.unwrap().into_inner();
            assert!(!page.conversations.is_empty());
            // Walk down the list page by page; wrap around at the end.
            *cursor.borrow_mut() = page.page.unwrap().next_cursor;
        }
    })
    .await;
    let list_cpu = cpu_per_request(chat_pid, mongo_pid, chat_before, mongo_before);
    println!("\n## Reads through the gRPC API ({SAMPLES} sequential requests each, 50 per page)");
    println!(
        "| query | p50 | p99 | max | chat CPU / request | SecantusDB CPU / request |\n|---|---|---|---|---|---|"
    );
    println!(
        "| history page, conversation of {HISTORY_MESSAGES} messages, anchors all over it | {} | {} | {} | {} | {} |",
        ms(percentile(&history, 0.5)),
        ms(percentile(&history, 0.99)),
        ms(*history.last().unwrap()),
        history_cpu.0,
        history_cpu.1
    );
    println!(
        "| conversation list page, user in {CONVERSATIONS} conversations | {} | {} | {} | {} | {} |",
        ms(percentile(&list, 0.5)),
        ms(percentile(&list, 0.99)),
        ms(*list.last().unwrap()),
        list_cpu.0,
        list_cpu.1
    );
    drop(chat_process);
    users_service.stop().await.unwrap();
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
