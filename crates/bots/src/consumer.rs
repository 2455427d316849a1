//! `message.created` → bot replies. Each (event, bot) pair is claimed in
//! Redis so a redelivered event never answers twice; replies also carry a
//! client message id derived from the event, so even a retry after a crash
//! between "sent" and "marked done" is deduplicated by chat.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use proto::chat::v1::{MessageKind, SendMessageRequest};
use proto::events::v1::{ChatMessage, MessageCreated, TypingChanged};
use proto::users::v1::GetProfilesRequest;
use proto::users::v1::users_service_client::UsersServiceClient;
use serde_json::json;
use service_kit::amqp::{Claim, EventHandler, EventPublisher, HandlerError, IdempotencyStore};
use service_kit::cache::TtlCache;
use service_kit::events;
use service_kit::grpc::{CallKind, Downstream};

use crate::accounts::BotAccounts;
use crate::definition::Bot;
use crate::dialogues::DialogueStore;
use crate::engine::{self, Incoming};
use crate::reload::Definitions;
use crate::webhook;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplyLabels {
    pub bot: String,
    pub matched_by: String,
}

#[derive(Debug)]
pub struct BotRuntime {
    pub definitions: Arc<Definitions>,
    pub accounts: Arc<BotAccounts>,
    pub dialogues: DialogueStore,
    pub idempotency: IdempotencyStore,
    pub chat: Downstream,
    pub users: Downstream,
    pub publisher: Arc<EventPublisher>,
    pub http: reqwest::Client,
    pub sender_names: TtlCache<String, String>,
    pub replies: Family<ReplyLabels, Counter>,
}

impl BotRuntime {
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "replies",
            "Replies sent, by bot and by what matched",
            self.replies.clone(),
        );
    }
}

