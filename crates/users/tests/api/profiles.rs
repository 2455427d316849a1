use std::time::Duration;

use prost_types::FieldMask;
use proto::users::v1::{GetMyProfileRequest, ProfileSettings, UpdateProfileRequest};
use service_kit::{ApiError, ErrorCode};

use crate::helpers::{TestApp, authed};

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

async fn update(
    app: &TestApp,
    token: &str,
    request: UpdateProfileRequest,
) -> Result<proto::users::v1::Profile, ApiError> {
    app.client
        .clone()
        .update_profile(authed(request, token))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| ApiError::from_status(&status))
}

#[tokio::test]
async fn profiles_come_from_events_and_a_replayed_event_changes_nothing() {
    let app = TestApp::spawn().await;
    let ada = app.register("ada", "Ada Lovelace").await;
    let me = app
        .client
        .clone()
        .get_my_profile(authed(GetMyProfileRequest {}, &ada.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (me.username.as_str(), me.display_name.as_str()),
        ("ada", "Ada Lovelace")
    );

    update(
        &app,
        &ada.token,
        UpdateProfileRequest {
            display_name: "Countess".into(),
            update_mask: mask(&["display_name"]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // The same registration again (redelivery, replay): nothing changes, no error.
    let replay = TestApp::registered_event(ada.id, "ada", "Ada Lovelace");
    app.publisher.publish(&replay).await.unwrap();
    app.publisher.publish(&replay).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM user_profiles")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    assert_eq!(app.profile(&ada, ada.id).await.display_name, "Countess");
    app.stop().await;
}

#[tokio::test]
async fn batch_get_returns_known_profiles_in_one_call() {
    let app = TestApp::spawn().await;
    let viewer = app.register("viewer", "").await;
    let mut ids = vec![uuid::Uuid::now_v7()]; // unknown: omitted
    for i in 0..5 {
        ids.push(
            app.register(&format!("member{i}"), &format!("Member {i}"))
                .await
                .id,
        );
    }
    let profiles = app.profiles(&viewer, &ids).await.unwrap();
    assert_eq!(profiles.len(), 5);
    assert!(
        profiles.iter().all(|p| p.settings.is_none()),
        "settings are private"
    );
    assert_eq!(
        app.profile(&viewer, viewer.id).await.display_name,
        "viewer",
        "empty display name defaults to the username"
    );

    let too_many: Vec<_> = (0..501).map(|_| uuid::Uuid::now_v7()).collect();
    assert_eq!(
        app.profiles(&viewer, &too_many)
            .await
            .unwrap_err()
            .field
            .as_deref(),
        Some("user_ids")
    );
    let error = app
        .client
        .clone()
        .get_profiles(authed(
            proto::users::v1::GetProfilesRequest {
                user_ids: vec!["nope".into()],
            },
            &viewer.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        ApiError::from_status(&error).field.as_deref(),
        Some("user_ids[0]")
    );
    app.stop().await;
}

#[tokio::test]
async fn updates_validate_each_field_and_apply_only_the_mask() {
    let app = TestApp::spawn().await;
    let bea = app.register("bea", "Bea").await;
    let cases: Vec<(UpdateProfileRequest, &str)> = vec![
        (
            UpdateProfileRequest {
                display_name: " ".into(),
                update_mask: mask(&["display_name"]),
                ..Default::default()
            },
            "display_name",
        ),
        (
            UpdateProfileRequest {
                avatar_url: "ftp://x.org/a.png".into(),
                update_mask: mask(&["avatar_url"]),
                ..Default::default()
            },
            "avatar_url",
        ),
        (
            UpdateProfileRequest {
                bio: "b".repeat(501),
                update_mask: mask(&["bio"]),
                ..Default::default()
            },
            "bio",
        ),
        (
            UpdateProfileRequest {
                settings: Some(ProfileSettings {
                    theme: "neon".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["settings.theme"]),
                ..Default::default()
            },
            "settings.theme",
        ),
        (
            UpdateProfileRequest {
                update_mask: mask(&["favourite_colour"]),
                ..Default::default()
            },
            "update_mask.paths",
        ),
        (UpdateProfileRequest::default(), "update_mask"),
    ];
    for (request, field) in cases {
        let error = update(&app, &bea.token, request).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidArgument);
        assert_eq!(error.field.as_deref(), Some(field), "{error:?}");
    }

    let all = update(
        &app,
        &bea.token,
        UpdateProfileRequest {
            display_name: "Beatrice".into(),
            avatar_url: "https://cdn.example.com/bea.png".into(),
            bio: "Hello\nthere".into(),
            settings: Some(ProfileSettings {
                language: "pt-BR".into(),
                theme: "dark".into(),
                notifications_enabled: true,
                time_zone: "Europe/Lisbon".into(),
            }),
            update_mask: mask(&["display_name", "avatar_url", "bio", "settings"]),
        },
    )
    .await
    .unwrap();
    assert_eq!(all.display_name, "Beatrice");
    // Only the theme changes; the display name in the request is ignored.
    let partial = update(
        &app,
        &bea.token,
        UpdateProfileRequest {
            display_name: "Ignored".into(),
            settings: Some(ProfileSettings {
                theme: "light".into(),
                ..Default::default()
            }),
            update_mask: mask(&["settings.theme"]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let settings = partial.settings.unwrap();
    assert_eq!(
        (
            partial.display_name.as_str(),
            settings.theme.as_str(),
            settings.language.as_str()
        ),
        ("Beatrice", "light", "pt-BR")
    );
    assert_eq!(partial.bio, "Hello\nthere");
    app.stop().await;
}
