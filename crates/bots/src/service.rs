//! The bots gRPC API: what runs, whether the definitions loaded, and a dry
//! run of a message against a bot. Any signed-in caller may ask.

use std::sync::Arc;

use proto::bots::v1::bots_service_server::BotsService;
use proto::bots::v1::{
    Bot as BotMessage, Command as CommandMessage, DefinitionsStatus, GetBotRequest,
    GetDefinitionsStatusRequest, ListBotsRequest, ListBotsResponse, PreviewRequest,
    PreviewResponse,
};
use service_kit::ApiError;
use service_kit::token::TokenVerifier;
use tonic::{Request, Response, Status};

use crate::accounts::BotAccounts;
use crate::definition::Bot;
use crate::engine::{self, Incoming};
use crate::reload::Definitions;

#[derive(Debug, Clone)]
pub struct BotsApi {
    pub definitions: Arc<Definitions>,
    pub accounts: Arc<BotAccounts>,
    pub verifier: TokenVerifier,
}

fn timestamp(time: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

impl BotsApi {
    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.verifier
            .authenticate(request.metadata())
            .map(|_| ())
            .map_err(|error| Status::from(ApiError::from(error)))
    }

    fn bot_message(&self, bot: &Bot) -> BotMessage {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        BotMessage {
            name: bot.name.clone(),
            display_name: bot.display_name.clone(),
            description: bot.description.clone(),
            user_id: self.accounts.user_id(&bot.name).unwrap_or_default(),
            commands: bot
                .commands
                .iter()
                .map(|c| CommandMessage {
                    name: c.name.clone(),
                    description: c.description.clone(),
                    usage: c.usage(),
                })
                .collect(),
            rule_count: count(bot.rules.len()),
            dialogue_count: count(bot.dialogues.len()),
            intent_count: count(bot.intents.as_ref().map_or(0, |i| i.items.len())),
            webhook: bot.webhook.is_some(),
            source: bot.source.clone(),
        }
    }

    fn find(&self, name: &str) -> Result<Arc<Bot>, Status> {
        if name.trim().is_empty() {
            return Err(ApiError::invalid("name", "name is required").into());
        }
        self.definitions
            .current()
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no bot named {name:?}")).into())
    }
}

#[tonic::async_trait]
impl BotsService for BotsApi {
    async fn list_bots(
        &self,
        request: Request<ListBotsRequest>,
    ) -> Result<Response<ListBotsResponse>, Status> {
        self.authenticate(&request)?;
        let set = self.definitions.current();
        Ok(Response::new(ListBotsResponse {
            bots: set.bots.iter().map(|bot| self.bot_message(bot)).collect(),
        }))
    }

    async fn get_bot(
        &self,
        request: Request<GetBotRequest>,
    ) -> Result<Response<BotMessage>, Status> {
        self.authenticate(&request)?;
        let bot = self.find(&request.get_ref().name)?;
        Ok(Response::new(self.bot_message(&bot)))
    }

    async fn get_definitions_status(
        &self,
        request: Request<GetDefinitionsStatusRequest>,
    ) -> Result<Response<DefinitionsStatus>, Status> {
        self.authenticate(&request)?;
        let status = self.definitions.status();
        Ok(Response::new(DefinitionsStatus {
            path: status.path,
            loaded_digest: status.loaded_digest,
            loaded_at: status.loaded_at.map(timestamp),
            bot_count: u32::try_from(status.bot_count).unwrap_or(u32::MAX),
            last_error: status.last_error.unwrap_or_default(),
            last_error_at: status.last_error_at.map(timestamp),
        }))
    }

    async fn preview(
        &self,
        request: Request<PreviewRequest>,
    ) -> Result<Response<PreviewResponse>, Status> {
        self.authenticate(&request)?;
        let input = request.into_inner();
        let bot = self.find(&input.bot_name)?;
        let group = match input.conversation_kind.as_str() {
            "" | "private" => false,
            "group" => true,
            _ => {
                return Err(ApiError::invalid(
                    "conversation_kind",
                    "conversation_kind must be private or group",
                )
                .into());
            }
        };
        let response = engine::respond(
            &bot,
            &Incoming {
                text: &input.text,
                sender_name: if input.sender_display_name.is_empty() {
                    "there"
                } else {
                    &input.sender_display_name
                },
                group,
            },
            None,
            chrono::Utc::now().timestamp_millis(),
        );
        Ok(Response::new(PreviewResponse {
            replies: response.replies,
            matched_by: response.matched_by.as_str().to_owned(),
            matched_name: response.matched_name,
            confidence: response.confidence,
        }))
    }
}
