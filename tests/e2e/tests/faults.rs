//! Faults under load: while messages flow (tests/socketio/e2e/load.mjs),
//! RabbitMQ, then Redis, then the MongoDB-protocol server (on-disk storage)
//! are stopped and started again, then the chat service is restarted. These
//! are the test's own store instances on their own ports, so no other test
//! is disturbed. Afterwards every acknowledged message must be in history
//! and have reached every member, and every service must be ready again
//! without help.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::stores::{Storage, mongo, rabbitmq, redis};
use e2e::{Options, Platform};

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_messages_survive_store_and_service_restarts() {
    let mut stores = [rabbitmq(), redis(), mongo(Storage::Disk)];
    for store in &mut stores {
        store.start().await;
    }
    let [rabbit, redis, mongo] = &mut stores;
    let mut platform = Platform::start(Options {
        amqp_url: Some(format!("amqp://guest:guest@127.0.0.1:{}/%2f", rabbit.port)),
        redis_url: Some(format!("redis://127.0.0.1:{}", redis.port)),
        mongodb_url: Some(format!("mongodb://127.0.0.1:{}", mongo.port)),
        ..Options::default()
    })
    .await
    .unwrap();

    let stop_file = std::env::temp_dir().join(format!("faults-stop-{}", test_kit::unique_suffix()));
    let load = platform
        .spawn_scenario("load", &[("STOP_FILE", stop_file.to_str().unwrap())])
        .unwrap();
    let steady = Duration::from_secs(5);
    let outage = Duration::from_secs(5);
    let recovery = Duration::from_secs(8);
    tokio::time::sleep(steady).await;
    let mut timeline = Vec::new();
    for store in [&mut *rabbit, &mut *redis, &mut *mongo] {
        store.stop().await;
        tokio::time::sleep(outage).await;
        store.start().await;
        timeline.push(format!("{} down {outage:?}", store.name));
        tokio::time::sleep(recovery).await;
    }
    platform.restart("chat").await.unwrap();
    timeline.push("chat restarted".to_owned());
    tokio::time::sleep(recovery).await;

    std::fs::write(&stop_file, "stop").unwrap();
    let output = tokio::time::timeout(Duration::from_secs(180), load.wait_with_output())
        .await
        .expect("the load script finishes")
        .unwrap();
    let _ = std::fs::remove_file(&stop_file);
    let stdout = platform.expect_success(&output);
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    eprintln!("faults: {timeline:?}\nresult: {report}");
    assert!(report["acked"].as_u64().unwrap() > 100, "{report}");
    assert_eq!(report["in_history"], report["acked"]);

    // Live delivery came back after each outage: most messages reached the
    // readers' sockets as they were sent, not only by catching up.
    let acked = report["acked"].as_u64().unwrap();
    for reader in report["readers"].as_array().unwrap() {
        assert!(reader["live"].as_u64().unwrap() * 2 > acked, "{report}");
        assert_eq!(reader["missing"], 0, "{report}");
    }

    // Everyone recovered on their own (consumers back off up to 10 s).
    let mut ready = platform.all_ready().await;
    for _ in 0..30 {
        if ready.iter().all(|(_, up)| *up) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        ready = platform.all_ready().await;
    }
    assert!(
        ready.iter().all(|(_, up)| *up),
        "{ready:?}\n{}",
        platform.log_tails()
    );
    for store in &mut stores {
        store.stop().await;
        let _ = std::fs::remove_dir_all(&store.dir);
    }
}
