//! The `platform.users.v1.UsersService` gRPC API. Privacy is enforced here,
//! where data is served: what a caller sees of another user depends on the
//! owner's settings and their relation (contact, blocked).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use proto::common::v1::{PageRequest, PageResponse};
use proto::events::v1::{PresenceChanged, ProfileUpdated};
use proto::users::v1::users_service_server::UsersService;
use proto::users::v1::{
    Audience, BlockRequest, BlockResponse, CheckMessagePermissionsRequest,
    CheckMessagePermissionsResponse, ContactRequest, ContactResponse, Denial,
    DevicePresenceRequest, DevicesHeartbeatRequest, DevicesHeartbeatResponse, GetMyProfileRequest,
    GetPresenceRequest, GetPresenceResponse, GetPrivacyRequest, GetProfilesRequest,
    GetProfilesResponse, GetReceiptPreferencesRequest, GetReceiptPreferencesResponse,
    ListBlockedRequest, ListContactsRequest, ListUsersPage, MessagePermission, Presence,
    PresenceAck, PrivacySettings, Profile, SearchHit, SearchUsersRequest, SearchUsersResponse,
    UpdatePrivacyRequest, UpdateProfileRequest,
};
use service_kit::amqp::EventPublisher;
use service_kit::pg_outbox::OutboxRelay;
use service_kit::token::TokenVerifier;
use service_kit::{ApiError, events};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{self, Settings, audience_from_db, audience_to_db};
use crate::error::UsersError;
use crate::presence::{PresenceState, PresenceStore, Transition};
use crate::profiles::{self, PrivacyChanges, ProfileChanges, ProfileRow, Relation, UserList};

/// Largest batch of ids one call may ask about.
pub const MAX_BATCH: usize = 500;
/// Largest batch of devices one `DevicesHeartbeat` may renew.
pub const MAX_HEARTBEAT_BATCH: usize = 5_000;
const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

#[derive(Debug)]
pub struct UsersState {
    pub pool: PgPool,
    pub presence: PresenceStore,
    pub verifier: TokenVerifier,
    pub publisher: Arc<EventPublisher>,
    pub relay: OutboxRelay,
    pub service_token: Option<secrecy::SecretString>,
}

#[derive(Debug, Clone)]
pub struct UsersApi {
    state: Arc<UsersState>,
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn parse_id(raw: &str, field: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim())
        .map_err(|_| ApiError::invalid(field, format!("{field} must be a user id (UUID)")))
}

fn parse_ids(raw: &[String], field: &str) -> Result<Vec<Uuid>, ApiError> {
    if raw.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            field,
            format!("at most {MAX_BATCH} ids per call"),
        ));
    }
    let mut ids: Vec<Uuid> = raw
        .iter()
        .enumerate()
        .map(|(i, id)| parse_id(id, &format!("{field}[{i}]")))
        .collect::<Result<_, _>>()?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

fn page_limit(page: Option<&PageRequest>) -> Result<i64, ApiError> {
    match page.map_or(0, |p| p.limit) {
        0 => Ok(i64::from(DEFAULT_PAGE)),
        n if n > MAX_PAGE => Err(ApiError::invalid(
            "page.limit",
            format!("page.limit must be at most {MAX_PAGE}"),
        )),
        n => Ok(i64::from(n)),
    }
}

/// May `relation`'s viewer see the owner's last seen / online state?
fn may_see_presence(owner: &ProfileRow, relation: Relation, is_self: bool) -> bool {
    if is_self {
        return true;
    }
    if relation.owner_blocked_viewer {
        return false;
    }
    match audience_from_db(owner.last_seen_audience) {
        Audience::Everyone | Audience::Unspecified => true,
        Audience::Contacts => relation.viewer_is_contact,
        Audience::Nobody => false,
    }
}

fn presence_message(user_id: Uuid, state: Option<&PresenceState>, visible: bool) -> Presence {
    match (state, visible) {
        (Some(state), true) => Presence {
            user_id: user_id.to_string(),
            online: state.online,
            last_seen_at: state.last_seen.map(timestamp),
            visible: true,
        },
        _ => Presence {
            user_id: user_id.to_string(),
            online: false,
            last_seen_at: None,
            visible,
        },
    }
}

