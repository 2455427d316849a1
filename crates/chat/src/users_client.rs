//! What chat asks the users service: may A message B (blocks, "contacts
//! only"), who is a bot, who hides read receipts. Answers are cached briefly
//! (a few seconds) so a burst of sends costs one call, and a block takes
//! effect within the cache TTL.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proto::users::v1::users_service_client::UsersServiceClient;
use proto::users::v1::{
    CheckMessagePermissionsRequest, Denial, GetProfilesRequest, GetReceiptPreferencesRequest,
};
use service_kit::ApiError;
use service_kit::cache::TtlCache;
use service_kit::grpc::{CallKind, Downstream};

#[derive(Debug)]
pub struct UsersClient {
    downstream: Downstream,
    permissions: TtlCache<(String, String), Option<Denial>>,
    receipts_hidden: TtlCache<String, bool>,
}

/// The largest batch the users service takes in one call.
const USERS_BATCH: usize = 500;

impl UsersClient {
    pub fn new(downstream: Downstream, ttl: Duration) -> Self {
        Self {
            downstream,
            permissions: TtlCache::new(ttl),
            receipts_hidden: TtlCache::new(ttl),
        }
    }

    fn client(channel: tonic::transport::Channel) -> UsersServiceClient<tonic::transport::Channel> {
        UsersServiceClient::new(channel)
    }

    /// For each recipient, why `sender` may not message them (None: allowed).
    /// Asked with the sender's own token: users answers only about the caller.
    pub async fn message_denials(
        &self,
        bearer: &str,
        sender: &str,
        recipients: &[String],
    ) -> Result<HashMap<String, Option<Denial>>, ApiError> {
        let keys: Vec<(String, String)> = recipients
            .iter()
            .map(|recipient| (sender.to_owned(), recipient.clone()))
            .collect();
        let (found, missing) = self.permissions.get_many(&keys);
        let mut denials: HashMap<String, Option<Denial>> = found
            .into_iter()
            .map(|((_, recipient), denial)| (recipient, denial))
            .collect();
        for chunk in missing.chunks(USERS_BATCH) {
            let request = CheckMessagePermissionsRequest {
                sender_id: sender.to_owned(),
                recipient_ids: chunk
                    .iter()
                    .map(|(_, recipient)| recipient.clone())
                    .collect(),
            };
            let response = self
                .downstream
                .call(
                    CallKind::Idempotent,
                    Some(bearer),
                    request,
                    |channel, request| async move {
                        Self::client(channel)
                            .check_message_permissions(request)
                            .await
                    },
                )
                .await
                .map_err(|status| ApiError::from_status(&status))?;
            let fresh: Vec<((String, String), Option<Denial>)> = response
                .permissions
                .into_iter()
                .map(|permission| {
                    let denial = if permission.allowed {
                        None
                    } else {
                        Some(Denial::try_from(permission.denial).unwrap_or(Denial::Unspecified))
                    };
                    ((sender.to_owned(), permission.recipient_id), denial)
                })
                .collect();
            denials.extend(
                fresh
                    .iter()
                    .map(|((_, recipient), denial)| (recipient.clone(), *denial)),
            );
            self.permissions.put_many(fresh);
        }
        // Ids users did not answer about do not exist.
        for recipient in recipients {
            denials
                .entry(recipient.clone())
                .or_insert(Some(Denial::UnknownUser));
        }
        Ok(denials)
    }

    /// Which of `ids` exist, and whether each is a bot (absent: unknown user).
    pub async fn bot_flags(
        &self,
        bearer: &str,
        ids: &[String],
    ) -> Result<HashMap<String, bool>, ApiError> {
        let mut flags = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(USERS_BATCH) {
            let request = GetProfilesRequest {
                user_ids: chunk.to_vec(),
            };
            let response =
                self.downstream
                    .call(
                        CallKind::Idempotent,
                        Some(bearer),
                        request,
                        |channel, request| async move {
                            Self::client(channel).get_profiles(request).await
                        },
                    )
                    .await
                    .map_err(|status| ApiError::from_status(&status))?;
            flags.extend(
                response
                    .profiles
                    .into_iter()
                    .map(|profile| (profile.user_id, profile.is_bot)),
            );
        }
        Ok(flags)
    }

    /// Which of `ids` do not send read receipts (privacy setting).
    pub async fn receipts_hidden(
        &self,
        bearer: &str,
        ids: &[String],
    ) -> Result<HashSet<String>, ApiError> {
        let (found, missing) = self.receipts_hidden.get_many(ids);
        let mut hidden: HashSet<String> = found
            .into_iter()
            .filter_map(|(id, hidden)| hidden.then_some(id))
            .collect();
        for chunk in missing.chunks(USERS_BATCH) {
            let request = GetReceiptPreferencesRequest {
                user_ids: chunk.to_vec(),
            };
            let response = self
                .downstream
                .call(
                    CallKind::Idempotent,
                    Some(bearer),
                    request,
                    |channel, request| async move {
                        Self::client(channel).get_receipt_preferences(request).await
                    },
                )
                .await
                .map_err(|status| ApiError::from_status(&status))?;
            let disabled: HashSet<String> = response.receipts_disabled.into_iter().collect();
            self.receipts_hidden
                .put_many(chunk.iter().map(|id| (id.clone(), disabled.contains(id))));
            hidden.extend(disabled);
        }
        Ok(hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_entries_expire() {
        let cache: TtlCache<String, bool> = TtlCache::new(Duration::from_millis(30));
        cache.put_many([("a".to_owned(), true)]);
        let keys = ["a".to_owned(), "b".to_owned()];
        let (found, missing) = cache.get_many(&keys);
        assert_eq!(found.get("a"), Some(&true));
        assert_eq!(missing, vec!["b".to_owned()]);
        std::thread::sleep(Duration::from_millis(40));
        let (found, missing) = cache.get_many(&keys);
        assert!(found.is_empty());
        assert_eq!(missing.len(), 2);
    }
}
