use proto::chat::v1::{
    AddMembersRequest, DeleteMessageRequest, EditMessageRequest, GetConversationRequest,
    GetHistoryRequest, GetMessageReceiptsRequest, GetUnreadCountsRequest, LeaveConversationRequest,
    ListMembersRequest, MarkRequest, RemoveMemberRequest, Role, SetMemberRoleRequest,
    SyncCheckpoint, SyncRequest, TransferOwnershipRequest, UpdateConversationRequest,
};
use service_kit::ErrorCode;

use crate::helpers::{TestApp, assert_status, authed, text_message};

/// Someone outside a conversation can neither read, write, acknowledge nor
/// manage it, and learns nothing from trying.
#[tokio::test]
async fn non_members_are_denied_every_operation() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let ann = app.register("ann").await;
    let mallory = app.register("mallory").await;
    let group = app.group(&owner, "Private club", &[&ann]).await;
    let message = app.send(&ann, &group.id, "members only").await;
    let id = group.id.clone();
    let token = mallory.token.clone();
    let mut chat = app.chat.clone();
    let denied = ErrorCode::PermissionDenied;

    assert_status(
        chat.get_conversation(authed(
            GetConversationRequest {
                conversation_id: id.clone(),
            },
            &token,
        ))
        .await,
        denied,
    );
    assert_status(
        chat.get_history(authed(
            GetHistoryRequest {
                conversation_id: id.clone(),
                ..GetHistoryRequest::default()
            },
            &token,
        ))
        .await,
        denied,
    );
    assert_status(
        chat.send_message(authed(text_message(&id, "let me in"), &token))
            .await,
        denied,
    );
    assert_status(
        chat.edit_message(authed(
            EditMessageRequest {
                conversation_id: id.clone(),
                message_id: message.id.clone(),
                content: "pwned".into(),
            },
            &token,
        ))
        .await,
        denied,
    );
    assert_status(
        chat.delete_message(authed(
            DeleteMessageRequest {
                conversation_id: id.clone(),
                message_id: message.id.clone(),
            },
            &token,
        ))
        .await,
        denied,
    );
    for read in [false, true] {
        let request = authed(
            MarkRequest {
                conversation_id: id.clone(),
                up_to_seq: 1,
                ..Default::default()
            },
            &token,
        );
        let result = if read {
            chat.mark_read(request).await
        } else {
            chat.mark_delivered(request).await
        };
        assert_status(result, denied);
    }
    assert_status(
        chat.get_message_receipts(authed(
            GetMessageReceiptsRequest {
                conversation_id: id.clone(),
                message_id: message.id.clone(),
            },
            &token,
        ))
        .await,
        denied,
    );
    assert_status(
        chat.list_members(authed(
            ListMembersRequest {
                conversation_id: id.clone(),
                page: None,
            },
            &token,
        ))
        .await,
        denied,
    );
    assert_status(
        chat.add_members(authed(
            AddMembersRequest {
                conversation_id: id.clone(),
                user_ids: vec![mallory.id.clone()],
            },
            &token,
        ))
        .await,
        denied,
    );
    assert_status(
        chat.remove_member(authed(
            RemoveMemberRequest {
                conversation_id: id.clone(),
                user_id: ann.id.clone(),
            },
            &token,
        ))
        .await,
        denied,
    );
    assert_status(
        chat.update_conversation(authed(
            UpdateConversationRequest {
                conversation_id: id.clone(),
                title: Some("mine".into()),
            },
            &token,
        ))
        .await,
        denied,
    );
    assert_status(
        chat.set_member_role(authed(
            SetMemberRoleRequest {
                conversation_id: id.clone(),
                user_id: mallory.id.clone(),
                role: Role::Admin as i32,
            },
            &token,
        ))
        .await,
        denied,
    );
    assert_status(
        chat.transfer_ownership(authed(
            TransferOwnershipRequest {
                conversation_id: id.clone(),
                new_owner_id: mallory.id.clone(),
            },
            &token,
        ))
        .await,
        denied,
    );
    assert_status(
        chat.leave_conversation(authed(
            LeaveConversationRequest {
                conversation_id: id.clone(),
            },
            &token,
        ))
        .await,
        denied,
    );
    // Sync and unread counts simply do not include it.
    let synced = chat
        .sync(authed(
            SyncRequest {
                checkpoints: vec![SyncCheckpoint {
                    conversation_id: id.clone(),
                    last_seq: 0,
                }],
                include_unknown: true,
                limit_per_conversation: 0,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(synced.conversations.is_empty());
    let unread = chat
        .get_unread_counts(authed(
            GetUnreadCountsRequest {
                conversation_ids: vec![id.clone()],
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(unread.counts.is_empty());

    // Unknown conversations are NotFound; no or a forged token is Unauthenticated.
    assert_status(
        chat.get_conversation(authed(
            GetConversationRequest {
                conversation_id: uuid::Uuid::now_v7().to_string(),
            },
            &token,
        ))
        .await,
        ErrorCode::NotFound,
    );
    assert_status(
        chat.get_conversation(tonic::Request::new(GetConversationRequest {
            conversation_id: id.clone(),
        }))
        .await,
        ErrorCode::Unauthenticated,
    );
    let mut forged = ann.token.clone();
    forged.push('x');
    assert_status(
        chat.get_conversation(authed(
            GetConversationRequest {
                conversation_id: id.clone(),
            },
            &forged,
        ))
        .await,
        ErrorCode::Unauthenticated,
    );

    // Nothing they tried changed anything.
    let history = app
        .history(
            &ann,
            GetHistoryRequest {
                conversation_id: id.clone(),
                ..GetHistoryRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 1);
    assert_eq!(history.messages[0].content, "members only");
    app.stop().await;
}

/// A removed member stops receiving and cannot read history any more.
#[tokio::test]
async fn removed_members_lose_access() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let ann = app.register("ann").await;
    let group = app.group(&owner, "G", &[&ann]).await;
    app.send(&ann, &group.id, "before").await;
    app.chat
        .clone()
        .remove_member(authed(
            RemoveMemberRequest {
                conversation_id: group.id.clone(),
                user_id: ann.id.clone(),
            },
            &owner.token,
        ))
        .await
        .unwrap();
    app.send(&owner, &group.id, "after").await;
    assert_status(
        app.chat
            .clone()
            .get_history(authed(
                GetHistoryRequest {
                    conversation_id: group.id.clone(),
                    ..GetHistoryRequest::default()
                },
                &ann.token,
            ))
            .await,
        ErrorCode::PermissionDenied,
    );
    assert_status(
        app.chat
            .clone()
            .send_message(authed(text_message(&group.id, "still here?"), &ann.token))
            .await,
        ErrorCode::PermissionDenied,
    );
    app.stop().await;
}
