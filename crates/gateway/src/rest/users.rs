//! Profiles, search, blocks, contacts, privacy and presence: the users
//! service behind JSON. PATCH bodies list only the fields to change.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use chrono::{DateTime, Utc};
use proto::users::v1 as grpc;
use proto::users::v1::users_service_client::UsersServiceClient;
use serde::{Deserialize, Serialize};
use service_kit::ApiError;
use service_kit::grpc::CallKind;
use tonic::transport::Channel;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Caller, Json};
use crate::rest::{ErrorResponse, PageQuery, id_list, next_cursor, rpc, time};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users/me", get(my_profile).patch(update_profile))
        .route("/users", get(profiles))
        .route("/users/search", get(search))
        .route("/users/me/blocks", get(list_blocked))
        .route("/users/me/blocks/{user_id}", put(block).delete(unblock))
        .route("/users/me/contacts", get(list_contacts))
        .route(
            "/users/me/contacts/{user_id}",
            put(add_contact).delete(remove_contact),
        )
        .route("/users/me/privacy", get(privacy).patch(update_privacy))
        .route("/presence", get(presence))
}

fn client(channel: Channel) -> UsersServiceClient<Channel> {
    UsersServiceClient::new(channel)
}

#[derive(Debug, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// BCP 47 tag, e.g. "en", "pt-BR".
    #[serde(default)]
    pub language: String,
    /// "light" | "dark" | "system"
    #[serde(default)]
    pub theme: String,
    #[serde(default)]
    pub notifications_enabled: bool,
    /// IANA zone, e.g. "Europe/Berlin".
    #[serde(default)]
    pub time_zone: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Presence {
    pub online: bool,
    /// Absent when hidden by the user's privacy settings or never seen.
    pub last_seen_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: String,
    pub bio: String,
    /// Only in your own profile.
    pub settings: Option<Settings>,
    pub is_bot: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub presence: Option<Presence>,
}

fn presence_dto(presence: &grpc::Presence) -> Presence {
    Presence {
        online: presence.online,
        last_seen_at: time(presence.last_seen_at.as_ref()),
    }
}

fn profile_dto(profile: grpc::Profile) -> Profile {
    Profile {
        created_at: time(profile.created_at.as_ref()),
        updated_at: time(profile.updated_at.as_ref()),
        user_id: profile.user_id,
        username: profile.username,
        display_name: profile.display_name,
        avatar_url: profile.avatar_url,
        bio: profile.bio,
        settings: profile.settings.map(|settings| Settings {
            language: settings.language,
            theme: settings.theme,
            notifications_enabled: settings.notifications_enabled,
            time_zone: settings.time_zone,
        }),
        is_bot: profile.is_bot,
        presence: profile.presence.as_ref().map(presence_dto),
    }
}

/// My profile (with my settings).
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Profile), (status = 401, body = ErrorResponse)))]
pub async fn my_profile(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Profile>, ApiError> {
    let profile = rpc(
        &state.users,
        CallKind::Idempotent,
        Some(&caller.token),
        grpc::GetMyProfileRequest {},
        |channel, request| async move { client(channel).get_my_profile(request).await },
    )
    .await?;
    Ok(Json(profile_dto(profile)))
}

/// Fields to change; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    pub display_name: Option<String>,
    /// An http(s) URL, or "" to remove.
    pub avatar_url: Option<String>,
    pub bio: Option<String>,
    /// Replaces all settings; unknown keys are rejected.
    pub settings: Option<Settings>,
}

/// Update my profile.
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    request_body = ProfilePatch,
    responses((status = 200, body = Profile), (status = 400, body = ErrorResponse)))]
pub async fn update_profile(
    State(state): State<AppState>,
    caller: Caller,
    Json(patch): Json<ProfilePatch>,
) -> Result<Json<Profile>, ApiError> {
    let mut paths = Vec::new();
    for (present, path) in [
        (patch.display_name.is_some(), "display_name"),
        (patch.avatar_url.is_some(), "avatar_url"),
        (patch.bio.is_some(), "bio"),
        (patch.settings.is_some(), "settings"),
    ] {
        if present {
            paths.push(path.to_owned());
        }
    }
    if paths.is_empty() {
        return Err(ApiError::invalid(
            "body",
            "nothing to update: set at least one field",
        ));
    }
    let request = grpc::UpdateProfileRequest {
        display_name: patch.display_name.unwrap_or_default(),
        avatar_url: patch.avatar_url.unwrap_or_default(),
        bio: patch.bio.unwrap_or_default(),
        settings: patch.settings.map(|settings| grpc::ProfileSettings {
            language: settings.language,
            theme: settings.theme,
            notifications_enabled: settings.notifications_enabled,
            time_zone: settings.time_zone,
        }),
        update_mask: Some(prost_types::FieldMask { paths }),
    };
    let profile = rpc(
        &state.users,
        CallKind::Once,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).update_profile(request).await },
    )
    .await?;
    Ok(Json(profile_dto(profile)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct IdsQuery {
    /// Comma-separated user ids (at most 500).
    pub ids: String,
}

/// Public profiles of many users in one call.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])), params(IdsQuery),
    responses((status = 200, body = Vec<Profile>), (status = 400, body = ErrorResponse)))]
