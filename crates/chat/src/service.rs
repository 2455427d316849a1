//! The `platform.chat.v1.ChatService` gRPC API. The caller is always the
//! subject of the verified access token; every call checks membership.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt as _;
use mongodb::bson::{DateTime, doc};
use proto::chat::v1::chat_service_server::ChatService;
use proto::chat::v1::{
    AddMembersRequest, Conversation, CreateGroupConversationRequest,
    CreatePrivateConversationRequest, DeleteMessageRequest, Direction, EditMessageRequest,
    GetConversationRequest, GetHistoryRequest, GetHistoryResponse, GetMessageReceiptsRequest,
    GetUnreadCountsRequest, GetUnreadCountsResponse, LeaveConversationRequest,
    LeaveConversationResponse, ListConversationsRequest, ListConversationsResponse,
    ListMembersRequest, ListMembersResponse, MarkRequest, Member, Message, MessageReceipts,
    ReceiptState, RemoveMemberRequest, Role as ProtoRole, SendMessageRequest, SetMemberRoleRequest,
    SyncRequest, SyncResponse, SyncedConversation, TransferOwnershipRequest, UnreadCount,
    UpdateConversationRequest,
};
use proto::common::v1::{PageRequest, PageResponse};
use proto::events::v1::{
    ChatMessage, ConversationCreated, ConversationSnapshot, ConversationUpdated, MemberAdded,
    MemberRemoved, MessageCreated, MessageDeleted, MessageUpdated, ReceiptUpdated,
};
use proto::users::v1::Denial;
use proto::{EventEnvelope, EventPayload};
use service_kit::mongo_outbox::MongoOutboxRelay;
use service_kit::token::{TokenVerifier, bearer_token};
use service_kit::{ApiError, ErrorCode, events};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{
    self, Kind, MessageKind, Role, pair_key, parse_attachment, parse_client_msg_id, parse_content,
    parse_id, parse_ids, parse_kind, parse_title,
};
use crate::error::ChatError;
use crate::receipts::{ReceiptCoalescer, ReceiptView};
use crate::store::{
    ChatStore, ConversationDoc, HistoryWindow, MemberDoc, MembershipChange, MessageDoc, Watermarks,
    is_duplicate_key, member_key,
};
use crate::users_client::UsersClient;

const PRODUCER: &str = "chat";
const DEFAULT_HISTORY: u32 = 50;
const MAX_HISTORY: u32 = 200;
const DEFAULT_LIST: u32 = 50;
const MAX_LIST: u32 = 100;
/// Members embedded in `GetConversation`; `ListMembers` pages the rest.
const EMBEDDED_MEMBERS: u32 = 100;
const MAX_MEMBER_PAGE: u32 = 200;
const MAX_SYNC_CONVERSATIONS: usize = 500;
/// Conversations synced at once (each is one indexed range query).
const SYNC_CONCURRENCY: usize = 8;

#[derive(Debug)]
pub struct ChatState {
    pub store: ChatStore,
    pub users: UsersClient,
    pub verifier: TokenVerifier,
    pub relay: MongoOutboxRelay,
    pub receipts: Arc<ReceiptCoalescer>,
    pub max_group_members: u32,
    /// The gateway's credential for marking deliveries on users' behalf.
    pub service_token: Option<secrecy::SecretString>,
}

#[derive(Debug, Clone)]
pub struct ChatApi {
    state: Arc<ChatState>,
}

/// The authenticated caller: user id and the token to forward downstream.
struct Caller {
    id: String,
    token: String,
}

type ChatResult<T> = Result<T, ChatError>;