/// A profile as `viewer` may see it.
fn profile_message(
    row: &ProfileRow,
    viewer: Uuid,
    relation: Relation,
    presence: Option<&PresenceState>,
) -> Profile {
    let is_self = row.user_id == viewer;
    // Like Telegram: whoever you block no longer sees your photo or bio.
    let hidden = relation.owner_blocked_viewer && !is_self;
    Profile {
        user_id: row.user_id.to_string(),
        username: row.username.clone(),
        display_name: row.display_name.clone(),
        avatar_url: if hidden {
            String::new()
        } else {
            row.avatar_url.clone()
        },
        bio: if hidden {
            String::new()
        } else {
            row.bio.clone()
        },
        // Settings are private to their owner.
        settings: is_self.then(|| Settings::from_stored(&row.settings).to_proto()),
        is_bot: row.is_bot,
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(row.updated_at)),
        presence: Some(presence_message(
            row.user_id,
            presence,
            may_see_presence(row, relation, is_self),
        )),
    }
}

fn privacy_message(row: &ProfileRow) -> PrivacySettings {
    PrivacySettings {
        last_seen: audience_from_db(row.last_seen_audience) as i32,
        messages: audience_from_db(row.messages_audience) as i32,
        send_read_receipts: row.send_read_receipts,
    }
}

fn audience_field(value: i32, field: &str) -> Result<Audience, ApiError> {
    Audience::try_from(value)
        .map_err(|_| ApiError::invalid(field, format!("{field} is not a known audience")))
}

const PROFILE_PATHS: [&str; 8] = [
    "display_name",
    "avatar_url",
    "bio",
    "settings",
    "settings.language",
    "settings.theme",
    "settings.notifications_enabled",
    "settings.time_zone",
];

impl UsersApi {
    pub fn new(state: UsersState) -> Self {
        Self {
            state: Arc::new(state),
        }
    }

