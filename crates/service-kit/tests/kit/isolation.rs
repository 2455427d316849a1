//! Two tests writing the same rows, keys, documents and queues at the same
//! time see only their own data, and nothing is left afterwards.

use std::time::Duration;

use futures::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use mongodb::bson::{Document, doc};
use service_kit::amqp::EventPublisher;
use service_kit::events;
use test_kit::{TestAmqp, TestMongo, TestPostgres, TestRedis};

async fn postgres_writer(value: &str) -> String {
    let db = TestPostgres::new().await.unwrap();
    sqlx::query("CREATE TABLE items (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO items VALUES ('same-key', $1)")
        .bind(value)
        .execute(&db.pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rows: Vec<String> = sqlx::query_scalar("SELECT value FROM items")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![value.to_owned()],
        "a test sees only its own rows"
    );
    db.name.clone()
}

#[tokio::test]
async fn postgres_databases_are_isolated_and_dropped() {
    let (a, b) = tokio::join!(postgres_writer("from-a"), postgres_writer("from-b"));
    assert_ne!(a, b);
    for name in [a, b] {
        assert!(
            !TestPostgres::exists(&name).await.unwrap(),
            "{name} must be dropped"
        );
    }
}

async fn redis_writer(value: &str) -> String {
    let redis = TestRedis::new().await.unwrap();
    let mut connection = redis.redis.clone();
    redis::cmd("SET")
        .arg(redis.key("same-key"))
        .arg(value)
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    redis::cmd("HSET")
        .arg(redis.key("hash"))
        .arg("f")
        .arg(value)
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let read: String = redis::cmd("GET")
        .arg(redis.key("same-key"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(read, value);
    assert_eq!(
        TestRedis::keys_with_prefix(&redis.prefix)
            .await
            .unwrap()
            .len(),
        2
    );
    redis.prefix.clone()
}

#[tokio::test]
async fn redis_prefixes_are_isolated_and_cleaned() {
    let (a, b) = tokio::join!(redis_writer("from-a"), redis_writer("from-b"));
    assert_ne!(a, b);
    for prefix in [a, b] {
        assert!(
            TestRedis::keys_with_prefix(&prefix)
                .await
                .unwrap()
                .is_empty(),
            "{prefix} keys must be gone"
        );
    }
}

async fn mongo_writer(value: &str) -> String {
    let mongo = TestMongo::new().await.unwrap();
    let docs = mongo.database.collection::<Document>("docs");
    docs.insert_one(doc! { "_id": "same-id", "value": value })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let found: Vec<Document> = docs
        .find(doc! {})
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get_str("value").unwrap(), value);
    mongo.name.clone()
}

#[tokio::test]
async fn mongo_databases_are_isolated_and_dropped() {
    let (a, b) = tokio::join!(mongo_writer("from-a"), mongo_writer("from-b"));
    let names = TestMongo::database_names().await.unwrap();
    for name in [a, b] {
        assert!(
            !names.contains(&name),
            "{name} must be dropped, found {names:?}"
        );
    }
}

async fn amqp_writer(user: &str) -> Vec<String> {
    let amqp = TestAmqp::new().await.unwrap();
    let spec = amqp.consumer_spec("inbox", &["user.*"]);
    let channel = amqp.broker.channel().await.unwrap();
    spec.declare(&channel, &amqp.exchange).await.unwrap();

    let publisher = EventPublisher::new(amqp.broker.clone(), amqp.exchange.clone());
    let event = events::envelope(
        "test",
        user,
        proto::EventPayload::UserRegistered(proto::events::v1::UserRegistered {
            user_id: user.to_owned(),
            ..Default::default()
        }),
    );
    publisher.publish(&event).await.unwrap();

    let mut consumer = channel
        .basic_consume(
            spec.queue.as_str().into(),
            "isolation".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let received = events::decode(&delivery.data).unwrap();
    assert_eq!(
        received.subject, user,
        "a test receives only its own events"
    );
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), consumer.next())
            .await
            .is_err(),
        "no event of the other test arrives"
    );
    vec![
        spec.queue.clone(),
        spec.retry_queue(),
        spec.dead_letter_queue(),
    ]
}

#[tokio::test]
async fn amqp_exchanges_and_queues_are_isolated_and_deleted() {
    let (a, b) = tokio::join!(amqp_writer("user-a"), amqp_writer("user-b"));
    for queue in a.into_iter().chain(b) {
        assert!(
            !test_kit::queue_exists(&queue).await.unwrap(),
            "{queue} must be deleted"
        );
    }
}