pub async fn profiles(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<IdsQuery>,
) -> Result<Json<Vec<Profile>>, ApiError> {
    let request = grpc::GetProfilesRequest {
        user_ids: id_list(&query.ids),
    };
    let response = rpc(
        &state.users,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).get_profiles(request).await },
    )
    .await?;
    Ok(Json(
        response.profiles.into_iter().map(profile_dto).collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchQuery {
    /// Username prefix or (part of) a display name.
    pub q: String,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    pub profile: Profile,
    pub score: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Empty when there is no further page.
    pub next_cursor: String,
}

/// Find people by username prefix or display name, best match first.
#[utoipa::path(get, path = "/api/v1/users/search", tag = "users", security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, body = SearchPage), (status = 400, body = ErrorResponse)))]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<SearchQuery>,
) -> Result<Json<SearchPage>, ApiError> {
    let request = grpc::SearchUsersRequest {
        query: query.q,
        page: PageQuery {
            cursor: query.cursor,
            limit: query.limit,
        }
        .to_proto(),
    };
    let response = rpc(
        &state.users,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).search_users(request).await },
    )
    .await?;
    Ok(Json(SearchPage {
        hits: response
            .hits
            .into_iter()
            .filter_map(|hit| {
                hit.profile.map(|profile| SearchHit {
                    profile: profile_dto(profile),
                    score: hit.score,
                })
            })
            .collect(),
        next_cursor: next_cursor(response.page),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub profiles: Vec<Profile>,
    pub next_cursor: String,
}

fn user_page(page: grpc::ListUsersPage) -> UserPage {
    UserPage {
        profiles: page.profiles.into_iter().map(profile_dto).collect(),
        next_cursor: next_cursor(page.page),
    }
}

/// People I blocked.
#[utoipa::path(get, path = "/api/v1/users/me/blocks", tag = "users", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = UserPage)))]
pub async fn list_blocked(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> Result<Json<UserPage>, ApiError> {
    let request = grpc::ListBlockedRequest {
        page: page.to_proto(),
    };
    let response = rpc(
        &state.users,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).list_blocked(request).await },
    )
    .await?;
    Ok(Json(user_page(response)))
}

/// Block a user: they can no longer message me or find me.
#[utoipa::path(put, path = "/api/v1/users/me/blocks/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = String, Path)), responses((status = 204), (status = 400, body = ErrorResponse)))]
pub async fn block(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    rpc(
        &state.users,
        CallKind::Idempotent,
        Some(&caller.token),
        grpc::BlockRequest { user_id },
        |channel, request| async move { client(channel).block(request).await },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unblock a user.
#[utoipa::path(delete, path = "/api/v1/users/me/blocks/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = String, Path)), responses((status = 204), (status = 400, body = ErrorResponse)))]
pub async fn unblock(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    rpc(
        &state.users,
        CallKind::Idempotent,
        Some(&caller.token),
        grpc::BlockRequest { user_id },
        |channel, request| async move { client(channel).unblock(request).await },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// My contacts.
#[utoipa::path(get, path = "/api/v1/users/me/contacts", tag = "users", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = UserPage)))]
pub async fn list_contacts(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> Result<Json<UserPage>, ApiError> {
    let request = grpc::ListContactsRequest {
        page: page.to_proto(),
    };
    let response = rpc(
        &state.users,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).list_contacts(request).await },
    )
    .await?;
    Ok(Json(user_page(response)))
}

/// Add a contact.
#[utoipa::path(put, path = "/api/v1/users/me/contacts/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = String, Path)), responses((status = 204), (status = 400, body = ErrorResponse)))]
pub async fn add_contact(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    rpc(
        &state.users,
        CallKind::Idempotent,
        Some(&caller.token),
        grpc::ContactRequest { user_id },
        |channel, request| async move { client(channel).add_contact(request).await },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a contact.
#[utoipa::path(delete, path = "/api/v1/users/me/contacts/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = String, Path)), responses((status = 204), (status = 400, body = ErrorResponse)))]
pub async fn remove_contact(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    rpc(
        &state.users,
        CallKind::Idempotent,
        Some(&caller.token),
        grpc::ContactRequest { user_id },
        |channel, request| async move { client(channel).remove_contact(request).await },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who sees my last seen, who may message me, whether I send read receipts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// "everyone" | "contacts" | "nobody"
    pub last_seen: Option<String>,
    /// "everyone" | "contacts"
    pub messages: Option<String>,
    pub send_read_receipts: Option<bool>,
}

fn audience_name(raw: i32) -> String {
    match grpc::Audience::try_from(raw) {
        Ok(grpc::Audience::Contacts) => "contacts",
        Ok(grpc::Audience::Nobody) => "nobody",
        _ => "everyone",
    }
    .to_owned()
}

fn audience(raw: &str, field: &str) -> Result<i32, ApiError> {
    match raw {
        "everyone" => Ok(grpc::Audience::Everyone as i32),
        "contacts" => Ok(grpc::Audience::Contacts as i32),
        "nobody" => Ok(grpc::Audience::Nobody as i32),
        _ => Err(ApiError::invalid(
            field,
            format!("{field} must be everyone, contacts or nobody"),
        )),
    }
}

fn privacy_dto(settings: grpc::PrivacySettings) -> Privacy {
    Privacy {
        last_seen: Some(audience_name(settings.last_seen)),
        messages: Some(audience_name(settings.messages)),
        send_read_receipts: Some(settings.send_read_receipts),
    }
}

/// My privacy settings.
#[utoipa::path(get, path = "/api/v1/users/me/privacy", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Privacy)))]
pub async fn privacy(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Privacy>, ApiError> {
    let settings = rpc(
        &state.users,
        CallKind::Idempotent,
        Some(&caller.token),
        grpc::GetPrivacyRequest {},
        |channel, request| async move { client(channel).get_privacy(request).await },
    )
    .await?;
    Ok(Json(privacy_dto(settings)))
}

/// Change privacy settings; absent fields stay as they are.
#[utoipa::path(patch, path = "/api/v1/users/me/privacy", tag = "users", security(("bearer" = [])),
    request_body = Privacy, responses((status = 200, body = Privacy), (status = 400, body = ErrorResponse)))]
pub async fn update_privacy(
    State(state): State<AppState>,
    caller: Caller,
    Json(patch): Json<Privacy>,
) -> Result<Json<Privacy>, ApiError> {
    let mut paths = Vec::new();
    let mut settings = grpc::PrivacySettings::default();
    if let Some(last_seen) = &patch.last_seen {
        settings.last_seen = audience(last_seen, "last_seen")?;
        paths.push("last_seen".to_owned());
    }
    if let Some(messages) = &patch.messages {
        settings.messages = audience(messages, "messages")?;
        paths.push("messages".to_owned());
    }
    if let Some(send) = patch.send_read_receipts {
        settings.send_read_receipts = send;
        paths.push("send_read_receipts".to_owned());
    }
    if paths.is_empty() {
        return Err(ApiError::invalid(
            "body",
            "nothing to update: set at least one field",
        ));
    }
    let request = grpc::UpdatePrivacyRequest {
        privacy: Some(settings),
        update_mask: Some(prost_types::FieldMask { paths }),
    };
    let settings = rpc(
        &state.users,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).update_privacy(request).await },
    )
    .await?;
    Ok(Json(privacy_dto(settings)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPresence {
    pub user_id: String,
    pub online: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// Online state and last seen of many users (as their privacy allows).
#[utoipa::path(get, path = "/api/v1/presence", tag = "users", security(("bearer" = [])), params(IdsQuery),
    responses((status = 200, body = Vec<UserPresence>)))]
pub async fn presence(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<IdsQuery>,
) -> Result<Json<Vec<UserPresence>>, ApiError> {
    let request = grpc::GetPresenceRequest {
        user_ids: id_list(&query.ids),
    };
    let response = rpc(
        &state.users,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).get_presence(request).await },
    )
    .await?;
    Ok(Json(
        response
            .presences
            .into_iter()
            .map(|presence| UserPresence {
                last_seen_at: time(presence.last_seen_at.as_ref()),
                user_id: presence.user_id,
                online: presence.online,
            })
            .collect(),
    ))
}
