//! Request extractors: the verified caller, and JSON bodies whose errors
//! name what is wrong (axum's default rejections are plain text).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use service_kit::ApiError;
use service_kit::token::bearer_token;

use crate::state::AppState;

/// The caller of a request, from its verified `Authorization: Bearer` token.
/// The token is forwarded to the services, which verify it again.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub token: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "an Authorization: Bearer <access token> header is required",
                )
            })?;
        let claims = state.verifier.verify(token)?;
        Ok(Caller {
            user_id: claims.sub.to_string(),
            token: token.to_owned(),
        })
    }
}

/// `axum::Json` with rejections as [`ApiError`]s naming the problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_error(&rejection)),
        }
    }
}

fn json_error(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::invalid(
            "body",
            "the body must be JSON (Content-Type: application/json)",
        ),
        JsonRejection::JsonDataError(error) => {
            // serde_path_to_error's message starts with the field path.
            let text = error.body_text();
            let detail = text
                .split_once(": ")
                .map_or(text.as_str(), |(_, rest)| rest);
            let field = detail.split_once(": ").map(|(path, _)| path.to_owned());
            let error = ApiError::invalid("body", format!("invalid request body: {detail}"));
            match field {
                Some(field) if !field.contains(' ') => error.with_field(field),
                _ => error,
            }
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::invalid("body", "the body is not valid JSON")
        }
        JsonRejection::BytesRejection(_) => ApiError::new(
            service_kit::ErrorCode::PayloadTooLarge,
            "the request body is too large or could not be read",
        ),
        other => ApiError::invalid("body", other.body_text()),
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}
