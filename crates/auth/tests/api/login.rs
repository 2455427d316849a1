use service_kit::ErrorCode;

use crate::helpers::{PASSWORD, TestApp, assert_code};

#[tokio::test]
async fn login_by_username_or_email_in_any_case() {
    let app = TestApp::spawn().await;
    let user = app.register("erin").await.user.unwrap();
    for login in ["erin", "ERIN", "erin@example.com", " Erin@Example.com "] {
        let tokens = app.login(login, PASSWORD, "cli").await.unwrap();
        assert_eq!(tokens.user_id, user.id, "{login}");
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_user_and_wrong_password_are_indistinguishable() {
    let app = TestApp::spawn().await;
    app.register("frank").await;
    let checks_before = app.metric("auth_password_checks_total").await;

    let wrong_password = app
        .login("frank", "not the password", "cli")
        .await
        .unwrap_err();
    let unknown_user = app
        .login("nobody_here", "not the password", "cli")
        .await
        .unwrap_err();
    let unknown_email = app
        .login("nobody@example.com", PASSWORD, "cli")
        .await
        .unwrap_err();
    for error in [&wrong_password, &unknown_user, &unknown_email] {
        assert_code(error, ErrorCode::Unauthenticated);
        assert_eq!(error.message, wrong_password.message);
        assert_eq!(error.field, None);
    }
    // Each attempt paid for one full bcrypt verification, known user or not.
    assert_eq!(
        app.metric("auth_password_checks_total").await - checks_before,
        3.0
    );

    let error = app.login("", PASSWORD, "cli").await.unwrap_err();
    assert_eq!(error.field.as_deref(), Some("login"));
    app.stop().await;
}
