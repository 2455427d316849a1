//! Fan-out benchmark (not a test): `cargo bench -p gateway`, with
//! `scripts/deps.sh` running and `npm ci --prefix tests/socketio` done.
//!
//! The same job for each server, one after the other: 1,000 authenticated
//! socket.io clients (the official client, in Node) in 100 rooms of 10;
//! `message.created` events published to RabbitMQ, each for the 10 members
//! of one room. The server consumes them and emits `message:new` to the
//! members' rooms. Ours is the gateway binary (Redis adapter included); the
//! peers are a Node.js socket.io server doing the same
//! (tests/socketio/bench/peer-server.mjs), once with the official Redis
//! adapter (the same job: replicas share rooms) and once without. Printed:
//! deliveries per server CPU-second, idle KB per connection, and delivery
//! latency p50/p99.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic
)]

use std::io::{BufRead as _, BufReader};

use futures::StreamExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::events::v1::{ChatMessage, MessageCreated};
use service_kit::amqp::EventPublisher;
use service_kit::events;
use service_kit::token::{SigningKey, TokenSigner, TokenSubject};
use test_kit::process::{cpu_seconds, rss_kb};
use test_kit::{TestAmqp, TestRedis};
use uuid::Uuid;

const CLIENTS: usize = 1_000;
const ROOM_SIZE: usize = 10;
const EVENTS: usize = 10_000;
/// Publishes awaiting their confirms at once: the servers get events as
/// fast as RabbitMQ can route them (one at a time, the publisher's confirm
/// round trips paced them at ~1,000 a second and left the servers mostly
/// idle).
const PUBLISHES_IN_FLIGHT: usize = 64;