fn transient(what: &str, error: impl std::fmt::Display) -> HandlerError {
    HandlerError::Transient(format!("{what}: {error}"))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl BotRuntime {
    async fn sender_name(&self, token: &str, sender_id: &str) -> String {
        if let Some(name) = self.sender_names.get(&sender_id.to_owned()) {
            return name;
        }
        let request = GetProfilesRequest {
            user_ids: vec![sender_id.to_owned()],
        };
        let profile = self
            .users
            .call(
                CallKind::Idempotent,
                Some(token),
                request,
                |channel, request| async move {
                    UsersServiceClient::new(channel).get_profiles(request).await
                },
            )
            .await
            .ok()
            .and_then(|response| response.profiles.into_iter().next());
        match profile {
            Some(profile) => {
                let name = if profile.display_name.trim().is_empty() {
                    profile.username
                } else {
                    profile.display_name
                };
                self.sender_names.put(sender_id.to_owned(), name.clone());
                name
            }
            // Users unreachable: answer anyway, without the name.
            None => "there".to_owned(),
        }
    }

    async fn typing(&self, created: &MessageCreated, bot_user: &str, typing: bool) {
        let Some(message) = &created.message else {
            return;
        };
        let event = events::envelope(
            "bots",
            message.conversation_id.clone(),
            proto::EventPayload::TypingChanged(TypingChanged {
                conversation_id: message.conversation_id.clone(),
                user_id: bot_user.to_owned(),
                typing,
                recipient_ids: created
                    .recipient_ids
                    .iter()
                    .filter(|id| *id != bot_user)
                    .cloned()
                    .collect(),
            }),
        );
        if let Err(error) = self.publisher.publish(&event).await {
            tracing::debug!(%error, "typing not published");
        }
    }

    async fn send(
        &self,
        token: &str,
        message: &ChatMessage,
        group: bool,
        client_msg_id: String,
        content: String,
    ) -> Result<(), HandlerError> {
        let request = SendMessageRequest {
            conversation_id: message.conversation_id.clone(),
            kind: MessageKind::Text as i32,
            content,
            attachment: None,
            client_msg_id,
            // In groups a reply quotes the message it answers, as Telegram bots do.
            reply_to: if group {
                message.id.clone()
            } else {
                String::new()
            },
        };
        let result = self
            .chat
            .call(
                CallKind::Idempotent,
                Some(token),
                request,
                |channel, request| async move {
                    ChatServiceClient::new(channel).send_message(request).await
                },
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            // The bot was removed or blocked meanwhile: nothing to retry.
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::PermissionDenied
                        | tonic::Code::NotFound
                        | tonic::Code::InvalidArgument
                ) =>
            {
                tracing::info!(code = ?status.code(), message = status.message(), "bot reply refused by chat");
                Ok(())
            }
            Err(status) => Err(transient("sending the reply", status.message())),
        }
    }

    /// One bot's answer to one message.
    async fn answer(
        &self,
        event_id: &str,
        bot: &Bot,
        created: &MessageCreated,
        message: &ChatMessage,
    ) -> Result<(), HandlerError> {
        let (bot_user, token) = self
            .accounts
            .credentials(bot)
            .await
            .map_err(|e| transient("bot credentials", e))?;
        let group = created.conversation_kind == "group";
        let snapshot = self
            .dialogues
            .get(&bot.name, &message.conversation_id, &message.sender_id)
            .await
            .map_err(|e| transient("reading dialogue state", e))?;
        let sender_name = self.sender_name(&token, &message.sender_id).await;
        let now = now_ms();
        let response = engine::respond(
            bot,
            &Incoming {
                text: &message.content,
                sender_name: &sender_name,
                group,
            },
            snapshot.state.as_ref(),
            now,
        );
        let mut replies = response.replies.clone();
        if response.forward_to_webhook
            && let Some(hook) = &bot.webhook
        {
            self.typing(created, &bot_user, true).await;
            let payload = json!({
                "event_id": event_id,
                "bot": bot.name,
                "conversation": { "id": message.conversation_id, "kind": created.conversation_kind },
                "message": {
                    "id": message.id, "seq": message.seq, "text": message.content,
                    "sent_at": message.sent_at.as_ref().map(|t| t.seconds),
                },
                "sender": { "id": message.sender_id, "name": sender_name },
            });
            let answered = webhook::call(&self.http, hook, &payload).await;
            self.typing(created, &bot_user, false).await;
            match answered {
                Ok(answer) => replies = answer,
                Err(error) if error.is_transient() => return Err(transient("webhook", error)),
                Err(error) => {
                    tracing::warn!(bot = %bot.name, %error, "webhook gave no reply");
                }
            }
        }
        for (i, reply) in replies.into_iter().enumerate() {
            if reply.trim().is_empty() {
                continue;
            }
            self.send(&token, message, group, format!("b:{event_id}:{i}"), reply)
                .await?;
            self.replies
                .get_or_create(&ReplyLabels {
                    bot: bot.name.clone(),
                    matched_by: response.matched_by.as_str().to_owned(),
                })
                .inc();
        }
        let applied = self
            .dialogues
            .apply(
                &bot.name,
                &message.conversation_id,
                &message.sender_id,
                &snapshot,
                &response.dialogue,
                now,
            )
            .await
            .map_err(|e| transient("saving dialogue state", e))?;
        if !applied {
            // Another answer moved the dialogue meanwhile; recompute from it
            // (the reply already sent is deduplicated by its client id).
            return Err(HandlerError::Transient(
                "dialogue state changed concurrently".into(),
            ));
        }
        Ok(())
    }

    /// Claims (event, bot), answers, and marks it done.
    async fn answer_once(
        &self,
        event_id: &str,
        bot: &Bot,
        created: &MessageCreated,
        message: &ChatMessage,
    ) -> Result<(), HandlerError> {
        let key = format!("{event_id}:{}", bot.name);
        match self
            .idempotency
            .claim(&key)
            .await
            .map_err(|e| transient("claim", e))?
        {
            Claim::Done => return Ok(()),
            Claim::InProgress => {
                return Err(HandlerError::Transient(
                    "another replica is answering".into(),
                ));
            }
            Claim::Acquired => {}
        }
        match self.answer(event_id, bot, created, message).await {
            Ok(()) => self
                .idempotency
                .complete(&key)
                .await
                .map_err(|e| transient("marking done", e)),
            Err(error) => {
                if let Err(release) = self.idempotency.release(&key).await {
                    tracing::warn!(%release, "could not release a claim; it expires by itself");
                }
                Err(error)
            }
        }
    }
}

/// How long to wait for bot accounts before leaving an event for later.
const ACCOUNTS_WAIT: Duration = Duration::from_secs(2);

impl EventHandler for BotRuntime {
    async fn handle(&self, envelope: proto::EventEnvelope) -> Result<(), HandlerError> {
        let Some(proto::EventPayload::MessageCreated(created)) = envelope.payload else {
            return Ok(());
        };
        let Some(message) = created.message.clone() else {
            return Ok(());
        };
        if created.bot_member_ids.is_empty()
            || message.deleted
            || message.kind != "text"
            // Bots do not answer bots (no reply loops).
            || created.bot_member_ids.contains(&message.sender_id)
        {
            return Ok(());
        }
        let set = self.definitions.current();
        if !self.accounts.all_provisioned(&set) {
            tokio::time::sleep(ACCOUNTS_WAIT).await;
            if self.accounts.provision_missing(&set).await > 0 {
                return Err(HandlerError::Transient(
                    "bot accounts not provisioned yet".into(),
                ));
            }
        }
        for bot_user in &created.bot_member_ids {
            let Some(bot) = self
                .accounts
                .bot_name(bot_user)
                .and_then(|name| set.get(&name).cloned())
            else {
                continue;
            };
            self.answer_once(&envelope.id, &bot, &created, &message)
                .await?;
        }
        Ok(())
    }
}
