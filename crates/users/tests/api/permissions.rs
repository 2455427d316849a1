use prost_types::FieldMask;
use proto::users::v1::{
    Audience, BlockRequest, CheckMessagePermissionsRequest, ContactRequest, Denial,
    ListBlockedRequest, PrivacySettings, UpdatePrivacyRequest,
};
use uuid::Uuid;

use crate::helpers::{TestApp, User, authed};

async fn check(app: &TestApp, sender: &User, recipients: &[Uuid]) -> Vec<(Uuid, bool, Denial)> {
    let mut result: Vec<_> = app
        .client
        .clone()
        .check_message_permissions(authed(
            CheckMessagePermissionsRequest {
                sender_id: sender.id.to_string(),
                recipient_ids: recipients.iter().map(Uuid::to_string).collect(),
            },
            &sender.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .permissions
        .into_iter()
        .map(|p| {
            (
                Uuid::parse_str(&p.recipient_id).unwrap(),
                p.allowed,
                Denial::try_from(p.denial).unwrap(),
            )
        })
        .collect();
    result.sort();
    result
}

#[tokio::test]
async fn blocks_and_contacts_only_privacy_decide_who_may_message_whom() {
    let app = TestApp::spawn().await;
    let ivy = app.register("ivy", "Ivy").await;
    let jay = app.register("jay", "Jay").await;
    let kim = app.register("kim", "Kim").await;
    let nobody = Uuid::now_v7();
    let mut expected = vec![
        (jay.id, true, Denial::Unspecified),
        (kim.id, true, Denial::Unspecified),
        (nobody, false, Denial::UnknownUser),
    ];
    expected.sort();
    assert_eq!(check(&app, &ivy, &[jay.id, kim.id, nobody]).await, expected);

    // jay blocks ivy: ivy may not message jay, and jay may not message ivy.
    app.client
        .clone()
        .block(authed(
            BlockRequest {
                user_id: ivy.id.to_string(),
            },
            &jay.token,
        ))
        .await
        .unwrap();
    assert_eq!(
        check(&app, &ivy, &[jay.id]).await,
        vec![(jay.id, false, Denial::BlockedByRecipient)]
    );
    assert_eq!(
        check(&app, &jay, &[ivy.id]).await,
        vec![(ivy.id, false, Denial::BlockedBySender)]
    );
    let blocked = app
        .client
        .clone()
        .list_blocked(authed(ListBlockedRequest { page: None }, &jay.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(blocked.profiles.len(), 1);
    app.client
        .clone()
        .unblock(authed(
            BlockRequest {
                user_id: ivy.id.to_string(),
            },
            &jay.token,
        ))
        .await
        .unwrap();
    assert_eq!(
        check(&app, &ivy, &[jay.id]).await,
        vec![(jay.id, true, Denial::Unspecified)]
    );

    // kim accepts messages from contacts only.
    app.client
        .clone()
        .update_privacy(authed(
            UpdatePrivacyRequest {
                privacy: Some(PrivacySettings {
                    messages: Audience::Contacts as i32,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["messages".into()],
                }),
            },
            &kim.token,
        ))
        .await
        .unwrap();
    assert_eq!(
        check(&app, &ivy, &[kim.id]).await,
        vec![(kim.id, false, Denial::ContactsOnly)]
    );
    app.client
        .clone()
        .add_contact(authed(
            ContactRequest {
                user_id: ivy.id.to_string(),
            },
            &kim.token,
        ))
        .await
        .unwrap();
    assert_eq!(
        check(&app, &ivy, &[kim.id]).await,
        vec![(kim.id, true, Denial::Unspecified)]
    );
    app.stop().await;
}

#[tokio::test]
async fn one_may_only_ask_about_oneself_and_not_block_oneself() {
    let app = TestApp::spawn().await;
    let lea = app.register("lea", "Lea").await;
    let max = app.register("max", "Max").await;
    let status = app
        .client
        .clone()
        .check_message_permissions(authed(
            CheckMessagePermissionsRequest {
                sender_id: max.id.to_string(),
                recipient_ids: vec![lea.id.to_string()],
            },
            &lea.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = app
        .client
        .clone()
        .block(authed(
            BlockRequest {
                user_id: lea.id.to_string(),
            },
            &lea.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = app
        .client
        .clone()
        .block(authed(
            BlockRequest {
                user_id: Uuid::now_v7().to_string(),
            },
            &lea.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let status = app
        .client
        .clone()
        .check_message_permissions(CheckMessagePermissionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    app.stop().await;
}
