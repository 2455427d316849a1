//! Bots are platform users: each defined bot gets an account from auth
//! (`ProvisionBot`, with the service credential), which also hands out a
//! short-lived access token to act as the bot towards chat and users.
//! Accounts are provisioned when definitions load and re-tried until they
//! all exist; tokens are renewed shortly before they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use proto::auth::v1::ProvisionBotRequest;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use secrecy::{ExposeSecret as _, SecretString};
use service_kit::ApiError;
use service_kit::grpc::{CallKind, Downstream};

use crate::definition::{Bot, BotSet};

/// Tokens are renewed when less than this is left.
const RENEW_BEFORE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
struct Account {
    user_id: String,
    token: String,
    expires_at: SystemTime,
}

#[derive(Debug)]
pub struct BotAccounts {
    auth: Downstream,
    service_token: SecretString,
    by_name: Mutex<HashMap<String, Account>>,
}

impl BotAccounts {
    pub fn new(auth: Downstream, service_token: SecretString) -> Self {
        Self {
            auth,
            service_token,
            by_name: Mutex::new(HashMap::new()),
        }
    }

    fn accounts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Account>> {
        self.by_name
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn provision(&self, bot: &Bot) -> Result<Account, ApiError> {
        let credential = tonic::metadata::MetadataValue::try_from(
            self.service_token.expose_secret(),
        )
        .map_err(|_| ApiError::internal("AUTH_SERVICE_TOKEN is not a valid header value"))?;
        let request = ProvisionBotRequest {
            username: bot.name.clone(),
            display_name: bot.display_name.clone(),
        };
        let response = self
            .auth
            .call_as_service(
                CallKind::Idempotent,
                &credential,
                request,
                |channel, request| async move {
                    AuthServiceClient::new(channel).provision_bot(request).await
                },
            )
            .await
            .map_err(|status| ApiError::from_status(&status))?;
        let user = response
            .user
            .ok_or_else(|| ApiError::internal("ProvisionBot returned no user"))?;
        let expires_at = response
            .access_expires_at
            .and_then(|t| SystemTime::try_from(t).ok())
            .unwrap_or_else(SystemTime::now);
        let account = Account {
            user_id: user.id,
            token: response.access_token,
            expires_at,
        };
        self.accounts().insert(bot.name.clone(), account.clone());
        Ok(account)
    }

    /// Provisions every bot of `set` that has no account yet; returns how
    /// many are still missing.
    pub async fn provision_missing(&self, set: &BotSet) -> usize {
        let mut missing = 0;
        for bot in &set.bots {
            if self.accounts().contains_key(&bot.name) {
                continue;
            }
            if let Err(error) = self.provision(bot).await {
                tracing::warn!(bot = %bot.name, %error, "could not provision the bot's account yet");
                missing += 1;
            }
        }
        missing
    }

    /// Whether every bot of `set` has an account (events wait until then).
    pub fn all_provisioned(&self, set: &BotSet) -> bool {
        let accounts = self.accounts();
        set.bots.iter().all(|bot| accounts.contains_key(&bot.name))
    }

    /// The bot a platform user id belongs to.
    pub fn bot_name(&self, user_id: &str) -> Option<String> {
        self.accounts()
            .iter()
            .find(|(_, account)| account.user_id == user_id)
            .map(|(name, _)| name.clone())
    }

    pub fn user_id(&self, bot: &str) -> Option<String> {
        self.accounts().get(bot).map(|a| a.user_id.clone())
    }

    /// The bot's user id and a valid access token.
    pub async fn credentials(&self, bot: &Bot) -> Result<(String, String), ApiError> {
        let cached = self.accounts().get(&bot.name).cloned();
        let account = match cached {
            Some(account)
                if account
                    .expires_at
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > RENEW_BEFORE) =>
            {
                account
            }
            _ => self.provision(bot).await?,
        };
        Ok((account.user_id, account.token))
    }
}
