use std::collections::HashSet;

use proto::chat::v1::{
    AddMembersRequest, ConversationKind, GetConversationRequest, LeaveConversationRequest,
    ListConversationsRequest, RemoveMemberRequest, Role, SetMemberRoleRequest,
    TransferOwnershipRequest, UpdateConversationRequest,
};
use proto::users::v1::BlockRequest;
use service_kit::ErrorCode;

use crate::helpers::{Options, TestApp, assert_code, assert_status, authed, page};

#[tokio::test]
async fn concurrent_private_creation_from_both_sides_yields_one_conversation() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;

    let attempts = (0..8).map(|i| {
        let (from, to) = if i % 2 == 0 {
            (&ann, &bob)
        } else {
            (&bob, &ann)
        };
        app.private(from, to)
    });
    let results = futures::future::join_all(attempts).await;
    let ids: HashSet<String> = results.into_iter().map(|r| r.unwrap().id).collect();
    assert_eq!(ids.len(), 1, "one conversation per pair: {ids:?}");

    let again = app.private(&bob, &ann).await.unwrap();
    assert!(ids.contains(&again.id));
    assert_eq!(again.kind, ConversationKind::Private as i32);
    let members: HashSet<String> = again.members.iter().map(|m| m.user_id.clone()).collect();
    assert_eq!(members, HashSet::from([ann.id.clone(), bob.id.clone()]));
    let listed = app
        .chat
        .clone()
        .list_conversations(authed(ListConversationsRequest::default(), &ann.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.conversations.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn private_chats_respect_blocks_and_bad_peers() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let conversation = app.private(&ann, &bob).await.unwrap();
    app.send(&ann, &conversation.id, "hi").await;

    app.users
        .clone()
        .block(authed(
            BlockRequest {
                user_id: ann.id.clone(),
            },
            &bob.token,
        ))
        .await
        .unwrap();
    // The users answers are cached for 100 ms in these tests.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_code(app.private(&ann, &bob).await, ErrorCode::PermissionDenied);
    assert_code(
        app.send_with(
            &ann,
            crate::helpers::text_message(&conversation.id, "hello?"),
        )
        .await,
        ErrorCode::PermissionDenied,
    );
    // The blocker cannot message the blocked either, until they unblock.
    assert_code(
        app.send_with(
            &bob,
            crate::helpers::text_message(&conversation.id, "go away"),
        )
        .await,
        ErrorCode::PermissionDenied,
    );

    let error = assert_code(app.private(&ann, &ann).await, ErrorCode::InvalidArgument);
    assert_eq!(error.field.as_deref(), Some("peer_id"));
    let ghost = crate::helpers::User {
        id: uuid::Uuid::now_v7().to_string(),
        token: String::new(),
    };
    let error = assert_code(app.private(&ann, &ghost).await, ErrorCode::NotFound);
    assert_eq!(error.field.as_deref(), Some("peer_id"));
    let bad = crate::helpers::User {
        id: "not-a-uuid".into(),
        token: String::new(),
    };
    let error = assert_code(app.private(&ann, &bad).await, ErrorCode::InvalidArgument);
    assert_eq!(error.field.as_deref(), Some("peer_id"));
    app.stop().await;
}

#[tokio::test]
async fn groups_have_roles_a_member_cap_and_ownership() {
    let app = TestApp::spawn_with(Options {
        max_group_members: 4,
        ..Options::default()
    })
    .await;
    let owner = app.register("owner").await;
    let mia = app.register("mia").await;
    let max = app.register("max").await;
    let zoe = app.register("zoe").await;
    let eve = app.register("eve").await;
    let group = app.group(&owner, "  Team  ", &[&mia]).await;
    assert_eq!(group.title, "Team");
    assert_eq!(group.my_role, Role::Owner as i32);
    assert_eq!(group.member_count, 2);
    let mut chat = app.chat.clone();
    let add = |ids: Vec<String>| AddMembersRequest {
        conversation_id: group.id.clone(),
        user_ids: ids,
    };

    // A plain member may not add people.
    assert_status(
        chat.add_members(authed(add(vec![max.id.clone()]), &mia.token))
            .await,
        ErrorCode::PermissionDenied,
    );
    assert_status(
        chat.add_members(authed(
            add(vec![uuid::Uuid::now_v7().to_string()]),
            &owner.token,
        ))
        .await,
        ErrorCode::InvalidArgument,
    );
    // The owner promotes mia; the admin adds max and zoe (4 = the cap).
    chat.set_member_role(authed(
        SetMemberRoleRequest {
            conversation_id: group.id.clone(),
            user_id: mia.id.clone(),
            role: Role::Admin as i32,
        },
        &owner.token,
    ))
    .await
    .unwrap();
    let grown = chat
        .add_members(authed(
            add(vec![max.id.clone(), zoe.id.clone()]),
            &mia.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.member_count, 4);
    assert_status(
        chat.add_members(authed(add(vec![eve.id.clone()]), &owner.token))
            .await,
        ErrorCode::FailedPrecondition,
    );

    // Admins cannot remove admins or the owner; the owner removes zoe.
    assert_status(
        chat.remove_member(authed(
            RemoveMemberRequest {
                conversation_id: group.id.clone(),
                user_id: owner.id.clone(),
            },
            &mia.token,
        ))
        .await,
        ErrorCode::PermissionDenied,
    );
    chat.remove_member(authed(
        RemoveMemberRequest {
            conversation_id: group.id.clone(),
            user_id: zoe.id.clone(),
        },
        &owner.token,
    ))
    .await
    .unwrap();
    let get = |token: &str| {
        let mut chat = app.chat.clone();
        let request = authed(
            GetConversationRequest {
                conversation_id: group.id.clone(),
            },
            token,
        );
        async move { chat.get_conversation(request).await }
    };
    assert_status(get(&zoe.token).await, ErrorCode::PermissionDenied);

    // Rename by an admin; members cannot.
    assert_status(
        chat.update_conversation(authed(
            UpdateConversationRequest {
                conversation_id: group.id.clone(),
                title: Some("Nope".into()),
            },
            &max.token,
        ))
        .await,
        ErrorCode::PermissionDenied,
    );
    let renamed = chat
        .update_conversation(authed(
            UpdateConversationRequest {
                conversation_id: group.id.clone(),
                title: Some("Crew".into()),
            },
            &mia.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.title, "Crew");
    assert_status(
        chat.update_conversation(authed(
            UpdateConversationRequest {
                conversation_id: group.id.clone(),
                title: Some("x".repeat(200)),
            },
            &mia.token,
        ))
        .await,
        ErrorCode::InvalidArgument,
    );

    // Ownership moves to max; the old owner becomes an admin.
    let moved = chat
        .transfer_ownership(authed(
            TransferOwnershipRequest {
                conversation_id: group.id.clone(),
                new_owner_id: max.id.clone(),
            },
            &owner.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let role_of = |conversation: &proto::chat::v1::Conversation, id: &str| {
        conversation
            .members
            .iter()
            .find(|m| m.user_id == id)
            .map(|m| m.role)
    };
    assert_eq!(role_of(&moved, &max.id), Some(Role::Owner as i32));
    assert_eq!(role_of(&moved, &owner.id), Some(Role::Admin as i32));

    // The owner leaves: the longest-standing admin (the first owner) takes over.
    chat.leave_conversation(authed(
        LeaveConversationRequest {
            conversation_id: group.id.clone(),
        },
        &max.token,
    ))
    .await
    .unwrap();
    let after = get(&owner.token).await.unwrap().into_inner();
    assert_eq!(after.member_count, 2);
    assert_eq!(role_of(&after, &owner.id), Some(Role::Owner as i32));
    app.stop().await;
}

#[tokio::test]
async fn conversation_list_is_sorted_by_activity_with_previews_and_unread_counts() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    let with_bob = app.private(&ann, &bob).await.unwrap();
    let with_cat = app.private(&ann, &cat).await.unwrap();
    let group = app.group(&bob, "Trio", &[&ann, &cat]).await;
    app.send(&bob, &with_bob.id, "one").await;
    app.send(&bob, &with_bob.id, "two").await;
    app.send(&cat, &group.id, &"long ".repeat(50)).await;
    app.send(&cat, &with_cat.id, "newest").await;

    let mut cursor = String::new();
    let mut seen = Vec::new();
    loop {
        let response = app
            .chat
            .clone()
            .list_conversations(authed(
                ListConversationsRequest {
                    page: page(2, &cursor),
                },
                &ann.token,
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(response.conversations);
        cursor = response.page.unwrap().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    let order: Vec<&str> = seen.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(order, [&*with_cat.id, &*group.id, &*with_bob.id]);
    assert_eq!(seen[0].last_message.as_ref().unwrap().content, "newest");
    assert_eq!(seen[0].unread_count, 1);
    assert_eq!(seen[2].unread_count, 2);
    let preview = &seen[1].last_message.as_ref().unwrap().content;
    assert!(
        preview.chars().count() <= 101 && preview.ends_with('…'),
        "{preview}"
    );
    // Private entries carry both members (the peer is who to show).
    assert_eq!(seen[0].members.len(), 2);
    assert_eq!(seen[1].my_role, Role::Member as i32);

    assert_status(
        app.chat
            .clone()
            .list_conversations(authed(
                ListConversationsRequest {
                    page: page(2, "garbage!"),
                },
                &ann.token,
            ))
            .await,
        ErrorCode::InvalidArgument,
    );
    app.stop().await;
}
