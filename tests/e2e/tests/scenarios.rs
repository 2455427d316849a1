//! End-to-end scenarios on the real binaries (see `e2e::Platform`), each on
//! its own platform instance, driven by the official socket.io-client,
//! fetch and gRPC.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::{Options, Platform};

/// One platform at a time: five processes per test on two cores, and one
/// MongoDB-protocol server for all, would otherwise time each other out.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh user, registered over REST; returns its access token.
async fn register(platform: &Platform, name: &str) -> String {
    let suffix = test_kit::unique_suffix();
    let registered: serde_json::Value = test_kit::http()
        .post(format!("{}/api/v1/auth/register", platform.gateway()))
        .json(
            &serde_json::json!({"username": format!("{name}_{}", &suffix[..8]),
            "email": format!("{name}{suffix}@example.com"), "password": "correct horse battery"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    registered["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn run(script: &str, options: Options) -> serde_json::Value {
    let _turn = ONE_AT_A_TIME.lock().await;
    let platform = Platform::start(options).await.unwrap();
    let result = platform.scenario(script, &[]).await;
    match result {
        Ok(value) => {
            eprintln!("{value}");
            value
        }
        Err(error) => panic!("{error:#}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn register_login_private_chat_typing_and_receipts() {
    let result = run("chat", Options::default()).await;
    assert_eq!(result["scenario"], "chat");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_of_ten_gets_every_message_once() {
    let result = run("group", Options::default()).await;
    assert_eq!(result["members"], 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnecting_member_catches_up() {
    let result = run("reconnect", Options::default()).await;
    assert_eq!(result["missed"], 25);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bot_answers_commands_and_holds_a_dialogue() {
    run("bot", Options::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gateway_replicas_carry_messages_between_them() {
    let result = run(
        "replicas",
        Options {
            gateways: 2,
            ..Options::default()
        },
    )
    .await;
    assert_eq!(result["crossed"], 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_rotate_and_a_replay_revokes_the_family() {
    run("refresh", Options::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_block_stops_messages_and_hides_the_blocker() {
    run("blocking", Options::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_socketio_traffic_neither_crashes_nor_wedges_the_gateway() {
    let result = run("malformed", Options::default()).await;
    assert!(result["error_acks"].as_u64().unwrap() > 50, "{result}");
}

#[tokio::test(flavor = "multi_thread")]
async fn long_polling_and_upgrading_clients_chat_like_websocket_ones() {
    let result = run("transports", Options::default()).await;
    assert_eq!(result["upgraded"], "websocket");
}

/// gRPC is public too: the bots service reports its definitions to a
/// logged-in client.
#[tokio::test(flavor = "multi_thread")]
async fn the_bots_grpc_api_reports_the_loaded_definitions() {
    use proto::bots::v1::GetDefinitionsStatusRequest;
    use proto::bots::v1::bots_service_client::BotsServiceClient;

    let _turn = ONE_AT_A_TIME.lock().await;
    let platform = Platform::start(Options::default()).await.unwrap();
    let token = register(&platform, "grpc").await;
    let mut client = BotsServiceClient::connect(platform.bots_grpc.clone())
        .await
        .unwrap();
    let status = client
        .get_definitions_status(test_kit::clients::authed(
            GetDefinitionsStatusRequest {},
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.bot_count, 1, "{status:?}");
    assert!(status.last_error.is_empty(), "{status:?}");
    let anonymous = client
        .get_definitions_status(GetDefinitionsStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
}

/// schemathesis generates valid and invalid requests for every operation of
/// the gateway's OpenAPI document: none may get a 5xx.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_generated_requests_get_no_server_error() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let platform = Platform::start(Options::default()).await.unwrap();
    let token = register(&platform, "e2e").await;
    let output = tokio::process::Command::new("bash")
        .arg(e2e::root().join("scripts/fuzz-api.sh"))
        .args([platform.gateway(), token.as_str()])
        .output()
        .await
        .unwrap();
    let stdout = platform.expect_success(&output);
    let summary = stdout.lines().last().unwrap_or_default().to_owned();
    eprintln!("{summary}");
    let requests: u64 = summary
        .split_whitespace()
        .find_map(|part| part.strip_prefix("requests="))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(requests >= 1_000, "{summary}");
    assert!(summary.ends_with("server_errors=0"), "{summary}");
}

/// The web client in headless Chromium: two people register, chat with
/// typing and read receipts, and one asks the bot for /help.
#[tokio::test(flavor = "multi_thread")]
async fn the_web_client_works_in_a_browser() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let platform = Platform::start(Options::default()).await.unwrap();
    let output = tokio::process::Command::new("node")
        .arg(e2e::root().join("tests/web/client.mjs"))
        .env("GATEWAY_URL", platform.gateway())
        .output()
        .await
        .unwrap();
    let stdout = platform.expect_success(&output);
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
}
