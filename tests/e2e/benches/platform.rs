//! Platform benchmark (not a test): `scripts/bench.sh` builds the release
//! binaries and runs it (`cargo bench -p e2e --bench platform [-- connections|pipeline]`).
//!
//! Side by side in one run, the whole platform (the five release binaries
//! on their own databases, as in the end-to-end tests) and Node.js
//! socket.io peers doing the same job, driven by the same Node.js scripts
//! with the official `socket.io-client` (tests/socketio/bench/):
//!
//! - **connections**: 19,000 clients connect (200 handshakes in flight);
//!   connect latency p50/p99, then idle KB per connection (the server's RSS
//!   growth over 19,000 idle sockets). Ours: the gateway with presence and
//!   the socket directory on every connect. Peer: `peer-server.mjs`.
//! - **pipeline**: send → persist → deliver. 100 users in 10 groups of 10;
//!   first a closed loop (16 senders, each waiting for its ack) finds the
//!   highest rate each system sustains on the local MongoDB-protocol server
//!   (SecantusDB, a fresh one per system); then all run an open loop at half
//!   the slowest one's rate. Ours runs twice: as deployed, and without
//!   delivered receipts (the gateway without chat's credential), the job
//!   the peer does. Printed: ack and delivery latency, and CPU per delivered message
//!   of the system's own processes (ours: gateway, chat, users, auth, bots;
//!   the peer: its one Node process), and of the database server apart.
//!   Peer: `pipeline-peer.mjs` (socket.io + the official MongoDB driver).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use e2e::{Options, Platform, root, stores};
use serde_json::{Value, json};
use test_kit::process::{rss_kb, total_cpu_seconds};
use test_kit::{TestAmqp, http};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const CONNECTIONS: usize = 19_000;
const CONNECT_CONCURRENCY: usize = 200;
const PIPELINE_USERS: usize = 100;
const GROUP_SIZE: usize = 10;
const SATURATION_SENDERS: usize = 16;
const SATURATION_SECONDS: u64 = 5;
const STEADY_SECONDS: u64 = 20;
/// The steady rate, as a share of the slowest system's closed-loop rate: a
/// 5 s closed loop overstates what can be held (receipts and SecantusDB's
/// slowdown as it fills lag behind), and at 80% ours fell behind.
const STEADY_SHARE: f64 = 0.5;
const KID: &str = "bench-1";

