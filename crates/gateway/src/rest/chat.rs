//! Conversations, members, messages, history and receipts: the chat
//! service behind JSON.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use chrono::{DateTime, Utc};
use proto::chat::v1 as grpc;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use serde::{Deserialize, Serialize};
use service_kit::ApiError;
use service_kit::grpc::CallKind;
use tonic::transport::Channel;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Caller, Json};
use crate::rest::{ErrorResponse, PageQuery, next_cursor, rpc, time};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/conversations", get(list_conversations))
        .route("/conversations/private", post(create_private))
        .route("/conversations/group", post(create_group))
        .route("/conversations/unread", get(unread_counts))
        .route("/conversations/{id}", get(get_conversation).patch(rename))
        .route(
            "/conversations/{id}/members",
            get(list_members).post(add_members),
        )
        .route(
            "/conversations/{id}/members/{user_id}",
            delete(remove_member),
        )
        .route("/conversations/{id}/messages", get(history).post(send))
        .route(
            "/conversations/{id}/messages/{message_id}",
            patch(edit).delete(delete_message),
        )
        .route("/conversations/{id}/read", post(mark_read))
}

fn client(channel: Channel) -> ChatServiceClient<Channel> {
    ChatServiceClient::new(channel)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub user_id: String,
    /// "member" | "admin" | "owner"
    pub role: String,
    pub joined_at: Option<DateTime<Utc>>,
    pub delivered_seq: u64,
    pub read_seq: u64,
    pub is_bot: bool,
}

fn role_name(raw: i32) -> String {
    match grpc::Role::try_from(raw) {
        Ok(grpc::Role::Owner) => "owner",
        Ok(grpc::Role::Admin) => "admin",
        Ok(grpc::Role::Member) => "member",
        _ => "",
    }
    .to_owned()
}

