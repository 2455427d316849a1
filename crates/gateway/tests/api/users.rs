use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn profiles_search_blocks_contacts_privacy_presence_over_rest() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.user("alice").await;
    let (bob, bob_token) = app.user("bob").await;
    let a = Some(alice_token.as_str());
    let b = Some(bob_token.as_str());

    let (status, me) = app.call(Method::GET, "/api/v1/users/me", a, None).await;
    assert_eq!(
        (status, me["username"].as_str()),
        (StatusCode::OK, Some("alice"))
    );
    let (status, me) = app
        .call(Method::PATCH, "/api/v1/users/me", a, Some(json!({
            "display_name": "Alice Liddell",
            "settings": { "language": "en", "theme": "dark", "notifications_enabled": true, "time_zone": "Europe/London" },
        })))
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["display_name"], "Alice Liddell");
    assert_eq!(me["settings"]["theme"], "dark");
    let (status, error) = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            a,
            Some(json!({ "settings": { "colour": "red" } })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown settings keys are refused: {error}"
    );
    assert!(
        error["message"].as_str().unwrap().contains("colour"),
        "{error}"
    );
    let (status, error) = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            a,
            Some(json!({ "avatar_url": "ftp://x" })),
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("avatar_url"))
    );

    let (status, found) = app
        .call(
            Method::GET,
            &format!("/api/v1/users?ids={alice},{bob}"),
            b,
            None,
        )
        .await;
    assert_eq!(
        (status, found.as_array().map(Vec::len)),
        (StatusCode::OK, Some(2))
    );
    let alice_seen_by_bob = found
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["user_id"] == alice.as_str())
        .unwrap();
    assert!(
        alice_seen_by_bob["settings"].is_null(),
        "others' settings stay private"
    );
    assert_eq!(alice_seen_by_bob["display_name"], "Alice Liddell");
    let (status, hits) = app
        .call(Method::GET, "/api/v1/users/search?q=alice%20lid", b, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{hits}");
    assert_eq!(hits["hits"][0]["profile"]["user_id"], alice.as_str());

    // Privacy: alice hides her last seen; bob sees presence without it.
    let (status, privacy) = app
        .call(
            Method::PATCH,
            "/api/v1/users/me/privacy",
            a,
            Some(json!({ "last_seen": "nobody" })),
        )
        .await;
    assert_eq!(
        (status, privacy["last_seen"].as_str()),
        (StatusCode::OK, Some("nobody"))
    );
    let (status, privacy) = app
        .call(Method::GET, "/api/v1/users/me/privacy", a, None)
        .await;
    assert_eq!(
        (status, privacy["messages"].as_str()),
        (StatusCode::OK, Some("everyone"))
    );
    let (status, error) = app
        .call(
            Method::PATCH,
            "/api/v1/users/me/privacy",
            a,
            Some(json!({ "last_seen": "friends" })),
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("last_seen"))
    );
    let (status, presence) = app
        .call(
            Method::GET,
            &format!("/api/v1/presence?ids={alice}"),
            b,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(presence[0]["online"], false);
    assert!(presence[0]["last_seen_at"].is_null());

    // Contacts and blocks.
    let path = format!("/api/v1/users/me/contacts/{bob}");
    assert_eq!(
        app.call(Method::PUT, &path, a, None).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, contacts) = app
        .call(Method::GET, "/api/v1/users/me/contacts", a, None)
        .await;
    assert_eq!(contacts["profiles"][0]["user_id"], bob.as_str());
    assert_eq!(
        app.call(Method::DELETE, &path, a, None).await.0,
        StatusCode::NO_CONTENT
    );
    let path = format!("/api/v1/users/me/blocks/{bob}");
    assert_eq!(
        app.call(Method::PUT, &path, a, None).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, blocked) = app
        .call(Method::GET, "/api/v1/users/me/blocks", a, None)
        .await;
    assert_eq!(blocked["profiles"][0]["user_id"], bob.as_str());
    let (_, hits) = app
        .call(Method::GET, "/api/v1/users/search?q=alice", b, None)
        .await;
    assert!(
        hits["hits"].as_array().unwrap().is_empty(),
        "a blocker is not found by the blocked"
    );
    assert_eq!(
        app.call(Method::DELETE, &path, a, None).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, error) = app
        .call(Method::PUT, "/api/v1/users/me/blocks/not-a-uuid", a, None)
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("user_id"))
    );
    app.stop().await;
}
