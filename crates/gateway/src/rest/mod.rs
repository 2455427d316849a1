//! REST handlers under `/api/v1`, one module per service they front.

pub mod auth;
pub mod chat;
pub mod users;

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

/// Calls a downstream service, mapping its status to the API error once.
pub async fn rpc<M, T, F, Fut>(
    downstream: &service_kit::grpc::Downstream,
    kind: service_kit::grpc::CallKind,
    token: Option<&str>,
    message: M,
    send: F,
) -> Result<T, service_kit::ApiError>
where
    M: Clone,
    F: Fn(tonic::transport::Channel, tonic::Request<M>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    downstream
        .call(kind, token, message, send)
        .await
        .map_err(|status| service_kit::ApiError::from_status(&status))
}

/// `?cursor=&limit=` of list endpoints.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (0 or absent: the default).
    pub limit: Option<u32>,
}

impl PageQuery {
    pub fn to_proto(&self) -> Option<proto::common::v1::PageRequest> {
        Some(proto::common::v1::PageRequest {
            cursor: self.cursor.clone().unwrap_or_default(),
            limit: self.limit.unwrap_or(0),
        })
    }
}

/// `next_cursor` of a page response ("" when there is no further page).
pub fn next_cursor(page: Option<proto::common::v1::PageResponse>) -> String {
    page.map(|page| page.next_cursor).unwrap_or_default()
}

/// Comma-separated ids in a query string.
pub fn id_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}