    pub fn state(&self) -> &UsersState {
        &self.state
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Uuid, UsersError> {
        Ok(self.state.verifier.authenticate(request.metadata())?.sub)
    }

    /// Profiles of `rows` as `viewer` may see them: two more round trips
    /// (relations, presence) for any number of rows.
    async fn visible_profiles(
        &self,
        viewer: Uuid,
        rows: &[ProfileRow],
    ) -> Result<Vec<Profile>, UsersError> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.user_id).collect();
        let (relations, presence) = tokio::try_join!(
            profiles::relations(&self.state.pool, viewer, &ids),
            self.state.presence.get_many(&ids),
        )?;
        Ok(rows
            .iter()
            .map(|row| {
                let relation = relations.get(&row.user_id).copied().unwrap_or_default();
                profile_message(row, viewer, relation, presence.get(&row.user_id))
            })
            .collect())
    }

    async fn publish_transition(&self, transition: Transition) {
        publish_presence(&self.state.publisher, transition).await;
    }

    async fn update_profile(
        &self,
        request: Request<UpdateProfileRequest>,
    ) -> Result<Profile, UsersError> {
        let caller = self.caller(&request)?;
        let input = request.into_inner();
        let paths = input.update_mask.map(|mask| mask.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(ApiError::invalid(
                "update_mask",
                "update_mask must name at least one field",
            )
            .into());
        }
        if let Some(unknown) = paths.iter().find(|p| !PROFILE_PATHS.contains(&p.as_str())) {
            return Err(ApiError::invalid(
                "update_mask.paths",
                format!(
                    "unknown field `{unknown}`; updatable: {}",
                    PROFILE_PATHS.join(", ")
                ),
            )
            .into());
        }
        let has = |path: &str| paths.iter().any(|p| p == path);
        let mut changes = ProfileChanges::default();
        if has("display_name") {
            changes.display_name = Some(domain::display_name(&input.display_name)?);
        }
        if has("avatar_url") {
            changes.avatar_url = Some(domain::avatar_url(&input.avatar_url)?);
        }
        if has("bio") {
            changes.bio = Some(domain::bio(&input.bio)?);
        }
        if paths.iter().any(|p| p.starts_with("settings")) {
            let wanted = Settings::from_proto(&input.settings.unwrap_or_default());
            let settings = if has("settings") {
                wanted
            } else {
                let current = profiles::get(&self.state.pool, caller)
                    .await?
                    .ok_or(UsersError::NoProfile)?;
                let mut merged = Settings::from_stored(&current.settings);
                if has("settings.language") {
                    merged.language = wanted.language;
                }
                if has("settings.theme") {
                    merged.theme = wanted.theme;
                }
                if has("settings.notifications_enabled") {
                    merged.notifications_enabled = wanted.notifications_enabled;
                }
                if has("settings.time_zone") {
                    merged.time_zone = wanted.time_zone;
                }
                merged
            };
            let settings = settings.validate()?;
            changes.settings = Some(serde_json::to_value(settings).map_err(ApiError::internal)?);
        }
        let row = profiles::update(&self.state.pool, caller, &changes, |row| {
            events::envelope(
                "users",
                row.user_id.to_string(),
                proto::EventPayload::ProfileUpdated(ProfileUpdated {
                    user_id: row.user_id.to_string(),
                    display_name: row.display_name.clone(),
                    avatar_url: row.avatar_url.clone(),
                }),
            )
        })
        .await?;
        self.state.relay.notify();
        let presence = self.state.presence.get_many(&[caller]).await?;
        Ok(profile_message(
            &row,
            caller,
            Relation::default(),
            presence.get(&caller),
        ))
    }

    async fn search(
        &self,
        request: Request<SearchUsersRequest>,
    ) -> Result<SearchUsersResponse, UsersError> {
        let caller = self.caller(&request)?;
        let input = request.into_inner();
        let query = domain::search_query(&input.query)?;
        let limit = page_limit(input.page.as_ref())?;
        let cursor = input.page.as_ref().map(|p| p.cursor.as_str());
        let (hits, next) =
            profiles::search(&self.state.pool, caller, &query, cursor, limit).await?;
        let rows: Vec<ProfileRow> = hits.iter().map(|hit| hit.profile.clone()).collect();
        let profiles = self.visible_profiles(caller, &rows).await?;
        Ok(SearchUsersResponse {
            hits: profiles
                .into_iter()
                .zip(&hits)
                .map(|(profile, hit)| SearchHit {
                    profile: Some(profile),
                    score: hit.score as f32,
                })
                .collect(),
            page: Some(PageResponse {
                next_cursor: next.unwrap_or_default(),
            }),
        })
    }

    async fn list(
        &self,
        caller: Uuid,
        which: UserList,
        page: Option<PageRequest>,
    ) -> Result<ListUsersPage, UsersError> {
        let limit = page_limit(page.as_ref())?;
        let after = page
            .as_ref()
            .map(|p| p.cursor.as_str())
            .filter(|c| !c.is_empty());
        let (rows, next) = profiles::list(&self.state.pool, caller, which, after, limit).await?;
        Ok(ListUsersPage {
            profiles: self.visible_profiles(caller, &rows).await?,
            page: Some(PageResponse {
                next_cursor: next.unwrap_or_default(),
            }),
        })
    }

    async fn presence_of(&self, caller: Uuid, ids: &[Uuid]) -> Result<Vec<Presence>, UsersError> {
        let rows = profiles::get_many(&self.state.pool, ids).await?;
        let (relations, presence) = tokio::try_join!(
            profiles::relations(&self.state.pool, caller, ids),
            self.state.presence.get_many(ids),
        )?;
        Ok(rows
            .iter()
            .map(|row| {
                let relation = relations.get(&row.user_id).copied().unwrap_or_default();
                let visible = may_see_presence(row, relation, row.user_id == caller);
                presence_message(row.user_id, presence.get(&row.user_id), visible)
            })
            .collect())
    }

    /// Whose device a presence call is about: the caller's own, or, for a
    /// service presenting the service credential, the named user's.
    fn device_owner(&self, request: &Request<DevicePresenceRequest>) -> Result<Uuid, UsersError> {
        let named = &request.get_ref().user_id;
        if service_kit::token::has_service_credential(
            request.metadata(),
            self.state.service_token.as_ref(),
        ) {
            return Ok(parse_id(named, "user_id")?);
        }
        let caller = self.caller(request)?;
        if !named.is_empty() && parse_id(named, "user_id")? != caller {
            return Err(ApiError::permission_denied("user_id must be the caller").into());
        }
        Ok(caller)
    }

    fn device_id(raw: &str) -> Result<String, ApiError> {
        let device = raw.trim();
        if device.is_empty() || device.len() > 128 {
            return Err(ApiError::invalid(
                "device_id",
                "device_id must be 1-128 characters",
            ));
        }
        Ok(device.to_owned())
    }
}

