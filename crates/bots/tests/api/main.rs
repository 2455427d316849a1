//! The bots service against real RabbitMQ, Redis, PostgreSQL, SecantusDB and
//! the real auth, users and chat services.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use helpers::{TestApp, authed, next_event};
use proto::bots::v1::{GetDefinitionsStatusRequest, ListBotsRequest, PreviewRequest};
use service_kit::amqp::EventPublisher;

const BOTS: &str = r#"
bots:
  - name: weather_bot
    displayName: Weather
    description: forecasts and pizza
    commands:
      - name: weather
        description: Forecast for a city
        args:
          - { name: days, type: integer, min: 1, max: 7 }
          - { name: city, rest: true }
        reply: "{{days}}-day forecast for {{city}}: sunny, {{sender}}"
      - name: order
        description: Order a pizza
        dialogue: pizza
    rules:
      - name: thanks
        keywords: [thanks, "thank you"]
        reply: "You're welcome, {{sender}}!"
    dialogues:
      - name: pizza
        steps:
          - id: size
            prompt: "Which size? small, medium or large"
            expect: { type: choice, choices: [small, medium, large] }
          - id: count
            prompt: "How many {{size}} pizzas?"
            expect: { type: integer, min: 1, max: 10 }
          - id: address
            prompt: "Where to?"
            expect: { type: text }
        done: "Ordered {{count}} {{size}} pizza(s) to {{address}}."
    intents:
      threshold: 0.4
      items:
        - name: greeting
          examples: ["hello there", "hi", "good morning", "hey, how are you"]
          reply: "Hello!"
        - name: forecast
          examples: ["what's the weather like", "will it rain tomorrow", "is it going to be sunny", "temperature outside"]
          reply: "Try /weather 1 <city>"
        - name: hours
          examples: ["when are you open", "opening hours", "what time do you close", "are you open on sunday"]
          reply: "Open 9-17, Monday to Saturday"
        - name: pizza
          examples: ["I want to order a pizza", "can I get some food delivered", "I'm hungry, order food", "deliver a margherita"]
          dialogue: pizza
    fallback: "Sorry, I didn't get that. Try /help."
  - name: other_bot
    commands:
      - name: weather
        args: [{ name: city, rest: true }]
        reply: "other: {{city}}"
"#;

#[tokio::test]
async fn a_command_round_trips_through_chat() {
    let app = TestApp::spawn(BOTS).await;
    let ann = app.register("ann").await;
    let bot = app.bot_user(&ann, "weather_bot").await;
    let chat = app.private_with(&ann, &bot).await;

    let reply = app.ask(&ann, &chat.id, &bot, "/weather 3 New York").await;
    assert_eq!(
        reply.content,
        "3-day forecast for New York: sunny, ann (display)"
    );
    let usage = app
        .ask(&ann, &chat.id, &bot, "/weather tomorrow Oslo")
        .await;
    assert_eq!(
        usage.content,
        "Usage: /weather <days> <city...> — days: must be a whole number"
    );
    let help = app.ask(&ann, &chat.id, &bot, "/help").await;
    assert!(
        help.content
            .contains("/weather <days> <city...> — Forecast for a city"),
        "{}",
        help.content
    );
    let rule = app.ask(&ann, &chat.id, &bot, "thanks a lot").await;
    assert_eq!(rule.content, "You're welcome, ann (display)!");
    app.stop().await;
}

