//! MongoDB documents and the queries on them. Every query here is served by
//! an index created in [`ChatStore::ensure_indexes`]; every multi-document
//! change runs in one transaction together with its outbox event.
//!
//! - `conversations`: one document per conversation, with `member_ids` (for
//!   membership checks, event recipients and the user's conversation list)
//!   and the sequence counter `last_seq`.
//! - `members`: one document per (conversation, member): role, join time and
//!   the delivered/read watermarks. A receipt is one `$max` on one document.
//! - `messages`: one document per message, unique by (conversation, seq) and
//!   by (conversation, sender, client_msg_id).

use futures::TryStreamExt as _;
use futures::future::BoxFuture;
use mongodb::bson::{self, DateTime, Document, doc};
use mongodb::options::{Hint, IndexOptions, ReturnDocument};
use mongodb::{Client, ClientSession, Collection, Database, IndexModel};
use proto::EventEnvelope;
use serde::{Deserialize, Serialize};
use service_kit::mongo_outbox;
pub use service_kit::mongo_outbox::is_duplicate_key;

use crate::domain::{AttachmentDoc, Kind, MessageKind, Role};

pub type MongoResult<T> = mongodb::error::Result<T>;

const CONVERSATIONS: &str = "conversations";
const MEMBERS: &str = "members";
const MESSAGES: &str = "messages";
pub const PAIR_KEY_INDEX: &str = "pair_key_unique";
pub const CLIENT_MSG_ID_INDEX: &str = "client_msg_id_unique";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastMessage {
    pub id: String,
    pub seq: i64,
    pub sender_id: String,
    pub kind: MessageKind,
    pub preview: String,
    pub sent_at: DateTime,
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub kind: Kind,
    /// Private conversations only: the canonical pair of member ids, unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair_key: Option<String>,
    #[serde(default)]
    pub title: String,
    pub member_ids: Vec<String>,
    #[serde(default)]
    pub bot_ids: Vec<String>,
    pub last_seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<LastMessage>,
    pub last_activity_at: DateTime,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberDoc {
    /// `{conversation_id}:{user_id}`, so a membership is one point lookup.
    #[serde(rename = "_id")]
    pub id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub role: Role,
    pub joined_at: DateTime,
    pub delivered_seq: i64,
    pub read_seq: i64,
    #[serde(default)]
    pub is_bot: bool,
}

pub fn member_key(conversation_id: &str, user_id: &str) -> String {
    format!("{conversation_id}:{user_id}")
}

impl MemberDoc {
    pub fn new(
        conversation_id: &str,
        user_id: &str,
        role: Role,
        is_bot: bool,
        at: DateTime,
    ) -> Self {
        Self {
            id: member_key(conversation_id, user_id),
            conversation_id: conversation_id.to_owned(),
            user_id: user_id.to_owned(),
            role,
            joined_at: at,
            delivered_seq: 0,
            read_seq: 0,
            is_bot,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_id: String,
    pub kind: MessageKind,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<AttachmentDoc>,
    /// Absent (not null) when the client gave none, so the partial unique
    /// index only covers messages that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    pub sent_at: DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime>,
    #[serde(default)]
    pub deleted: bool,
}

/// What a history query starts from.
#[derive(Debug, Clone, Copy)]
pub enum HistoryWindow {
    /// The newest messages older than `before` (exclusive; `None` = newest).
    Before(Option<i64>),
    /// The oldest messages newer than `after` (exclusive).
    After(i64),
}

impl HistoryWindow {
    /// The sequence numbers a page of `limit` covers, given the newest
    /// sequence number: both ends bounded, because sequence numbers are
    /// dense (a send that fails rolls its number back; deletions are
    /// tombstones). So a page reads `limit` index entries on any server,
    /// even one whose planner sorts instead of walking the index backwards.
    pub fn seq_range(self, last_seq: i64, limit: i64) -> (i64, i64) {
        match self {
            HistoryWindow::Before(before) => {
                let end = before.unwrap_or(last_seq + 1).min(last_seq + 1);
                ((end - limit).max(1), end - 1)
            }
            HistoryWindow::After(after) => (after + 1, (after + limit).min(last_seq)),
        }
    }
}

/// Why a transaction gave up on purpose (carried through the driver's
/// retry loop as a custom error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotMember,
    NotFound,
}

pub fn refusal(error: &mongodb::error::Error) -> Option<Refusal> {
    error.get_custom::<Refusal>().copied()
}

/// A member's watermarks after a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub delivered_seq: i64,
    pub read_seq: i64,
}

#[derive(Debug, Clone)]
pub struct ChatStore {
    client: Client,
    database: Database,
    pub conversations: Collection<ConversationDoc>,
    pub members: Collection<MemberDoc>,
    pub messages: Collection<MessageDoc>,
}

fn index(keys: Document, name: &str) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_owned()).build())
        .build()
}

