//! The auth service's errors, mapped once to the API's stable codes.

use service_kit::token::TokenError;
use service_kit::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Invalid(#[from] ApiError),
    /// Unknown user and wrong password are deliberately indistinguishable.
    #[error("invalid login or password")]
    InvalidCredentials,
    #[error("refresh token is invalid or expired")]
    InvalidRefreshToken,
    #[error("refresh token was already used; the session has been revoked")]
    RefreshTokenReused,
    #[error("session not found")]
    SessionNotFound,
    #[error("{field} is already taken")]
    Taken { field: &'static str },
    #[error("a service credential is required")]
    ServiceCredential,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("password hashing: {0}")]
    Hashing(String),
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Invalid(error) => error,
            AuthError::InvalidCredentials
            | AuthError::InvalidRefreshToken
            | AuthError::RefreshTokenReused
            | AuthError::ServiceCredential => ApiError::unauthenticated(error.to_string()),
            AuthError::Token(error) => error.into(),
            AuthError::SessionNotFound => ApiError::not_found(error.to_string()),
            AuthError::Taken { field } => {
                ApiError::already_exists(field, format!("{field} is already taken"))
            }
            AuthError::Postgres(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::Io(_)
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_),
            ) => ApiError::new(
                ErrorCode::Unavailable,
                "account store unavailable; try again",
            ),
            AuthError::Redis(ref redis)
                if redis.is_io_error() || redis.is_timeout() || redis.is_connection_dropped() =>
            {
                ApiError::new(
                    ErrorCode::Unavailable,
                    "session store unavailable; try again",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        ApiError::from(error).into()
    }
}
