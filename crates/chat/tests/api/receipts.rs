use proto::chat::v1::{
    DeliveryStatus, GetHistoryRequest, GetMessageReceiptsRequest, GetUnreadCountsRequest,
    MarkRequest, ReceiptState,
};
use proto::users::v1::{PrivacySettings, UpdatePrivacyRequest};
use service_kit::ErrorCode;

use crate::helpers::{TestApp, User, assert_status, authed};

async fn mark(
    app: &TestApp,
    user: &User,
    conversation_id: &str,
    up_to: u64,
    read: bool,
) -> ReceiptState {
    let request = authed(
        MarkRequest {
            conversation_id: conversation_id.into(),
            up_to_seq: up_to,
            ..Default::default()
        },
        &user.token,
    );
    let mut chat = app.chat.clone();
    let response = if read {
        chat.mark_read(request).await
    } else {
        chat.mark_delivered(request).await
    };
    response.unwrap().into_inner()
}

#[tokio::test]
async fn receipts_only_move_forward() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let conversation = app.private(&ann, &bob).await.unwrap();
    for i in 1..=5 {
        app.send(&ann, &conversation.id, &format!("m{i}")).await;
    }

    let state = mark(&app, &bob, &conversation.id, 3, true).await;
    assert_eq!(
        (state.delivered_seq, state.read_seq),
        (3, 3),
        "read implies delivered"
    );
    let state = mark(&app, &bob, &conversation.id, 2, false).await;
    assert_eq!(
        (state.delivered_seq, state.read_seq),
        (3, 3),
        "never backwards"
    );
    let state = mark(&app, &bob, &conversation.id, 1, true).await;
    assert_eq!((state.delivered_seq, state.read_seq), (3, 3));
    let state = mark(&app, &bob, &conversation.id, 4, false).await;
    assert_eq!((state.delivered_seq, state.read_seq), (4, 3));
    let state = mark(&app, &bob, &conversation.id, 99, false).await;
    assert_eq!(state.delivered_seq, 5, "clamped to the newest message");

    // Concurrent acks in any order end at the highest.
    let acks = [2, 5, 4, 1, 3].map(|seq| mark(&app, &bob, &conversation.id, seq, true));
    futures::future::join_all(acks).await;
    let state = mark(&app, &bob, &conversation.id, 0, true).await;
    assert_eq!((state.delivered_seq, state.read_seq), (5, 5));

    // The sender sees the statuses derived from bob's watermarks.
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
    for message in &history.messages {
        assert_eq!(message.delivery_status.len(), 1);
        assert_eq!(message.delivery_status[0].user_id, bob.id);
        assert_eq!(
            message.delivery_status[0].status,
            DeliveryStatus::Read as i32
        );
    }
    let unread = app
        .chat
        .clone()
        .get_unread_counts(authed(GetUnreadCountsRequest::default(), &bob.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unread.total, 0);
    app.stop().await;
}

#[tokio::test]
async fn group_receipts_count_readers_and_respect_privacy() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let shy = app.register("shy").await;
    let group = app.group(&owner, "G", &[&ann, &bob, &shy]).await;
    let first = app.send(&owner, &group.id, "one").await;
    let second = app.send(&owner, &group.id, "two").await;
    app.users
        .clone()
        .update_privacy(authed(
            UpdatePrivacyRequest {
                privacy: Some(PrivacySettings {
                    send_read_receipts: false,
                    ..PrivacySettings::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["send_read_receipts".into()],
                }),
            },
            &shy.token,
        ))
        .await
        .unwrap();
    // Chat reuses users' answers for 100 ms in these tests.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    mark(&app, &ann, &group.id, 2, true).await;
    mark(&app, &bob, &group.id, 1, true).await;
    mark(&app, &shy, &group.id, 2, true).await;

    let receipts = |message_id: String| {
        let mut chat = app.chat.clone();
        let request = authed(
            GetMessageReceiptsRequest {
                conversation_id: group.id.clone(),
                message_id,
            },
            &owner.token,
        );
        async move {
            chat.get_message_receipts(request)
                .await
                .unwrap()
                .into_inner()
        }
    };
    let of_first = receipts(first.id.clone()).await;
    assert_eq!(
        (
            of_first.read_count,
            of_first.delivered_count,
            of_first.recipient_count
        ),
        (2, 3, 3),
        "read by 2 of 3; shy hides read receipts"
    );
    let shy_status = of_first
        .statuses
        .iter()
        .find(|s| s.user_id == shy.id)
        .unwrap();
    assert_eq!(shy_status.status, DeliveryStatus::Delivered as i32);
    let of_second = receipts(second.id.clone()).await;
    assert_eq!((of_second.read_count, of_second.delivered_count), (1, 2));

    // Unread counts come from the watermark: shy read everything.
    let counts = |user: &User| {
        let mut chat = app.chat.clone();
        let request = authed(GetUnreadCountsRequest::default(), &user.token);
        async move {
            chat.get_unread_counts(request)
                .await
                .unwrap()
                .into_inner()
                .total
        }
    };
    assert_eq!(counts(&shy).await, 0);
    assert_eq!(counts(&bob).await, 1);
    assert_status(
        app.chat
            .clone()
            .mark_read(authed(
                MarkRequest {
                    conversation_id: "x".into(),
                    up_to_seq: 1,
                    ..Default::default()
                },
                &bob.token,
            ))
            .await,
        ErrorCode::InvalidArgument,
    );
    // Only a service with chat's credential marks deliveries for others.
    assert_status(
        app.chat
            .clone()
            .mark_delivered(authed(
                MarkRequest {
                    conversation_id: group.id.clone(),
                    up_to_seq: 1,
                    user_id: shy.id.clone(),
                },
                &bob.token,
            ))
            .await,
        ErrorCode::PermissionDenied,
    );
    app.stop().await;
}
