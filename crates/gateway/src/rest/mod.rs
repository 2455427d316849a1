//! REST handlers under `/api/v1`, one module per service they front.

pub mod auth;

use chrono::{DateTime, Utc};

/// A protobuf timestamp as an RFC 3339 time (None when unset).
pub fn time(at: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    at.and_then(|at| DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0)))
}

/// The body of every error response (what `service_kit::ApiError` renders).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // documents the shape; ApiError renders it
pub struct ErrorResponse {
    /// Stable machine-readable code, e.g. INVALID_ARGUMENT, UNAUTHENTICATED.
    pub code: String,
    pub message: String,
    /// The request field at fault, as a dotted path.
    pub field: Option<String>,
}
