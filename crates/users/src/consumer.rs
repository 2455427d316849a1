//! Creates profiles from auth's `user.registered` events.

use proto::{EventEnvelope, EventPayload};
use service_kit::amqp::{EventHandler, HandlerError};
use sqlx::PgPool;
use uuid::Uuid;

use crate::profiles;

#[derive(Debug, Clone)]
pub struct RegistrationHandler {
    pub pool: PgPool,
}

impl EventHandler for RegistrationHandler {
    async fn handle(&self, event: EventEnvelope) -> Result<(), HandlerError> {
        let Some(EventPayload::UserRegistered(registered)) = event.payload else {
            // Bound only to user.registered; anything else is not ours.
            return Ok(());
        };
        let user_id = Uuid::parse_str(&registered.user_id).map_err(|_| {
            HandlerError::Permanent(format!("user id `{}` is not a UUID", registered.user_id))
        })?;
        let display_name = match registered.display_name.trim() {
            "" => registered.username.as_str(),
            name => name,
        };
        let created = profiles::create(
            &self.pool,
            user_id,
            &registered.username,
            display_name,
            registered.is_bot,
        )
        .await
        .map_err(|error| HandlerError::Transient(error.to_string()))?;
        tracing::info!(%user_id, created, "profile for registered user");
        Ok(())
    }
}
