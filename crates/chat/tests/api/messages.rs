use std::collections::HashSet;

use mongodb::bson::{Document, doc};
use proto::chat::v1::{
    DeleteMessageRequest, Direction, EditMessageRequest, GetHistoryRequest, MessageKind,
    SendMessageRequest, SyncCheckpoint, SyncRequest,
};
use proto::events::v1::Attachment;
use service_kit::ErrorCode;

use crate::helpers::{TestApp, assert_code, assert_status, authed, page, text_message};

#[tokio::test]
async fn a_retried_send_returns_the_original_message() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let conversation = app.private(&ann, &bob).await.unwrap();
    let request = SendMessageRequest {
        client_msg_id: "ann-device1-0001".into(),
        ..text_message(&conversation.id, "only once")
    };

    // Concurrent retries (a flaky network resending) and a late one.
    let attempts = (0..6).map(|_| app.send_with(&ann, request.clone()));
    let sent: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let late = app.send_with(&ann, request.clone()).await.unwrap();
    let ids: HashSet<&str> = sent.iter().chain([&late]).map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(late.seq, 1);

    // The same client id from another sender is another message.
    let from_bob = app
        .send_with(&bob, SendMessageRequest { ..request.clone() })
        .await
        .unwrap();
    assert_ne!(from_bob.id, late.id);
    assert_eq!(
        from_bob.seq, 2,
        "no sequence number was burned by the retries"
    );

    let history = app
        .history(
            &ann,
            GetHistoryRequest {
                conversation_id: conversation.id.clone(),
                ..GetHistoryRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn bad_messages_are_refused_with_the_field_named() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let conversation = app.private(&ann, &bob).await.unwrap();
    let image = Attachment {
        url: "https://cdn.example.com/cat.jpg".into(),
        name: "cat.jpg".into(),
        size_bytes: 52_000,
        mime_type: "image/jpeg".into(),
        width: 800,
        height: 600,
    };
    let cases = [
        ("content", text_message(&conversation.id, &"x".repeat(4097))),
        ("content", text_message(&conversation.id, "   ")),
        ("conversation_id", text_message("nope", "hi")),
        (
            "client_msg_id",
            SendMessageRequest {
                client_msg_id: "has spaces".into(),
                ..text_message(&conversation.id, "hi")
            },
        ),
        (
            "attachment",
            SendMessageRequest {
                kind: MessageKind::Image as i32,
                ..text_message(&conversation.id, "")
            },
        ),
        (
            "attachment.url",
            SendMessageRequest {
                kind: MessageKind::Image as i32,
                attachment: Some(Attachment {
                    url: "file:///etc/passwd".into(),
                    ..image.clone()
                }),
                ..text_message(&conversation.id, "")
            },
        ),
        (
            "attachment.mime_type",
            SendMessageRequest {
                kind: MessageKind::Image as i32,
                attachment: Some(Attachment {
                    mime_type: "application/zip".into(),
                    ..image.clone()
                }),
                ..text_message(&conversation.id, "")
            },
        ),
        (
            "reply_to",
            SendMessageRequest {
                reply_to: uuid::Uuid::now_v7().to_string(),
                ..text_message(&conversation.id, "re")
            },
        ),
        (
            "kind",
            SendMessageRequest {
                kind: 42,
                ..text_message(&conversation.id, "hi")
            },
        ),
    ];
    for (field, request) in cases {
        let error = assert_code(
            app.send_with(&ann, request).await,
            ErrorCode::InvalidArgument,
        );
        assert_eq!(error.field.as_deref(), Some(field), "{error}");
    }

    // A valid image with a caption, replying to nothing, is stored whole.
    let sent = app
        .send_with(
            &ann,
            SendMessageRequest {
                kind: MessageKind::Image as i32,
                attachment: Some(image.clone()),
                ..text_message(&conversation.id, "my cat")
            },
        )
        .await
        .unwrap();
    assert_eq!(sent.seq, 1, "refused sends stored nothing");
    assert_eq!(sent.attachment.unwrap(), image);
    app.stop().await;
}

#[tokio::test]
async fn edits_and_deletes_keep_history_whole() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let group = app.group(&owner, "G", &[&ann, &bob]).await;
    let first = app.send(&ann, &group.id, "frist").await;
    let second = app.send(&bob, &group.id, "spam").await;
    let reply = app
        .send_with(
            &ann,
            SendMessageRequest {
                reply_to: first.id.clone(),
                ..text_message(&group.id, "typo above")
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.reply_to, first.id);
    let mut chat = app.chat.clone();

    let edited = chat
        .edit_message(authed(
            EditMessageRequest {
                conversation_id: group.id.clone(),
                message_id: first.id.clone(),
                content: "first".into(),
            },
            &ann.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.content, "first");
    assert!(edited.edited_at.is_some());
    assert_status(
        chat.edit_message(authed(
            EditMessageRequest {
                conversation_id: group.id.clone(),
                message_id: first.id.clone(),
                content: "hijack".into(),
            },
            &bob.token,
        ))
        .await,
        ErrorCode::PermissionDenied,
    );
    // bob cannot delete ann's message; the group owner can delete bob's.
    let delete = |id: &str| DeleteMessageRequest {
        conversation_id: group.id.clone(),
        message_id: id.into(),
    };
    assert_status(
        chat.delete_message(authed(delete(&first.id), &bob.token))
            .await,
        ErrorCode::PermissionDenied,
    );
    let tombstone = chat
        .delete_message(authed(delete(&second.id), &owner.token))
        .await
        .unwrap()
        .into_inner();
    assert!(tombstone.deleted);
    assert!(tombstone.content.is_empty());
    assert_status(
        chat.edit_message(authed(
            EditMessageRequest {
                conversation_id: group.id.clone(),
                message_id: second.id.clone(),
                content: "back".into(),
            },
            &bob.token,
        ))
        .await,
        ErrorCode::FailedPrecondition,
    );

    let history = app
        .history(
            &bob,
            GetHistoryRequest {
                conversation_id: group.id.clone(),
                ..GetHistoryRequest::default()
            },
        )
        .await
        .unwrap();
    let seqs: Vec<u64> = history.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 3], "a tombstone keeps its place");
    assert!(history.messages[1].deleted);
    assert_eq!(history.messages[0].content, "first");
    app.stop().await;
}