#[tokio::test]
async fn groups_answer_only_addressed_commands_and_mentions() {
    let app = TestApp::spawn(BOTS).await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let weather = app.bot_user(&ann, "weather_bot").await;
    let other = app.bot_user(&ann, "other_bot").await;
    let group = app
        .group(&ann, &[bob.id.clone(), weather.clone(), other.clone()])
        .await;

    let sent = app.send(&ann, &group.id, "/weather@other_bot Paris").await;
    let replies = app.replies(&ann, &group.id, &other, sent.seq, 1).await;
    assert_eq!(replies[0].content, "other: Paris");
    assert_eq!(
        replies[0].reply_to, sent.id,
        "group replies quote the command"
    );

    let addressed = app
        .ask(&bob, &group.id, &weather, "/weather@weather_bot 2 Rome")
        .await;
    assert_eq!(
        addressed.content,
        "2-day forecast for Rome: sunny, bob (display)"
    );
    // Plain text in a group needs a mention; with one, rules apply.
    let plain = app.send(&ann, &group.id, "thanks everyone").await;
    let mentioned = app
        .ask(&ann, &group.id, &weather, "@weather_bot thanks!")
        .await;
    assert_eq!(mentioned.content, "You're welcome, ann (display)!");

    let history = app.history(&ann, &group.id).await;
    let weather_replies: Vec<_> = history.iter().filter(|m| m.sender_id == weather).collect();
    assert_eq!(weather_replies.len(), 2, "{history:?}");
    assert!(weather_replies.iter().all(|m| m.reply_to != plain.id));
    // Only other_bot answered /weather@other_bot.
    assert_eq!(history.iter().filter(|m| m.sender_id == other).count(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_three_step_dialogue_survives_a_restart() {
    let mut app = TestApp::spawn(BOTS).await;
    let ann = app.register("ann").await;
    let bot = app.bot_user(&ann, "weather_bot").await;
    let chat = app.private_with(&ann, &bot).await;

    let prompt = app.ask(&ann, &chat.id, &bot, "/order").await;
    assert_eq!(prompt.content, "Which size? small, medium or large");
    let invalid = app.ask(&ann, &chat.id, &bot, "huge").await;
    assert_eq!(
        invalid.content,
        "Choose one of: small, medium, large. Which size? small, medium or large"
    );
    let count = app.ask(&ann, &chat.id, &bot, "Large").await;
    assert_eq!(count.content, "How many large pizzas?");

    app.stop_bots().await;
    app.start_bots().await;

    let address = app.ask(&ann, &chat.id, &bot, "2").await;
    assert_eq!(address.content, "Where to?");
    let done = app.ask(&ann, &chat.id, &bot, "1 Main Street").await;
    assert_eq!(done.content, "Ordered 2 large pizza(s) to 1 Main Street.");
    // The dialogue is over: the next message is matched afresh.
    let after = app.ask(&ann, &chat.id, &bot, "qwerty zxcv").await;
    assert_eq!(after.content, "Sorry, I didn't get that. Try /help.");
    app.stop().await;
}

#[tokio::test]
async fn intents_match_paraphrases_and_fall_back_below_the_threshold() {
    let app = TestApp::spawn(BOTS).await;
    let ann = app.register("ann").await;
    let labelled = [
        ("hello!", "greeting"),
        ("hey there", "greeting"),
        ("good morning to you", "greeting"),
        ("is it raining tomorrow?", "forecast"),
        ("what will the weather be like", "forecast"),
        ("how's the temperature outside today", "forecast"),
        ("what are your opening hours?", "hours"),
        ("when do you close today", "hours"),
        ("are you open sundays", "hours"),
        ("I'd like to order pizza", "pizza"),
        ("can you deliver food", "pizza"),
        ("i am hungry", "pizza"),
    ];
    let unrelated = [
        "my cat sleeps on the sofa",
        "quantum chromodynamics lecture",
        "blue",
    ];
    let mut bots = app.bots.clone();
    let mut preview = async |text: &str| {
        bots.preview(authed(
            PreviewRequest {
                bot_name: "weather_bot".into(),
                text: text.into(),
                conversation_kind: "private".into(),
                sender_display_name: "Ann".into(),
            },
            &ann.token,
        ))
        .await
        .unwrap()
        .into_inner()
    };
    let mut correct = 0;
    for (text, intent) in labelled {
        let answer = preview(text).await;
        if answer.matched_by == "intent" && answer.matched_name == intent {
            correct += 1;
        } else {
            println!(
                "miss: {text:?} → {} {} ({:.2})",
                answer.matched_by, answer.matched_name, answer.confidence
            );
        }
    }
    let accuracy = correct as f64 / labelled.len() as f64;
    println!(
        "intent accuracy: {correct}/{} = {accuracy:.2}",
        labelled.len()
    );
    assert!(accuracy >= 0.8, "accuracy {accuracy:.2}");
    for text in unrelated {
        let answer = preview(text).await;
        assert_eq!(answer.matched_by, "fallback", "{text:?}: {answer:?}");
        assert_eq!(answer.replies, ["Sorry, I didn't get that. Try /help."]);
    }
    // And live: an intent that starts a dialogue.
    let bot = app.bot_user(&ann, "weather_bot").await;
    let chat = app.private_with(&ann, &bot).await;
    let reply = app
        .ask(&ann, &chat.id, &bot, "I'd like to order a pizza please")
        .await;
    assert_eq!(reply.content, "Which size? small, medium or large");
    app.stop().await;
}

#[tokio::test]
async fn hot_reload_applies_a_change_and_keeps_the_old_version_on_error() {
    let app = TestApp::spawn(BOTS).await;
    let ann = app.register("ann").await;
    let mut bots = app.bots.clone();
    let status = async |bots: &mut proto::bots::v1::bots_service_client::BotsServiceClient<_>| {
        bots.get_definitions_status(authed(GetDefinitionsStatusRequest {}, &ann.token))
            .await
            .unwrap()
            .into_inner()
    };
    let before = status(&mut bots).await;
    assert_eq!(before.bot_count, 2);
    assert!(before.last_error.is_empty());

    // A ConfigMap-style update: a new file swapped in under the same path.
    let changed = BOTS.replace(
        "      - name: order\n",
        "      - name: forecast\n        reply: \"soon\"\n      - name: order\n",
    );
    let next = app.definitions.with_extension("next");
    std::fs::write(&next, &changed).unwrap();
    std::fs::rename(&next, &app.definitions).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let current = status(&mut bots).await;
        if current.loaded_digest != before.loaded_digest {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "change never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bot = app.bot_user(&ann, "weather_bot").await;
    let chat = app.private_with(&ann, &bot).await;
    assert_eq!(
        app.ask(&ann, &chat.id, &bot, "/forecast").await.content,
        "soon"
    );

    // A broken file is rejected; the previous version stays in force.
    std::fs::write(
        &app.definitions,
        changed.replace("{{days}}-day", "{{weeks}}-week"),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let rejected = loop {
        let current = status(&mut bots).await;
        if !current.last_error.is_empty() {
            break current;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "error never reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        rejected
            .last_error
            .contains("bots[weather_bot].commands[weather].reply"),
        "{}",
        rejected.last_error
    );
    assert_eq!(
        app.ask(&ann, &chat.id, &bot, "/forecast").await.content,
        "soon"
    );
    let ready = app.readyz().await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert!(
        ready["notes"]["definitions"]
            .as_str()
            .unwrap()
            .contains("unknown placeholder"),
        "{ready}"
    );
    let metrics = test_kit::http()
        .get(format!("http://{}/metrics", app.bots_admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("bots_definitions_invalid 1"), "{metrics}");
    let listed = bots
        .list_bots(authed(ListBotsRequest {}, &ann.token))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.bots[0].commands.iter().any(|c| c.name == "forecast"));
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_event_produces_one_reply() {
    let app = TestApp::spawn(BOTS).await;
    let ann = app.register("ann").await;
    let bot = app.bot_user(&ann, "weather_bot").await;
    let chat = app.private_with(&ann, &bot).await;
    let mut created = app.listen("redelivery-probe", &["message.created"]).await;

    let sent = app.send(&ann, &chat.id, "/weather 1 Lima").await;
    app.replies(&ann, &chat.id, &bot, sent.seq, 1).await;
    // The very event chat published for Ann's message, delivered again.
    let event = loop {
        let event = next_event(&mut created, Duration::from_secs(10))
            .await
            .unwrap();
        if matches!(&event.payload, Some(proto::EventPayload::MessageCreated(m)) if m.message.as_ref().unwrap().id == sent.id)
        {
            break event;
        }
    };
    let publisher = EventPublisher::new(app.amqp.broker.clone(), app.amqp.exchange.clone());
    publisher.publish(&event).await.unwrap();
    publisher.publish(&event).await.unwrap();
    // A later message's reply proves the redeliveries were processed first.
    let marker = app.send(&ann, &chat.id, "/help").await;
    app.replies(&ann, &chat.id, &bot, marker.seq, 1).await;
    let answers = app
        .history(&ann, &chat.id)
        .await
        .into_iter()
        .filter(|m| m.sender_id == bot && m.content.contains("Lima"))
        .count();
    assert_eq!(answers, 1);
    app.stop().await;
}

#[derive(Default)]
struct Received {
    bodies: Vec<serde_json::Value>,
    bad_signatures: usize,
}

#[tokio::test]
async fn a_webhook_bot_gets_signed_requests_and_its_reply_is_posted() {
    use axum::http::{HeaderMap, StatusCode};
    let received = Arc::new(Mutex::new(Received::default()));
    let secret = "webhook-test-secret";
    let server = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let received = received.clone();
                async move {
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    let timestamp: u64 = header("x-bot-timestamp").parse().unwrap_or(0);
                    let expected = bots::webhook::sign(secret.as_bytes(), timestamp, &body);
                    let mut received = received.lock().unwrap();
                    if header("x-bot-signature") != expected {
                        received.bad_signatures += 1;
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let reply = serde_json::json!({
                        "reply": format!("echo from {}: {}", value["sender"]["name"].as_str().unwrap(), value["message"]["text"].as_str().unwrap())
                    });
                    received.bodies.push(value);
                    (StatusCode::OK, reply.to_string())
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, server).await });

    let secret_file =
        std::env::temp_dir().join(format!("hook-secret-{}", test_kit::unique_suffix()));
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let definitions = format!(
        "bots:\n  - name: hook_bot\n    webhook:\n      url: http://{addr}/hook\n      secretFile: {}\n      timeoutMs: 2000\n",
        secret_file.display()
    );
    let app = TestApp::spawn(&definitions).await;
    let ann = app.register("ann").await;
    let bot = app.bot_user(&ann, "hook_bot").await;
    let chat = app.private_with(&ann, &bot).await;
    let mut typing = app.listen("typing-probe", &["typing.changed"]).await;

    let reply = app.ask(&ann, &chat.id, &bot, "ping").await;
    assert_eq!(reply.content, "echo from ann (display): ping");
    {
        let received = received.lock().unwrap();
        assert_eq!(received.bad_signatures, 0);
        assert_eq!(received.bodies.len(), 1);
        assert_eq!(received.bodies[0]["conversation"]["id"], chat.id.as_str());
    }
    // The bot showed typing while the webhook worked, then stopped.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = next_event(&mut typing, Duration::from_secs(10))
            .await
            .expect("typing events");
        if let Some(proto::EventPayload::TypingChanged(t)) = event.payload {
            assert_eq!(t.user_id, bot);
            assert_eq!(t.recipient_ids, std::slice::from_ref(&ann.id));
            seen.push(t.typing);
        }
    }
    assert_eq!(seen, [true, false]);
    app.stop().await;
    let _ = std::fs::remove_file(secret_file);
}
