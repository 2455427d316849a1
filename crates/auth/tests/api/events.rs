use std::time::Duration;

use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use test_kit::{TcpProxy, next_event};

use crate::helpers::{Options, TestApp};

async fn consumer(app: &TestApp) -> lapin::Consumer {
    let spec = app.amqp.consumer_spec("users", &["user.registered"]);
    let channel = app.amqp.broker.channel().await.unwrap();
    spec.declare(&channel, &app.amqp.exchange).await.unwrap();
    channel
        .basic_consume(
            spec.queue.as_str().into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn registration_publishes_user_registered() {
    let app = TestApp::spawn().await;
    let mut consumer = consumer(&app).await;
    let user = app.register("olga").await.user.unwrap();
    let event = next_event(&mut consumer, Duration::from_secs(10))
        .await
        .expect("user.registered");
    assert_eq!(event.r#type, "user.registered");
    assert_eq!(event.producer, "auth");
    assert_eq!(event.subject, user.id);
    let Some(proto::EventPayload::UserRegistered(payload)) = event.payload else {
        panic!("payload")
    };
    assert_eq!(
        (payload.user_id, payload.username, payload.is_bot),
        (user.id, "olga".to_owned(), false)
    );
    app.stop().await;
}

#[tokio::test]
async fn registrations_while_rabbitmq_is_down_are_published_when_it_returns() {
    let amqp_addr = test_kit::amqp_url()
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let proxy = TcpProxy::start(
        tokio::net::lookup_host(amqp_addr)
            .await
            .unwrap()
            .next()
            .unwrap(),
    )
    .await
    .unwrap();
    let app = TestApp::spawn_with(Options {
        amqp_addr: Some(proxy.addr()),
        ..Options::default()
    })
    .await;
    let mut consumer = consumer(&app).await; // direct connection, not through the proxy

    proxy.cut();
    let user = app.register("pete").await.user.unwrap();
    assert!(
        next_event(&mut consumer, Duration::from_millis(1500))
            .await
            .is_none(),
        "nothing can be published yet"
    );
    let backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM event_outbox")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(backlog, 1, "the event waits in the outbox");

    proxy.restore();
    let event = next_event(&mut consumer, Duration::from_secs(20))
        .await
        .expect("published after RabbitMQ returned");
    assert_eq!(event.subject, user.id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM event_outbox")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        if backlog == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox row deleted after the confirm"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
