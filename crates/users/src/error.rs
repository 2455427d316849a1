//! The users service's errors, mapped once to the API's stable codes.

use service_kit::token::TokenError;
use service_kit::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error(transparent)]
    Invalid(#[from] ApiError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("your profile does not exist yet")]
    NoProfile,
    #[error("no such user")]
    UnknownUser,
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl From<UsersError> for ApiError {
    fn from(error: UsersError) -> Self {
        match error {
            UsersError::Invalid(error) => error,
            UsersError::Token(error) => error.into(),
            UsersError::NoProfile | UsersError::UnknownUser => {
                ApiError::not_found(error.to_string())
            }
            UsersError::Postgres(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::Io(_)
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_),
            ) => ApiError::new(
                ErrorCode::Unavailable,
                "profile store unavailable; try again",
            ),
            UsersError::Redis(ref redis)
                if redis.is_io_error() || redis.is_timeout() || redis.is_connection_dropped() =>
            {
                ApiError::new(
                    ErrorCode::Unavailable,
                    "presence store unavailable; try again",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<UsersError> for tonic::Status {
    fn from(error: UsersError) -> Self {
        ApiError::from(error).into()
    }
}
