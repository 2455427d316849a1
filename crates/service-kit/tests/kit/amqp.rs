//! The consumer helper: manual acks, delayed redelivery after a failure,
//! dead-lettering after N attempts; and the idempotency store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::BasicGetOptions;
use proto::EventEnvelope;
use service_kit::amqp::{
    Claim, EventHandler, EventPublisher, HandlerError, IdempotencyStore, run_consumer,
};
use service_kit::{Shutdown, events};
use test_kit::{TestAmqp, TestRedis};

/// Fails according to the event's subject: "ok" succeeds, "flaky" fails
/// once, "poison" always fails (transiently), "broken" fails permanently.
#[derive(Default)]
struct ScriptedHandler {
    attempts: Mutex<HashMap<String, u32>>,
}

impl ScriptedHandler {
    fn attempts(&self, subject: &str) -> u32 {
        self.attempts
            .lock()
            .unwrap()
            .get(subject)
            .copied()
            .unwrap_or(0)
    }
}

impl EventHandler for ScriptedHandler {
    async fn handle(&self, event: EventEnvelope) -> Result<(), HandlerError> {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(event.subject.clone()).or_default();
            *n += 1;
            *n
        };
        match event.subject.as_str() {
            "flaky" if attempt == 1 => Err(HandlerError::Transient("dependency down".into())),
            "poison" => Err(HandlerError::Transient("still down".into())),
            "broken" => Err(HandlerError::Permanent("cannot ever work".into())),
            _ => Ok(()),
        }
    }
}

fn event(subject: &str) -> EventEnvelope {
    events::envelope(
        "test",
        subject,
        proto::EventPayload::UserRegistered(proto::events::v1::UserRegistered {
            user_id: subject.to_owned(),
            ..Default::default()
        }),
    )
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn consumer_redelivers_after_nack_and_dead_letters_after_max_attempts() {
    redelivers_and_dead_letters(false).await;
}

/// The same with one `multiple` ack per batch: failures in a batch are
/// still retried or parked on their own, every handled delivery is acked
/// once (none comes back when the channel closes), and no ack covers a
/// delivery that was nacked (the broker would close the channel and
/// redeliver the batch's handled events).
#[tokio::test]
async fn a_consumer_acking_in_batches_settles_each_delivery_once() {
    redelivers_and_dead_letters(true).await;
}

const BURST: usize = 200;

async fn redelivers_and_dead_letters(ack_in_batches: bool) {
    test_kit::init_tracing();
    let amqp = TestAmqp::new().await.unwrap();
    let mut spec = amqp.consumer_spec("worker", &["user.*"]);
    spec.max_attempts = 3;
    spec.retry_delay = Duration::from_millis(200);
    spec.ack_in_batches = ack_in_batches;
    let handler = Arc::new(ScriptedHandler::default());
    let shutdown = Shutdown::new();

    // The topology first, and everything published before the consumer
    // starts: it then receives full prefetch windows, which mix outcomes.
    let probe = amqp.broker.channel().await.unwrap();
    spec.declare(&probe, &amqp.exchange).await.unwrap();
    let publisher = EventPublisher::new(amqp.broker.clone(), amqp.exchange.clone());
    for i in 0..BURST {
        publisher.publish(&event(&format!("ok-{i}"))).await.unwrap();
        if i == BURST / 2 {
            for subject in ["ok", "flaky", "poison", "broken"] {
                publisher.publish(&event(subject)).await.unwrap();
            }
        }
    }
    let consumer = tokio::spawn(run_consumer(
        amqp.broker.clone(),
        amqp.exchange.clone(),
        spec.clone(),
        handler.clone(),
        shutdown.clone(),
    ));

    eventually("flaky to succeed on its second attempt", || {
        handler.attempts("flaky") == 2
    })
    .await;
    eventually("poison to use up its attempts", || {
        handler.attempts("poison") == 3
    })
    .await;
    // Parked messages land in the DLQ: poison (after 3 attempts) and broken (at once).
    let mut parked = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while parked.len() < 2 && tokio::time::Instant::now() < deadline {
        if let Some(message) = probe
            .basic_get(
                spec.dead_letter_queue().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            let envelope = events::decode(&message.delivery.data).unwrap();
            let headers = message.delivery.properties.headers().clone().unwrap();
            let reason = match headers.inner().get("x-parked-reason") {
                Some(lapin::types::AMQPValue::LongString(reason)) => {
                    String::from_utf8_lossy(reason.as_bytes()).into_owned()
                }
                other => panic!("no parked reason: {other:?}"),
            };
            parked.insert(envelope.subject, reason);
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert!(parked["poison"].contains("still down"), "{parked:?}");
    assert!(parked["broken"].contains("cannot ever work"), "{parked:?}");

    // Nothing more arrives: no further attempts after parking.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(handler.attempts("ok"), 1);
    assert_eq!(handler.attempts("flaky"), 2);
    assert_eq!(handler.attempts("poison"), 3);
    assert_eq!(handler.attempts("broken"), 1);
    for i in 0..BURST {
        assert_eq!(handler.attempts(&format!("ok-{i}")), 1, "ok-{i}");
    }

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), consumer)
        .await
        .unwrap()
        .unwrap();
    // The consumer's channel is closed: what it left unacked is ready again.
    let queue = probe
        .queue_declare(
            spec.queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(queue.message_count(), 0, "every delivery was settled");
}

#[tokio::test]
async fn idempotency_claims_are_exclusive_and_completed_ones_stay_done() {
    let redis = TestRedis::new().await.unwrap();
    let store = IdempotencyStore::new(redis.redis.clone(), redis.prefix.clone());
    assert_eq!(store.claim("e1").await.unwrap(), Claim::Acquired);
    assert_eq!(store.claim("e1").await.unwrap(), Claim::InProgress);
    store.release("e1").await.unwrap();
    assert_eq!(
        store.claim("e1").await.unwrap(),
        Claim::Acquired,
        "released claims can be retaken"
    );
    store.complete("e1").await.unwrap();
    assert_eq!(store.claim("e1").await.unwrap(), Claim::Done);
    store.release("e1").await.unwrap();
    assert_eq!(
        store.claim("e1").await.unwrap(),
        Claim::Done,
        "release never undoes completion"
    );
    assert_eq!(store.claim("e2").await.unwrap(), Claim::Acquired);
}