fn member_dto(member: grpc::Member) -> Member {
    Member {
        joined_at: time(member.joined_at.as_ref()),
        role: role_name(member.role),
        user_id: member.user_id,
        delivered_seq: member.delivered_seq,
        read_seq: member.read_seq,
        is_bot: member.is_bot,
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// http(s) URL of the uploaded file.
    pub url: String,
    pub name: String,
    pub size_bytes: u64,
    pub mime_type: String,
    /// Images only.
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientStatus {
    pub user_id: String,
    /// "sent" | "delivered" | "read"
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    /// Per-conversation sequence number (1, 2, ...; no gaps).
    pub seq: u64,
    pub sender_id: String,
    /// "text" | "image" | "file"
    pub kind: String,
    pub content: String,
    pub attachment: Option<Attachment>,
    pub client_msg_id: String,
    pub reply_to: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    /// Private chats: the peer's status. Groups: see the counts.
    pub delivery_status: Vec<RecipientStatus>,
    pub delivered_count: u32,
    pub read_count: u32,
    pub recipient_count: u32,
}

/// The chat API and the events carry the same attachment type.
impl From<proto::events::v1::Attachment> for Attachment {
    fn from(a: proto::events::v1::Attachment) -> Self {
        Self {
            url: a.url,
            name: a.name,
            size_bytes: a.size_bytes,
            mime_type: a.mime_type,
            width: a.width,
            height: a.height,
        }
    }
}

impl From<Attachment> for proto::events::v1::Attachment {
    fn from(a: Attachment) -> Self {
        Self {
            url: a.url,
            name: a.name,
            size_bytes: a.size_bytes,
            mime_type: a.mime_type,
            width: a.width,
            height: a.height,
        }
    }
}

fn kind_name(raw: i32) -> String {
    match grpc::MessageKind::try_from(raw) {
        Ok(grpc::MessageKind::Image) => "image",
        Ok(grpc::MessageKind::File) => "file",
        _ => "text",
    }
    .to_owned()
}

fn status_name(raw: i32) -> String {
    match grpc::DeliveryStatus::try_from(raw) {
        Ok(grpc::DeliveryStatus::Read) => "read",
        Ok(grpc::DeliveryStatus::Delivered) => "delivered",
        _ => "sent",
    }
    .to_owned()
}

pub fn message_dto(message: grpc::Message) -> Message {
    Message {
        sent_at: time(message.sent_at.as_ref()),
        edited_at: time(message.edited_at.as_ref()),
        kind: kind_name(message.kind),
        attachment: message.attachment.map(Attachment::from),
        delivery_status: message
            .delivery_status
            .into_iter()
            .map(|s| RecipientStatus {
                status: status_name(s.status),
                user_id: s.user_id,
            })
            .collect(),
        id: message.id,
        conversation_id: message.conversation_id,
        seq: message.seq,
        sender_id: message.sender_id,
        content: message.content,
        client_msg_id: message.client_msg_id,
        reply_to: message.reply_to,
        deleted: message.deleted,
        delivered_count: message.delivered_count,
        read_count: message.read_count,
        recipient_count: message.recipient_count,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Conversation {
    pub id: String,
    /// "private" | "group"
    pub kind: String,
    pub title: String,
    pub members: Vec<Member>,
    pub member_count: u32,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub last_seq: u64,
    pub last_message: Option<Message>,
    pub unread_count: u64,
    /// My role ("" in private chats).
    pub my_role: String,
}

fn conversation_dto(conversation: grpc::Conversation) -> Conversation {
    Conversation {
        kind: match grpc::ConversationKind::try_from(conversation.kind) {
            Ok(grpc::ConversationKind::Group) => "group",
            _ => "private",
        }
        .to_owned(),
        created_at: time(conversation.created_at.as_ref()),
        updated_at: time(conversation.updated_at.as_ref()),
        my_role: role_name(conversation.my_role),
        members: conversation.members.into_iter().map(member_dto).collect(),
        last_message: conversation.last_message.map(message_dto),
        id: conversation.id,
        title: conversation.title,
        member_count: conversation.member_count,
        last_seq: conversation.last_seq,
        unread_count: conversation.unread_count,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrivate {
    pub peer_id: String,
}

/// Open the private conversation with a user (the same one every time).
#[utoipa::path(post, path = "/api/v1/conversations/private", tag = "chat", security(("bearer" = [])),
    request_body = CreatePrivate,
    responses((status = 200, body = Conversation), (status = 403, description = "blocked, or contacts only", body = ErrorResponse)))]
pub async fn create_private(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<CreatePrivate>,
) -> Result<Json<Conversation>, ApiError> {
    let request = grpc::CreatePrivateConversationRequest {
        peer_id: input.peer_id,
    };
    let conversation = rpc(&state.chat, CallKind::Idempotent, Some(&caller.token), request, |channel, request| async move {
        client(channel).create_private_conversation(request).await
    })
    .await?;
    Ok(Json(conversation_dto(conversation)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub title: String,
    #[serde(default)]
    pub member_ids: Vec<String>,
}

/// Create a group; I become its owner.
#[utoipa::path(post, path = "/api/v1/conversations/group", tag = "chat", security(("bearer" = [])),
    request_body = CreateGroup,
    responses((status = 201, body = Conversation), (status = 400, body = ErrorResponse)))]
pub async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<CreateGroup>,
) -> Result<(StatusCode, Json<Conversation>), ApiError> {
    let request = grpc::CreateGroupConversationRequest {
        title: input.title,
        member_ids: input.member_ids,
    };
    let conversation = rpc(
        &state.chat,
        CallKind::Once,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).create_group_conversation(request).await },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(conversation_dto(conversation))))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationPage {
    pub conversations: Vec<Conversation>,
    pub next_cursor: String,
}

/// My conversations, most recent activity first, with previews and unread counts.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "chat", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = ConversationPage)))]
pub async fn list_conversations(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> Result<Json<ConversationPage>, ApiError> {
    let request = grpc::ListConversationsRequest {
        page: page.to_proto(),
    };
    let response = rpc(
        &state.chat,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).list_conversations(request).await },
    )
    .await?;
    Ok(Json(ConversationPage {
        conversations: response
            .conversations
            .into_iter()
            .map(conversation_dto)
            .collect(),
        next_cursor: next_cursor(response.page),
    }))
}

/// One conversation (with its first 100 members).
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Conversation), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn get_conversation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    let request = grpc::GetConversationRequest {
        conversation_id: id,
    };
    let conversation = rpc(
        &state.chat,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).get_conversation(request).await },
    )
    .await?;
    Ok(Json(conversation_dto(conversation)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    pub title: String,
}

/// Rename a group (admins and the owner).
#[utoipa::path(patch, path = "/api/v1/conversations/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Rename,
    responses((status = 200, body = Conversation), (status = 403, body = ErrorResponse)))]