fn timestamp(at: DateTime) -> prost_types::Timestamp {
    let millis = at.timestamp_millis();
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

fn seq_u64(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

fn seq_i64(seq: u64, field: &str) -> Result<i64, ApiError> {
    i64::try_from(seq).map_err(|_| ApiError::invalid(field, format!("{field} is out of range")))
}

fn page_limit(page: Option<&PageRequest>, default: u32, max: u32) -> Result<i64, ApiError> {
    match page.map_or(0, |page| page.limit) {
        0 => Ok(i64::from(default)),
        limit if limit > max => Err(ApiError::invalid(
            "page.limit",
            format!("page.limit must be at most {max}"),
        )),
        limit => Ok(i64::from(limit)),
    }
}

fn encode_cursor(raw: &str) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(page: Option<&PageRequest>) -> Result<Option<String>, ApiError> {
    let Some(cursor) = page
        .map(|page| page.cursor.as_str())
        .filter(|c| !c.is_empty())
    else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(Some)
        .ok_or_else(|| ApiError::invalid("page.cursor", "page.cursor is not a cursor of this list"))
}

/// `(time, id)` keyset cursors: `"{millis}:{id}"`.
fn decode_time_cursor(page: Option<&PageRequest>) -> Result<Option<(DateTime, String)>, ApiError> {
    let Some(raw) = decode_cursor(page)? else {
        return Ok(None);
    };
    raw.split_once(':')
        .and_then(|(millis, id)| {
            let millis = millis.parse::<i64>().ok()?;
            Uuid::parse_str(id).ok()?;
            Some((DateTime::from_millis(millis), id.to_owned()))
        })
        .map(Some)
        .ok_or_else(|| ApiError::invalid("page.cursor", "page.cursor is not a cursor of this list"))
}

fn time_cursor(at: DateTime, id: &str) -> String {
    encode_cursor(&format!("{}:{id}", at.timestamp_millis()))
}

fn chat_message(message: &MessageDoc) -> ChatMessage {
    ChatMessage {
        id: message.id.clone(),
        conversation_id: message.conversation_id.clone(),
        seq: seq_u64(message.seq),
        sender_id: message.sender_id.clone(),
        kind: message.kind.as_str().to_owned(),
        content: message.content.clone(),
        attachment: message
            .attachment
            .as_ref()
            .map(domain::AttachmentDoc::to_proto),
        client_msg_id: message.client_msg_id.clone().unwrap_or_default(),
        reply_to: message.reply_to.clone().unwrap_or_default(),
        sent_at: Some(timestamp(message.sent_at)),
        edited_at: message.edited_at.map(timestamp),
        deleted: message.deleted,
    }
}

/// A message as served: private chats list the peer's status; groups give
/// counts ("read by 7 of 9"; per-member statuses via GetMessageReceipts).
fn message_proto(message: &MessageDoc, kind: Kind, view: &ReceiptView) -> Message {
    let (delivered, read, recipients) = view.counts(&message.sender_id, message.seq);
    Message {
        id: message.id.clone(),
        conversation_id: message.conversation_id.clone(),
        seq: seq_u64(message.seq),
        sender_id: message.sender_id.clone(),
        kind: message.kind.to_proto() as i32,
        content: message.content.clone(),
        attachment: message
            .attachment
            .as_ref()
            .map(domain::AttachmentDoc::to_proto),
        client_msg_id: message.client_msg_id.clone().unwrap_or_default(),
        reply_to: message.reply_to.clone().unwrap_or_default(),
        sent_at: Some(timestamp(message.sent_at)),
        edited_at: message.edited_at.map(timestamp),
        deleted: message.deleted,
        delivery_status: match kind {
            Kind::Private => view.statuses(&message.sender_id, message.seq),
            Kind::Group => Vec::new(),
        },
        delivered_count: delivered,
        read_count: read,
        recipient_count: recipients,
    }
}

fn member_proto(member: &MemberDoc) -> Member {
    Member {
        user_id: member.user_id.clone(),
        role: member.role.to_proto() as i32,
        joined_at: Some(timestamp(member.joined_at)),
        delivered_seq: seq_u64(member.delivered_seq),
        read_seq: seq_u64(member.read_seq),
        is_bot: member.is_bot,
    }
}

fn snapshot(conversation: &ConversationDoc) -> ConversationSnapshot {
    ConversationSnapshot {
        id: conversation.id.clone(),
        kind: conversation.kind.as_str().to_owned(),
        title: conversation.title.clone(),
        member_ids: conversation.member_ids.clone(),
        updated_at: Some(timestamp(conversation.updated_at)),
    }
}

fn envelope(conversation_id: &str, payload: EventPayload) -> EventEnvelope {
    events::envelope(PRODUCER, conversation_id.to_owned(), payload)
}

fn unread(conversation: &ConversationDoc, me: Option<&MemberDoc>) -> u64 {
    seq_u64(conversation.last_seq - me.map_or(0, |member| member.read_seq))
}

/// A conversation as served to `caller`, with the given member entries.
fn conversation_proto(
    conversation: &ConversationDoc,
    members: &[MemberDoc],
    me: Option<&MemberDoc>,
) -> Conversation {
    Conversation {
        id: conversation.id.clone(),
        kind: conversation.kind.to_proto() as i32,
        title: conversation.title.clone(),
        members: members.iter().map(member_proto).collect(),
        member_count: u32::try_from(conversation.member_ids.len()).unwrap_or(u32::MAX),
        created_at: Some(timestamp(conversation.created_at)),
        updated_at: Some(timestamp(conversation.updated_at)),
        last_seq: seq_u64(conversation.last_seq),
        last_message: conversation.last_message.as_ref().map(|last| Message {
            id: last.id.clone(),
            conversation_id: conversation.id.clone(),
            seq: seq_u64(last.seq),
            sender_id: last.sender_id.clone(),
            kind: last.kind.to_proto() as i32,
            content: last.preview.clone(),
            sent_at: Some(timestamp(last.sent_at)),
            deleted: last.deleted,
            ..Message::default()
        }),
        unread_count: unread(conversation, me),
        my_role: me.map_or(ProtoRole::Unspecified, |member| member.role.to_proto()) as i32,
    }
}

fn denial_error(denial: Denial, peer_field: &str) -> ApiError {
    match denial {
        Denial::UnknownUser | Denial::Unspecified => {
            ApiError::new(ErrorCode::NotFound, format!("{peer_field}: no such user"))
                .with_field(peer_field)
        }
        Denial::BlockedByRecipient => {
            ApiError::permission_denied("this user does not accept your messages")
        }
        Denial::BlockedBySender => {
            ApiError::permission_denied("you blocked this user; unblock them first")
        }
        Denial::ContactsOnly => {
            ApiError::permission_denied("this user accepts messages only from contacts")
        }
    }
}

impl ChatApi {
    pub fn new(state: ChatState) -> Self {
        Self {
            state: Arc::new(state),
        }
    }

    fn caller<T>(&self, request: &Request<T>) -> ChatResult<Caller> {
        let claims = self.state.verifier.authenticate(request.metadata())?;
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .unwrap_or_default()
            .to_owned();
        Ok(Caller {
            id: claims.sub.to_string(),
            token,
        })
    }

    /// Authenticates the caller, runs `handler`, maps its error once.
    async fn handle<Req, Resp, F, Fut>(
        &self,
        request: Request<Req>,
        handler: F,
    ) -> Result<Response<Resp>, Status>
    where
        F: FnOnce(Caller, Req) -> Fut,
        Fut: Future<Output = ChatResult<Resp>>,
    {
        let caller = self.caller(&request)?;
        handler(caller, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    fn store(&self) -> &ChatStore {
        &self.state.store
    }

    /// The conversation, if the caller is a member; NotFound if it does not
    /// exist, PermissionDenied if it exists and the caller is not in it.
    async fn conversation(
        &self,
        caller: &Caller,
        conversation_id: &str,
    ) -> ChatResult<ConversationDoc> {
        match self
            .store()
            .conversation_for(conversation_id, &caller.id)
            .await?
        {
            Some(conversation) => Ok(conversation),
            None if self.store().conversation_exists(conversation_id).await? => {
                Err(ChatError::NotMember)
            }
            None => Err(ChatError::ConversationNotFound),
        }
    }

    async fn my_member(&self, conversation_id: &str, user_id: &str) -> ChatResult<MemberDoc> {
        self.store()
            .member(conversation_id, user_id)
            .await?
            .ok_or(ChatError::NotMember)
    }

    /// Watermarks of every member, with hidden read receipts applied.
    async fn receipt_view(
        &self,
        caller: &Caller,
        conversation_id: &str,
    ) -> ChatResult<ReceiptView> {
        let members = self.store().all_members(conversation_id).await?;
        let ids: Vec<String> = members.iter().map(|m| m.user_id.clone()).collect();
        let hidden = self
            .state
            .users
            .receipts_hidden(&caller.token, &ids)
            .await?;
        Ok(ReceiptView::new(&members, &hidden))
    }

    /// A conversation as GetConversation serves it: the first members
    /// embedded, and the caller's own entry.
    async fn full_conversation(
        &self,
        caller: &Caller,
        conversation: &ConversationDoc,
    ) -> ChatResult<Conversation> {
        let members = self
            .store()
            .list_members(&conversation.id, None, i64::from(EMBEDDED_MEMBERS))
            .await?;
        let me = match members.iter().find(|m| m.user_id == caller.id) {
            Some(me) => Some(me.clone()),
            None => self.store().member(&conversation.id, &caller.id).await?,
        };
        Ok(conversation_proto(conversation, &members, me.as_ref()))
    }

    fn notify_relay(&self) {
        self.state.relay.notify();
    }

    async fn create_private(
        &self,
        caller: &Caller,
        input: CreatePrivateConversationRequest,
    ) -> ChatResult<Conversation> {
        let peer = parse_id(&input.peer_id, "peer_id")?;
        if peer == caller.id {
            return Err(ApiError::invalid("peer_id", "peer_id must be another user").into());
        }
        let denials = self
            .state
            .users
            .message_denials(&caller.token, &caller.id, std::slice::from_ref(&peer))
            .await?;
        if let Some(Some(denial)) = denials.get(&peer) {
            return Err(denial_error(*denial, "peer_id").into());
        }
        let key = pair_key(&caller.id, &peer);
        if let Some(existing) = self.store().private_by_pair(&key).await? {
            return self.full_conversation(caller, &existing).await;
        }
        let bots = self
            .state
            .users
            .bot_flags(&caller.token, std::slice::from_ref(&peer))
            .await?;
        let now = DateTime::now();
        let id = Uuid::now_v7().to_string();
        let peer_is_bot = bots.get(&peer).copied().unwrap_or(false);
        let conversation = ConversationDoc {
            id: id.clone(),
            kind: Kind::Private,
            pair_key: Some(key.clone()),
            title: String::new(),
            member_ids: vec![caller.id.clone(), peer.clone()],
            bot_ids: if peer_is_bot {
                vec![peer.clone()]
            } else {
                Vec::new()
            },
            last_seq: 0,
            last_message: None,
            last_activity_at: now,
            created_at: now,
            updated_at: now,
            created_by: caller.id.clone(),
        };
        let members = [
            MemberDoc::new(&id, &caller.id, Role::Member, false, now),
            MemberDoc::new(&id, &peer, Role::Member, peer_is_bot, now),
        ];
        let event = envelope(
            &id,
            EventPayload::ConversationCreated(ConversationCreated {
                conversation: Some(snapshot(&conversation)),
                created_by: caller.id.clone(),
            }),
        );
        match self
            .store()
            .create_conversation(&conversation, &members, &event)
            .await
        {
            Ok(()) => {
                self.notify_relay();
                Ok(conversation_proto(
                    &conversation,
                    &members,
                    Some(&members[0]),
                ))
            }
            // The other side (or a retry) created it concurrently: that one wins.
            Err(error) if is_duplicate_key(&error) => {
                let existing = self
                    .store()
                    .private_by_pair(&key)
                    .await?
                    .ok_or(ChatError::Mongo(error))?;
                self.full_conversation(caller, &existing).await
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn create_group(
        &self,
        caller: &Caller,
        input: CreateGroupConversationRequest,
    ) -> ChatResult<Conversation> {
        let title = parse_title(&input.title)?;
        let max = self.state.max_group_members as usize;
        let mut member_ids = parse_ids(&input.member_ids, "member_ids", max)?;
        member_ids.retain(|id| *id != caller.id);
        if member_ids.len() + 1 > max {
            return Err(ApiError::invalid(
                "member_ids",
                format!("a group has at most {max} members"),
            )
            .into());
        }
        let bots = self
            .state
            .users
            .bot_flags(&caller.token, &member_ids)
            .await?;
        if let Some((i, _)) = member_ids
            .iter()
            .enumerate()
            .find(|(_, id)| !bots.contains_key(*id))
        {
            let field = format!("member_ids[{i}]");
            return Err(ApiError::invalid(&field, format!("{field}: no such user")).into());
        }
        let now = DateTime::now();
        let id = Uuid::now_v7().to_string();
        let mut members = vec![MemberDoc::new(&id, &caller.id, Role::Owner, false, now)];
        members.extend(member_ids.iter().map(|user| {
            MemberDoc::new(
                &id,
                user,
                Role::Member,
                bots.get(user).copied().unwrap_or(false),
                now,
            )
        }));
        let conversation = ConversationDoc {
            id: id.clone(),
            kind: Kind::Group,
            pair_key: None,
            title,
            member_ids: members.iter().map(|m| m.user_id.clone()).collect(),
            bot_ids: members
                .iter()
                .filter(|m| m.is_bot)
                .map(|m| m.user_id.clone())
                .collect(),
            last_seq: 0,
            last_message: None,
            last_activity_at: now,
            created_at: now,
            updated_at: now,
            created_by: caller.id.clone(),
        };
        let event = envelope(
            &id,
            EventPayload::ConversationCreated(ConversationCreated {
                conversation: Some(snapshot(&conversation)),
                created_by: caller.id.clone(),
            }),
        );
        self.store()
            .create_conversation(&conversation, &members, &event)
            .await?;
        self.notify_relay();
        let embedded = &members[..members.len().min(EMBEDDED_MEMBERS as usize)];
        Ok(conversation_proto(
            &conversation,
            embedded,
            Some(&members[0]),
        ))
    }

    async fn list_conversations(
        &self,
        caller: &Caller,
        input: ListConversationsRequest,
    ) -> ChatResult<ListConversationsResponse> {
        let limit = page_limit(input.page.as_ref(), DEFAULT_LIST, MAX_LIST)?;
        let after = decode_time_cursor(input.page.as_ref())?;
        let page = self
            .store()
            .list_conversations(&caller.id, after, limit + 1)
            .await?;
        let has_more = page.len() as i64 > limit;
        let page = &page[..page.len().min(limit as usize)];
        // One query for the member entries shown: both sides of private
        // chats, the caller's own entry in groups.
        let private_ids: Vec<String> = page
            .iter()
            .filter(|c| c.kind == Kind::Private)
            .map(|c| c.id.clone())
            .collect();
        let group_keys: Vec<String> = page
            .iter()
            .filter(|c| c.kind == Kind::Group)
            .map(|c| member_key(&c.id, &caller.id))
            .collect();
        let (private_members, my_group_entries) = tokio::try_join!(
            self.store().members_of(&private_ids),
            self.store().members_by_key(&group_keys),
        )?;
        let mut by_conversation: HashMap<&str, Vec<MemberDoc>> = HashMap::new();
        for member in private_members.iter().chain(&my_group_entries) {
            by_conversation
                .entry(member.conversation_id.as_str())
                .or_default()
                .push(member.clone());
        }
        let conversations = page
            .iter()
            .map(|conversation| {
                let members = by_conversation
                    .get(conversation.id.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let me = members.iter().find(|m| m.user_id == caller.id);
                conversation_proto(conversation, members, me)
            })
            .collect();
        let next_cursor = match page.last() {
            Some(last) if has_more => time_cursor(last.last_activity_at, &last.id),
            _ => String::new(),
        };
        Ok(ListConversationsResponse {
            conversations,
            page: Some(PageResponse { next_cursor }),
        })
    }

    /// Checks a role-changing actor: groups only, and at least `needed`.
    async fn require_role(
        &self,
        caller: &Caller,
        conversation: &ConversationDoc,
        needed: Role,
    ) -> ChatResult<MemberDoc> {
        if conversation.kind != Kind::Group {
            return Err(ApiError::new(
                ErrorCode::FailedPrecondition,
                "private conversations have no roles or membership changes",
            )
            .into());
        }
        let me = self.my_member(&conversation.id, &caller.id).await?;
        if me.role < needed {
            return Err(ApiError::permission_denied(format!(
                "this needs the {} role in the group",
                needed.as_str()
            ))
            .into());
        }
        Ok(me)
    }

    /// Runs a membership change and serves the result to the caller.
    async fn apply_membership(
        &self,
        caller: &Caller,
        change: MembershipChange<'_>,
    ) -> ChatResult<Conversation> {
        let updated = self
            .store()
            .change_membership(change)
            .await
            .map_err(|error| {
                if is_duplicate_key(&error) {
                    ChatError::Api(ApiError::already_exists(
                        "user_ids",
                        "some of these users were added concurrently; reload the member list",
                    ))
                } else {
                    ChatError::from_store(error)
                }
            })?;
        self.notify_relay();
        self.full_conversation(caller, &updated).await
    }

    async fn add_members(
        &self,
        caller: &Caller,
        input: AddMembersRequest,
    ) -> ChatResult<Conversation> {
        let conversation_id = parse_id(&input.conversation_id, "conversation_id")?;
        let max = self.state.max_group_members as usize;
        let requested = parse_ids(&input.user_ids, "user_ids", max)?;
        if requested.is_empty() {
            return Err(
                ApiError::invalid("user_ids", "user_ids must name at least one user").into(),
            );
        }
        let conversation = self.conversation(caller, &conversation_id).await?;
        self.require_role(caller, &conversation, Role::Admin)
            .await?;
        let new: Vec<String> = requested
            .into_iter()
            .filter(|id| !conversation.member_ids.contains(id))
            .collect();
        if new.is_empty() {
            return self.full_conversation(caller, &conversation).await;
        }
        if conversation.member_ids.len() + new.len() > max {
            return Err(ApiError::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "a group has at most {max} members; it has {} and {} would join",
                    conversation.member_ids.len(),
                    new.len()
                ),
            )
            .with_field("user_ids")
            .into());
        }
        let bots = self.state.users.bot_flags(&caller.token, &new).await?;
        if let Some(unknown) = new.iter().find(|id| !bots.contains_key(*id)) {
            return Err(
                ApiError::invalid("user_ids", format!("user_ids: no such user {unknown}")).into(),
            );
        }
        let now = DateTime::now();
        let bot_ids: Vec<String> = new.iter().filter(|id| bots[*id]).cloned().collect();
        // The cap holds under concurrent adds: the update only matches while
        // the array has room (position max - n does not exist yet).
        let room = format!("member_ids.{}", max - new.len());
        let actor = caller.id.clone();
        let added = new.clone();
        self.apply_membership(
            caller,
            MembershipChange {
                store: self.store(),
                guard: doc! { "_id": &conversation_id, "member_ids": &caller.id, room: { "$exists": false } },
                conversation_update: doc! {
                    "$addToSet": { "member_ids": { "$each": &new }, "bot_ids": { "$each": bot_ids } },
                    "$set": { "updated_at": now },
                },
                insert_members: new
                    .iter()
                    .map(|user| MemberDoc::new(&conversation_id, user, Role::Member, bots[user], now))
                    .collect(),
                remove_members: Vec::new(),
                set_roles: Vec::new(),
                event: Box::new(move |updated| {
                    envelope(
                        &updated.id,
                        EventPayload::MemberAdded(MemberAdded {
                            conversation_id: updated.id.clone(),
                            user_ids: added.clone(),
                            added_by: actor.clone(),
                            recipient_ids: updated.member_ids.clone(),
                        }),
                    )
                }),
            },
        )
        .await
    }

    /// Removes `target` (a removal by an admin, or the caller leaving).
    async fn remove(
        &self,
        caller: &Caller,
        conversation: &ConversationDoc,
        target: &str,
    ) -> ChatResult<Conversation> {
        let now = DateTime::now();
        let mut set_roles = Vec::new();
        let target_member = self.my_member(&conversation.id, target).await?;
        if target_member.role == Role::Owner {
            // The owner leaves: the longest-standing admin, else member, takes over.
            let members = self.store().all_members(&conversation.id).await?;
            let heir = members
                .iter()
                .filter(|m| m.user_id != target)
                .min_by_key(|m| (std::cmp::Reverse(m.role), m.joined_at, m.user_id.clone()));
            if let Some(heir) = heir {
                set_roles.push((heir.user_id.clone(), Role::Owner));
            }
        }
        // Recipients include the removed member, so their devices learn it.
        let recipients = conversation.member_ids.clone();
        let actor = caller.id.clone();
        let removed = target.to_owned();
        self.apply_membership(
            caller,
            MembershipChange {
                store: self.store(),
                guard: doc! { "_id": &conversation.id, "member_ids": { "$all": [&caller.id, target] } },
                conversation_update: doc! {
                    "$pull": { "member_ids": target, "bot_ids": target },
                    "$set": { "updated_at": now },
                },
                insert_members: Vec::new(),
                remove_members: vec![target.to_owned()],
                set_roles,
                event: Box::new(move |updated| {
                    envelope(
                        &updated.id,
                        EventPayload::MemberRemoved(MemberRemoved {
                            conversation_id: updated.id.clone(),
                            user_id: removed.clone(),
                            removed_by: actor.clone(),
                            recipient_ids: recipients.clone(),
                        }),
                    )
                }),
            },
        )
        .await
    }

    async fn remove_member(
        &self,
        caller: &Caller,
        input: RemoveMemberRequest,
    ) -> ChatResult<Conversation> {
        let conversation_id = parse_id(&input.conversation_id, "conversation_id")?;
        let target = parse_id(&input.user_id, "user_id")?;
        let conversation = self.conversation(caller, &conversation_id).await?;
        let me = self
            .require_role(caller, &conversation, Role::Admin)
            .await?;
        if target == caller.id {
            return Err(ApiError::invalid("user_id", "use LeaveConversation to leave").into());
        }
        if !conversation.member_ids.contains(&target) {
            return Err(
                ApiError::not_found("user_id is not a member of this conversation")
                    .with_field("user_id")
                    .into(),
            );
        }
        let target_member = self.my_member(&conversation_id, &target).await?;
        // Admins remove members; only the owner removes admins; nobody the owner.
        if target_member.role >= me.role {
            return Err(ApiError::permission_denied(format!(
                "a {} cannot remove a {}",
                me.role.as_str(),
                target_member.role.as_str()
            ))
            .into());
        }
        self.remove(caller, &conversation, &target).await
    }

    /// Sets roles (and the event saying so) on a group.
    async fn set_roles(
        &self,
        caller: &Caller,
        conversation: &ConversationDoc,
        roles: Vec<(String, Role)>,
    ) -> ChatResult<Conversation> {
        let now = DateTime::now();
        let actor = caller.id.clone();
        let targets: Vec<&String> = roles.iter().map(|(user, _)| user).collect();
        let mut required = vec![&caller.id];
        required.extend(targets);
        self.apply_membership(
            caller,
            MembershipChange {
                store: self.store(),
                guard: doc! { "_id": &conversation.id, "member_ids": { "$all": required } },
                conversation_update: doc! { "$set": { "updated_at": now } },
                insert_members: Vec::new(),
                remove_members: Vec::new(),
                set_roles: roles,
                event: Box::new(move |updated| {
                    envelope(
                        &updated.id,
                        EventPayload::ConversationUpdated(ConversationUpdated {
                            conversation: Some(snapshot(updated)),
                            updated_by: actor.clone(),
                        }),
                    )
                }),
            },
        )
        .await
    }

    async fn send(&self, caller: &Caller, input: SendMessageRequest) -> ChatResult<Message> {
        let conversation_id = parse_id(&input.conversation_id, "conversation_id")?;
        let kind = parse_kind(input.kind)?;
        let attachment = parse_attachment(kind, input.attachment.as_ref())?;
        let content = parse_content(&input.content, kind == MessageKind::Text)?;
        let client_msg_id = parse_client_msg_id(&input.client_msg_id)?;
        let reply_to = if input.reply_to.is_empty() {
            None
        } else {
            Some(parse_id(&input.reply_to, "reply_to")?)
        };
        let conversation = self.conversation(caller, &conversation_id).await?;
        // A retry of a stored send returns the original.
        if let Some(client_msg_id) = &client_msg_id
            && let Some(existing) = self
                .store()
                .message_by_client_id(&conversation_id, &caller.id, client_msg_id)
                .await?
        {
            return self.serve_message(caller, &conversation, &existing).await;
        }
        if conversation.kind == Kind::Private {
            let peers: Vec<String> = conversation
                .member_ids
                .iter()
                .filter(|id| **id != caller.id)
                .cloned()
                .collect();
            let denials = self
                .state
                .users
                .message_denials(&caller.token, &caller.id, &peers)
                .await?;
            if let Some(denial) = denials.values().flatten().next() {
                return Err(denial_error(*denial, "conversation_id").into());
            }
        }
        if let Some(reply_to) = &reply_to
            && self
                .store()
                .message(&conversation_id, reply_to)
                .await?
                .is_none()
        {
            return Err(ApiError::invalid(
                "reply_to",
                "reply_to must be a message of this conversation",
            )
            .into());
        }
        let draft = MessageDoc {
            id: Uuid::now_v7().to_string(),
            conversation_id: conversation_id.clone(),
            seq: 0,
            sender_id: caller.id.clone(),
            kind,
            content,
            attachment,
            client_msg_id: client_msg_id.clone(),
            reply_to,
            sent_at: DateTime::now(),
            edited_at: None,
            deleted: false,
        };
        let stored = self
            .store()
            .insert_message(&draft, |message, conversation| {
                envelope(
                    &message.conversation_id,
                    EventPayload::MessageCreated(MessageCreated {
                        message: Some(chat_message(message)),
                        recipient_ids: conversation.member_ids.clone(),
                        bot_member_ids: conversation.bot_ids.clone(),
                        conversation_kind: conversation.kind.as_str().to_owned(),
                    }),
                )
            })
            .await;
        let message = match stored {
            Ok((message, _)) => {
                self.notify_relay();
                message
            }
            // The same client_msg_id raced in: serve the one that won.
            Err(error) if is_duplicate_key(&error) && client_msg_id.is_some() => self
                .store()
                .message_by_client_id(
                    &conversation_id,
                    &caller.id,
                    client_msg_id.as_deref().unwrap_or_default(),
                )
                .await?
                .ok_or(ChatError::Mongo(error))?,
            Err(error) => return Err(ChatError::from_store(error)),
        };
        self.serve_message(caller, &conversation, &message).await
    }

    async fn serve_message(
        &self,
        caller: &Caller,
        conversation: &ConversationDoc,
        message: &MessageDoc,
    ) -> ChatResult<Message> {
        let view = self.receipt_view(caller, &conversation.id).await?;
        Ok(message_proto(message, conversation.kind, &view))
    }

    /// Edit or delete: the message must exist in a conversation the caller
    /// is in, and `allowed` must accept the caller.
    async fn modify(
        &self,
        caller: &Caller,
        conversation_id: &str,
        message_id: &str,
        deleting: bool,
        content: Option<String>,
    ) -> ChatResult<Message> {
        let conversation = self.conversation(caller, conversation_id).await?;
        let message = self
            .store()
            .message(conversation_id, message_id)
            .await?
            .ok_or(ChatError::MessageNotFound)?;
        if message.deleted {
            if deleting {
                return self.serve_message(caller, &conversation, &message).await;
            }
            return Err(ApiError::new(
                ErrorCode::FailedPrecondition,
                "a deleted message cannot be edited",
            )
            .into());
        }
        let own = message.sender_id == caller.id;
        if !own {
            let may_moderate = deleting
                && conversation.kind == Kind::Group
                && self
                    .my_member(conversation_id, &caller.id)
                    .await?
                    .role
                    .can_manage();
            if !may_moderate {
                return Err(ApiError::permission_denied(if deleting {
                    "only the sender or a group admin can delete this message"
                } else {
                    "only the sender can edit this message"
                })
                .into());
            }
        }
        let now = DateTime::now();
        let recipients = conversation.member_ids.clone();
        let actor = caller.id.clone();
        let set = match &content {
            Some(content) => doc! { "content": content, "edited_at": now },
            None => doc! { "content": "", "deleted": true, "edited_at": now, "attachment": null },
        };
        let updated = self
            .store()
            .update_message(conversation_id, message_id, set, |message| {
                let payload = if message.deleted {
                    EventPayload::MessageDeleted(MessageDeleted {
                        conversation_id: message.conversation_id.clone(),
                        message_id: message.id.clone(),
                        seq: seq_u64(message.seq),
                        deleted_by: actor.clone(),
                        recipient_ids: recipients.clone(),
                    })
                } else {
                    EventPayload::MessageUpdated(MessageUpdated {
                        message: Some(chat_message(message)),
                        recipient_ids: recipients.clone(),
                    })
                };
                envelope(&message.conversation_id, payload)
            })
            .await
            .map_err(ChatError::from_store)?;
        self.notify_relay();
        self.serve_message(caller, &conversation, &updated).await
    }

    async fn history(
        &self,
        caller: &Caller,
        input: GetHistoryRequest,
    ) -> ChatResult<GetHistoryResponse> {
        let conversation_id = parse_id(&input.conversation_id, "conversation_id")?;
        let limit = page_limit(input.page.as_ref(), DEFAULT_HISTORY, MAX_HISTORY)?;
        let anchor = seq_i64(input.anchor_seq, "anchor_seq")?;
        let direction = Direction::try_from(input.direction).map_err(|_| {
            ApiError::invalid(
                "direction",
                "direction must be DIRECTION_BACKWARD or DIRECTION_FORWARD",
            )
        })?;
        let window = match decode_cursor(input.page.as_ref())? {
            Some(cursor) => parse_history_cursor(&cursor)?,
            None => match direction {
                Direction::Forward => HistoryWindow::After(anchor),
                Direction::Backward | Direction::Unspecified => {
                    HistoryWindow::Before((anchor > 0).then_some(anchor))
                }
            },
        };
        let conversation = self.conversation(caller, &conversation_id).await?;
        let (page, view) = tokio::try_join!(
            async {
                self.store()
                    .history(&conversation_id, window, conversation.last_seq, limit)
                    .await
                    .map_err(ChatError::from)
            },
            self.receipt_view(caller, &conversation_id),
        )?;
        let next_cursor = match (window, page.first(), page.last()) {
            (HistoryWindow::Before(_), Some(first), _) if first.seq > 1 => {
                encode_cursor(&format!("before:{}", first.seq))
            }
            (HistoryWindow::After(_), _, Some(last)) if last.seq < conversation.last_seq => {
                encode_cursor(&format!("after:{}", last.seq))
            }
            _ => String::new(),
        };
        Ok(GetHistoryResponse {
            messages: page
                .iter()
                .map(|message| message_proto(message, conversation.kind, &view))
                .collect(),
            page: Some(PageResponse { next_cursor }),
        })
    }

    async fn sync(&self, caller: &Caller, input: SyncRequest) -> ChatResult<SyncResponse> {
        if input.checkpoints.len() > MAX_SYNC_CONVERSATIONS {
            return Err(ApiError::invalid(
                "checkpoints",
                format!("at most {MAX_SYNC_CONVERSATIONS} checkpoints per call"),
            )
            .into());
        }
        let limit = match input.limit_per_conversation {
            0 => i64::from(MAX_HISTORY),
            n if n > MAX_HISTORY => {
                return Err(ApiError::invalid(
                    "limit_per_conversation",
                    format!("limit_per_conversation must be at most {MAX_HISTORY}"),
                )
                .into());
            }
            n => i64::from(n),
        };
        let mut from: HashMap<String, i64> = HashMap::new();
        for (i, checkpoint) in input.checkpoints.iter().enumerate() {
            let id = parse_id(
                &checkpoint.conversation_id,
                &format!("checkpoints[{i}].conversation_id"),
            )?;
            let seq = seq_i64(checkpoint.last_seq, &format!("checkpoints[{i}].last_seq"))?;
            from.insert(id, seq);
        }
        let memberships = if input.include_unknown || !from.is_empty() {
            self.store().memberships_of(&caller.id).await?
        } else {
            Vec::new()
        };
        if input.include_unknown {
            // Conversations the client does not know: from the read watermark.
            for member in &memberships {
                from.entry(member.conversation_id.clone())
                    .or_insert(member.read_seq);
            }
        }
        let ids: Vec<String> = from.keys().cloned().collect();
        let conversations = self.store().conversations_for(&caller.id, &ids).await?;
        let mine: HashMap<&str, &MemberDoc> = memberships
            .iter()
            .map(|m| (m.conversation_id.as_str(), m))
            .collect();
        let behind: Vec<(ConversationDoc, i64)> = conversations
            .into_iter()
            .filter_map(|c| {
                let since = from.get(&c.id).copied().unwrap_or(0);
                (c.last_seq > since).then_some((c, since))
            })
            .collect();
        let synced: Vec<ChatResult<SyncedConversation>> = futures::stream::iter(behind)
            .map(|(conversation, since)| {
                let me = mine.get(conversation.id.as_str()).copied();
                async move {
                    let (messages, view) = tokio::try_join!(
                        async {
                            self.store()
                                .history(
                                    &conversation.id,
                                    HistoryWindow::After(since),
                                    conversation.last_seq,
                                    limit + 1,
                                )
                                .await
                                .map_err(ChatError::from)
                        },
                        self.receipt_view(caller, &conversation.id),
                    )?;
                    let has_more = messages.len() as i64 > limit;
                    Ok(SyncedConversation {
                        conversation: Some(conversation_proto(&conversation, &[], me)),
                        messages: messages
                            .iter()
                            .take(limit as usize)
                            .map(|m| message_proto(m, conversation.kind, &view))
                            .collect(),
                        has_more,
                    })
                }
            })
            .buffer_unordered(SYNC_CONCURRENCY)
            .collect()
            .await;
        Ok(SyncResponse {
            conversations: synced.into_iter().collect::<ChatResult<_>>()?,
        })
    }

    async fn mark(
        &self,
        caller: &Caller,
        input: MarkRequest,
        read: bool,
    ) -> ChatResult<ReceiptState> {
        let conversation_id = parse_id(&input.conversation_id, "conversation_id")?;
        let requested = seq_i64(input.up_to_seq, "up_to_seq")?;
        let conversation = self.conversation(caller, &conversation_id).await?;
        // Acks past the newest message are clamped, not refused: a client
        // may race a deletion or hold a stale view.
        let up_to = requested.min(conversation.last_seq);
        let wanted = Watermarks {
            delivered_seq: up_to,
            read_seq: if read { up_to } else { 0 },
        };
        let hidden = if read {
            self.state
                .users
                .receipts_hidden(&caller.token, std::slice::from_ref(&caller.id))
                .await?
                .contains(&caller.id)
        } else {
            false
        };
        let state = Arc::clone(&self.state);
        let user = caller.id.clone();
        let recipients = conversation.member_ids.clone();
        let conversation_key = conversation_id.clone();
        let have = self
            .state
            .receipts
            .advance(
                member_key(&conversation_id, &caller.id),
                wanted,
                move |target| {
                    let state = Arc::clone(&state);
                    let user = user.clone();
                    let recipients = recipients.clone();
                    let conversation_id = conversation_key.clone();
                    async move {
                        let event = |after: Watermarks| {
                            envelope(
                                &conversation_id,
                                EventPayload::ReceiptUpdated(ReceiptUpdated {
                                    conversation_id: conversation_id.clone(),
                                    user_id: user.clone(),
                                    delivered_seq: seq_u64(after.delivered_seq),
                                    // Hidden read receipts: others only learn "delivered".
                                    read_seq: if hidden { 0 } else { seq_u64(after.read_seq) },
                                    recipient_ids: recipients.clone(),
                                }),
                            )
                        };
                        let (after, moved) = state
                            .store
                            .advance_watermarks(&conversation_id, &user, target, event)
                            .await
                            .map_err(|error| ApiError::from(ChatError::from_store(error)))?;
                        if moved {
                            state.relay.notify();
                        }
                        Ok(after)
                    }
                },
            )
            .await?;
        Ok(ReceiptState {
            conversation_id,
            user_id: caller.id.clone(),
            delivered_seq: seq_u64(have.delivered_seq),
            read_seq: seq_u64(have.read_seq),
        })
    }

    async fn unread_counts(
        &self,
        caller: &Caller,
        input: GetUnreadCountsRequest,
    ) -> ChatResult<GetUnreadCountsResponse> {
        let ids = parse_ids(
            &input.conversation_ids,
            "conversation_ids",
            MAX_SYNC_CONVERSATIONS,
        )?;
        let memberships = if ids.is_empty() {
            self.store().memberships_of(&caller.id).await?
        } else {
            let keys: Vec<String> = ids.iter().map(|id| member_key(id, &caller.id)).collect();
            self.store().members_by_key(&keys).await?
        };
        let conversation_ids: Vec<String> = memberships
            .iter()
            .map(|m| m.conversation_id.clone())
            .collect();
        let conversations = self
            .store()
            .conversations_for(&caller.id, &conversation_ids)
            .await?;
        let read: HashMap<&str, &MemberDoc> = memberships
            .iter()
            .map(|m| (m.conversation_id.as_str(), m))
            .collect();
        let counts: Vec<UnreadCount> = conversations
            .iter()
            .map(|c| UnreadCount {
                conversation_id: c.id.clone(),
                unread: unread(c, read.get(c.id.as_str()).copied()),
            })
            .collect();
        Ok(GetUnreadCountsResponse {
            total: counts.iter().map(|c| c.unread).sum(),
            counts,
        })
    }
}

fn parse_history_cursor(cursor: &str) -> Result<HistoryWindow, ApiError> {
    let parsed = cursor.split_once(':').and_then(|(direction, seq)| {
        let seq = seq.parse::<i64>().ok().filter(|seq| *seq >= 0)?;
        match direction {
            "before" => Some(HistoryWindow::Before(Some(seq))),
            "after" => Some(HistoryWindow::After(seq)),
            _ => None,
        }
    });
    parsed.ok_or_else(|| ApiError::invalid("page.cursor", "page.cursor is not a history cursor"))
}

#[tonic::async_trait]
impl ChatService for ChatApi {
    async fn create_private_conversation(
        &self,
        request: Request<CreatePrivateConversationRequest>,
    ) -> Result<Response<Conversation>, Status> {
        self.handle(request, |caller, input| async move {
            self.create_private(&caller, input).await
        })
        .await
    }

    async fn create_group_conversation(
        &self,
        request: Request<CreateGroupConversationRequest>,
    ) -> Result<Response<Conversation>, Status> {
        self.handle(request, |caller, input| async move {
            self.create_group(&caller, input).await
        })
        .await
    }

    async fn get_conversation(
        &self,
        request: Request<GetConversationRequest>,
    ) -> Result<Response<Conversation>, Status> {
        self.handle(request, |caller, input| async move {
            let id = parse_id(&input.conversation_id, "conversation_id")?;
            let conversation = self.conversation(&caller, &id).await?;
            self.full_conversation(&caller, &conversation).await
        })
        .await
    }

    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        self.handle(request, |caller, input| async move {
            ChatApi::list_conversations(self, &caller, input).await
        })
        .await
    }

    async fn update_conversation(
        &self,
        request: Request<UpdateConversationRequest>,
    ) -> Result<Response<Conversation>, Status> {
        self.handle(request, |caller, input| async move {
            let id = parse_id(&input.conversation_id, "conversation_id")?;
            let Some(title) = input.title else {
                return Err(ApiError::invalid("title", "nothing to update: set title").into());
            };
            let title = parse_title(&title)?;
            let conversation = self.conversation(&caller, &id).await?;
            self.require_role(&caller, &conversation, Role::Admin)
                .await?;
            let now = DateTime::now();
            let actor = caller.id.clone();
            self.apply_membership(
                &caller,
                MembershipChange {
                    store: self.store(),
                    guard: doc! { "_id": &id, "member_ids": &caller.id },
                    conversation_update: doc! { "$set": { "title": &title, "updated_at": now } },
                    insert_members: Vec::new(),
                    remove_members: Vec::new(),
                    set_roles: Vec::new(),
                    event: Box::new(move |updated| {
                        envelope(
                            &updated.id,
                            EventPayload::ConversationUpdated(ConversationUpdated {
                                conversation: Some(snapshot(updated)),
                                updated_by: actor.clone(),
                            }),
                        )
                    }),
                },
            )
            .await
        })
        .await
    }

    async fn add_members(
        &self,
        request: Request<AddMembersRequest>,
    ) -> Result<Response<Conversation>, Status> {
        self.handle(request, |caller, input| async move {
            ChatApi::add_members(self, &caller, input).await
        })
        .await
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<Conversation>, Status> {
        self.handle(request, |caller, input| async move {
            ChatApi::remove_member(self, &caller, input).await
        })
        .await
    }

    async fn leave_conversation(
        &self,
        request: Request<LeaveConversationRequest>,
    ) -> Result<Response<LeaveConversationResponse>, Status> {
        self.handle(request, |caller, input| async move {
            let id = parse_id(&input.conversation_id, "conversation_id")?;
            let conversation = self.conversation(&caller, &id).await?;
            self.require_role(&caller, &conversation, Role::Member)
                .await?;
            let target = caller.id.clone();
            self.remove(&caller, &conversation, &target)
                .await
                .or_else(|error| match error {
                    // The caller is gone now, so serving the result is refused.
                    ChatError::NotMember => Ok(Conversation::default()),
                    other => Err(other),
                })?;
            Ok(LeaveConversationResponse {})
        })
        .await
    }

    async fn set_member_role(
        &self,
        request: Request<SetMemberRoleRequest>,
    ) -> Result<Response<Conversation>, Status> {
        self.handle(request, |caller, input| async move {
                let id = parse_id(&input.conversation_id, "conversation_id")?;
                let target = parse_id(&input.user_id, "user_id")?;
                let role = match ProtoRole::try_from(input.role) {
                    Ok(ProtoRole::Member) => Role::Member,
                    Ok(ProtoRole::Admin) => Role::Admin,
                    _ => {
                        return Err(ApiError::invalid(
                            "role",
                            "role must be ROLE_MEMBER or ROLE_ADMIN (use TransferOwnership for the owner)",
                        )
                        .into());
                    }
                };
                let conversation = self.conversation(&caller, &id).await?;
                self.require_role(&caller, &conversation, Role::Owner).await?;
                if target == caller.id {
                    return Err(ApiError::invalid("user_id", "the owner's role changes only by TransferOwnership").into());
                }
                if !conversation.member_ids.contains(&target) {
                    return Err(ApiError::not_found("user_id is not a member of this conversation")
                        .with_field("user_id")
                        .into());
                }
                self.set_roles(&caller, &conversation, vec![(target, role)]).await
        })
        .await
    }

    async fn transfer_ownership(
        &self,
        request: Request<TransferOwnershipRequest>,
    ) -> Result<Response<Conversation>, Status> {
        self.handle(request, |caller, input| async move {
            let id = parse_id(&input.conversation_id, "conversation_id")?;
            let target = parse_id(&input.new_owner_id, "new_owner_id")?;
            let conversation = self.conversation(&caller, &id).await?;
            self.require_role(&caller, &conversation, Role::Owner)
                .await?;
            if target == caller.id {
                return Err(ApiError::invalid("new_owner_id", "you already own this group").into());
            }
            if !conversation.member_ids.contains(&target) {
                return Err(ApiError::not_found(
                    "new_owner_id is not a member of this conversation",
                )
                .with_field("new_owner_id")
                .into());
            }
            let roles = vec![(target, Role::Owner), (caller.id.clone(), Role::Admin)];
            self.set_roles(&caller, &conversation, roles).await
        })
        .await
    }

    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        self.handle(request, |caller, input| async move {
            let id = parse_id(&input.conversation_id, "conversation_id")?;
            let limit = page_limit(input.page.as_ref(), EMBEDDED_MEMBERS, MAX_MEMBER_PAGE)?;
            let after = decode_time_cursor(input.page.as_ref())?;
            self.conversation(&caller, &id).await?;
            let mut members = self.store().list_members(&id, after, limit + 1).await?;
            let has_more = members.len() as i64 > limit;
            members.truncate(limit as usize);
            let next_cursor = match members.last() {
                Some(last) if has_more => time_cursor(last.joined_at, &last.user_id),
                _ => String::new(),
            };
            Ok(ListMembersResponse {
                members: members.iter().map(member_proto).collect(),
                page: Some(PageResponse { next_cursor }),
            })
        })
        .await
    }

    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<Message>, Status> {
        self.handle(request, |caller, input| async move {
            self.send(&caller, input).await
        })
        .await
    }

    async fn edit_message(
        &self,
        request: Request<EditMessageRequest>,
    ) -> Result<Response<Message>, Status> {
        self.handle(request, |caller, input| async move {
            let conversation_id = parse_id(&input.conversation_id, "conversation_id")?;
            let message_id = parse_id(&input.message_id, "message_id")?;
            let content = parse_content(&input.content, false)?;
            self.modify(&caller, &conversation_id, &message_id, false, Some(content))
                .await
        })
        .await
    }

    async fn delete_message(
        &self,
        request: Request<DeleteMessageRequest>,
    ) -> Result<Response<Message>, Status> {
        self.handle(request, |caller, input| async move {
            let conversation_id = parse_id(&input.conversation_id, "conversation_id")?;
            let message_id = parse_id(&input.message_id, "message_id")?;
            self.modify(&caller, &conversation_id, &message_id, true, None)
                .await
        })
        .await
    }

    async fn get_history(
        &self,
        request: Request<GetHistoryRequest>,
    ) -> Result<Response<GetHistoryResponse>, Status> {
        self.handle(request, |caller, input| async move {
            self.history(&caller, input).await
        })
        .await
    }

    async fn sync(&self, request: Request<SyncRequest>) -> Result<Response<SyncResponse>, Status> {
        self.handle(request, |caller, input| async move {
            ChatApi::sync(self, &caller, input).await
        })
        .await
    }

    async fn mark_delivered(
        &self,
        request: Request<MarkRequest>,
    ) -> Result<Response<ReceiptState>, Status> {
        if service_kit::token::has_service_credential(
            request.metadata(),
            self.state.service_token.as_ref(),
        ) {
            let input = request.into_inner();
            let caller = Caller {
                id: parse_id(&input.user_id, "user_id")?,
                token: String::new(),
            };
            return self
                .mark(&caller, input, false)
                .await
                .map(Response::new)
                .map_err(Status::from);
        }
        self.handle(request, |caller, input| async move {
            if !input.user_id.is_empty() && input.user_id != caller.id {
                return Err(ApiError::permission_denied("user_id must be the caller").into());
            }
            self.mark(&caller, input, false).await
        })
        .await
    }

    async fn mark_read(
        &self,
        request: Request<MarkRequest>,
    ) -> Result<Response<ReceiptState>, Status> {
        self.handle(request, |caller, input| async move {
            self.mark(&caller, input, true).await
        })
        .await
    }

    async fn get_unread_counts(
        &self,
        request: Request<GetUnreadCountsRequest>,
    ) -> Result<Response<GetUnreadCountsResponse>, Status> {
        self.handle(request, |caller, input| async move {
            self.unread_counts(&caller, input).await
        })
        .await
    }

    async fn get_message_receipts(
        &self,
        request: Request<GetMessageReceiptsRequest>,
    ) -> Result<Response<MessageReceipts>, Status> {
        self.handle(request, |caller, input| async move {
            let conversation_id = parse_id(&input.conversation_id, "conversation_id")?;
            let message_id = parse_id(&input.message_id, "message_id")?;
            self.conversation(&caller, &conversation_id).await?;
            let message = self
                .store()
                .message(&conversation_id, &message_id)
                .await?
                .ok_or(ChatError::MessageNotFound)?;
            let view = self.receipt_view(&caller, &conversation_id).await?;
            let (delivered, read, recipients) = view.counts(&message.sender_id, message.seq);
            Ok(MessageReceipts {
                message_id,
                statuses: view.statuses(&message.sender_id, message.seq),
                delivered_count: delivered,
                read_count: read,
                recipient_count: recipients,
            })
        })
        .await
    }
}
