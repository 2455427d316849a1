//! Bot reply throughput (not a test): `cargo bench -p bots`, with
//! `scripts/deps.sh` running.
//!
//! 1. End to end: 10 users, each in a private chat with a command bot, send
//!    20 `/weather` commands each at once; the clock stops when all 200
//!    replies are in chat's history. Everything runs for real (auth, users,
//!    chat on SecantusDB, bots, RabbitMQ, Redis), so this is bounded by the
//!    slowest part: chat's message inserts on the local MongoDB-protocol
//!    server (each reply is one more send).
//! 2. The bots engine alone: answers per second of one core for a command,
//!    a rule, an intent, and a dialogue step — the bots service's own cost
//!    per reply, apart from the I/O around it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    dead_code,
    unused_imports
)]

#[path = "../tests/api/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use bots::engine::{self, DialogueChange, Incoming};

const USERS: usize = 10;
const COMMANDS_PER_USER: usize = 20;

const BOTS: &str = r#"
bots:
  - name: bench_bot
    commands:
      - name: weather
        args:
          - { name: days, type: integer, min: 1, max: 7 }
          - { name: city, rest: true }
        reply: "{{days}}-day forecast for {{city}}: sunny, {{sender}}"
      - name: order
        dialogue: pizza
    rules:
      - name: thanks
        keywords: [thanks, "thank you"]
        reply: "You're welcome, {{sender}}!"
    dialogues:
      - name: pizza
        steps:
          - id: size
            prompt: "Which size?"
            expect: { type: choice, choices: [small, medium, large] }
          - id: count
            prompt: "How many {{size}}?"
            expect: { type: integer, min: 1, max: 10 }
        done: "{{count}} x {{size}}"
    intents:
      items:
        - name: greeting
          examples: ["hello there", "hi", "good morning", "hey, how are you"]
          reply: "Hello!"
        - name: forecast
          examples: ["what's the weather like", "will it rain tomorrow", "is it going to be sunny"]
          reply: "Try /weather"
        - name: hours
          examples: ["when are you open", "opening hours", "what time do you close"]
          reply: "9-17"
"#;

async fn end_to_end() {
    let app = helpers::TestApp::spawn(BOTS).await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(app.register(&format!("bench{i}")).await);
    }
    let bot = app.bot_user(&users[0], "bench_bot").await;
    let mut chats = Vec::new();
    for user in &users {
        chats.push(app.private_with(user, &bot).await);
    }
    let started = Instant::now();
    let sends = users.iter().zip(&chats).map(|(user, chat)| {
        let app = &app;
        async move {
            for i in 0..COMMANDS_PER_USER {
                app.send(user, &chat.id, &format!("/weather {} Paris", i % 7 + 1))
                    .await;
            }
        }
    });
    futures::future::join_all(sends).await;
    let sent = started.elapsed();
    for (user, chat) in users.iter().zip(&chats) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let replies = app
                .history(user, &chat.id)
                .await
                .iter()
                .filter(|m| m.sender_id == bot)
                .count();
            if replies >= COMMANDS_PER_USER {
                break;
            }
            assert!(Instant::now() < deadline, "replies missing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let elapsed = started.elapsed();
    let total = USERS * COMMANDS_PER_USER;
    println!("\n## End to end: {total} commands from {USERS} users, each answered through chat");
    println!("| commands sent in | all replies stored after | replies per second |");
    println!("|---|---|---|");
    println!(
        "| {:.2} s | {:.2} s | {:.1} |",
        sent.as_secs_f64(),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    app.stop().await;
}

fn engine_alone() {
    let set = bots::definition::load(BOTS).unwrap();
    let bot = set.get("bench_bot").unwrap();
    let started_dialogue = engine::respond(
        bot,
        &Incoming {
            text: "/order",
            sender_name: "Ann",
            group: false,
        },
        None,
        0,
    );
    let DialogueChange::Set(state) = started_dialogue.dialogue else {
        panic!("no dialogue")
    };
    println!("\n## The bots engine alone (one core)");
    println!("| message | matched by | answers per second |");
    println!("|---|---|---|");
    for (text, dialogue) in [
        ("/weather 3 New York", None),
        ("thanks a lot", None),
        ("is it going to rain tomorrow?", None),
        ("large", Some(&state)),
    ] {
        let rounds = 100_000;
        let started = Instant::now();
        let mut matched = "";
        for _ in 0..rounds {
            let response = engine::respond(
                bot,
                &Incoming {
                    text,
                    sender_name: "Ann",
                    group: false,
                },
                dialogue,
                1,
            );
            matched = response.matched_by.as_str();
            std::hint::black_box(response);
        }
        println!(
            "| {text:?} | {matched} | {:.0} |",
            f64::from(rounds) / started.elapsed().as_secs_f64()
        );
    }
}

fn main() {
    engine_alone();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(end_to_end());
}
