//! Building and reading domain-event envelopes.

use prost::Message as _;
use proto::{EventEnvelope, EventPayload};
use uuid::Uuid;

use crate::telemetry;

/// The routing key (and `type`) of an event payload.
pub fn event_type(payload: &EventPayload) -> &'static str {
    match payload {
        EventPayload::UserRegistered(_) => "user.registered",
        EventPayload::PresenceChanged(_) => "presence.changed",
        EventPayload::ProfileUpdated(_) => "profile.updated",
        EventPayload::MessageCreated(_) => "message.created",
        EventPayload::MessageUpdated(_) => "message.updated",
        EventPayload::MessageDeleted(_) => "message.deleted",
        EventPayload::ReceiptUpdated(_) => "receipt.updated",
        EventPayload::ConversationCreated(_) => "conversation.created",
        EventPayload::ConversationUpdated(_) => "conversation.updated",
        EventPayload::MemberAdded(_) => "member.added",
        EventPayload::MemberRemoved(_) => "member.removed",
        EventPayload::TypingChanged(_) => "typing.changed",
    }
}

/// Current schema version of every payload type.
pub const PAYLOAD_VERSION: u32 = 1;

/// A new envelope: fresh time-ordered id, now, and the current trace context.
pub fn envelope(
    producer: &str,
    subject: impl Into<String>,
    payload: EventPayload,
) -> EventEnvelope {
    let now = std::time::SystemTime::now();
    EventEnvelope {
        id: Uuid::now_v7().to_string(),
        r#type: event_type(&payload).to_owned(),
        version: PAYLOAD_VERSION,
        occurred_at: Some(prost_types::Timestamp::from(now)),
        trace_context: telemetry::current_trace_map(),
        producer: producer.to_owned(),
        subject: subject.into(),
        payload: Some(payload),
    }
}

pub fn encode(envelope: &EventEnvelope) -> Vec<u8> {
    envelope.encode_to_vec()
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an event envelope: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("event {id} has no payload")]
    MissingPayload { id: String },
    #[error("event {id} says type `{declared}` but carries `{actual}`")]
    TypeMismatch {
        id: String,
        declared: String,
        actual: &'static str,
    },
}

/// Decodes an envelope and checks that its `type` matches its payload.
pub fn decode(bytes: &[u8]) -> Result<EventEnvelope, DecodeError> {
    let envelope = EventEnvelope::decode(bytes)?;
    let Some(payload) = &envelope.payload else {
        return Err(DecodeError::MissingPayload { id: envelope.id });
    };
    let actual = event_type(payload);
    if envelope.r#type != actual {
        return Err(DecodeError::TypeMismatch {
            id: envelope.id,
            declared: envelope.r#type,
            actual,
        });
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::events::v1::UserRegistered;

    #[test]
    fn envelopes_round_trip_and_reject_mismatched_types() {
        let payload = EventPayload::UserRegistered(UserRegistered {
            user_id: "u1".into(),
            username: "alice".into(),
            ..Default::default()
        });
        let event = envelope("auth", "u1", payload);
        assert_eq!(event.r#type, "user.registered");
        assert_eq!(event.version, PAYLOAD_VERSION);
        assert!(Uuid::parse_str(&event.id).is_ok());
        assert_eq!(decode(&encode(&event)).unwrap(), event);

        let mut forged = event.clone();
        forged.r#type = "message.created".into();
        assert!(matches!(
            decode(&encode(&forged)),
            Err(DecodeError::TypeMismatch { .. })
        ));
        let mut empty = event;
        empty.payload = None;
        assert!(matches!(
            decode(&encode(&empty)),
            Err(DecodeError::MissingPayload { .. })
        ));
        assert!(decode(b"\xff\xff garbage").is_err());
    }
}
