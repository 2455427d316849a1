//! The chat service's errors, mapped once to the API's stable codes.

use service_kit::token::TokenError;
use service_kit::{ApiError, ErrorCode};

use crate::store::{Refusal, refusal};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("conversation not found")]
    ConversationNotFound,
    #[error("you are not a member of this conversation")]
    NotMember,
    #[error("message not found")]
    MessageNotFound,
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
}

impl ChatError {
    /// A driver error that carries a deliberate [`Refusal`] becomes it.
    pub fn from_store(error: mongodb::error::Error) -> Self {
        match refusal(&error) {
            Some(Refusal::NotMember) => ChatError::NotMember,
            Some(Refusal::NotFound) => ChatError::MessageNotFound,
            None => ChatError::Mongo(error),
        }
    }
}

fn store_unavailable(error: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    matches!(
        error.kind.as_ref(),
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
    ) || error.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR)
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> Self {
        match error {
            ChatError::Api(error) => error,
            ChatError::Token(error) => error.into(),
            ChatError::ConversationNotFound | ChatError::MessageNotFound => {
                ApiError::not_found(error.to_string())
            }
            ChatError::NotMember => ApiError::permission_denied(error.to_string()),
            ChatError::Mongo(ref mongo) if store_unavailable(mongo) => ApiError::new(
                ErrorCode::Unavailable,
                "message store unavailable; try again",
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<ChatError> for tonic::Status {
    fn from(error: ChatError) -> Self {
        ApiError::from(error).into()
    }
}