fn unique_index(keys: Document, name: &str, partial: Option<Document>) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .name(name.to_owned())
                .unique(true)
                .partial_filter_expression(partial)
                .build(),
        )
        .build()
}

impl ChatStore {
    pub fn new(database: Database) -> Self {
        Self {
            client: database.client().clone(),
            conversations: database.collection(CONVERSATIONS),
            members: database.collection(MEMBERS),
            messages: database.collection(MESSAGES),
            database,
        }
    }

    /// Creates the collections and indexes (idempotent; run at start-up).
    pub async fn ensure_indexes(&self) -> MongoResult<()> {
        // Transactions cannot create collections on older servers: make them first.
        let existing = self.database.list_collection_names().await?;
        for name in [
            CONVERSATIONS,
            MEMBERS,
            MESSAGES,
            mongo_outbox::OUTBOX_COLLECTION,
            mongo_outbox::LOCKS_COLLECTION,
        ] {
            if !existing.iter().any(|existing| existing == name) {
                match self.database.create_collection(name).await {
                    Ok(()) => {}
                    // Another replica created it first (NamespaceExists).
                    Err(error) if command_code(&error) == Some(48) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        self.conversations
            .create_indexes([
                unique_index(
                    doc! { "pair_key": 1 },
                    PAIR_KEY_INDEX,
                    Some(doc! { "pair_key": { "$exists": true } }),
                ),
                // The user's conversation list, newest activity first.
                index(
                    doc! { "member_ids": 1, "last_activity_at": -1, "_id": -1 },
                    "member_activity",
                ),
            ])
            .await?;
        self.members
            .create_indexes([
                index(
                    doc! { "conversation_id": 1, "joined_at": 1, "user_id": 1 },
                    "conversation_joined",
                ),
                index(doc! { "user_id": 1 }, "user"),
            ])
            .await?;
        self.messages
            .create_indexes([
                unique_index(
                    doc! { "conversation_id": 1, "seq": 1 },
                    "conversation_seq",
                    None,
                ),
                unique_index(
                    doc! { "conversation_id": 1, "sender_id": 1, "client_msg_id": 1 },
                    CLIENT_MSG_ID_INDEX,
                    Some(doc! { "client_msg_id": { "$exists": true } }),
                ),
            ])
            .await?;
        Ok(())
    }

    /// Runs `body` in a transaction, retried by the driver on transient
    /// errors (write conflicts, failovers).
    pub async fn transaction<C, R, F>(&self, context: C, body: F) -> MongoResult<R>
    where
        C: Send,
        R: Send,
        F: for<'b> FnMut(&'b mut ClientSession, &'b mut C) -> BoxFuture<'b, MongoResult<R>>,
    {
        let mut session = self.client.start_session().await?;
        session.start_transaction().and_run(context, body).await
    }

    // ---------------------------------------------------------- conversations

    pub async fn private_by_pair(&self, pair_key: &str) -> MongoResult<Option<ConversationDoc>> {
        self.conversations
            .find_one(doc! { "pair_key": pair_key })
            // The filter implies the partial index's condition; the hint
            // makes servers that do not infer that (SecantusDB) use it too.
            .hint(Hint::Name(PAIR_KEY_INDEX.to_owned()))
            .await
    }

    /// Inserts a conversation, its members and its event atomically. A
    /// duplicate pair key comes back as the driver's duplicate-key error.
    pub async fn create_conversation(
        &self,
        conversation: &ConversationDoc,
        members: &[MemberDoc],
        event: &EventEnvelope,
    ) -> MongoResult<()> {
        let context = (self, conversation, members, event);
        self.transaction(context, |session, (store, conversation, members, event)| {
            Box::pin(async move {
                store
                    .conversations
                    .insert_one(&**conversation)
                    .session(&mut *session)
                    .await?;
                store
                    .members
                    .insert_many(members.iter())
                    .session(&mut *session)
                    .await?;
                mongo_outbox::enqueue(&store.database, session, event).await
            })
        })
        .await
    }

    /// The conversation if `user_id` is a member of it.
    pub async fn conversation_for(
        &self,
        conversation_id: &str,
        user_id: &str,
    ) -> MongoResult<Option<ConversationDoc>> {
        self.conversations
            .find_one(doc! { "_id": conversation_id, "member_ids": user_id })
            .await
    }

    pub async fn conversation_exists(&self, conversation_id: &str) -> MongoResult<bool> {
        Ok(self
            .conversations
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": conversation_id })
            .projection(doc! { "_id": 1 })
            .await?
            .is_some())
    }

    /// The user's conversations by last activity, newest first, after the
    /// keyset cursor `(last_activity_at, id)`.
    pub async fn list_conversations(
        &self,
        user_id: &str,
        after: Option<(DateTime, String)>,
        limit: i64,
    ) -> MongoResult<Vec<ConversationDoc>> {
        let mut filter = doc! { "member_ids": user_id };
        if let Some((at, id)) = after {
            filter.insert(
                "$or",
                vec![
                    doc! { "last_activity_at": { "$lt": at } },
                    doc! { "last_activity_at": at, "_id": { "$lt": id } },
                ],
            );
        }
        self.conversations
            .find(filter)
            .sort(doc! { "last_activity_at": -1, "_id": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await
    }

    /// Several conversations the user belongs to, by id.
    pub async fn conversations_for(
        &self,
        user_id: &str,
        ids: &[String],
    ) -> MongoResult<Vec<ConversationDoc>> {
        self.conversations
            .find(doc! { "_id": { "$in": ids }, "member_ids": user_id })
            .await?
            .try_collect()
            .await
    }

    // ---------------------------------------------------------------- members

    pub async fn member(
        &self,
        conversation_id: &str,
        user_id: &str,
    ) -> MongoResult<Option<MemberDoc>> {
        self.members
            .find_one(doc! { "_id": member_key(conversation_id, user_id) })
            .await
    }

    /// Members by join time, after the keyset cursor `(joined_at, user_id)`.
    pub async fn list_members(
        &self,
        conversation_id: &str,
        after: Option<(DateTime, String)>,
        limit: i64,
    ) -> MongoResult<Vec<MemberDoc>> {
        let mut filter = doc! { "conversation_id": conversation_id };
        if let Some((at, user_id)) = after {
            filter.insert(
                "$or",
                vec![
                    doc! { "joined_at": { "$gt": at } },
                    doc! { "joined_at": at, "user_id": { "$gt": user_id } },
                ],
            );
        }
        self.members
            .find(filter)
            .sort(doc! { "joined_at": 1, "user_id": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await
    }

    /// Every member of one conversation (receipt counts; at most the cap).
    pub async fn all_members(&self, conversation_id: &str) -> MongoResult<Vec<MemberDoc>> {
        self.members
            .find(doc! { "conversation_id": conversation_id })
            .sort(doc! { "joined_at": 1, "user_id": 1 })
            .await?
            .try_collect()
            .await
    }

    /// Member documents by key, in one round trip.
    pub async fn members_by_key(&self, keys: &[String]) -> MongoResult<Vec<MemberDoc>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.members
            .find(doc! { "_id": { "$in": keys } })
            .await?
            .try_collect()
            .await
    }

    /// Members of several conversations (private chats: two each).
    pub async fn members_of(&self, conversation_ids: &[String]) -> MongoResult<Vec<MemberDoc>> {
        if conversation_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.members
            .find(doc! { "conversation_id": { "$in": conversation_ids } })
            .await?
            .try_collect()
            .await
    }

    /// All of a user's memberships (unread counts across conversations).
    pub async fn memberships_of(&self, user_id: &str) -> MongoResult<Vec<MemberDoc>> {
        self.members
            .find(doc! { "user_id": user_id })
            .await?
            .try_collect()
            .await
    }

    /// Applies a membership change to the conversation document and the
    /// member documents, with its event, atomically. `guard` must match the
    /// conversation for the change to apply (e.g. the actor still being a
    /// member); otherwise the transaction fails with [`Refusal::NotMember`].
    pub async fn change_membership(
        &self,
        change: MembershipChange<'_>,
    ) -> MongoResult<ConversationDoc> {
        self.transaction(change, |session, change| {
            Box::pin(async move {
                let store = change.store;
                let updated = store
                    .conversations
                    .find_one_and_update(change.guard.clone(), change.conversation_update.clone())
                    .return_document(ReturnDocument::After)
                    .session(&mut *session)
                    .await?
                    .ok_or_else(|| mongodb::error::Error::custom(Refusal::NotMember))?;
                if !change.insert_members.is_empty() {
                    store
                        .members
                        .insert_many(change.insert_members.iter())
                        .session(&mut *session)
                        .await?;
                }
                if !change.remove_members.is_empty() {
                    let keys: Vec<String> = change
                        .remove_members
                        .iter()
                        .map(|user| member_key(&updated.id, user))
                        .collect();
                    store
                        .members
                        .delete_many(doc! { "_id": { "$in": keys } })
                        .session(&mut *session)
                        .await?;
                }
                for (user_id, role) in &change.set_roles {
                    store
                        .members
                        .update_one(
                            doc! { "_id": member_key(&updated.id, user_id) },
                            doc! { "$set": { "role": role.as_str() } },
                        )
                        .session(&mut *session)
                        .await?;
                }
                let event = (change.event)(&updated);
                mongo_outbox::enqueue(&store.database, session, &event).await?;
                Ok(updated)
            })
        })
        .await
    }

    // --------------------------------------------------------------- messages

    pub async fn message(
        &self,
        conversation_id: &str,
        message_id: &str,
    ) -> MongoResult<Option<MessageDoc>> {
        self.messages
            .find_one(doc! { "_id": message_id, "conversation_id": conversation_id })
            .await
    }

    pub async fn message_by_client_id(
        &self,
        conversation_id: &str,
        sender_id: &str,
        client_msg_id: &str,
    ) -> MongoResult<Option<MessageDoc>> {
        self.messages
            .find_one(doc! {
                "conversation_id": conversation_id,
                "sender_id": sender_id,
                "client_msg_id": client_msg_id,
            })
            .hint(Hint::Name(CLIENT_MSG_ID_INDEX.to_owned()))
            .await
    }

    /// Stores a message: takes the next sequence number, inserts the
    /// message, moves the conversation's activity and preview and the
    /// sender's own watermarks, and enqueues its event — one transaction, so
    /// a failed send leaves no gap in the sequence. A duplicate
    /// `client_msg_id` comes back as the driver's duplicate-key error.
    pub async fn insert_message<E>(
        &self,
        draft: &MessageDoc,
        event: E,
    ) -> MongoResult<(MessageDoc, ConversationDoc)>
    where
        E: Fn(&MessageDoc, &ConversationDoc) -> EventEnvelope + Send + Sync,
    {
        let context = (self, draft, &event);
        self.transaction(context, |session, (store, draft, event)| {
            Box::pin(async move {
                let now = draft.sent_at;
                let conversation = store
                    .conversations
                    .find_one_and_update(
                        doc! { "_id": &draft.conversation_id, "member_ids": &draft.sender_id },
                        doc! { "$inc": { "last_seq": 1_i64 }, "$set": { "last_activity_at": now } },
                    )
                    .return_document(ReturnDocument::After)
                    .session(&mut *session)
                    .await?
                    .ok_or_else(|| mongodb::error::Error::custom(Refusal::NotMember))?;
                let mut message = (*draft).clone();
                message.seq = conversation.last_seq;
                store
                    .messages
                    .insert_one(&message)
                    .session(&mut *session)
                    .await?;
                let last = bson::serialize_to_bson(&last_message(&message))?;
                store
                    .conversations
                    .update_one(
                        doc! { "_id": &message.conversation_id },
                        doc! { "$set": { "last_message": last } },
                    )
                    .session(&mut *session)
                    .await?;
                // Sending implies having read everything before (as Telegram).
                store
                    .members
                    .update_one(
                        doc! { "_id": member_key(&message.conversation_id, &message.sender_id) },
                        doc! { "$max": { "delivered_seq": message.seq, "read_seq": message.seq } },
                    )
                    .session(&mut *session)
                    .await?;
                mongo_outbox::enqueue(&store.database, session, &event(&message, &conversation))
                    .await?;
                Ok((message, conversation))
            })
        })
        .await
    }

    /// Rewrites a message (edit or tombstone) with its event; refreshes the
    /// conversation's preview if it is the last message.
    pub async fn update_message<E>(
        &self,
        conversation_id: &str,
        message_id: &str,
        set: Document,
        event: E,
    ) -> MongoResult<MessageDoc>
    where
        E: Fn(&MessageDoc) -> EventEnvelope + Send + Sync,
    {
        let context = (self, conversation_id, message_id, set, &event);
        self.transaction(
            context,
            |session, (store, conversation_id, message_id, set, event)| {
                Box::pin(async move {
                    let message = store
                        .messages
                        .find_one_and_update(
                            doc! { "_id": *message_id, "conversation_id": *conversation_id },
                            doc! { "$set": set.clone() },
                        )
                        .return_document(ReturnDocument::After)
                        .session(&mut *session)
                        .await?
                        .ok_or_else(|| mongodb::error::Error::custom(Refusal::NotFound))?;
                    let last = bson::serialize_to_bson(&last_message(&message))?;
                    store
                        .conversations
                        .update_one(
                            doc! { "_id": *conversation_id, "last_message.id": &message.id },
                            doc! { "$set": { "last_message": last } },
                        )
                        .session(&mut *session)
                        .await?;
                    mongo_outbox::enqueue(&store.database, session, &event(&message)).await?;
                    Ok(message)
                })
            },
        )
        .await
    }

    /// One page of history, always returned in ascending sequence order.
    pub async fn history(
        &self,
        conversation_id: &str,
        window: HistoryWindow,
        last_seq: i64,
        limit: i64,
    ) -> MongoResult<Vec<MessageDoc>> {
        let (first, last) = window.seq_range(last_seq, limit);
        if first > last {
            return Ok(Vec::new());
        }
        self.messages
            .find(doc! {
                "conversation_id": conversation_id,
                "seq": { "$gte": first, "$lte": last },
            })
            .sort(doc! { "conversation_id": 1, "seq": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await
    }

    // --------------------------------------------------------------- receipts

    /// Moves a member's watermarks forward (`$max`: never backwards) and, if
    /// they moved, enqueues `event(new)` in the same transaction. Returns
    /// the watermarks after, and whether they moved.
    pub async fn advance_watermarks<E>(
        &self,
        conversation_id: &str,
        user_id: &str,
        wanted: Watermarks,
        event: E,
    ) -> MongoResult<(Watermarks, bool)>
    where
        E: Fn(Watermarks) -> EventEnvelope + Send + Sync,
    {
        let key = member_key(conversation_id, user_id);
        let context = (self, key, wanted, &event);
        self.transaction(context, |session, (store, key, wanted, event)| {
            Box::pin(async move {
                let moved = store
                    .members
                    .find_one_and_update(
                        doc! {
                            "_id": &*key,
                            "$or": [
                                { "delivered_seq": { "$lt": wanted.delivered_seq } },
                                { "read_seq": { "$lt": wanted.read_seq } },
                            ],
                        },
                        doc! { "$max": {
                            "delivered_seq": wanted.delivered_seq,
                            "read_seq": wanted.read_seq,
                        } },
                    )
                    .return_document(ReturnDocument::After)
                    .session(&mut *session)
                    .await?;
                match moved {
                    Some(member) => {
                        let after = Watermarks {
                            delivered_seq: member.delivered_seq,
                            read_seq: member.read_seq,
                        };
                        mongo_outbox::enqueue(&store.database, session, &event(after)).await?;
                        Ok((after, true))
                    }
                    None => {
                        let member = store
                            .members
                            .find_one(doc! { "_id": &*key })
                            .session(&mut *session)
                            .await?
                            .ok_or_else(|| mongodb::error::Error::custom(Refusal::NotMember))?;
                        Ok((
                            Watermarks {
                                delivered_seq: member.delivered_seq,
                                read_seq: member.read_seq,
                            },
                            false,
                        ))
                    }
                }
            })
        })
        .await
    }
}

/// A membership change for [`ChatStore::change_membership`].
pub struct MembershipChange<'a> {
    pub store: &'a ChatStore,
    pub guard: Document,
    pub conversation_update: Document,
    pub insert_members: Vec<MemberDoc>,
    pub remove_members: Vec<String>,
    pub set_roles: Vec<(String, Role)>,
    pub event: Box<dyn Fn(&ConversationDoc) -> EventEnvelope + Send + Sync + 'a>,
}

impl std::fmt::Debug for MembershipChange<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipChange")
            .field("guard", &self.guard)
            .field("conversation_update", &self.conversation_update)
            .field("insert_members", &self.insert_members)
            .field("remove_members", &self.remove_members)
            .field("set_roles", &self.set_roles)
            .finish_non_exhaustive()
    }
}

pub fn last_message(message: &MessageDoc) -> LastMessage {
    LastMessage {
        id: message.id.clone(),
        seq: message.seq,
        sender_id: message.sender_id.clone(),
        kind: message.kind,
        preview: if message.deleted {
            String::new()
        } else {
            crate::domain::preview(&message.content)
        },
        sent_at: message.sent_at,
        deleted: message.deleted,
    }
}

fn command_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(failure) => Some(failure.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::HistoryWindow;

    #[test]
    fn history_pages_are_bounded_ranges() {
        // Newest page of a 120-message conversation, then older ones.
        assert_eq!(HistoryWindow::Before(None).seq_range(120, 50), (71, 120));
        assert_eq!(HistoryWindow::Before(Some(71)).seq_range(120, 50), (21, 70));
        assert_eq!(HistoryWindow::Before(Some(21)).seq_range(120, 50), (1, 20));
        // An anchor past the end is the newest page; nothing before seq 1.
        assert_eq!(
            HistoryWindow::Before(Some(999)).seq_range(120, 50),
            (71, 120)
        );
        let (first, last) = HistoryWindow::Before(Some(1)).seq_range(120, 50);
        assert!(first > last);
        // Forward: after the anchor, never past the newest.
        assert_eq!(HistoryWindow::After(100).seq_range(120, 50), (101, 120));
        assert_eq!(HistoryWindow::After(0).seq_range(120, 50), (1, 50));
        let (first, last) = HistoryWindow::After(120).seq_range(120, 50);
        assert!(first > last);
        let (first, last) = HistoryWindow::Before(None).seq_range(0, 50);
        assert!(first > last, "empty conversation");
    }
}