#[tokio::test]
async fn pagination_is_stable_while_messages_arrive() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let conversation = app.private(&ann, &bob).await.unwrap();
    for i in 1..=25 {
        app.send(&ann, &conversation.id, &format!("m{i}")).await;
    }
    let history = |cursor: String, direction: Direction, anchor: u64| {
        app.history(
            &bob,
            GetHistoryRequest {
                conversation_id: conversation.id.clone(),
                direction: direction as i32,
                anchor_seq: anchor,
                page: page(7, &cursor),
            },
        )
    };

    // Scroll up in pages of 7 while bob keeps sending: pages neither skip
    // nor repeat, because cursors are sequence numbers, not offsets.
    let mut cursor = String::new();
    let mut seen = Vec::new();
    let mut first_page = true;
    loop {
        let response = history(cursor.clone(), Direction::Backward, 0)
            .await
            .unwrap();
        let seqs: Vec<u64> = response.messages.iter().map(|m| m.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] + 1 == w[1]),
            "ascending: {seqs:?}"
        );
        if first_page {
            assert_eq!(seqs.last(), Some(&25));
            first_page = false;
        }
        seen.splice(0..0, seqs);
        app.send(&bob, &conversation.id, "interruption").await;
        cursor = response.page.unwrap().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(seen, (1..=25).collect::<Vec<u64>>());

    // Forward from what the client has: exactly the interruptions.
    let newer = history(String::new(), Direction::Forward, 25)
        .await
        .unwrap();
    assert_eq!(newer.messages.len(), 4);
    assert!(newer.messages.iter().all(|m| m.content == "interruption"));
    assert_eq!(newer.messages[0].seq, 26);

    let error = assert_code(
        app.history(
            &bob,
            GetHistoryRequest {
                conversation_id: conversation.id.clone(),
                page: page(201, ""),
                ..GetHistoryRequest::default()
            },
        )
        .await,
        ErrorCode::InvalidArgument,
    );
    assert_eq!(error.field.as_deref(), Some("page.limit"));
    app.stop().await;
}

