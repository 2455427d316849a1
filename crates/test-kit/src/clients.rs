//! What tests of every service do as clients: authenticated gRPC requests,
//! waiting for readiness, reading events off a queue.
// Test support: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt as _;
use lapin::options::BasicAckOptions;

/// A request carrying `authorization: Bearer <access token>`.
pub fn authed<T>(message: T, access_token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {access_token}").parse().unwrap(),
    );
    request
}

/// An HTTP client for tests (10 s timeout), with the crypto provider in place.
pub fn http() -> reqwest::Client {
    service_kit::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Polls the admin port's `/readyz` until it answers 200 (at most 30 s).
pub async fn wait_ready(admin: SocketAddr, what: &str) {
    let url = format!("http://{admin}/readyz");
    let client = http();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next event on `consumer` (acknowledged), or None after `within`.
pub async fn next_event(
    consumer: &mut lapin::Consumer,
    within: Duration,
) -> Option<proto::EventEnvelope> {
    let delivery = tokio::time::timeout(within, consumer.next())
        .await
        .ok()??
        .unwrap();
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    Some(service_kit::events::decode(&delivery.data).unwrap())
}
