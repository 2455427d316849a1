//! A transactional outbox on MongoDB, the twin of [`crate::pg_outbox`]: an
//! event is inserted into the `event_outbox` collection inside the same
//! multi-document transaction as the change it describes, and a relay
//! publishes it to RabbitMQ (with confirms) afterwards, deleting it only once
//! confirmed. Delivery is at least once; consumers dedupe by event id.
//!
//! Several replicas may run the relay: one holds a lease (a document in
//! `locks`, renewed per batch), so events leave in id order (UUID v7, i.e.
//! creation order) and are not published twice by racing relays.

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{Binary, DateTime, Document, doc, spec::BinarySubtype};
use mongodb::{ClientSession, Collection, Database};
use proto::EventEnvelope;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::Shutdown;
use crate::amqp::{AmqpError, EventPublisher};
use crate::events;
use crate::outbox::relay_loop;

pub const OUTBOX_COLLECTION: &str = "event_outbox";
pub const LOCKS_COLLECTION: &str = "locks";
const RELAY_LOCK: &str = "outbox-relay";

#[derive(Debug, thiserror::Error)]
pub enum MongoOutboxError {
    #[error("outbox collection: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("publishing from the outbox: {0}")]
    Publish(#[from] AmqpError),
}

#[derive(Debug, Serialize, Deserialize)]
struct OutboxDoc {
    #[serde(rename = "_id")]
    id: String,
    envelope: Binary,
    created_at: DateTime,
}

/// Code MongoDB gives a write that breaks a unique index.
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(failure)) => failure.code == 11000,
        ErrorKind::Command(failure) => failure.code == 11000,
        ErrorKind::InsertMany(failure) => failure
            .write_errors
            .iter()
            .flatten()
            .any(|failure| failure.code == 11000),
        _ => false,
    }
}

/// Adds `envelope` to the outbox inside the caller's transaction.
pub async fn enqueue(
    database: &Database,
    session: &mut ClientSession,
    envelope: &EventEnvelope,
) -> mongodb::error::Result<()> {
    let id = if envelope.id.is_empty() {
        Uuid::now_v7().to_string()
    } else {
        envelope.id.clone()
    };
    database
        .collection::<OutboxDoc>(OUTBOX_COLLECTION)
        .insert_one(OutboxDoc {
            id,
            envelope: Binary {
                subtype: BinarySubtype::Generic,
                bytes: events::encode(envelope),
            },
            created_at: DateTime::now(),
        })
        .session(session)
        .await?;
    Ok(())
}

/// Publishes outbox documents in id order.
#[derive(Debug, Clone)]
pub struct MongoOutboxRelay {
    outbox: Collection<OutboxDoc>,
    locks: Collection<Document>,
    publisher: Arc<EventPublisher>,
    wake: Arc<Notify>,
    holder: String,
    lease: Duration,
    batch: i64,
    poll_every: Duration,
}

impl MongoOutboxRelay {
    pub fn new(database: &Database, publisher: Arc<EventPublisher>) -> Self {
        Self {
            outbox: database.collection(OUTBOX_COLLECTION),
            locks: database.collection(LOCKS_COLLECTION),
            publisher,
            wake: Arc::new(Notify::new()),
            holder: Uuid::new_v4().to_string(),
            lease: Duration::from_secs(10),
            batch: 100,
            poll_every: Duration::from_secs(1),
        }
    }

    /// Call after committing a transaction that enqueued events, so they go
    /// out now rather than at the next poll.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Takes or renews the relay lease; false while another relay holds it.
    async fn acquire_lease(&self) -> mongodb::error::Result<bool> {
        let now = DateTime::now();
        let until = DateTime::from_millis(
            now.timestamp_millis()
                .saturating_add(i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)),
        );
        let taken = self
            .locks
            .update_one(
                doc! {
                    "_id": RELAY_LOCK,
                    "$or": [{ "holder": &self.holder }, { "expires_at": { "$lt": now } }],
                },
                doc! { "$set": { "holder": &self.holder, "expires_at": until } },
            )
            .upsert(true)
            .await;
        match taken {
            Ok(_) => Ok(true),
            // The filter missed because someone else holds a live lease, and
            // the upsert then collided with their lock document.
            Err(error) if is_duplicate_key(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Publishes one batch if this relay holds the lease; returns how many
    /// events were published.
    pub async fn publish_batch(&self) -> Result<usize, MongoOutboxError> {
        use futures::TryStreamExt as _;
        if !self.acquire_lease().await? {
            return Ok(0);
        }
        let docs: Vec<OutboxDoc> = self
            .outbox
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .limit(self.batch)
            .await?
            .try_collect()
            .await?;
        let mut published = Vec::with_capacity(docs.len());
        let mut failure = None;
        for outbox_doc in docs {
            match events::decode(&outbox_doc.envelope.bytes) {
                Ok(envelope) => match self.publisher.publish(&envelope).await {
                    Ok(()) => published.push(outbox_doc.id),
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                },
                Err(error) => {
                    // Cannot happen for documents written by `enqueue`;
                    // dropping it beats blocking every later event behind it.
                    tracing::error!(id = %outbox_doc.id, %error, "dropping an undecodable outbox document");
                    published.push(outbox_doc.id);
                }
            }
        }
        if !published.is_empty() {
            self.outbox
                .delete_many(doc! { "_id": { "$in": &published } })
                .await?;
        }
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(published.len()),
        }
    }

    /// Events waiting to be published.
    pub async fn backlog(&self) -> mongodb::error::Result<u64> {
        self.outbox.count_documents(doc! {}).await
    }

    /// Relays until shutdown: on every notify, and every second regardless.
    pub async fn run(self, shutdown: Shutdown) {
        let batch = usize::try_from(self.batch).unwrap_or(usize::MAX);
        relay_loop(batch, &self.wake, self.poll_every, &shutdown, || {
            self.publish_batch()
        })
        .await;
    }
}