#[tokio::test]
async fn sync_returns_what_a_client_missed() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    let known = app.private(&ann, &bob).await.unwrap();
    for i in 1..=3 {
        app.send(&bob, &known.id, &format!("b{i}")).await;
    }
    // While ann is "offline": two more, and a group she was added to.
    app.send(&bob, &known.id, "b4").await;
    app.send(&bob, &known.id, "b5").await;
    let group = app.group(&cat, "Party", &[&ann]).await;
    app.send(&cat, &group.id, "welcome").await;

    let response = app
        .chat
        .clone()
        .sync(authed(
            SyncRequest {
                checkpoints: vec![SyncCheckpoint {
                    conversation_id: known.id.clone(),
                    last_seq: 3,
                }],
                include_unknown: true,
                limit_per_conversation: 1,
            },
            &ann.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let by_id = |id: &str| {
        response
            .conversations
            .iter()
            .find(|c| c.conversation.as_ref().unwrap().id == id)
            .unwrap()
    };
    let missed = by_id(&known.id);
    assert_eq!(missed.messages.len(), 1);
    assert_eq!(missed.messages[0].content, "b4");
    assert!(missed.has_more);
    let joined = by_id(&group.id);
    assert_eq!(joined.messages[0].content, "welcome");
    assert!(!joined.has_more);
    app.stop().await;
}

fn winning_index(explain: &Document) -> Option<String> {
    fn find(doc: &Document) -> Option<String> {
        if doc.get_str("stage").ok() == Some("IXSCAN") {
            return doc.get_str("indexName").ok().map(str::to_owned);
        }
        ["inputStage", "winningPlan", "queryPlanner"]
            .iter()
            .find_map(|key| doc.get_document(key).ok().and_then(find))
    }
    find(explain)
}

/// History, the conversation list, unread counts and idempotency lookups are
/// all index scans (what `explain` reports for the service's own queries).
#[tokio::test]
async fn every_hot_query_is_served_by_an_index() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let conversation = app.private(&ann, &bob).await.unwrap();
    app.send(&ann, &conversation.id, "hi").await;
    let database = &app.mongo.database;
    let explain =
        |collection: &str, filter: Document, sort: Option<Document>, hint: Option<&str>| {
            let mut find = doc! { "find": collection, "filter": filter, "limit": 50 };
            if let Some(sort) = sort {
                find.insert("sort", sort);
            }
            if let Some(hint) = hint {
                find.insert("hint", hint);
            }
            let command = doc! { "explain": find, "verbosity": "queryPlanner" };
            async move { database.run_command(command).await.unwrap() }
        };
    // The partial unique indexes are hinted by the service (SecantusDB does
    // not infer that an equality implies `$exists`), so they are here too.
    let cases = [
        (
            "messages",
            doc! { "conversation_id": &conversation.id, "seq": { "$gte": 1_i64, "$lte": 50_i64 } },
            Some(doc! { "conversation_id": 1, "seq": 1 }),
            "conversation_seq",
        ),
        (
            "messages",
            doc! { "conversation_id": &conversation.id, "sender_id": &ann.id, "client_msg_id": "x" },
            None,
            "client_msg_id_unique",
        ),
        (
            "conversations",
            doc! { "member_ids": &ann.id },
            Some(doc! { "last_activity_at": -1, "_id": -1 }),
            "member_activity",
        ),
        (
            "conversations",
            doc! { "pair_key": "a:b" },
            None,
            "pair_key_unique",
        ),
        ("members", doc! { "user_id": &ann.id }, None, "user"),
        (
            "members",
            doc! { "conversation_id": &conversation.id },
            Some(doc! { "joined_at": 1, "user_id": 1 }),
            "conversation_joined",
        ),
    ];
    for (collection, filter, sort, index) in cases {
        let hint = [
            chat::store::PAIR_KEY_INDEX,
            chat::store::CLIENT_MSG_ID_INDEX,
        ]
        .contains(&index)
        .then_some(index);
        let plan = explain(collection, filter.clone(), sort, hint).await;
        assert_eq!(
            winning_index(&plan).as_deref(),
            Some(index),
            "{collection} {filter}: {plan}"
        );
    }
    app.stop().await;
}