pub async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(input): Json<Rename>,
) -> Result<Json<Conversation>, ApiError> {
    let request = grpc::UpdateConversationRequest {
        conversation_id: id,
        title: Some(input.title),
    };
    let conversation = rpc(
        &state.chat,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).update_conversation(request).await },
    )
    .await?;
    Ok(Json(conversation_dto(conversation)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberPage {
    pub members: Vec<Member>,
    pub next_cursor: String,
}

/// Members by join time.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/members", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path), PageQuery), responses((status = 200, body = MemberPage)))]
pub async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    let request = grpc::ListMembersRequest {
        conversation_id: id,
        page: page.to_proto(),
    };
    let response = rpc(
        &state.chat,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).list_members(request).await },
    )
    .await?;
    Ok(Json(MemberPage {
        members: response.members.into_iter().map(member_dto).collect(),
        next_cursor: next_cursor(response.page),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    pub user_ids: Vec<String>,
}

/// Add people to a group (admins and the owner).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/members", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = AddMembers,
    responses((status = 200, body = Conversation), (status = 412, description = "the group is full", body = ErrorResponse)))]
pub async fn add_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(input): Json<AddMembers>,
) -> Result<Json<Conversation>, ApiError> {
    let request = grpc::AddMembersRequest {
        conversation_id: id,
        user_ids: input.user_ids,
    };
    let conversation = rpc(
        &state.chat,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).add_members(request).await },
    )
    .await?;
    Ok(Json(conversation_dto(conversation)))
}

/// Remove someone from a group, or leave it (my own id).
#[utoipa::path(delete, path = "/api/v1/conversations/{id}/members/{user_id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorResponse)))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if user_id == caller.user_id {
        let request = grpc::LeaveConversationRequest {
            conversation_id: id,
        };
        rpc(
            &state.chat,
            CallKind::Idempotent,
            Some(&caller.token),
            request,
            |channel, request| async move { client(channel).leave_conversation(request).await },
        )
        .await?;
    } else {
        let request = grpc::RemoveMemberRequest {
            conversation_id: id,
            user_id,
        };
        rpc(
            &state.chat,
            CallKind::Idempotent,
            Some(&caller.token),
            request,
            |channel, request| async move { client(channel).remove_member(request).await },
        )
        .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// "text" (default) | "image" | "file"
    #[serde(default)]
    pub kind: Option<String>,
    /// Text, or the caption of an image/file (at most 4,096 characters).
    #[serde(default)]
    pub content: String,
    pub attachment: Option<Attachment>,
    /// Your id for this message (1-64 characters): a retried send with the
    /// same id returns the original message instead of a duplicate.
    #[serde(default)]
    pub client_msg_id: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// Parses a message kind name; unknown names are refused naming `kind`.
pub fn message_kind(raw: Option<&str>) -> Result<i32, ApiError> {
    match raw.unwrap_or("text") {
        "text" => Ok(grpc::MessageKind::Text as i32),
        "image" => Ok(grpc::MessageKind::Image as i32),
        "file" => Ok(grpc::MessageKind::File as i32),
        _ => Err(ApiError::invalid(
            "kind",
            "kind must be text, image or file",
        )),
    }
}

/// The gRPC request for a send (shared with the Socket.IO `message:send`).
pub fn send_request(
    conversation_id: String,
    input: SendMessage,
) -> Result<grpc::SendMessageRequest, ApiError> {
    Ok(grpc::SendMessageRequest {
        conversation_id,
        kind: message_kind(input.kind.as_deref())?,
        content: input.content,
        attachment: input.attachment.map(Into::into),
        client_msg_id: input.client_msg_id.unwrap_or_default(),
        reply_to: input.reply_to.unwrap_or_default(),
    })
}

/// Send a message. Stored before this answers; idempotent by `client_msg_id`.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = SendMessage,
    responses((status = 201, body = Message), (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse),
        (status = 429, description = "sending too fast; see Retry-After", body = ErrorResponse)))]
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(input): Json<SendMessage>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    state
        .limiter
        .check("send", &caller.user_id, state.limits.send)
        .await?;
    let request = send_request(id, input)?;
    // Retried only with a client id: then a duplicate cannot happen.
    let kind = if request.client_msg_id.is_empty() {
        CallKind::Once
    } else {
        CallKind::Idempotent
    };
    let message = rpc(
        &state.chat,
        kind,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).send_message(request).await },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(message_dto(message))))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// Messages older than this sequence number (scrolling up).
    pub before: Option<u64>,
    /// Messages newer than this sequence number (catching up).
    pub after: Option<u64>,
    pub cursor: Option<String>,
    /// 1-200, default 50.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    /// Ascending by `seq`.
    pub messages: Vec<Message>,
    pub next_cursor: String,
}

