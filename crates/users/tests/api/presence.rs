use std::time::Duration;

use prost_types::FieldMask;
use proto::users::v1::{
    Audience, ContactRequest, DevicePresenceRequest, DevicesHeartbeatRequest, GetPresenceRequest,
    Presence, PrivacySettings, UpdatePrivacyRequest,
};

use service_kit::ErrorCode;

use crate::helpers::{SERVICE_TOKEN, TestApp, User, authed, next_event};

async fn connect(app: &TestApp, user: &User, device: &str) {
    app.client
        .clone()
        .device_connected(authed(
            DevicePresenceRequest {
                device_id: device.into(),
                user_id: String::new(),
            },
            &user.token,
        ))
        .await
        .unwrap();
}

async fn disconnect(app: &TestApp, user: &User, device: &str) -> bool {
    app.client
        .clone()
        .device_disconnected(authed(
            DevicePresenceRequest {
                device_id: device.into(),
                user_id: String::new(),
            },
            &user.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .online
}

async fn presence(app: &TestApp, viewer: &User, of: &User) -> Presence {
    app.client
        .clone()
        .get_presence(authed(
            GetPresenceRequest {
                user_ids: vec![of.id.to_string()],
            },
            &viewer.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .presences
        .remove(0)
}

fn transition(event: &proto::EventEnvelope) -> (String, bool) {
    match &event.payload {
        Some(proto::EventPayload::PresenceChanged(p)) => (p.user_id.clone(), p.online),
        other => panic!("not presence: {other:?}"),
    }
}

#[tokio::test]
async fn online_while_any_device_is_connected_with_events_only_on_transitions() {
    let app = TestApp::spawn().await;
    let mut events = app.listen("presence", &["presence.changed"]).await;
    let dan = app.register("dan", "Dan").await;
    let eve = app.register("eve", "Eve").await;

    connect(&app, &dan, "phone").await;
    assert_eq!(
        transition(
            &next_event(&mut events, Duration::from_secs(5))
                .await
                .unwrap()
        ),
        (dan.id.to_string(), true)
    );
    connect(&app, &dan, "laptop").await;
    assert!(presence(&app, &eve, &dan).await.online);

    assert!(
        disconnect(&app, &dan, "phone").await,
        "still online on the laptop"
    );
    assert!(presence(&app, &eve, &dan).await.online);
    assert!(!disconnect(&app, &dan, "laptop").await);
    let offline = next_event(&mut events, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(transition(&offline), (dan.id.to_string(), false));
    let seen = presence(&app, &eve, &dan).await;
    assert!(!seen.online && seen.last_seen_at.is_some());
    assert!(
        next_event(&mut events, Duration::from_millis(500))
            .await
            .is_none(),
        "exactly two transitions, no more"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_device_that_stops_heartbeating_goes_offline_by_itself() {
    let app = TestApp::spawn_with_presence_ttl(Duration::from_millis(800)).await;
    let mut events = app.listen("presence", &["presence.changed"]).await;
    let fay = app.register("fay", "Fay").await;
    let gil = app.register("gil", "Gil").await;

    connect(&app, &fay, "crashed-gateway-socket").await;
    assert!(
        transition(
            &next_event(&mut events, Duration::from_secs(5))
                .await
                .unwrap()
        )
        .1
    );
    assert!(presence(&app, &gil, &fay).await.online);
    // Keep a second user alive with heartbeats meanwhile.
    for _ in 0..4 {
        connect(&app, &gil, "alive").await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        !presence(&app, &gil, &fay).await.online,
        "expired without a disconnect"
    );
    assert!(
        presence(&app, &fay, &gil).await.online,
        "heartbeats keep a device online"
    );
    // gil's own online event, then fay's offline one from the sweeper.
    let mut offline = None;
    while let Some(event) = next_event(&mut events, Duration::from_secs(5)).await {
        if transition(&event) == (fay.id.to_string(), false) {
            offline = Some(event);
            break;
        }
    }
    assert!(
        offline.is_some(),
        "the sweeper published fay's offline transition"
    );
    app.stop().await;
}

#[tokio::test]
async fn last_seen_privacy_is_enforced_when_served() {
    let app = TestApp::spawn().await;
    let hal = app.register("hal", "Hal").await;
    let friend = app.register("friend", "Friend").await;
    let stranger = app.register("stranger", "Stranger").await;
    connect(&app, &hal, "phone").await;
    app.client
        .clone()
        .add_contact(authed(
            ContactRequest {
                user_id: friend.id.to_string(),
            },
            &hal.token,
        ))
        .await
        .unwrap();

    let set = |audience: Audience| {
        let mut client = app.client.clone();
        let request = authed(
            UpdatePrivacyRequest {
                privacy: Some(PrivacySettings {
                    last_seen: audience as i32,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["last_seen".into()],
                }),
            },
            &hal.token,
        );
        async move { client.update_privacy(request).await.unwrap() }
    };
    assert!(
        presence(&app, &stranger, &hal).await.online,
        "everyone by default"
    );

    set(Audience::Contacts).await;
    assert!(
        presence(&app, &friend, &hal).await.online,
        "a contact sees it"
    );
    assert!(
        !presence(&app, &stranger, &hal).await.online,
        "a stranger does not"
    );
    assert!(
        app.profile(&stranger, hal.id)
            .await
            .presence
            .unwrap()
            .last_seen_at
            .is_none()
    );

    set(Audience::Nobody).await;
    assert!(!presence(&app, &friend, &hal).await.online);
    assert!(
        presence(&app, &hal, &hal).await.online,
        "one always sees oneself"
    );
    app.stop().await;
}

/// A service with the credential (the gateway) reports presence for any
/// user; without it, a user can only report their own devices.
#[tokio::test]
async fn services_report_presence_with_their_credential() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann", "Ann").await;
    let bob = app.register("bob", "Bob").await;
    let on_behalf = |token: Option<&str>, user_id: String| {
        let mut request = tonic::Request::new(DevicePresenceRequest {
            device_id: "gateway-0/socket-1".into(),
            user_id,
        });
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("x-service-token", token.parse().unwrap());
        }
        let mut client = app.client.clone();
        async move { client.device_connected(request).await }
    };
    on_behalf(Some(SERVICE_TOKEN), ann.id.to_string())
        .await
        .unwrap();
    assert!(presence(&app, &bob, &ann).await.online);

    let wrong = on_behalf(Some("not-the-credential"), bob.id.to_string()).await;
    assert_eq!(
        service_kit::ApiError::from_status(&wrong.unwrap_err()).code,
        ErrorCode::Unauthenticated
    );
    let mut request = authed(
        DevicePresenceRequest {
            device_id: "phone".into(),
            user_id: bob.id.to_string(),
        },
        &ann.token,
    );
    request.metadata_mut().remove("x-service-token");
    let status = app
        .client
        .clone()
        .device_connected(request)
        .await
        .unwrap_err();
    assert_eq!(
        service_kit::ApiError::from_status(&status).code,
        ErrorCode::PermissionDenied,
        "a user cannot report another user's device"
    );
    assert!(!presence(&app, &ann, &bob).await.online);
    app.stop().await;
}

/// A gateway renews all its sockets in one call: users come online once
/// (one event each, however many devices), a renewal of live devices
/// changes nothing, and a bad batch is refused whole, naming the field.
#[tokio::test]
async fn a_gateway_renews_many_devices_in_one_call() {
    let app = TestApp::spawn().await;
    let mut events = app.listen("presence", &["presence.changed"]).await;
    let ann = app.register("ann", "Ann").await;
    let bob = app.register("bob", "Bob").await;
    let cy = app.register("cy", "Cy").await;
    let heartbeat = |devices: Vec<(String, &str)>, credential: Option<&str>| {
        let mut request = tonic::Request::new(DevicesHeartbeatRequest {
            devices: devices
                .into_iter()
                .map(|(user_id, device)| DevicePresenceRequest {
                    device_id: device.into(),
                    user_id,
                })
                .collect(),
        });
        if let Some(credential) = credential {
            request
                .metadata_mut()
                .insert("x-service-token", credential.parse().unwrap());
        }
        let mut client = app.client.clone();
        async move { client.devices_heartbeat(request).await }
    };
    let batch = || {
        vec![
            (ann.id.to_string(), "gateway-0/s1"),
            (ann.id.to_string(), "gateway-0/s2"),
            (bob.id.to_string(), "gateway-0/s3"),
        ]
    };

    let first = heartbeat(batch(), Some(SERVICE_TOKEN)).await.unwrap();
    assert_eq!(first.into_inner().came_online, 2, "ann and bob, once each");
    assert!(presence(&app, &cy, &ann).await.online);
    assert!(presence(&app, &cy, &bob).await.online);
    let mut online = Vec::new();
    while let Some(event) = next_event(&mut events, Duration::from_millis(1_500)).await {
        online.push(transition(&event));
    }
    online.sort();
    let mut expected = vec![(ann.id.to_string(), true), (bob.id.to_string(), true)];
    expected.sort();
    assert_eq!(online, expected);

    let again = heartbeat(batch(), Some(SERVICE_TOKEN)).await.unwrap();
    assert_eq!(again.into_inner().came_online, 0, "already online");

    let code_and_field = |status: tonic::Status| {
        let error = service_kit::ApiError::from_status(&status);
        (error.code, error.field)
    };
    let without = heartbeat(vec![(cy.id.to_string(), "s9")], None).await;
    assert_eq!(
        code_and_field(without.unwrap_err()).0,
        ErrorCode::Unauthenticated
    );
    let empty = heartbeat(Vec::new(), Some(SERVICE_TOKEN)).await;
    assert_eq!(
        code_and_field(empty.unwrap_err()),
        (ErrorCode::InvalidArgument, Some("devices".to_owned()))
    );
    let bad = heartbeat(
        vec![(cy.id.to_string(), "s9"), ("not-a-user".into(), "s10")],
        Some(SERVICE_TOKEN),
    )
    .await;
    assert_eq!(
        code_and_field(bad.unwrap_err()),
        (
            ErrorCode::InvalidArgument,
            Some("devices.user_id".to_owned())
        )
    );
    assert!(
        !presence(&app, &ann, &cy).await.online,
        "a refused batch renews nobody"
    );
    app.stop().await;
}
