//! Registration, login, token refresh, logout and sessions: the auth
//! service behind JSON. Login and registration forward the client's user
//! agent and address so sessions can be listed with them.

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::auth::v1::{
    ChangePasswordRequest as GrpcChangePassword, ClientInfo, ListSessionsRequest,
    LoginRequest as GrpcLogin, LogoutRequest, RefreshRequest as GrpcRefresh,
    RegisterRequest as GrpcRegister, RevokeOtherSessionsRequest, RevokeSessionRequest,
};
use serde::{Deserialize, Serialize};
use service_kit::ApiError;
use service_kit::grpc::CallKind;
use tonic::transport::Channel;
use utoipa::ToSchema;

use crate::extract::{Caller, Json};
use crate::rest::{rpc, time};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/password", post(change_password))
        .route(
            "/auth/sessions",
            get(list_sessions).delete(revoke_other_sessions),
        )
        .route("/auth/sessions/{session_id}", delete(revoke_session))
}

fn client(channel: Channel) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(channel)
}

fn client_info(headers: &HeaderMap, device_name: Option<String>) -> ClientInfo {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    // Behind the ingress the client's address is the first X-Forwarded-For hop.
    let ip = header("x-forwarded-for")
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    ClientInfo {
        user_agent: header("user-agent"),
        ip,
        device_name: device_name.unwrap_or_default(),
    }
}

/// The client's address: the first `X-Forwarded-For` hop (set by the
/// ingress), else the peer.
fn client_ip(headers: &HeaderMap, peer: std::net::SocketAddr) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(str::trim)
        .filter(|ip| !ip.is_empty())
        .map_or_else(|| peer.ip().to_string(), str::to_owned)
}

/// Brute-force guard on the unauthenticated auth endpoints, per client IP.
async fn limit_by_ip(
    state: &AppState,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
) -> Result<(), ApiError> {
    state
        .limiter
        .check("auth", &client_ip(headers, peer), state.limits.auth)
        .await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// 3-32 characters of a-z, 0-9, _ (case-insensitive, unique).
    pub username: String,
    pub email: String,
    /// At least 10 characters, not a common password, not the username/email.
    pub password: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub is_bot: bool,
    pub created_at: Option<DateTime<Utc>>,
}

/// The new account, signed in.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    pub user: User,
    pub tokens: TokenPair,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Username or email.
    pub login: String,
    pub password: String,
    /// Shown in the session list (e.g. "Pixel 8").
    #[serde(default)]
    pub device_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_token: String,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub session_id: String,
    pub user_id: String,
    /// Always "Bearer".
    pub token_type: String,
}

impl From<proto::auth::v1::TokenPair> for TokenPair {
    fn from(pair: proto::auth::v1::TokenPair) -> Self {
        Self {
            access_expires_at: time(pair.access_expires_at.as_ref()),
            refresh_expires_at: time(pair.refresh_expires_at.as_ref()),
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            session_id: pair.session_id,
            user_id: pair.user_id,
            token_type: pair.token_type,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub id: String,
    pub user_agent: String,
    pub ip: String,
    pub device_name: String,
    pub created_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The session of the token making this request.
    pub current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub revoked: u32,
}

/// Create an account.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses((status = 201, body = Registered), (status = 400, body = crate::rest::ErrorResponse),
        (status = 409, description = "username or email taken (the field is named)", body = crate::rest::ErrorResponse)))]
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Json(input): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    limit_by_ip(&state, &headers, peer).await?;
    let request = GrpcRegister {
        username: input.username,
        email: input.email,
        password: input.password,
        display_name: input.display_name.unwrap_or_default(),
        client: Some(client_info(&headers, None)),
    };
    let response = rpc(
        &state.auth,
        CallKind::Once,
        None,
        request,
        |channel, request| async move { client(channel).register(request).await },
    )
    .await?;
    let user = response.user.unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            user: User {
                created_at: time(user.created_at.as_ref()),
                id: user.id,
                username: user.username,
                email: user.email,
                is_bot: user.is_bot,
            },
            tokens: response.tokens.unwrap_or_default().into(),
        }),
    ))
}

