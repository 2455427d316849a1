use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Options, TestApp};

fn socketio_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/socketio")
}

/// Runs a script of tests/socketio with the official socket.io-client; it
/// must succeed (its asserts are the test's).
async fn node(script: &str, args: &[&str]) {
    let dir = socketio_dir();
    assert!(
        dir.join("node_modules/socket.io-client").exists(),
        "run `npm ci --prefix tests/socketio` (scripts/test.sh does)"
    );
    let output = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn two_users_chat_over_socketio_with_the_official_client() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.user("alice").await;
    let (bob, bob_token) = app.user("bob").await;
    let (status, conversation) = app
        .call(
            Method::POST,
            "/api/v1/conversations/private",
            Some(&alice_token),
            Some(json!({ "peer_id": bob })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    node(
        "chat-flow.mjs",
        &[
            &app.base,
            &alice_token,
            &bob_token,
            conversation["id"].as_str().unwrap(),
            &alice,
        ],
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_message_sent_through_one_replica_reaches_sockets_on_another() {
    let app = TestApp::spawn_with(Options {
        gateways: 2,
        ..Options::default()
    })
    .await;
    let (_, alice_token) = app.user("alice").await;
    let (bob, bob_token) = app.user("bob").await;
    let (status, conversation) = app
        .call(
            Method::POST,
            "/api/v1/conversations/private",
            Some(&alice_token),
            Some(json!({ "peer_id": bob })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    node(
        "two-replicas.mjs",
        &[
            &app.base,
            &app.replicas[0],
            &alice_token,
            &bob_token,
            conversation["id"].as_str().unwrap(),
        ],
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_loses_its_socket_and_goes_offline() {
    let app = TestApp::spawn_with(Options {
        socket_ping: ("300ms", "400ms"),
        ..Options::default()
    })
    .await;
    let (_, live_token) = app.user("lively").await;
    let (silent, silent_token) = app.user("silent").await;
    node(
        "heartbeat.mjs",
        &[&app.base, &live_token, &silent_token, &silent, "300", "400"],
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn connected_sockets_keep_their_user_online_past_the_presence_ttl() {
    let app = TestApp::spawn_with(Options {
        presence_ttl: "1s",
        presence_heartbeat: "250ms",
        ..Options::default()
    })
    .await;
    let (alice, alice_token) = app.user("alice").await;
    let (_, bob_token) = app.user("bob").await;
    node(
        "presence.mjs",
        &[&app.base, &alice_token, &bob_token, &alice, "2500"],
    )
    .await;
    app.stop().await;
}
