use proto::auth::v1::{
    ChangePasswordRequest, ListSessionsRequest, LogoutRequest, RefreshRequest,
    RevokeOtherSessionsRequest, RevokeSessionRequest, TokenPair,
};
use service_kit::{ApiError, ErrorCode};

use crate::helpers::{PASSWORD, TestApp, assert_code, authed, client_info};

async fn refresh(app: &TestApp, token: &str) -> Result<TokenPair, ApiError> {
    app.client
        .clone()
        .refresh(RefreshRequest {
            refresh_token: token.into(),
            client: None,
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| ApiError::from_status(&status))
}

async fn session_ids(app: &TestApp, access: &str) -> Result<Vec<(String, bool)>, ApiError> {
    app.client
        .clone()
        .list_sessions(authed(ListSessionsRequest {}, access))
        .await
        .map(|r| {
            r.into_inner()
                .sessions
                .into_iter()
                .map(|s| (s.id, s.current))
                .collect()
        })
        .map_err(|status| ApiError::from_status(&status))
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = TestApp::spawn().await;
    let first = app.register("gina").await.tokens.unwrap();

    let second = refresh(&app, &first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token, "rotated");
    assert_eq!(second.session_id, first.session_id, "same family");
    let third = refresh(&app, &second.refresh_token).await.unwrap();

    // The spent first token comes back (stolen): the family dies.
    let error = refresh(&app, &first.refresh_token).await.unwrap_err();
    assert_code(&error, ErrorCode::Unauthenticated);
    assert!(error.message.contains("already used"), "{}", error.message);
    let error = refresh(&app, &third.refresh_token).await.unwrap_err();
    assert_code(&error, ErrorCode::Unauthenticated);
    assert!(
        session_ids(&app, &third.access_token)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(app.metric("auth_refresh_token_reuse_total").await, 1.0);

    // Another login is a separate, unaffected family.
    let other = app.login("gina", PASSWORD, "phone").await.unwrap();
    assert!(refresh(&app, &other.refresh_token).await.is_ok());
    let error = refresh(&app, "rt_made_up").await.unwrap_err();
    assert_code(&error, ErrorCode::Unauthenticated);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_exactly_one_through() {
    let app = TestApp::spawn().await;
    let tokens = app.register("hana").await.tokens.unwrap();
    let (a, b) = tokio::join!(
        refresh(&app, &tokens.refresh_token),
        refresh(&app, &tokens.refresh_token)
    );
    assert_eq!(
        [&a, &b].iter().filter(|r| r.is_ok()).count(),
        1,
        "{a:?} {b:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn sessions_list_revoke_one_revoke_others_and_logout() {
    let app = TestApp::spawn().await;
    let laptop = app.register("ivan").await.tokens.unwrap();
    let phone = app.login("ivan", PASSWORD, "phone-app/2.0").await.unwrap();
    let tablet = app.login("ivan", PASSWORD, "tablet-app/3.0").await.unwrap();

    let sessions = app
        .client
        .clone()
        .list_sessions(authed(ListSessionsRequest {}, &phone.access_token))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 3);
    let current: Vec<_> = sessions.iter().filter(|s| s.current).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].id, phone.session_id);
    let client = current[0].client.clone().unwrap();
    assert_eq!(client.user_agent, "phone-app/2.0");
    assert_eq!(client.ip, client_info("").ip);
    assert!(current[0].created_at.is_some() && current[0].last_used_at.is_some());

    // Revoke the tablet from the phone.
    app.client
        .clone()
        .revoke_session(authed(
            RevokeSessionRequest {
                session_id: tablet.session_id.clone(),
            },
            &phone.access_token,
        ))
        .await
        .unwrap();
    assert_code(
        &refresh(&app, &tablet.refresh_token).await.unwrap_err(),
        ErrorCode::Unauthenticated,
    );
    // Someone else's (or an unknown) session is not found.
    let stranger = app.register("judy").await.tokens.unwrap();
    let error = app
        .client
        .clone()
        .revoke_session(authed(
            RevokeSessionRequest {
                session_id: laptop.session_id.clone(),
            },
            &stranger.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    let error = app
        .client
        .clone()
        .revoke_session(authed(
            RevokeSessionRequest {
                session_id: "not-a-uuid".into(),
            },
            &phone.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        ApiError::from_status(&error).field.as_deref(),
        Some("session_id")
    );

    // Revoke all others from the phone: the laptop goes, the phone stays.
    let revoked = app
        .client
        .clone()
        .revoke_other_sessions(authed(RevokeOtherSessionsRequest {}, &phone.access_token))
        .await
        .unwrap()
        .into_inner()
        .revoked;
    assert_eq!(revoked, 1);
    assert!(refresh(&app, &laptop.refresh_token).await.is_err());
    assert_eq!(
        session_ids(&app, &phone.access_token).await.unwrap(),
        vec![(phone.session_id.clone(), true)]
    );

    // Logout ends the phone's session; doing it twice is fine.
    for _ in 0..2 {
        app.client
            .clone()
            .logout(LogoutRequest {
                refresh_token: phone.refresh_token.clone(),
            })
            .await
            .unwrap();
    }
    assert!(
        session_ids(&app, &phone.access_token)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        refresh(&app, &stranger.refresh_token).await.is_ok(),
        "other users are untouched"
    );
    app.stop().await;
}

#[tokio::test]
async fn password_change_revokes_every_session() {
    let app = TestApp::spawn().await;
    let first = app.register("kate").await.tokens.unwrap();
    let second = app.login("kate", PASSWORD, "phone").await.unwrap();

    let change = |current: &str, new: &str, access: &str| {
        let mut client = app.client.clone();
        let request = authed(
            ChangePasswordRequest {
                current_password: current.into(),
                new_password: new.into(),
                client: Some(client_info("laptop")),
            },
            access,
        );
        async move {
            client
                .change_password(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let error = ApiError::from_status(
        &change("wrong one!!", "a brand new secret", &first.access_token)
            .await
            .unwrap_err(),
    );
    assert_eq!(error.field.as_deref(), Some("current_password"));
    let error = ApiError::from_status(
        &change(PASSWORD, "short", &first.access_token)
            .await
            .unwrap_err(),
    );
    assert_eq!(error.field.as_deref(), Some("new_password"));

    let fresh = change(PASSWORD, "a brand new secret", &first.access_token)
        .await
        .unwrap();
    for old in [&first, &second] {
        assert!(
            refresh(&app, &old.refresh_token).await.is_err(),
            "old sessions are gone"
        );
    }
    assert_eq!(
        session_ids(&app, &fresh.access_token).await.unwrap().len(),
        1
    );
    assert_code(
        &app.login("kate", PASSWORD, "x").await.unwrap_err(),
        ErrorCode::Unauthenticated,
    );
    assert!(app.login("kate", "a brand new secret", "x").await.is_ok());
    app.stop().await;
}