/// Log in with username or email; returns an access and a refresh token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses((status = 200, body = TokenPair),
        (status = 401, description = "wrong login or password (the same answer for both)", body = crate::rest::ErrorResponse),
        (status = 429, description = "too many attempts from this address; see Retry-After", body = crate::rest::ErrorResponse)))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Json(input): Json<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    limit_by_ip(&state, &headers, peer).await?;
    let request = GrpcLogin {
        login: input.login,
        password: input.password,
        client: Some(client_info(&headers, input.device_name)),
    };
    let pair = rpc(
        &state.auth,
        CallKind::Once,
        None,
        request,
        |channel, request| async move { client(channel).login(request).await },
    )
    .await?;
    Ok(Json(pair.into()))
}

/// Trade a refresh token for a new pair (the old refresh token is spent;
/// presenting it again revokes the session).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = crate::rest::ErrorResponse)))]
pub async fn refresh(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Json(input): Json<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    limit_by_ip(&state, &headers, peer).await?;
    let request = GrpcRefresh {
        refresh_token: input.refresh_token,
        client: Some(client_info(&headers, None)),
    };
    let pair = rpc(
        &state.auth,
        CallKind::Once,
        None,
        request,
        |channel, request| async move { client(channel).refresh(request).await },
    )
    .await?;
    Ok(Json(pair.into()))
}

/// End the session of this refresh token.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses((status = 204), (status = 401, body = crate::rest::ErrorResponse)))]
pub async fn logout(
    State(state): State<AppState>,
    Json(input): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    let request = LogoutRequest {
        refresh_token: input.refresh_token,
    };
    rpc(
        &state.auth,
        CallKind::Idempotent,
        None,
        request,
        |channel, request| async move { client(channel).logout(request).await },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the password; every session is revoked and a new pair returned.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth",
    request_body = ChangePasswordRequest, security(("bearer" = [])),
    responses((status = 200, body = TokenPair), (status = 400, body = crate::rest::ErrorResponse),
        (status = 401, body = crate::rest::ErrorResponse)))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(input): Json<ChangePasswordRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let request = GrpcChangePassword {
        current_password: input.current_password,
        new_password: input.new_password,
        client: Some(client_info(&headers, None)),
    };
    let pair = rpc(
        &state.auth,
        CallKind::Once,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).change_password(request).await },
    )
    .await?;
    Ok(Json(pair.into()))
}

/// My sessions (devices), newest use first.
#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Vec<Session>), (status = 401, body = crate::rest::ErrorResponse)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Session>>, ApiError> {
    let response = rpc(
        &state.auth,
        CallKind::Idempotent,
        Some(&caller.token),
        ListSessionsRequest {},
        |channel, request| async move { client(channel).list_sessions(request).await },
    )
    .await?;
    Ok(Json(
        response
            .sessions
            .into_iter()
            .map(|session| {
                let client = session.client.unwrap_or_default();
                Session {
                    created_at: time(session.created_at.as_ref()),
                    last_used_at: time(session.last_used_at.as_ref()),
                    expires_at: time(session.expires_at.as_ref()),
                    id: session.id,
                    user_agent: client.user_agent,
                    ip: client.ip,
                    device_name: client.device_name,
                    current: session.current,
                }
            })
            .collect(),
    ))
}

/// Revoke one of my sessions (log a device out).
#[utoipa::path(delete, path = "/api/v1/auth/sessions/{session_id}", tag = "auth", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "a session id from the session list")),
    responses((status = 200, body = Revoked), (status = 404, body = crate::rest::ErrorResponse)))]
pub async fn revoke_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    let response = rpc(
        &state.auth,
        CallKind::Idempotent,
        Some(&caller.token),
        RevokeSessionRequest { session_id },
        |channel, request| async move { client(channel).revoke_session(request).await },
    )
    .await?;
    Ok(Json(Revoked {
        revoked: response.revoked,
    }))
}

/// Revoke every session but this one.
#[utoipa::path(delete, path = "/api/v1/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Revoked), (status = 401, body = crate::rest::ErrorResponse)))]
pub async fn revoke_other_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Revoked>, ApiError> {
    let response = rpc(
        &state.auth,
        CallKind::Idempotent,
        Some(&caller.token),
        RevokeOtherSessionsRequest {},
        |channel, request| async move { client(channel).revoke_other_sessions(request).await },
    )
    .await?;
    Ok(Json(Revoked {
        revoked: response.revoked,
    }))
}