/// History, newest page by default; `before`/`after` anchor it.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path), HistoryQuery),
    responses((status = 200, body = HistoryPage), (status = 403, body = ErrorResponse)))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    let (direction, anchor) = match (query.before, query.after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("after", "give before or after, not both"));
        }
        (None, Some(after)) => (grpc::Direction::Forward, after),
        (before, None) => (grpc::Direction::Backward, before.unwrap_or(0)),
    };
    let request = grpc::GetHistoryRequest {
        conversation_id: id,
        direction: direction as i32,
        anchor_seq: anchor,
        page: PageQuery {
            cursor: query.cursor,
            limit: query.limit,
        }
        .to_proto(),
    };
    let response = rpc(
        &state.chat,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).get_history(request).await },
    )
    .await?;
    Ok(Json(HistoryPage {
        messages: response.messages.into_iter().map(message_dto).collect(),
        next_cursor: next_cursor(response.page),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    pub content: String,
}

/// Edit one of my messages.
#[utoipa::path(patch, path = "/api/v1/conversations/{id}/messages/{message_id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path), ("message_id" = String, Path)), request_body = EditMessage,
    responses((status = 200, body = Message), (status = 403, body = ErrorResponse)))]
pub async fn edit(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, message_id)): Path<(String, String)>,
    Json(input): Json<EditMessage>,
) -> Result<Json<Message>, ApiError> {
    let request = grpc::EditMessageRequest {
        conversation_id: id,
        message_id,
        content: input.content,
    };
    let message = rpc(
        &state.chat,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).edit_message(request).await },
    )
    .await?;
    Ok(Json(message_dto(message)))
}

/// Delete a message (mine, or any as a group admin); it stays as a tombstone.
#[utoipa::path(delete, path = "/api/v1/conversations/{id}/messages/{message_id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path), ("message_id" = String, Path)),
    responses((status = 200, body = Message), (status = 403, body = ErrorResponse)))]
pub async fn delete_message(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<Json<Message>, ApiError> {
    let request = grpc::DeleteMessageRequest {
        conversation_id: id,
        message_id,
    };
    let message = rpc(
        &state.chat,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).delete_message(request).await },
    )
    .await?;
    Ok(Json(message_dto(message)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    /// Everything up to and including this sequence number is read.
    pub up_to_seq: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptState {
    pub conversation_id: String,
    pub user_id: String,
    pub delivered_seq: u64,
    pub read_seq: u64,
}

/// Mark messages read up to a sequence number (never moves backwards).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/read", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = MarkRead,
    responses((status = 200, body = ReceiptState), (status = 403, body = ErrorResponse)))]
pub async fn mark_read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(input): Json<MarkRead>,
) -> Result<Json<ReceiptState>, ApiError> {
    let request = grpc::MarkRequest {
        conversation_id: id,
        up_to_seq: input.up_to_seq,
        ..Default::default()
    };
    let state = rpc(
        &state.chat,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).mark_read(request).await },
    )
    .await?;
    Ok(Json(ReceiptState {
        conversation_id: state.conversation_id,
        user_id: state.user_id,
        delivered_seq: state.delivered_seq,
        read_seq: state.read_seq,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    pub conversation_id: String,
    pub unread: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCounts {
    pub counts: Vec<UnreadCount>,
    pub total: u64,
}

/// Unread counts of all my conversations.
#[utoipa::path(get, path = "/api/v1/conversations/unread", tag = "chat", security(("bearer" = [])),
    responses((status = 200, body = UnreadCounts)))]
pub async fn unread_counts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UnreadCounts>, ApiError> {
    let request = grpc::GetUnreadCountsRequest::default();
    let response = rpc(
        &state.chat,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { client(channel).get_unread_counts(request).await },
    )
    .await?;
    Ok(Json(UnreadCounts {
        total: response.total,
        counts: response
            .counts
            .into_iter()
            .map(|count| UnreadCount {
                conversation_id: count.conversation_id,
                unread: count.unread,
            })
            .collect(),
    }))
}
