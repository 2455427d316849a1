//! Errors as callers see them: a stable machine-readable code, a human message
//! and, for bad input, the field at fault.
//!
//! Each service keeps its own `thiserror` enum and converts it into
//! [`ApiError`] once, at the edge. From there the mapping to a gRPC status
//! (with `google.rpc.ErrorInfo` / `BadRequest` / `RetryInfo` details) and to an
//! HTTP response (`{code, message, field}`) lives only here, and the gateway
//! turns a downstream status back into the same [`ApiError`] without loss.

use std::fmt;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of every `google.rpc.ErrorInfo` the platform emits.
pub const ERROR_DOMAIN: &str = "chat.platform";

/// Stable error codes: part of the public contract of every API. Never
/// renumber or rename; add new ones at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Conflict,
    RateLimited,
    PayloadTooLarge,
    Unavailable,
    DeadlineExceeded,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        Self::InvalidArgument,
        Self::Unauthenticated,
        Self::PermissionDenied,
        Self::NotFound,
        Self::AlreadyExists,
        Self::FailedPrecondition,
        Self::Conflict,
        Self::RateLimited,
        Self::PayloadTooLarge,
        Self::Unavailable,
        Self::DeadlineExceeded,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::Conflict => "CONFLICT",
            Self::RateLimited => "RATE_LIMITED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::Unavailable => "UNAVAILABLE",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::Internal => "INTERNAL",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::Conflict => tonic::Code::Aborted,
            Self::RateLimited => tonic::Code::ResourceExhausted,
            Self::PayloadTooLarge => tonic::Code::OutOfRange,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The code for a status that carries no `ErrorInfo` (e.g. one produced by
    /// tonic itself or by a proxy).
    pub fn from_grpc(code: tonic::Code) -> Self {
        use tonic::Code;
        match code {
            Code::InvalidArgument | Code::OutOfRange => Self::InvalidArgument,
            Code::Unauthenticated => Self::Unauthenticated,
            Code::PermissionDenied => Self::PermissionDenied,
            Code::NotFound => Self::NotFound,
            Code::AlreadyExists => Self::AlreadyExists,
            Code::FailedPrecondition => Self::FailedPrecondition,
            Code::Aborted => Self::Conflict,
            Code::ResourceExhausted => Self::RateLimited,
            Code::Unavailable | Code::Cancelled => Self::Unavailable,
            Code::DeadlineExceeded => Self::DeadlineExceeded,
            Code::Ok | Code::Unknown | Code::Unimplemented | Code::Internal | Code::DataLoss => {
                Self::Internal
            }
        }
    }

    pub fn http_status(self) -> StatusCode {
        match self {
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::AlreadyExists | Self::Conflict => StatusCode::CONFLICT,
            Self::FailedPrecondition => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as an API returns it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault (dotted path, e.g. `page.limit`).
    pub field: Option<String>,
    /// For `RateLimited` and `Unavailable`: when trying again makes sense.
    pub retry_after: Option<Duration>,
}

/// The JSON body of every HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// Bad input in one named field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message).with_field(field)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn already_exists(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AlreadyExists, message).with_field(field)
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// An unexpected failure. The cause is logged here, once; callers only
    /// learn that something went wrong on our side.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
            field: self.field.clone(),
        }
    }

    /// Reads a status produced by [`From<ApiError> for tonic::Status`] (or by
    /// anything else) back into an [`ApiError`].
    pub fn from_status(status: &tonic::Status) -> Self {
        let details = status.get_error_details();
        let code = details
            .error_info()
            .filter(|info| info.domain == ERROR_DOMAIN)
            .and_then(|info| ErrorCode::parse(&info.reason))
            .unwrap_or_else(|| ErrorCode::from_grpc(status.code()));
        let field = details
            .bad_request()
            .and_then(|bad| bad.field_violations.first())
            .map(|violation| violation.field.clone());
        let retry_after = details
            .retry_info()
            .and_then(|retry| retry.retry_delay)
            .filter(|delay| !delay.is_zero());
        let message = match code {
            // A downstream's internal details are not ours to show.
            ErrorCode::Internal => "internal error".to_owned(),
            _ => status.message().to_owned(),
        };
        Self {
            code,
            message,
            field,
            retry_after,
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        let mut details = ErrorDetails::new();
        let mut metadata = std::collections::HashMap::new();
        if let Some(field) = &error.field {
            metadata.insert("field".to_owned(), field.clone());
            details.add_bad_request_violation(field.clone(), error.message.clone());
        }
        details.set_error_info(error.code.as_str(), ERROR_DOMAIN, metadata);
        if let Some(after) = error.retry_after {
            details.set_retry_info(Some(after));
        }
        tonic::Status::with_error_details(error.code.grpc_code(), error.message, details)
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        Self::from_status(&status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.http_status(), axum::Json(self.body())).into_response();
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up: 0 would invite an immediate retry.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_strings_that_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(ErrorCode::InvalidArgument.as_str(), "INVALID_ARGUMENT");
        assert_eq!(ErrorCode::AlreadyExists.as_str(), "ALREADY_EXISTS");
        assert_eq!(ErrorCode::RateLimited.as_str(), "RATE_LIMITED");
    }

    #[test]
    fn every_code_survives_grpc_and_back_with_field_and_retry() {
        for code in ErrorCode::ALL {
            let error = ApiError::new(code, "something about it")
                .with_field("profile.display_name")
                .with_retry_after(Duration::from_millis(1500));
            let status = tonic::Status::from(error.clone());
            assert_eq!(status.code(), code.grpc_code());
            let back = ApiError::from_status(&status);
            assert_eq!(back.code, code);
            assert_eq!(back.field.as_deref(), Some("profile.display_name"));
            assert_eq!(back.retry_after, Some(Duration::from_millis(1500)));
            if code != ErrorCode::Internal {
                assert_eq!(back.message, "something about it");
            }
        }
    }

    #[test]
    fn plain_status_without_details_maps_by_grpc_code() {
        let back = ApiError::from_status(&tonic::Status::unavailable("connection refused"));
        assert_eq!(back.code, ErrorCode::Unavailable);
        assert_eq!(back.field, None);
        let back = ApiError::from_status(&tonic::Status::internal("stack trace here"));
        assert_eq!(back.code, ErrorCode::Internal);
        assert_eq!(
            back.message, "internal error",
            "internal detail must not leak"
        );
    }

    #[tokio::test]
    async fn http_response_has_status_stable_body_and_retry_after() {
        let response = ApiError::invalid("username", "must be 3-32 characters").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": "INVALID_ARGUMENT", "message": "must be 3-32 characters", "field": "username"})
        );

        let response = ApiError::new(ErrorCode::RateLimited, "slow down")
            .with_retry_after(Duration::from_millis(2100))
            .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");

        let response = ApiError::unavailable("chat is down").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            body.get("field").is_none(),
            "no field key when no field: {body}"
        );
    }

    #[test]
    fn every_code_has_a_client_or_server_http_status() {
        for code in ErrorCode::ALL {
            let status = code.http_status();
            let server_side = matches!(
                code,
                ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::DeadlineExceeded
            );
            assert_eq!(status.is_server_error(), server_side, "{code}");
            assert!(status.is_client_error() || status.is_server_error());
        }
    }
}
