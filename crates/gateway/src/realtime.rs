//! Socket.IO: authenticated sockets, one room per user, client events
//! forwarded to the services, and domain events from RabbitMQ fanned out to
//! the recipients' rooms. With the Redis adapter, an emit to a room reaches
//! sockets on every gateway replica, so each event is consumed once (by
//! competing consumers) and delivered everywhere.

use std::sync::Arc;

use tracing::Instrument as _;

use proto::EventPayload;
use proto::chat::v1 as chat_grpc;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use proto::users::v1::users_service_client::UsersServiceClient;
use proto::users::v1::{DevicePresenceRequest, DevicesHeartbeatRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use service_kit::amqp::{EventHandler, HandlerError};
use service_kit::grpc::CallKind;
use service_kit::token::bearer_token;
use service_kit::{ApiError, ErrorCode};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;

use crate::delivery::{self, DeliveryTracker};
use crate::extract::Caller;
use crate::rest::chat::{SendMessage, message_dto, send_request};
use crate::rest::rpc;
use crate::state::AppState;

/// The room of every socket of one user.
pub fn user_room(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// What handlers share.
#[derive(Debug, Clone)]
pub struct RealtimeState {
    pub app: AppState,
    /// Names this process in device ids (`<gateway>/<socket id>`).
    pub instance: Arc<str>,
    /// users' service credential, if configured.
    pub service_token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// Marks deliveries from socket acks (when chat's credential is configured).
    pub deliveries: Option<DeliveryTracker>,
}

#[derive(Debug, Deserialize, Default)]
struct HandshakeAuth {
    #[serde(default)]
    token: Option<String>,
}

/// The error a client sees (`connect_error`, or an ack `{ok: false, error}`).
#[derive(Debug, Serialize)]
struct ClientError {
    code: ErrorCode,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// For RATE_LIMITED and UNAVAILABLE: when to try again.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

impl From<ApiError> for ClientError {
    fn from(error: ApiError) -> Self {
        Self {
            code: error.code,
            message: error.message,
            field: error.field,
            retry_after_ms: error
                .retry_after
                .map(|after| u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// Connect middleware: the access token comes from the handshake's `auth`
/// payload (`{token}`) or an `Authorization: Bearer` header.
async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    TryData(auth): TryData<HandshakeAuth>,
    State(state): State<RealtimeState>,
) -> Result<(), ClientError> {
    let from_auth = auth.ok().and_then(|auth| auth.token);
    let from_header = socket
        .req_parts()
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned);
    let token = from_auth.or(from_header).ok_or_else(|| {
        ClientError::from(ApiError::unauthenticated(
            "connect with auth: {token: <access token>}",
        ))
    })?;
    let claims = state
        .app
        .verifier
        .verify(&token)
        .map_err(|error| ClientError::from(ApiError::from(error)))?;
    let me = Caller {
        user_id: claims.sub.to_string(),
        token,
    };
    register(&socket, &me);
    socket.extensions.insert(me);
    Ok(())
}

fn caller<A: Adapter>(socket: &SocketRef<A>) -> Option<Caller> {
    socket.extensions.get::<Caller>()
}

fn ack_result<T: Serialize>(ack: AckSender<impl Adapter>, result: Result<T, ApiError>) {
    let body = match result {
        Ok(value) => json!({ "ok": true, "data": value }),
        Err(error) => json!({ "ok": false, "error": ClientError::from(error) }),
    };
    if let Err(error) = ack.send(&body) {
        tracing::debug!(%error, "ack not delivered");
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    data: Result<Value, impl std::fmt::Display>,
) -> Result<T, ApiError> {
    let value =
        data.map_err(|error| ApiError::invalid("data", format!("unreadable event data: {error}")))?;
    serde_json::from_value(value)
        .map_err(|error| ApiError::invalid("data", format!("invalid event data: {error}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendEvent {
    conversation_id: String,
    #[serde(flatten)]
    message: SendMessage,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkEvent {
    conversation_id: String,
    up_to_seq: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypingEvent {
    conversation_id: String,
}

#[derive(Debug, Deserialize)]
struct SyncEvent {
    #[serde(default)]
    checkpoints: Vec<SyncCheckpoint>,
    #[serde(default)]
    limit_per_conversation: u32,
}

#[derive(Debug, Deserialize)]
struct SyncCheckpoint {
    conversation_id: String,
    last_seq: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceEvent {
    user_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshEvent {
    token: String,
}

/// Most users one `presence:subscribe` names.
const MAX_PRESENCE_SUBSCRIPTIONS: usize = 200;

/// The room a user's presence changes are emitted to.
pub fn presence_room(user_id: &str) -> String {
    format!("presence:{user_id}")
}

fn chat(channel: tonic::transport::Channel) -> ChatServiceClient<tonic::transport::Channel> {
    ChatServiceClient::new(channel)
}

async fn on_send(
    state: &RealtimeState,
    caller: &Caller,
    data: Result<Value, impl std::fmt::Display>,
) -> Result<Value, ApiError> {
    state
        .app
        .limiter
        .check("send", &caller.user_id, state.app.limits.send)
        .await?;
    let event: SendEvent = parse(data)?;
    let request = send_request(event.conversation_id, event.message)?;
    let kind = if request.client_msg_id.is_empty() {
        CallKind::Once
    } else {
        CallKind::Idempotent
    };
    let message = rpc(
        &state.app.chat,
        kind,
        Some(&caller.token),
        request,
        |channel, request| async move { chat(channel).send_message(request).await },
    )
    .await?;
    Ok(serde_json::to_value(message_dto(message)).unwrap_or(Value::Null))
}

async fn on_mark(
    state: &RealtimeState,
    caller: &Caller,
    data: Result<Value, impl std::fmt::Display>,
    read: bool,
) -> Result<Value, ApiError> {
    let event: MarkEvent = parse(data)?;
    let request = chat_grpc::MarkRequest {
        conversation_id: event.conversation_id,
        up_to_seq: event.up_to_seq,
        ..Default::default()
    };
    let receipt = rpc(
        &state.app.chat,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move {
            if read {
                chat(channel).mark_read(request).await
            } else {
                chat(channel).mark_delivered(request).await
            }
        },
    )
    .await?;
    Ok(json!({
        "conversation_id": receipt.conversation_id,
        "delivered_seq": receipt.delivered_seq,
        "read_seq": receipt.read_seq,
    }))
}

/// Subscribes the socket to the presence of the users whose privacy lets
/// the caller see it (checked by users now; a later privacy change applies
/// at the next subscribe), and answers with their current presence.
async fn on_presence_subscribe<A: Adapter>(
    socket: &SocketRef<A>,
    state: &RealtimeState,
    caller: &Caller,
    data: Result<Value, impl std::fmt::Display>,
) -> Result<Value, ApiError> {
    let event: PresenceEvent = parse(data)?;
    if event.user_ids.is_empty() || event.user_ids.len() > MAX_PRESENCE_SUBSCRIPTIONS {
        return Err(ApiError::invalid(
            "user_ids",
            format!("user_ids must name 1-{MAX_PRESENCE_SUBSCRIPTIONS} users"),
        ));
    }
    let response =
        rpc(
            &state.app.users,
            CallKind::Idempotent,
            Some(&caller.token),
            proto::users::v1::GetPresenceRequest {
                user_ids: event.user_ids,
            },
            |channel, request| async move {
                UsersServiceClient::new(channel).get_presence(request).await
            },
        )
        .await?;
    let visible: Vec<&proto::users::v1::Presence> =
        response.presences.iter().filter(|p| p.visible).collect();
    socket.join(
        visible
            .iter()
            .map(|p| presence_room(&p.user_id))
            .collect::<Vec<_>>(),
    );
    Ok(json!({
        "presences": visible.iter().map(|p| json!({
            "user_id": p.user_id,
            "online": p.online,
            "last_seen_at": crate::rest::time(p.last_seen_at.as_ref()),
        })).collect::<Vec<_>>(),
    }))
}

fn on_presence_unsubscribe<A: Adapter>(
    socket: &SocketRef<A>,
    data: Result<Value, impl std::fmt::Display>,
) -> Result<Value, ApiError> {
    let event: PresenceEvent = parse(data)?;
    socket.leave(
        event
            .user_ids
            .iter()
            .map(|id| presence_room(id))
            .collect::<Vec<_>>(),
    );
    Ok(json!({}))
}

/// Replaces the socket's access token with a fresh one of the same user:
/// sockets live longer than access tokens, and calls made for the socket
/// (sends, receipts, sync) need a valid one.
fn on_refresh<A: Adapter>(
    socket: &SocketRef<A>,
    state: &RealtimeState,
    caller: &Caller,
    data: Result<Value, impl std::fmt::Display>,
) -> Result<Value, ApiError> {
    let event: RefreshEvent = parse(data)?;
    let claims = state.app.verifier.verify(&event.token)?;
    if claims.sub.to_string() != caller.user_id {
        return Err(ApiError::permission_denied(
            "the new token belongs to another user; reconnect instead",
        ));
    }
    socket.extensions.insert(Caller {
        user_id: caller.user_id.clone(),
        token: event.token,
    });
    Ok(json!({ "expires_at": claims.exp }))
}

/// Members read per ListMembers call (chat's maximum page).
const MEMBER_PAGE: u32 = 200;

/// Typing goes straight to the other members' rooms (volatile: a lost
/// typing event is not worth a retry); membership is checked by chat.
async fn on_typing<A: Adapter>(
    io: &SocketIo<A>,
    state: &RealtimeState,
    caller: &Caller,
    data: Result<Value, impl std::fmt::Display>,
    typing: bool,
) -> Result<Value, ApiError> {
    state
        .app
        .limiter
        .check("typing", &caller.user_id, state.app.limits.typing)
        .await?;
    let event: TypingEvent = parse(data)?;
    // Every member (groups have up to the cap, beyond the 100 a conversation
    // embeds): page through ListMembers, which also checks membership.
    let mut rooms = Vec::new();
    let mut cursor = String::new();
    loop {
        let request = chat_grpc::ListMembersRequest {
            conversation_id: event.conversation_id.clone(),
            page: Some(proto::common::v1::PageRequest {
                cursor: cursor.clone(),
                limit: MEMBER_PAGE,
            }),
        };
        let page = rpc(
            &state.app.chat,
            CallKind::Idempotent,
            Some(&caller.token),
            request,
            |channel, request| async move { chat(channel).list_members(request).await },
        )
        .await?;
        rooms.extend(
            page.members
                .iter()
                .filter(|member| member.user_id != caller.user_id)
                .map(|member| user_room(&member.user_id)),
        );
        cursor = page.page.map(|page| page.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            break;
        }
    }
    if !rooms.is_empty() {
        let payload = json!({
            "conversation_id": event.conversation_id,
            "user_id": caller.user_id,
            "typing": typing,
        });
        if let Err(error) = io.to(rooms).volatile().emit("typing", &payload).await {
            tracing::debug!(%error, "typing not broadcast");
        }
    }
    Ok(Value::Null)
}

async fn on_sync(
    state: &RealtimeState,
    caller: &Caller,
    data: Result<Value, impl std::fmt::Display>,
) -> Result<Value, ApiError> {
    let event: SyncEvent = parse(data)?;
    let request = chat_grpc::SyncRequest {
        checkpoints: event
            .checkpoints
            .into_iter()
            .map(|c| chat_grpc::SyncCheckpoint {
                conversation_id: c.conversation_id,
                last_seq: c.last_seq,
            })
            .collect(),
        include_unknown: true,
        limit_per_conversation: event.limit_per_conversation,
    };
    let response = rpc(
        &state.app.chat,
        CallKind::Idempotent,
        Some(&caller.token),
        request,
        |channel, request| async move { chat(channel).sync(request).await },
    )
    .await?;
    let conversations: Vec<Value> = response
        .conversations
        .into_iter()
        .map(|synced| {
            json!({
                "conversation_id": synced.conversation.map(|c| c.id).unwrap_or_default(),
                "messages": synced.messages.into_iter().map(message_dto).collect::<Vec<_>>(),
                "has_more": synced.has_more,
            })
        })
        .collect();
    Ok(json!({ "conversations": conversations }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PresenceCall {
    Connected,
    Heartbeat,
    Disconnected,
}

/// Reports one socket's presence to users: with the service credential
/// when configured (sockets outlive access tokens), else the user's token.
async fn presence(state: &RealtimeState, caller: &Caller, socket_id: String, call: PresenceCall) {
    let request = DevicePresenceRequest {
        device_id: format!("{}/{socket_id}", state.instance),
        user_id: if state.service_token.is_some() {
            caller.user_id.clone()
        } else {
            String::new()
        },
    };
    let send = |channel, request| async move {
        let mut users = UsersServiceClient::new(channel);
        match call {
            PresenceCall::Connected => users.device_connected(request).await,
            PresenceCall::Heartbeat => users.device_heartbeat(request).await,
            PresenceCall::Disconnected => users.device_disconnected(request).await,
        }
    };
    let users = &state.app.users;
    let result = match &state.service_token {
        Some(credential) => {
            users
                .call_as_service(CallKind::Idempotent, credential, request, send)
                .await
        }
        None => {
            users
                .call(CallKind::Idempotent, Some(&caller.token), request, send)
                .await
        }
    };
    if let Err(status) = result {
        tracing::warn!(code = ?status.code(), ?call, "presence update failed");
    }
}

/// Devices per `DevicesHeartbeat` call (users accepts up to 5,000).
const HEARTBEAT_BATCH: usize = 2_000;

/// Renews the presence of every socket connected to this replica: with the
/// service credential, one `DevicesHeartbeat` call per 2,000 sockets;
/// without it (development), or when users predates that call, one call
/// per socket.
pub async fn heartbeat(
    io: SocketIo<GatewayAdapter>,
    state: RealtimeState,
    every: std::time::Duration,
    shutdown: service_kit::Shutdown,
) {
    use futures::StreamExt as _;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        let sockets: Vec<(Caller, String)> = io
            .sockets()
            .into_iter()
            .filter_map(|socket| caller(&socket).map(|me| (me, socket.id.to_string())))
            .collect();
        if let Some(deliveries) = &state.deliveries {
            let entries: Vec<(String, String)> = sockets
                .iter()
                .map(|(me, id)| (id.clone(), me.user_id.clone()))
                .collect();
            deliveries.directory.register(&entries).await;
        }
        if let Some(credential) = &state.service_token {
            let mut batched = true;
            for batch in sockets.chunks(HEARTBEAT_BATCH) {
                batched = batched && heartbeat_batch(&state, credential, batch).await;
            }
            if batched {
                continue;
            }
        }
        futures::stream::iter(sockets)
            .for_each_concurrent(32, |(me, id)| {
                let state = &state;
                async move { presence(state, &me, id, PresenceCall::Heartbeat).await }
            })
            .await;
    }
}

/// One `DevicesHeartbeat` call; false when users does not know the call yet
/// (an older version during a rolling upgrade): then every socket is renewed
/// one by one, as before.
async fn heartbeat_batch(
    state: &RealtimeState,
    credential: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    sockets: &[(Caller, String)],
) -> bool {
    let request = DevicesHeartbeatRequest {
        devices: sockets
            .iter()
            .map(|(me, socket_id)| DevicePresenceRequest {
                device_id: format!("{}/{socket_id}", state.instance),
                user_id: me.user_id.clone(),
            })
            .collect(),
    };
    let result = state
        .app
        .users
        .call_as_service(
            CallKind::Idempotent,
            credential,
            request,
            |channel, request| async move {
                UsersServiceClient::new(channel)
                    .devices_heartbeat(request)
                    .await
            },
        )
        .await;
    match result {
        Err(status) if status.code() == tonic::Code::Unimplemented => false,
        Err(status) => {
            tracing::warn!(code = ?status.code(), devices = sockets.len(), "presence heartbeat failed");
            true
        }
        Ok(_) => true,
    }
}

/// The socket's room and its one event handler. Called by [`authenticate`],
/// which socketioxide awaits before it sends the CONNECT packet: an async
/// connect handler runs in a task of its own after that packet, so a client
/// that emits right after `connect` could otherwise reach no handler (seen
/// as an ack timeout of an immediate `auth:refresh` in the end-to-end tests).
///
/// One fallback handler dispatches on the event name instead of a handler
/// per event: socketioxide keeps handlers per socket, and ten of them cost
/// every idle connection a hash map and ten boxes (~2 KB).
fn register<A: Adapter>(socket: &SocketRef<A>, me: &Caller) {
    socket.join(user_room(&me.user_id));
    socket.on_fallback(
        async |socket: SocketRef<A>,
               io: SocketIo<A>,
               Event(event): Event,
               TryData(data): TryData<Value>,
               ack: AckSender<A>,
               State(state): State<RealtimeState>| {
            let Some(me) = caller(&socket) else {
                return;
            };
            let result = match event.as_str() {
                "message:send" => on_send(&state, &me, data).await,
                "message:read" => on_mark(&state, &me, data, true).await,
                "message:delivered" => on_mark(&state, &me, data, false).await,
                "typing:start" => on_typing(&io, &state, &me, data, true).await,
                "typing:stop" => on_typing(&io, &state, &me, data, false).await,
                "presence:subscribe" => on_presence_subscribe(&socket, &state, &me, data).await,
                "presence:unsubscribe" => on_presence_unsubscribe(&socket, data),
                "auth:refresh" => on_refresh(&socket, &state, &me, data),
                "sync" => on_sync(&state, &me, data).await,
                _ => Err(ApiError::invalid(
                    "event",
                    format!("unknown event {event:?}"),
                )),
            };
            ack_result(ack, result);
        },
    );
    socket.on_disconnect(
        async |socket: SocketRef<A>, State(state): State<RealtimeState>| {
            if let Some(deliveries) = &state.deliveries {
                deliveries.directory.forget(&socket.id.to_string()).await;
            }
            if let Some(me) = caller(&socket) {
                presence(
                    &state,
                    &me,
                    socket.id.to_string(),
                    PresenceCall::Disconnected,
                )
                .await;
            }
        },
    );
}

/// After the CONNECT packet: the socket's directory entry and presence
/// (its handlers are already registered by [`authenticate`]).
async fn on_connect<A: Adapter>(socket: SocketRef<A>, State(state): State<RealtimeState>) {
    let Some(me) = caller(&socket) else {
        socket.disconnect().ok();
        return;
    };
    if let Some(deliveries) = &state.deliveries {
        deliveries
            .directory
            .register(&[(socket.id.to_string(), me.user_id.clone())])
            .await;
    }
    presence(&state, &me, socket.id.to_string(), PresenceCall::Connected).await;
}

/// Registers the namespace; with a remote adapter the returned future
/// finishes its set-up (subscriptions) and must be awaited.
pub async fn namespace(io: &SocketIo<GatewayAdapter>) -> Result<(), String> {
    io.ns(
        "/",
        on_connect::<GatewayAdapter>.with(authenticate::<GatewayAdapter>),
    )
    .await
    .map_err(|error| error.to_string())
}

/// Broadcasts between replicas go through Redis pub/sub.
pub type GatewayAdapter = socketioxide_redis::CustomRedisAdapter<
    socketioxide::adapter::Emitter,
    crate::adapter_driver::ReconnectingDriver,
>;

/// A message as `message:new` and `message:updated` carry it. Serialized
/// straight from the event (building a `serde_json::Value` first cost a
/// dozen allocations per event on the fan-out path).
#[derive(Debug, Serialize)]
pub struct LiveMessage {
    id: String,
    conversation_id: String,
    seq: u64,
    sender_id: String,
    kind: String,
    content: String,
    attachment: Option<crate::rest::chat::Attachment>,
    client_msg_id: String,
    reply_to: String,
    sent_at: Option<chrono::DateTime<chrono::Utc>>,
    edited_at: Option<chrono::DateTime<chrono::Utc>>,
    deleted: bool,
}

impl From<proto::events::v1::ChatMessage> for LiveMessage {
    fn from(message: proto::events::v1::ChatMessage) -> Self {
        Self {
            sent_at: crate::rest::time(message.sent_at.as_ref()),
            edited_at: crate::rest::time(message.edited_at.as_ref()),
            attachment: message.attachment.map(Into::into),
            id: message.id,
            conversation_id: message.conversation_id,
            seq: message.seq,
            sender_id: message.sender_id,
            kind: message.kind,
            content: message.content,
            client_msg_id: message.client_msg_id,
            reply_to: message.reply_to,
            deleted: message.deleted,
        }
    }
}

/// The payload of a server event.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ClientPayload {
    Message(Box<LiveMessage>),
    Other(Value),
}

impl From<proto::events::v1::ChatMessage> for ClientPayload {
    fn from(message: proto::events::v1::ChatMessage) -> Self {
        Self::Message(Box::new(message.into()))
    }
}

impl From<Value> for ClientPayload {
    fn from(value: Value) -> Self {
        Self::Other(value)
    }
}

/// What a domain event becomes for clients: (event name, payload, rooms).
pub fn client_event(payload: EventPayload) -> Option<(&'static str, ClientPayload, Vec<String>)> {
    let rooms = |ids: &[String]| ids.iter().map(|id| user_room(id)).collect::<Vec<_>>();
    match payload {
        EventPayload::MessageCreated(created) => {
            let recipients = rooms(&created.recipient_ids);
            Some((
                "message:new",
                created.message?.into(),
                recipients,
            ))
        }
        EventPayload::MessageUpdated(updated) => {
            let recipients = rooms(&updated.recipient_ids);
            Some((
                "message:updated",
                updated.message?.into(),
                recipients,
            ))
        }
        EventPayload::MessageDeleted(deleted) => Some((
            "message:deleted",
            json!({ "conversation_id": deleted.conversation_id, "message_id": deleted.message_id,
                    "seq": deleted.seq, "deleted_by": deleted.deleted_by }).into(),
            rooms(&deleted.recipient_ids),
        )),
        EventPayload::ReceiptUpdated(receipt) => Some((
            "receipt:updated",
            json!({ "conversation_id": receipt.conversation_id, "user_id": receipt.user_id,
                    "delivered_seq": receipt.delivered_seq, "read_seq": receipt.read_seq }).into(),
            rooms(&receipt.recipient_ids),
        )),
        EventPayload::TypingChanged(typing) => Some((
            "typing",
            json!({ "conversation_id": typing.conversation_id, "user_id": typing.user_id, "typing": typing.typing }).into(),
            rooms(&typing.recipient_ids),
        )),
        EventPayload::PresenceChanged(presence) => Some((
            "presence",
            json!({ "user_id": presence.user_id, "online": presence.online,
                    "last_seen_at": crate::rest::time(presence.last_seen_at.as_ref()) }).into(),
            vec![presence_room(&presence.user_id)],
        )),
        EventPayload::MemberAdded(added) => Some((
            "conversation:updated",
            json!({ "conversation_id": added.conversation_id, "change": "member_added",
                    "user_ids": added.user_ids, "by": added.added_by }).into(),
            rooms(&added.recipient_ids),
        )),
        EventPayload::MemberRemoved(removed) => Some((
            "conversation:updated",
            json!({ "conversation_id": removed.conversation_id, "change": "member_removed",
                    "user_id": removed.user_id, "by": removed.removed_by }).into(),
            rooms(&removed.recipient_ids),
        )),
        EventPayload::ConversationCreated(created) => {
            let conversation = created.conversation?;
            let recipients = rooms(&conversation.member_ids);
            Some((
                "conversation:updated",
                json!({ "conversation_id": conversation.id, "change": "created", "kind": conversation.kind,
                        "title": conversation.title, "by": created.created_by }).into(),
                recipients,
            ))
        }
        EventPayload::ConversationUpdated(updated) => {
            let conversation = updated.conversation?;
            let recipients = rooms(&conversation.member_ids);
            Some((
                "conversation:updated",
                json!({ "conversation_id": conversation.id, "change": "updated",
                        "title": conversation.title, "by": updated.updated_by }).into(),
                recipients,
            ))
        }
        _ => None,
    }
}

/// Routing keys the fan-out consumer binds.
pub const FANOUT_EVENTS: &[&str] = &[
    "message.created",
    "message.updated",
    "message.deleted",
    "receipt.updated",
    "typing.changed",
    "member.added",
    "member.removed",
    "conversation.created",
    "conversation.updated",
    "presence.changed",
];

/// Consumes domain events and emits them to the recipients' rooms.
#[derive(Debug)]
pub struct Fanout<A: Adapter> {
    pub io: SocketIo<A>,
    pub deliveries: Option<DeliveryTracker>,
}

impl<A: Adapter> EventHandler for Fanout<A> {
    async fn handle(&self, envelope: proto::EventEnvelope) -> Result<(), HandlerError> {
        let Some(payload) = envelope.payload else {
            return Ok(());
        };
        let Some((event, body, rooms)) = client_event(payload) else {
            return Ok(());
        };
        if rooms.is_empty() {
            return Ok(());
        }
        let span = tracing::info_span!(
            "socket.io emit",
            otel.kind = "producer",
            socketio.event = event,
            socketio.rooms = rooms.len(),
        );
        self.emit(event, body, rooms).instrument(span).await
    }
}

impl<A: Adapter> Fanout<A> {
    async fn emit(
        &self,
        event: &'static str,
        body: ClientPayload,
        rooms: Vec<String>,
    ) -> Result<(), HandlerError> {
        if let (Some(deliveries), "message:new", ClientPayload::Message(message)) =
            (&self.deliveries, event, &body)
        {
            // Ask recipients' clients to acknowledge: their ack is "delivered".
            let acks = self
                .io
                .to(rooms)
                .timeout(delivery::ACK_TIMEOUT)
                .emit_with_ack::<_, delivery::AnyAck>(event, &body)
                .await
                .map_err(|error| HandlerError::Transient(format!("broadcast failed: {error}")))?;
            tokio::spawn(delivery::follow_acks(
                acks,
                self.io.clone(),
                deliveries.clone(),
                message.conversation_id.clone(),
                message.seq,
                |socket: &SocketRef<A>| caller(socket).map(|me| me.user_id),
            ));
            return Ok(());
        }
        self.io
            .to(rooms)
            .emit(event, &body)
            .await
            .map_err(|error| HandlerError::Transient(format!("broadcast failed: {error}")))
    }
}