fn bench_script(name: &str) -> PathBuf {
    root().join("tests/socketio/bench").join(name)
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bench-{name}-{}", test_kit::unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Users with tokens signed by a fresh key (tests/socketio/bench/tokens.mjs).
struct Minted {
    key_pem: String,
    jwks: String,
    users: Vec<(String, String)>,
    tokens_file: PathBuf,
}

async fn mint(dir: &Path, count: usize) -> Minted {
    let status = Command::new("node")
        .arg(bench_script("tokens.mjs"))
        .args([&count.to_string(), dir.to_str().unwrap(), KID])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "tokens.mjs failed");
    let users: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("users.json")).unwrap()).unwrap();
    Minted {
        key_pem: std::fs::read_to_string(dir.join("key.pem")).unwrap(),
        jwks: std::fs::read_to_string(dir.join("jwks.json")).unwrap(),
        users: users
            .iter()
            .map(|u| {
                (
                    u["id"].as_str().unwrap().to_owned(),
                    u["token"].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
        tokens_file: dir.join("tokens.json"),
    }
}

/// A Node.js process started for this benchmark, killed when dropped.
fn node(script: &str, args: &[&str]) -> Child {
    Command::new("node")
        .arg(bench_script(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {script}: {e}"))
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> String {
    tokio::time::timeout(Duration::from_secs(600), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what}: no line within 600 s"))
        .unwrap()
        .unwrap_or_else(|| panic!("{what} ended early"))
}

/// Waits for a peer server's `ready` line.
async fn start_peer(script: &str, args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = node(script, args);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(next_line(&mut lines, script).await, "ready");
    (child, lines)
}

struct ConnectFigures {
    connected: u64,
    failed: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    idle_kb_per_connection: f64,
}

/// Connects `tokens_file`'s clients to `url` and measures the server `pid`.
async fn connection_storm(url: &str, tokens_file: &Path, pid: u32) -> ConnectFigures {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kb(pid).unwrap();
    let mut client = node(
        "connect.mjs",
        &[
            url,
            tokens_file.to_str().unwrap(),
            &CONNECT_CONCURRENCY.to_string(),
        ],
    );
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let summary: Value = serde_json::from_str(&next_line(&mut lines, "connect.mjs").await).unwrap();
    // Let the connect handlers' follow-up work (presence, directory) settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let connected = summary["connected"].as_u64().unwrap();
    let idle_kb_per_connection = (rss_kb(pid).unwrap() - rss_before) / connected.max(1) as f64;
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"stop\n").await.unwrap();
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(60), client.wait()).await;
    ConnectFigures {
        connected,
        failed: summary["failed"].as_u64().unwrap(),
        seconds: summary["seconds"].as_f64().unwrap(),
        p50_ms: summary["p50_ms"].as_f64().unwrap(),
        p99_ms: summary["p99_ms"].as_f64().unwrap(),
        max_ms: summary["max_ms"].as_f64().unwrap(),
        idle_kb_per_connection,
    }
}

async fn connections() {
    let scratch = Scratch::new("connections");
    let minted = mint(&scratch.0, CONNECTIONS).await;

    let ours = {
        let platform = Platform::start(Options {
            auth_signing_key: Some((KID.to_owned(), minted.key_pem.clone())),
            ..Options::default()
        })
        .await
        .unwrap();
        let pid = gateway_pid(&platform);
        connection_storm(platform.gateway(), &minted.tokens_file, pid).await
    };
    let peer = {
        let amqp = TestAmqp::new().await.unwrap();
        let queue = format!("{}.peer", amqp.exchange.name);
        amqp.track_queue(queue.clone());
        let port = stores::free_port();
        let proto = root().join("crates/proto/proto");
        let (server, _lines) = start_peer(
            "peer-server.mjs",
            &[
                &port.to_string(),
                &minted.jwks,
                &test_kit::amqp_url(),
                &amqp.exchange.name,
                &queue,
                proto.to_str().unwrap(),
            ],
        )
        .await;
        let url = format!("http://127.0.0.1:{port}");
        connection_storm(&url, &minted.tokens_file, server.id().unwrap()).await
    };

    println!(
        "\n## Connections: {CONNECTIONS} socket.io clients, {CONNECT_CONCURRENCY} handshakes in flight"
    );
    println!(
        "| server | connected | failed | all connected in | connect p50 | connect p99 | connect max | idle KB per connection |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, f) in [
        ("gateway (ours)", &ours),
        ("peer: Node.js socket.io 4.8", &peer),
    ] {
        println!(
            "| {name} | {} | {} | {:.1} s | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} |",
            f.connected,
            f.failed,
            f.seconds,
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            f.idle_kb_per_connection
        );
    }
}

fn gateway_pid(platform: &Platform) -> u32 {
    platform
        .pids()
        .into_iter()
        .find_map(|(name, pid)| name.starts_with("gateway").then_some(pid))
        .unwrap()
}

/// One system under the pipeline load: where clients connect, the users
/// and conversations to use, the processes whose CPU is its own, and its
/// database server's process.
struct System {
    url: String,
    users: Vec<(String, String)>,
    conversations: Vec<(String, Vec<String>)>,
    own_pids: Vec<u32>,
    database_pid: u32,
}

#[derive(Debug, Clone, Default)]
struct PhaseFigures {
    figures: Value,
    own_cpu_seconds: f64,
    database_cpu_seconds: f64,
}

impl PhaseFigures {
    fn number(&self, key: &str) -> f64 {
        self.figures[key].as_f64().unwrap_or(f64::NAN)
    }
}

/// Runs pipeline.mjs with one phase against `system`.
async fn run_phase(system: &System, scratch: &Path, phase: Value) -> PhaseFigures {
    let config = json!({
        "url": system.url,
        "users": system.users.iter().map(|(id, token)| json!({"id": id, "token": token})).collect::<Vec<_>>(),
        "conversations": system.conversations.iter().map(|(id, members)| json!({"id": id, "members": members})).collect::<Vec<_>>(),
        "phases": [phase],
    });
    let file = scratch.join(format!("pipeline-{}.json", test_kit::unique_suffix()));
    std::fs::write(&file, config.to_string()).unwrap();
    let mut client = node("pipeline.mjs", &[file.to_str().unwrap()]);
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let connected: Value =
        serde_json::from_str(&next_line(&mut lines, "pipeline.mjs").await).unwrap();
    assert_eq!(connected["connected"], system.users.len());
    let own_before = total_cpu_seconds(&system.own_pids).unwrap();
    let database_before = total_cpu_seconds(&[system.database_pid]).unwrap();
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    let figures: Value =
        serde_json::from_str(&next_line(&mut lines, "pipeline.mjs").await).unwrap();
    let own_cpu_seconds = total_cpu_seconds(&system.own_pids).unwrap() - own_before;
    let database_cpu_seconds = total_cpu_seconds(&[system.database_pid]).unwrap() - database_before;
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(30), client.wait()).await;
    let _ = std::fs::remove_file(file);
    PhaseFigures {
        figures,
        own_cpu_seconds,
        database_cpu_seconds,
    }
}

/// Registers users and creates their groups through the gateway's REST API.
async fn populate_platform(url: &str) -> (Vec<(String, String)>, Vec<(String, Vec<String>)>) {
    let http = http();
    let mut users = Vec::new();
    for i in 0..PIPELINE_USERS {
        let username = format!("bench{i}_{}", &test_kit::unique_suffix()[..6]);
        let body: Value = http
            .post(format!("{url}/api/v1/auth/register"))
            .json(&json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "password": "correct horse battery staple",
                "display_name": format!("Bench {i}"),
            }))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        users.push((
            body["user"]["id"].as_str().unwrap().to_owned(),
            body["tokens"]["access_token"].as_str().unwrap().to_owned(),
        ));
    }
    let mut conversations = Vec::new();
    for (index, group) in users.chunks(GROUP_SIZE).enumerate() {
        let members: Vec<String> = group.iter().map(|(id, _)| id.clone()).collect();
        // Profiles are created from auth's events: a just-registered member
        // may not be known to users for a moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let body: Value = loop {
            let response = http
                .post(format!("{url}/api/v1/conversations/group"))
                .bearer_auth(&group[0].1)
                .json(&json!({"title": format!("bench {index}"), "member_ids": &members[1..]}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            if status.is_success() {
                break body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "creating a group: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        conversations.push((body["id"].as_str().unwrap().to_owned(), members));
    }
    (users, conversations)
}

fn saturation_phase() -> Value {
    json!({"name": "saturate", "mode": "closed", "senders": SATURATION_SENDERS, "seconds": SATURATION_SECONDS})
}

fn steady_phase(rate: f64) -> Value {
    json!({"name": "steady", "mode": "open", "rate": rate, "seconds": STEADY_SECONDS})
}

/// The platform under the pipeline load, its users registered and their
/// groups created through the REST API.
async fn platform_system(options: Options) -> (Platform, System) {
    let platform = Platform::start(options).await.unwrap();
    let (users, conversations) = populate_platform(platform.gateway()).await;
    let system = System {
        url: platform.gateway().to_owned(),
        users,
        conversations,
        own_pids: platform.pids().into_iter().map(|(_, pid)| pid).collect(),
        database_pid: platform.mongo_pid().unwrap(),
    };
    (platform, system)
}

async fn pipeline() {
    let scratch = Scratch::new("pipeline");

    let ours = platform_system(Options::default()).await;
    let ours_lite = platform_system(Options {
        delivered_on_ack: false,
        ..Options::default()
    })
    .await;

    let minted = mint(&scratch.0, PIPELINE_USERS).await;
    let mut peer_mongo = stores::mongo(stores::Storage::Memory);
    peer_mongo.start().await;
    let conversations: Vec<(String, Vec<String>)> = minted
        .users
        .chunks(GROUP_SIZE)
        .enumerate()
        .map(|(index, group)| {
            (
                format!("group-{index}"),
                group.iter().map(|(id, _)| id.clone()).collect(),
            )
        })
        .collect();
    let setup = scratch.0.join("peer-setup.json");
    std::fs::write(
        &setup,
        json!({"conversations": conversations.iter().map(|(id, members)| json!({"id": id, "members": members})).collect::<Vec<_>>()})
            .to_string(),
    )
    .unwrap();
    let port = stores::free_port();
    let (peer_server, _lines) = start_peer(
        "pipeline-peer.mjs",
        &[
            &port.to_string(),
            &minted.jwks,
            &format!("mongodb://127.0.0.1:{}", peer_mongo.port),
            "bench",
            setup.to_str().unwrap(),
        ],
    )
    .await;
    let peer = System {
        url: format!("http://127.0.0.1:{port}"),
        users: minted.users.clone(),
        conversations,
        own_pids: vec![peer_server.id().unwrap()],
        database_pid: peer_mongo.pid().unwrap(),
    };

    let systems = [
        ("ours (gateway, chat, users, auth, bots)", &ours.1),
        ("ours, without delivered receipts", &ours_lite.1),
        ("peer: Node.js socket.io + mongodb driver", &peer),
    ];
    let mut saturated = Vec::new();
    for (_, system) in systems {
        saturated.push(run_phase(system, &scratch.0, saturation_phase()).await);
    }
    let rate = STEADY_SHARE
        * saturated
            .iter()
            .map(|f| f.number("acked_per_second"))
            .fold(f64::INFINITY, f64::min);
    let mut steady = Vec::new();
    for (_, system) in systems {
        steady.push(run_phase(system, &scratch.0, steady_phase(rate)).await);
    }

    println!(
        "\n## Pipeline: send → persist → deliver, {PIPELINE_USERS} users in groups of {GROUP_SIZE}, on SecantusDB"
    );
    println!(
        "\nHighest sustained rate (closed loop, {SATURATION_SENDERS} senders waiting for their acks, {SATURATION_SECONDS} s):\n"
    );
    println!("| system | sends acked per second | ack p50 | ack p99 | failed |");
    println!("|---|---|---|---|---|");
    for ((name, _), f) in systems.iter().zip(&saturated) {
        println!(
            "| {name} | {:.1} | {:.0} ms | {:.0} ms | {} |",
            f.number("acked_per_second"),
            f.number("ack_p50_ms"),
            f.number("ack_p99_ms"),
            f.number("failed"),
        );
    }
    println!(
        "\nSteady open loop at {rate:.1} sends/s ({:.0}% of the slowest system's rate), {STEADY_SECONDS} s:\n",
        STEADY_SHARE * 100.0
    );
    println!(
        "| system | sent | acked | deliveries (expected) | ack p50 | ack p99 | delivery p50 | delivery p99 | delivery max | own CPU per delivery | database CPU per delivery |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for ((name, _), f) in systems.iter().zip(&steady) {
        let deliveries = f.number("deliveries").max(1.0);
        println!(
            "| {name} | {} | {} | {} ({}) | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} µs | {:.0} µs |",
            f.number("sent"),
            f.number("acked"),
            f.number("deliveries"),
            f.number("expected_deliveries"),
            f.number("ack_p50_ms"),
            f.number("ack_p99_ms"),
            f.number("delivery_p50_ms"),
            f.number("delivery_p99_ms"),
            f.number("delivery_max_ms"),
            f.own_cpu_seconds / deliveries * 1e6,
            f.database_cpu_seconds / deliveries * 1e6,
        );
    }
    drop(peer_server);
    peer_mongo.stop().await;
}

fn main() {
    let sections: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wanted = |name: &str| sections.is_empty() || sections.iter().any(|s| s == name);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            if wanted("connections") {
                connections().await;
            }
            if wanted("pipeline") {
                pipeline().await;
            }
        });
}
