use service_kit::ErrorCode;

use crate::helpers::{PASSWORD, TestApp, assert_code};

#[tokio::test]
async fn registration_returns_the_user_and_a_working_session() {
    let app = TestApp::spawn().await;
    let response = app
        .try_register("  Alice_01 ", "Alice@Example.COM", PASSWORD)
        .await
        .unwrap();
    let user = response.user.unwrap();
    assert_eq!(user.username, "alice_01", "usernames are normalised");
    assert_eq!(user.email, "alice@example.com", "emails are normalised");
    let tokens = response.tokens.unwrap();
    assert!(!tokens.access_token.is_empty() && tokens.refresh_token.starts_with("rt_"));
    assert_eq!(tokens.user_id, user.id);

    let stored: (String, String, String) =
        sqlx::query_as("SELECT username, email, password_hash FROM users WHERE id = $1::uuid")
            .bind(&user.id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (stored.0.as_str(), stored.1.as_str()),
        ("alice_01", "alice@example.com")
    );
    assert!(
        stored.2.starts_with("$2b$04$"),
        "bcrypt with the configured cost"
    );
    assert!(!stored.2.contains(PASSWORD));
    app.stop().await;
}

#[tokio::test]
async fn validation_errors_name_the_field_and_store_nothing() {
    let app = TestApp::spawn().await;
    let cases = [
        ("ab", "ab@example.com", PASSWORD, "username"),
        ("bad-name!", "x@example.com", PASSWORD, "username"),
        ("carol", "not-an-email", PASSWORD, "email"),
        ("carol", "carol@localhost", PASSWORD, "email"),
        ("carol", "carol@example.com", "short", "password"),
        ("carol", "carol@example.com", "password123", "password"),
        ("carolcarol", "carol@example.com", "CarolCarol", "password"),
    ];
    for (username, email, password, field) in cases {
        let error = app
            .try_register(username, email, password)
            .await
            .unwrap_err();
        assert_code(&error, ErrorCode::InvalidArgument);
        assert_eq!(
            error.field.as_deref(),
            Some(field),
            "{username} {email} {password}: {error:?}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    app.stop().await;
}

#[tokio::test]
async fn duplicates_are_already_exists_naming_the_field_case_insensitively() {
    let app = TestApp::spawn().await;
    app.register("dave").await;
    let error = app
        .try_register("DAVE", "other@example.com", PASSWORD)
        .await
        .unwrap_err();
    assert_code(&error, ErrorCode::AlreadyExists);
    assert_eq!(error.field.as_deref(), Some("username"));
    let error = app
        .try_register("david", "Dave@Example.com", PASSWORD)
        .await
        .unwrap_err();
    assert_code(&error, ErrorCode::AlreadyExists);
    assert_eq!(error.field.as_deref(), Some("email"));
    app.stop().await;
}

#[tokio::test]
async fn racing_registrations_yield_one_account_and_one_already_exists() {
    let app = TestApp::spawn().await;
    for round in 0..5 {
        let name = format!("racer{round}");
        // Same username, different emails; then same email, different usernames.
        let (email_a, email_b) = (
            format!("{name}-a@example.com"),
            format!("{name}-b@example.com"),
        );
        let (a, b) = tokio::join!(
            app.try_register(&name, &email_a, PASSWORD),
            app.try_register(&name, &email_b, PASSWORD),
        );
        let (ok, err): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(Result::is_ok);
        assert_eq!((ok.len(), err.len()), (1, 1), "round {round}");
        let error = err.into_iter().next().unwrap().unwrap_err();
        assert_code(&error, ErrorCode::AlreadyExists);
        assert_eq!(error.field.as_deref(), Some("username"));

        let email = format!("shared{round}@example.com");
        let (left, right) = (format!("left{round}"), format!("right{round}"));
        let (a, b) = tokio::join!(
            app.try_register(&left, &email, PASSWORD),
            app.try_register(&right, &email, PASSWORD),
        );
        let errors: Vec<_> = [a, b].into_iter().filter_map(Result::err).collect();
        assert_eq!(errors.len(), 1, "round {round}");
        assert_code(&errors[0], ErrorCode::AlreadyExists);
        assert_eq!(errors[0].field.as_deref(), Some("email"));
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 10);
    app.stop().await;
}
