use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn registration_and_login_over_rest() {
    let app = TestApp::spawn().await;
    let (status, registered) = app
        .call(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({
                "username": "Alice_1",
                "email": "Alice@Example.com",
                "password": "correct horse battery",
                "display_name": "Alice",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let user = &registered["user"];
    assert_eq!(
        registered["tokens"]["user_id"], user["id"],
        "registration signs in"
    );
    assert_eq!(user["username"], "alice_1");
    assert_eq!(user["email"], "alice@example.com");
    assert!(user["created_at"].is_string());

    // Taken username: 409 naming the field. Bad input: 400 naming the field.
    let (status, error) = app
        .call(Method::POST, "/api/v1/auth/register", None, Some(json!({
            "username": "alice_1", "email": "other@example.com", "password": "correct horse battery",
        })))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        (error["code"].as_str(), error["field"].as_str()),
        (Some("ALREADY_EXISTS"), Some("username"))
    );
    let (status, error) = app
        .call(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({
                "username": "bob", "email": "not-an-email", "password": "correct horse battery",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["field"], "email");

    let (status, pair) = app
        .call(Method::POST, "/api/v1/auth/login", None, Some(json!({
            "login": "alice@example.com", "password": "correct horse battery", "device_name": "phone",
        })))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["user_id"], user["id"]);
    let (status, error) = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({
                "login": "alice_1", "password": "wrong password!",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["code"], "UNAUTHENTICATED");
    app.stop().await;
}

#[tokio::test]
async fn tokens_rotate_and_sessions_are_managed_over_rest() {
    let app = TestApp::spawn().await;
    let first = app.signed_in("carol").await;
    let access = first["access_token"].as_str().unwrap();

    // Refresh rotates: the old refresh token is spent.
    let (status, second) = app
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": first["refresh_token"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": first["refresh_token"] })),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "reuse is refused");

    // Sessions list the device and user agent; without a token: 401.
    let other = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({
                "login": "carol", "password": "correct horse battery", "device_name": "tablet",
            })),
        )
        .await
        .1;
    let other_access = other["access_token"].as_str().unwrap();
    let (status, sessions) = app
        .call(
            Method::GET,
            "/api/v1/auth/sessions",
            Some(other_access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sessions}");
    let sessions = sessions.as_array().unwrap().clone();
    assert!(
        sessions
            .iter()
            .any(|s| s["device_name"] == "tablet" && s["current"] == true)
    );
    assert!(
        sessions
            .iter()
            .all(|s| s["user_agent"] == "gateway-tests/1.0")
    );
    let (status, error) = app
        .call(Method::GET, "/api/v1/auth/sessions", None, None)
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED"))
    );
    let (status, _) = app
        .call(
            Method::GET,
            "/api/v1/auth/sessions",
            Some("forged.token.here"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert!(
        sessions.iter().all(|s| s["device_name"] != "laptop"),
        "the reused refresh token revoked the laptop's session"
    );

    // A third device: revoke it by id, then all others.
    let desktop = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({
                "login": "carol", "password": "correct horse battery", "device_name": "desktop",
            })),
        )
        .await
        .1;
    let path = format!(
        "/api/v1/auth/sessions/{}",
        desktop["session_id"].as_str().unwrap()
    );
    let (status, revoked) = app
        .call(Method::DELETE, &path, Some(other_access), None)
        .await;
    assert_eq!(
        (status, revoked["revoked"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": desktop["refresh_token"] })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the revoked session cannot refresh"
    );
    let (status, revoked) = app
        .call(
            Method::DELETE,
            "/api/v1/auth/sessions",
            Some(other_access),
            None,
        )
        .await;
    assert_eq!(
        (status, revoked["revoked"].as_u64()),
        (StatusCode::OK, Some(1)),
        "the session registration opened"
    );

    // Changing the password revokes every session and returns a new pair.
    let (status, error) = app
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(access),
            Some(json!({
                "current_password": "wrong", "new_password": "another long passphrase",
            })),
        )
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("current_password")),
        "{error}"
    );
    let (status, fresh) = app
        .call(Method::POST, "/api/v1/auth/password", Some(other_access), Some(json!({
            "current_password": "correct horse battery", "new_password": "another long passphrase",
        })))
        .await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": other["refresh_token"] })),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            Some(json!({ "refresh_token": fresh["refresh_token"] })),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::NO_CONTENT, serde_json::Value::Null)
    );
    app.stop().await;
}