fn socketio_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/socketio")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server on {port} never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_gateway(
    jwks: &str,
    amqp: &TestAmqp,
    redis: &TestRedis,
    queue: &str,
    workers: usize,
) -> Server {
    let port = free_port();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("ADMIN_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("JWT_JWKS", jwks)
        .env("AUTH_GRPC_URL", &closed)
        .env("USERS_GRPC_URL", &closed)
        .env("CHAT_GRPC_URL", &closed)
        .env("REDIS_URL", test_kit::redis_url())
        .env("REDIS_KEY_PREFIX", &redis.prefix)
        .env("AMQP_URL", test_kit::amqp_url())
        .env("AMQP_EXCHANGE", &amqp.exchange.name)
        .env("FANOUT_QUEUE", queue)
        .env("RUST_LOG", "error")
        .env("TOKIO_WORKER_THREADS", workers.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port).await;
    // The fan-out consumer declares its queue just after start-up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !test_kit::queue_exists(queue).await.unwrap() {
        assert!(Instant::now() < deadline, "gateway never declared {queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// The Node.js peer; with `redis`, its broadcasts go through the official
/// Redis adapter as ours do.
async fn start_peer(jwks: &str, amqp: &TestAmqp, queue: &str, redis: Option<&TestRedis>) -> Server {
    let port = free_port();
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
    let mut args = vec![
        port.to_string(),
        jwks.to_owned(),
        test_kit::amqp_url(),
        amqp.exchange.name.clone(),
        queue.to_owned(),
        proto_dir.to_str().unwrap().to_owned(),
    ];
    if let Some(redis) = redis {
        args.extend([test_kit::redis_url(), redis.prefix.clone()]);
    }
    let child = Command::new("node")
        .arg(socketio_dir().join("bench/peer-server.mjs"))
        .args(&args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !test_kit::queue_exists(queue).await.unwrap() {
        assert!(Instant::now() < deadline, "peer never declared {queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

struct Figures {
    deliveries: u64,
    per_cpu_second: f64,
    /// Part of the CPU spent in the kernel (socket writes on loopback).
    system_share: f64,
    idle_kb_per_connection: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Connects the clients, publishes the events, and measures the server.
async fn measure(
    server: &Server,
    tokens_file: &str,
    publisher: &EventPublisher,
    rooms: &[Vec<String>],
) -> Figures {
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kb(pid).unwrap();
    let mut load = Command::new("node")
        .arg(socketio_dir().join("bench/load.mjs"))
        .args([
            &server.url,
            tokens_file,
            &(EVENTS * ROOM_SIZE).to_string(),
            "60000",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(load.stdout.take().unwrap()).lines();
    let first = tokio::task::spawn_blocking(move || {
        let line = lines.next().unwrap().unwrap();
        (line, lines)
    })
    .await
    .unwrap();
    assert_eq!(first.0, "connected");
    let mut lines = first.1;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_kb_per_connection = (rss_kb(pid).unwrap() - rss_before) / CLIENTS as f64;

    let cpu_before = cpu_seconds(pid).unwrap();
    let event = |i: usize| {
        let room = &rooms[i % rooms.len()];
        let message = ChatMessage {
            id: Uuid::now_v7().to_string(),
            conversation_id: format!("room-{}", i % rooms.len()),
            seq: (i / rooms.len() + 1) as u64,
            sender_id: room[0].clone(),
            kind: "text".into(),
            content: format!("bench message {i}"),
            sent_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
            ..ChatMessage::default()
        };
        events::envelope(
            "bench",
            message.conversation_id.clone(),
            proto::EventPayload::MessageCreated(MessageCreated {
                message: Some(message),
                recipient_ids: room.clone(),
                bot_member_ids: Vec::new(),
                conversation_kind: "group".into(),
            }),
        )
    };
    futures::stream::iter(0..EVENTS)
        .map(|i| {
            let event = event(i);
            async move { publisher.publish(&event).await.unwrap() }
        })
        .buffer_unordered(PUBLISHES_IN_FLIGHT)
        .collect::<()>()
        .await;
    let summary = tokio::task::spawn_blocking(move || lines.next().unwrap().unwrap())
        .await
        .unwrap();
    let cpu_after = cpu_seconds(pid).unwrap();
    let (user, system) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    let cpu = user + system;
    load.wait().unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let deliveries = summary["deliveries"].as_u64().unwrap();
    Figures {
        deliveries,
        per_cpu_second: deliveries as f64 / cpu.max(0.01),
        system_share: system / cpu.max(0.01),
        idle_kb_per_connection,
        p50_ms: summary["p50_ms"].as_f64().unwrap_or(f64::NAN),
        p99_ms: summary["p99_ms"].as_f64().unwrap_or(f64::NAN),
    }
}

async fn run() {
    let amqp = TestAmqp::new().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let key = SigningKey::generate("bench").unwrap();
    let jwks = serde_json::to_string(&[key.public_jwk()]).unwrap();
    let signer = TokenSigner::new(
        key,
        "chat-platform-auth",
        "chat-platform",
        Duration::from_secs(3600),
    );
    let users: Vec<Uuid> = (0..CLIENTS).map(|_| Uuid::now_v7()).collect();
    let tokens: Vec<String> = users
        .iter()
        .map(|id| {
            signer
                .sign(&TokenSubject {
                    user_id: *id,
                    session_id: *id,
                    username: "bench",
                    bot: false,
                })
                .unwrap()
                .0
        })
        .collect();
    let rooms: Vec<Vec<String>> = users
        .chunks(ROOM_SIZE)
        .map(|room| room.iter().map(Uuid::to_string).collect())
        .collect();
    let tokens_file = std::env::temp_dir().join(format!("fanout-tokens-{}.json", Uuid::new_v4()));
    std::fs::write(&tokens_file, serde_json::to_string(&tokens).unwrap()).unwrap();
    let tokens_file = tokens_file.to_str().unwrap().to_owned();
    let publisher = EventPublisher::new(amqp.broker.clone(), amqp.exchange.clone());

    let gateway_queue = format!("{}.gateway", amqp.exchange.name);
    for name in [
        gateway_queue.clone(),
        format!("{gateway_queue}.retry"),
        format!("{gateway_queue}.dlq"),
    ] {
        amqp.track_queue(name);
    }
    // As the operator deploys it by default (a CPU request under one core:
    // one worker thread), and with tokio's default of a worker per core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut ours = Vec::new();
    for workers in [1, cores] {
        let server = start_gateway(&jwks, &amqp, &redis, &gateway_queue, workers).await;
        let figures = measure(&server, &tokens_file, &publisher, &rooms).await;
        drop(server);
        // Events the stopped gateway would still receive must not pile up.
        let channel = amqp.broker.channel().await.unwrap();
        channel
            .queue_delete(
                gateway_queue.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await
            .unwrap();
        let name = if workers == 1 {
            "gateway (ours, Rust, Redis adapter), 1 worker thread (as deployed)".to_owned()
        } else {
            format!("gateway (ours), {workers} worker threads (one per core)")
        };
        ours.push((name, figures));
    }
    let mut peers = Vec::new();
    for (name, redis) in [
        (
            "peer: Node.js socket.io 4.8, Redis adapter (the same job)",
            Some(&redis),
        ),
        (
            "peer: Node.js socket.io 4.8, no adapter (one process only)",
            None,
        ),
    ] {
        let queue = format!("{}.peer-{}", amqp.exchange.name, peers.len());
        let server = start_peer(&jwks, &amqp, &queue, redis).await;
        peers.push((
            name,
            measure(&server, &tokens_file, &publisher, &rooms).await,
        ));
    }
    let _ = std::fs::remove_file(&tokens_file);

    println!(
        "\n## Fan-out: {CLIENTS} socket.io clients in {} rooms of {ROOM_SIZE}; {EVENTS} message.created events from RabbitMQ ({} deliveries expected)",
        rooms.len(),
        EVENTS * ROOM_SIZE
    );
    println!(
        "| server | deliveries | deliveries per server CPU-second | of the CPU, in the kernel | idle KB per connection | latency p50 | latency p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    let rows = ours
        .iter()
        .map(|(name, figures)| (name.as_str(), figures))
        .chain(peers.iter().map(|(name, figures)| (*name, figures)));
    for (name, figures) in rows {
        println!(
            "| {name} | {} | {:.0} | {:.0}% | {:.1} | {:.0} ms | {:.0} ms |",
            figures.deliveries,
            figures.per_cpu_second,
            figures.system_share * 100.0,
            figures.idle_kb_per_connection,
            figures.p50_ms,
            figures.p99_ms
        );
    }
    let same_job = peers[0].1.per_cpu_second;
    println!(
        "\nours as a multiple of Node's deliveries per CPU-second (the same job): {:.1}x as deployed, {:.1}x with {cores} worker threads; against Node without an adapter: {:.1}x",
        ours[0].1.per_cpu_second / same_job,
        ours[1].1.per_cpu_second / same_job,
        ours[0].1.per_cpu_second / peers[1].1.per_cpu_second,
    );
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
