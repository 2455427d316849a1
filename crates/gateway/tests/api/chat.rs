use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn conversations_and_messages_over_rest() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.user("alice").await;
    let (bob, bob_token) = app.user("bob").await;
    let (carol, _) = app.user("carol").await;
    let a = Some(alice_token.as_str());
    let b = Some(bob_token.as_str());

    let (status, private) = app
        .call(
            Method::POST,
            "/api/v1/conversations/private",
            a,
            Some(json!({ "peer_id": bob })),
        )
        .await;
    assert_eq!(
        (status, private["kind"].as_str()),
        (StatusCode::OK, Some("private")),
        "{private}"
    );
    let again = app
        .call(
            Method::POST,
            "/api/v1/conversations/private",
            b,
            Some(json!({ "peer_id": alice })),
        )
        .await
        .1;
    assert_eq!(again["id"], private["id"], "one conversation per pair");
    let id = private["id"].as_str().unwrap().to_owned();
    let messages = format!("/api/v1/conversations/{id}/messages");

    // Send (idempotent by client_msg_id), history both ways, edit, delete.
    let body = json!({ "content": "hello bob", "client_msg_id": "a-1" });
    let (status, first) = app
        .call(Method::POST, &messages, a, Some(body.clone()))
        .await;
    assert_eq!(
        (status, first["seq"].as_u64()),
        (StatusCode::CREATED, Some(1)),
        "{first}"
    );
    let retried = app.call(Method::POST, &messages, a, Some(body)).await.1;
    assert_eq!(retried["id"], first["id"]);
    for text in ["two", "three"] {
        app.call(Method::POST, &messages, b, Some(json!({ "content": text })))
            .await;
    }
    let (status, error) = app
        .call(
            Method::POST,
            &messages,
            a,
            Some(json!({ "kind": "video", "content": "x" })),
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("kind"))
    );
    let (status, error) = app
        .call(
            Method::POST,
            &messages,
            a,
            Some(json!({ "content": "x".repeat(4097) })),
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("content"))
    );
    let (status, page) = app
        .call(Method::GET, &format!("{messages}?limit=2"), a, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3]);
    let older = app
        .call(
            Method::GET,
            &format!(
                "{messages}?limit=2&cursor={}",
                page["next_cursor"].as_str().unwrap()
            ),
            a,
            None,
        )
        .await
        .1;
    assert_eq!(older["messages"][0]["content"], "hello bob");
    let newer = app
        .call(Method::GET, &format!("{messages}?after=1"), a, None)
        .await
        .1;
    assert_eq!(newer["messages"].as_array().unwrap().len(), 2);
    let message = format!("{messages}/{}", first["id"].as_str().unwrap());
    let (status, edited) = app
        .call(
            Method::PATCH,
            &message,
            a,
            Some(json!({ "content": "hello, bob" })),
        )
        .await;
    assert_eq!(
        (status, edited["content"].as_str()),
        (StatusCode::OK, Some("hello, bob"))
    );
    assert!(edited["edited_at"].is_string());
    let (status, _) = app
        .call(
            Method::PATCH,
            &message,
            b,
            Some(json!({ "content": "hijack" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Receipts and unread counts.
    let (status, unread) = app
        .call(Method::GET, "/api/v1/conversations/unread", a, None)
        .await;
    assert_eq!(
        (status, unread["total"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{unread}"
    );
    let (status, receipt) = app
        .call(
            Method::POST,
            &format!("/api/v1/conversations/{id}/read"),
            a,
            Some(json!({ "up_to_seq": 3 })),
        )
        .await;
    assert_eq!(
        (status, receipt["read_seq"].as_u64()),
        (StatusCode::OK, Some(3))
    );
    let history = app.call(Method::GET, &messages, b, None).await.1;
    assert_eq!(
        history["messages"][2]["delivery_status"][0]["status"],
        "read"
    );
    let (status, deleted) = app.call(Method::DELETE, &message, a, None).await;
    assert_eq!(
        (status, deleted["deleted"].as_bool()),
        (StatusCode::OK, Some(true))
    );

    // A group: create, rename, members, leave; the list shows both chats.
    let (status, group) = app
        .call(
            Method::POST,
            "/api/v1/conversations/group",
            a,
            Some(json!({ "title": "Tea party", "member_ids": [bob] })),
        )
        .await;
    assert_eq!(
        (status, group["my_role"].as_str()),
        (StatusCode::CREATED, Some("owner")),
        "{group}"
    );
    let group_path = format!("/api/v1/conversations/{}", group["id"].as_str().unwrap());
    let (status, renamed) = app
        .call(
            Method::PATCH,
            &group_path,
            a,
            Some(json!({ "title": "Mad tea party" })),
        )
        .await;
    assert_eq!(
        (status, renamed["title"].as_str()),
        (StatusCode::OK, Some("Mad tea party"))
    );
    let (status, grown) = app
        .call(
            Method::POST,
            &format!("{group_path}/members"),
            a,
            Some(json!({ "user_ids": [carol] })),
        )
        .await;
    assert_eq!(
        (status, grown["member_count"].as_u64()),
        (StatusCode::OK, Some(3))
    );
    let (status, members) = app
        .call(
            Method::GET,
            &format!("{group_path}/members?limit=2"),
            a,
            None,
        )
        .await;
    assert_eq!(
        (status, members["members"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(2))
    );
    assert!(!members["next_cursor"].as_str().unwrap().is_empty());
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("{group_path}/members/{carol}"),
            a,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("{group_path}/members/{bob}"),
            b,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "bob leaves");
    let (status, error) = app.call(Method::GET, &group_path, b, None).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("PERMISSION_DENIED"))
    );
    let (status, got) = app.call(Method::GET, &group_path, a, None).await;
    assert_eq!(
        (status, got["member_count"].as_u64()),
        (StatusCode::OK, Some(1))
    );

    let (status, list) = app
        .call(Method::GET, "/api/v1/conversations?limit=10", a, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [group["id"].as_str().unwrap(), id.as_str()],
        "newest activity first"
    );
    let (status, error) = app
        .call(Method::GET, "/api/v1/conversations/not-a-uuid", a, None)
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("conversation_id"))
    );
    app.stop().await;
}