/// Publishes a presence transition. Presence is ephemeral: when RabbitMQ is
/// down the event is dropped (logged); readers still get the truth from
/// GetPresence.
pub async fn publish_presence(publisher: &EventPublisher, transition: Transition) {
    let event = events::envelope(
        "users",
        transition.user_id.to_string(),
        proto::EventPayload::PresenceChanged(PresenceChanged {
            user_id: transition.user_id.to_string(),
            online: transition.online,
            last_seen_at: Some(timestamp(transition.at)),
        }),
    );
    if let Err(error) = publisher.publish(&event).await {
        tracing::warn!(%error, user_id = %transition.user_id, "could not publish presence.changed");
    }
}

fn respond<T>(result: Result<T, UsersError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl UsersService for UsersApi {
    async fn get_my_profile(
        &self,
        request: Request<GetMyProfileRequest>,
    ) -> Result<Response<Profile>, Status> {
        respond(
            async {
                let caller = self.caller(&request)?;
                let row = profiles::get(&self.state.pool, caller)
                    .await?
                    .ok_or(UsersError::NoProfile)?;
                Ok(self.visible_profiles(caller, &[row]).await?.remove(0))
            }
            .await,
        )
    }

    async fn get_profiles(
        &self,
        request: Request<GetProfilesRequest>,
    ) -> Result<Response<GetProfilesResponse>, Status> {
        respond(
            async {
                let caller = self.caller(&request)?;
                let ids = parse_ids(&request.get_ref().user_ids, "user_ids")?;
                let rows = profiles::get_many(&self.state.pool, &ids).await?;
                Ok(GetProfilesResponse {
                    profiles: self.visible_profiles(caller, &rows).await?,
                })
            }
            .await,
        )
    }

    async fn update_profile(
        &self,
        request: Request<UpdateProfileRequest>,
    ) -> Result<Response<Profile>, Status> {
        respond(UsersApi::update_profile(self, request).await)
    }

    async fn search_users(
        &self,
        request: Request<SearchUsersRequest>,
    ) -> Result<Response<SearchUsersResponse>, Status> {
        respond(self.search(request).await)
    }

    async fn add_contact(
        &self,
        request: Request<ContactRequest>,
    ) -> Result<Response<ContactResponse>, Status> {
        respond(
            async {
                let caller = self.caller(&request)?;
                let target = parse_id(&request.get_ref().user_id, "user_id")?;
                if target == caller {
                    return Err(ApiError::invalid(
                        "user_id",
                        "you cannot add yourself as a contact",
                    )
                    .into());
                }
                profiles::add_contact(&self.state.pool, caller, target).await?;
                Ok(ContactResponse {})
            }
            .await,
        )
    }

    async fn remove_contact(
        &self,
        request: Request<ContactRequest>,
    ) -> Result<Response<ContactResponse>, Status> {
        respond(
            async {
                let caller = self.caller(&request)?;
                let target = parse_id(&request.get_ref().user_id, "user_id")?;
                profiles::remove_contact(&self.state.pool, caller, target).await?;
                Ok(ContactResponse {})
            }
            .await,
        )
    }

    async fn list_contacts(
        &self,
        request: Request<ListContactsRequest>,
    ) -> Result<Response<ListUsersPage>, Status> {
        respond(
            async {
                let caller = self.caller(&request)?;
                self.list(caller, UserList::Contacts, request.into_inner().page)
                    .await
            }
            .await,
        )
    }

    async fn block(
        &self,
        request: Request<BlockRequest>,
    ) -> Result<Response<BlockResponse>, Status> {
        respond(
            async {
                let caller = self.caller(&request)?;
                let target = parse_id(&request.get_ref().user_id, "user_id")?;
                if target == caller {
                    return Err(ApiError::invalid("user_id", "you cannot block yourself").into());
                }
                profiles::block(&self.state.pool, caller, target).await?;
                Ok(BlockResponse {})
            }
            .await,
        )
    }

    async fn unblock(
        &self,
        request: Request<BlockRequest>,
    ) -> Result<Response<BlockResponse>, Status> {
        respond(
            async {
                let caller = self.caller(&request)?;
                let target = parse_id(&request.get_ref().user_id, "user_id")?;
                profiles::unblock(&self.state.pool, caller, target).await?;
                Ok(BlockResponse {})
            }
            .await,
        )
    }

    async fn list_blocked(
        &self,
        request: Request<ListBlockedRequest>,
    ) -> Result<Response<ListUsersPage>, Status> {
        respond(
            async {
                let caller = self.caller(&request)?;
                self.list(caller, UserList::Blocked, request.into_inner().page)
                    .await
            }
            .await,
        )
    }

    async fn get_privacy(
        &self,
        request: Request<GetPrivacyRequest>,
    ) -> Result<Response<PrivacySettings>, Status> {
        respond(
            async {
                let caller = self.caller(&request)?;
                let row = profiles::get(&self.state.pool, caller)
                    .await?
                    .ok_or(UsersError::NoProfile)?;
                Ok(privacy_message(&row))
            }
            .await,
        )
    }

    async fn update_privacy(
        &self,
        request: Request<UpdatePrivacyRequest>,
    ) -> Result<Response<PrivacySettings>, Status> {
        respond(
            async {
                let caller = self.caller(&request)?;
                let input = request.into_inner();
                let paths = input.update_mask.map(|m| m.paths).unwrap_or_default();
                if paths.is_empty() {
                    return Err(ApiError::invalid("update_mask", "update_mask must name at least one field").into());
                }
                let privacy = input.privacy.unwrap_or_default();
                let mut changes = PrivacyChanges::default();
                for path in &paths {
                    match path.as_str() {
                        "last_seen" => {
                            let audience = audience_field(privacy.last_seen, "privacy.last_seen")?;
                            changes.last_seen_audience = Some(audience_to_db(audience, "privacy.last_seen", true)?);
                        }
                        "messages" => {
                            let audience = audience_field(privacy.messages, "privacy.messages")?;
                            changes.messages_audience = Some(audience_to_db(audience, "privacy.messages", false)?);
                        }
                        "send_read_receipts" => changes.send_read_receipts = Some(privacy.send_read_receipts),
                        other => {
                            return Err(ApiError::invalid(
                                "update_mask.paths",
                                format!("unknown field `{other}`; updatable: last_seen, messages, send_read_receipts"),
                            )
                            .into());
                        }
                    }
                }
                let row = profiles::update_privacy(&self.state.pool, caller, &changes).await?;
                Ok(privacy_message(&row))
            }
            .await,
        )
    }

    async fn device_connected(
        &self,
        request: Request<DevicePresenceRequest>,
    ) -> Result<Response<PresenceAck>, Status> {
        respond(
            async {
                let caller = self.device_owner(&request)?;
                let device = Self::device_id(&request.get_ref().device_id)?;
                if let Some(transition) = self.state.presence.touch(caller, &device).await? {
                    self.publish_transition(transition).await;
                }
                Ok(PresenceAck { online: true })
            }
            .await,
        )
    }

    async fn device_heartbeat(
        &self,
        request: Request<DevicePresenceRequest>,
    ) -> Result<Response<PresenceAck>, Status> {
        self.device_connected(request).await
    }

    async fn devices_heartbeat(
        &self,
        request: Request<DevicesHeartbeatRequest>,
    ) -> Result<Response<DevicesHeartbeatResponse>, Status> {
        respond(
            async {
                if !service_kit::token::has_service_credential(
                    request.metadata(),
                    self.state.service_token.as_ref(),
                ) {
                    return Err(ApiError::unauthenticated(
                        "DevicesHeartbeat needs the service credential (x-service-token)",
                    )
                    .into());
                }
                let devices = &request.get_ref().devices;
                if devices.is_empty() || devices.len() > MAX_HEARTBEAT_BATCH {
                    return Err(ApiError::invalid(
                        "devices",
                        format!("devices must hold 1-{MAX_HEARTBEAT_BATCH} entries"),
                    )
                    .into());
                }
                let devices = devices
                    .iter()
                    .map(|device| {
                        Ok((
                            parse_id(&device.user_id, "devices.user_id")?,
                            Self::device_id(&device.device_id)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, UsersError>>()?;
                let transitions = self.state.presence.touch_many(&devices).await?;
                for transition in &transitions {
                    self.publish_transition(*transition).await;
                }
                Ok(DevicesHeartbeatResponse {
                    came_online: u32::try_from(transitions.len()).unwrap_or(u32::MAX),
                })
            }
            .await,
        )
    }

    async fn device_disconnected(
        &self,
        request: Request<DevicePresenceRequest>,
    ) -> Result<Response<PresenceAck>, Status> {
        respond(
            async {
                let caller = self.device_owner(&request)?;
                let device = Self::device_id(&request.get_ref().device_id)?;
                let transition = self.state.presence.leave(caller, &device).await?;
                let online = transition.is_none()
                    && self
                        .state
                        .presence
                        .get_many(&[caller])
                        .await?
                        .get(&caller)
                        .is_some_and(|p| p.online);
                if let Some(transition) = transition {
                    self.publish_transition(transition).await;
                }
                Ok(PresenceAck { online })
            }
            .await,
        )
    }

    async fn get_presence(
        &self,
        request: Request<GetPresenceRequest>,
    ) -> Result<Response<GetPresenceResponse>, Status> {
        respond(
            async {
                let caller = self.caller(&request)?;
                let ids = parse_ids(&request.get_ref().user_ids, "user_ids")?;
                Ok(GetPresenceResponse {
                    presences: self.presence_of(caller, &ids).await?,
                })
            }
            .await,
        )
    }

    async fn check_message_permissions(
        &self,
        request: Request<CheckMessagePermissionsRequest>,
    ) -> Result<Response<CheckMessagePermissionsResponse>, Status> {
        respond(
            async {
                let caller = self.caller(&request)?;
                let input = request.get_ref();
                // Callers (chat) forward the sender's own token: one may only
                // ask about oneself, so block lists do not leak.
                if !input.sender_id.is_empty() && parse_id(&input.sender_id, "sender_id")? != caller
                {
                    return Err(ApiError::permission_denied("sender_id must be the caller").into());
                }
                let recipients = parse_ids(&input.recipient_ids, "recipient_ids")?;
                let rows = profiles::permissions(&self.state.pool, caller, &recipients).await?;
                let permissions = rows
                    .into_iter()
                    .map(|row| {
                        let denial = if !row.exists {
                            Some(Denial::UnknownUser)
                        } else if row.recipient == caller {
                            None
                        } else if row.blocked_by_recipient {
                            Some(Denial::BlockedByRecipient)
                        } else if row.blocked_by_sender {
                            Some(Denial::BlockedBySender)
                        } else if audience_from_db(row.messages_audience) == Audience::Contacts
                            && !row.sender_is_contact
                        {
                            Some(Denial::ContactsOnly)
                        } else {
                            None
                        };
                        MessagePermission {
                            recipient_id: row.recipient.to_string(),
                            allowed: denial.is_none(),
                            denial: denial.unwrap_or(Denial::Unspecified) as i32,
                        }
                    })
                    .collect();
                Ok(CheckMessagePermissionsResponse { permissions })
            }
            .await,
        )
    }

    async fn get_receipt_preferences(
        &self,
        request: Request<GetReceiptPreferencesRequest>,
    ) -> Result<Response<GetReceiptPreferencesResponse>, Status> {
        respond(
            async {
                self.caller(&request)?;
                let ids = parse_ids(&request.get_ref().user_ids, "user_ids")?;
                let disabled = profiles::receipts_disabled(&self.state.pool, &ids).await?;
                Ok(GetReceiptPreferencesResponse {
                    receipts_disabled: disabled.into_iter().map(|id| id.to_string()).collect(),
                })
            }
            .await,
        )
    }
}
