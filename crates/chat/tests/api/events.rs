use std::time::Duration;

use mongodb::bson::doc;
use proto::EventPayload;
use proto::chat::v1::{
    AddMembersRequest, DeleteMessageRequest, EditMessageRequest, MarkRequest, RemoveMemberRequest,
};
use test_kit::TcpProxy;

use crate::helpers::{Options, TestApp, authed, next_event, rabbitmq_addr};

const CHAT_EVENTS: [&str; 8] = [
    "conversation.created",
    "conversation.updated",
    "member.added",
    "member.removed",
    "message.created",
    "message.updated",
    "message.deleted",
    "receipt.updated",
];

#[tokio::test]
async fn every_change_publishes_its_event_after_it_is_stored() {
    let app = TestApp::spawn().await;
    let mut events = app.listen("observer", &CHAT_EVENTS).await;
    let owner = app.register("owner").await;
    let ann = app.register("ann").await;
    let bot = app.register_as("helper_bot", true).await;
    let group = app.group(&owner, "G", &[&ann]).await;
    let mut chat = app.chat.clone();

    let mut next = async || {
        next_event(&mut events, Duration::from_secs(10))
            .await
            .expect("an event")
    };
    let created = next().await;
    assert_eq!(created.r#type, "conversation.created");
    assert_eq!(created.subject, group.id);
    assert_eq!(created.producer, "chat");

    chat.add_members(authed(
        AddMembersRequest {
            conversation_id: group.id.clone(),
            user_ids: vec![bot.id.clone()],
        },
        &owner.token,
    ))
    .await
    .unwrap();
    let Some(EventPayload::MemberAdded(added)) = next().await.payload else {
        panic!("member.added expected");
    };
    assert_eq!(added.user_ids, std::slice::from_ref(&bot.id));
    assert_eq!(added.recipient_ids.len(), 3);

    let message = app.send(&ann, &group.id, "hello bot").await;
    let Some(EventPayload::MessageCreated(sent)) = next().await.payload else {
        panic!("message.created expected");
    };
    let stored = sent.message.unwrap();
    assert_eq!((stored.id.as_str(), stored.seq), (message.id.as_str(), 1));
    assert_eq!(sent.bot_member_ids, std::slice::from_ref(&bot.id));
    assert_eq!(sent.conversation_kind, "group");
    assert_eq!(sent.recipient_ids.len(), 3);

    chat.edit_message(authed(
        EditMessageRequest {
            conversation_id: group.id.clone(),
            message_id: message.id.clone(),
            content: "hello, bot".into(),
        },
        &ann.token,
    ))
    .await
    .unwrap();
    let Some(EventPayload::MessageUpdated(edited)) = next().await.payload else {
        panic!("message.updated expected");
    };
    assert_eq!(edited.message.unwrap().content, "hello, bot");

    chat.mark_read(authed(
        MarkRequest {
            conversation_id: group.id.clone(),
            up_to_seq: 1,
            ..Default::default()
        },
        &owner.token,
    ))
    .await
    .unwrap();
    let Some(EventPayload::ReceiptUpdated(receipt)) = next().await.payload else {
        panic!("receipt.updated expected");
    };
    assert_eq!(
        (receipt.user_id.as_str(), receipt.read_seq),
        (owner.id.as_str(), 1)
    );
    // Marking the same again changes nothing and publishes nothing.
    chat.mark_read(authed(
        MarkRequest {
            conversation_id: group.id.clone(),
            up_to_seq: 1,
            ..Default::default()
        },
        &owner.token,
    ))
    .await
    .unwrap();

    chat.delete_message(authed(
        DeleteMessageRequest {
            conversation_id: group.id.clone(),
            message_id: message.id.clone(),
        },
        &owner.token,
    ))
    .await
    .unwrap();
    let Some(EventPayload::MessageDeleted(deleted)) = next().await.payload else {
        panic!("message.deleted expected (not a second receipt)");
    };
    assert_eq!(
        (deleted.message_id.as_str(), deleted.deleted_by.as_str()),
        (message.id.as_str(), owner.id.as_str())
    );

    chat.remove_member(authed(
        RemoveMemberRequest {
            conversation_id: group.id.clone(),
            user_id: ann.id.clone(),
        },
        &owner.token,
    ))
    .await
    .unwrap();
    let Some(EventPayload::MemberRemoved(removed)) = next().await.payload else {
        panic!("member.removed expected");
    };
    assert_eq!(removed.user_id, ann.id);
    assert!(
        removed.recipient_ids.contains(&ann.id),
        "the removed member's devices learn it too"
    );
    app.stop().await;
}

#[tokio::test]
async fn events_wait_in_the_outbox_while_rabbitmq_is_down() {
    let proxy = TcpProxy::start(rabbitmq_addr().await).await.unwrap();
    let app = TestApp::spawn_with(Options {
        chat_amqp_addr: Some(proxy.addr()),
        ..Options::default()
    })
    .await;
    // Straight to RabbitMQ, not through the proxy.
    let mut events = app.listen("observer", &["message.created"]).await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let conversation = app.private(&ann, &bob).await.unwrap();

    proxy.cut();
    for i in 1..=3 {
        // Sends still succeed: the message and its event are stored together.
        app.send(&ann, &conversation.id, &format!("while down {i}"))
            .await;
    }
    assert!(
        next_event(&mut events, Duration::from_millis(1500))
            .await
            .is_none(),
        "nothing can be published yet"
    );
    let outbox = app
        .mongo
        .database
        .collection::<mongodb::bson::Document>("event_outbox");
    let waiting = outbox.count_documents(doc! {}).await.unwrap();
    assert!(waiting >= 3, "the events wait in the outbox ({waiting})");

    proxy.restore();
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        let event = next_event(&mut events, Duration::from_secs(20))
            .await
            .expect("published after RabbitMQ returned");
        if let Some(EventPayload::MessageCreated(created)) = event.payload {
            seqs.push(created.message.unwrap().seq);
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while outbox.count_documents(doc! {}).await.unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox drained after the confirms"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
