//! The `users` table (this service's only relational state).

use chrono::{DateTime, Utc};
use proto::EventEnvelope;
use service_kit::pg_outbox;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::AuthError;

#[derive(Debug, Clone)]
pub struct Account {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub is_bot: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug)]
pub struct NewAccount<'a> {
    pub id: Uuid,
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub password_hash: &'a str,
    pub is_bot: bool,
}

/// Maps a unique violation to the field it concerns.
fn taken(error: sqlx::Error) -> AuthError {
    if let sqlx::Error::Database(db) = &error
        && db.is_unique_violation()
    {
        match db.constraint() {
            Some("users_username_key") => return AuthError::Taken { field: "username" },
            Some("users_email_key") => return AuthError::Taken { field: "email" },
            _ => {}
        }
    }
    AuthError::Postgres(error)
}

/// Inserts the account and its `user.registered` event in one transaction.
/// Concurrent registrations of one name: the unique constraint lets exactly
/// one commit and the other gets `Taken`.
pub async fn insert(
    pool: &PgPool,
    new: &NewAccount<'_>,
    event: &EventEnvelope,
) -> Result<Account, AuthError> {
    let mut tx = pool.begin().await?;
    let account = sqlx::query_as!(
        Account,
        r#"INSERT INTO users (id, username, email, password_hash, is_bot)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING id, username, email, password_hash, is_bot, created_at"#,
        new.id,
        new.username,
        new.email,
        new.password_hash,
        new.is_bot,
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(taken)?;
    pg_outbox::enqueue(&mut tx, event).await?;
    tx.commit().await?;
    Ok(account)
}

/// By username, or by email when the login contains `@` (each a unique index).
pub async fn find_by_login(pool: &PgPool, login: &str) -> Result<Option<Account>, AuthError> {
    let login = login.trim().to_lowercase();
    let account = if login.contains('@') {
        sqlx::query_as!(
            Account,
            "SELECT id, username, email, password_hash, is_bot, created_at FROM users WHERE email = $1",
            login
        )
        .fetch_optional(pool)
        .await?
    } else {
        sqlx::query_as!(
            Account,
            "SELECT id, username, email, password_hash, is_bot, created_at FROM users WHERE username = $1",
            login
        )
        .fetch_optional(pool)
        .await?
    };
    Ok(account)
}

pub async fn find_by_id(pool: &PgPool, id: Uuid) -> Result<Option<Account>, AuthError> {
    Ok(sqlx::query_as!(
        Account,
        "SELECT id, username, email, password_hash, is_bot, created_at FROM users WHERE id = $1",
        id
    )
    .fetch_optional(pool)
    .await?)
}

pub async fn update_password(
    pool: &PgPool,
    id: Uuid,
    password_hash: &str,
) -> Result<(), AuthError> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
        id,
        password_hash
    )
    .execute(pool)
    .await?;
    Ok(())
}
