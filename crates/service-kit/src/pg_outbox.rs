//! A transactional outbox on PostgreSQL: an event is written in the same
//! transaction as the state change it describes, and a relay publishes it to
//! RabbitMQ (with confirms) afterwards, deleting it only once confirmed. So
//! an event is never lost when RabbitMQ is down, and never published for a
//! change that rolled back. Delivery is at least once; consumers dedupe by
//! event id.
//!
//! Each service that uses it creates the table in its own migrations with
//! [`OUTBOX_TABLE_DDL`].

use std::sync::Arc;
use std::time::Duration;

use proto::EventEnvelope;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::Shutdown;
use crate::amqp::{AmqpError, EventPublisher};
use crate::events;
use crate::outbox::relay_loop;

pub const OUTBOX_TABLE_DDL: &str = "CREATE TABLE IF NOT EXISTS event_outbox (
    seq BIGSERIAL PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    envelope BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox table: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("publishing from the outbox: {0}")]
    Publish(#[from] AmqpError),
}

/// Adds `envelope` to the outbox inside the caller's transaction.
pub async fn enqueue(tx: &mut PgConnection, envelope: &EventEnvelope) -> Result<(), sqlx::Error> {
    let id = Uuid::parse_str(&envelope.id).unwrap_or_else(|_| Uuid::now_v7());
    sqlx::query(
        "INSERT INTO event_outbox (id, envelope) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(events::encode(envelope))
    .execute(tx)
    .await?;
    Ok(())
}

/// Publishes outbox rows in insertion order.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    pool: PgPool,
    publisher: Arc<EventPublisher>,
    wake: Arc<Notify>,
    batch: i64,
    poll_every: Duration,
}

impl OutboxRelay {
    pub fn new(pool: PgPool, publisher: Arc<EventPublisher>) -> Self {
        Self {
            pool,
            publisher,
            wake: Arc::new(Notify::new()),
            batch: 100,
            poll_every: Duration::from_secs(1),
        }
    }

    /// Call after committing a transaction that enqueued events, so they go
    /// out now rather than at the next poll.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Publishes one batch; returns how many rows were published.
    pub async fn publish_batch(&self) -> Result<usize, OutboxError> {
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: several replicas relay without waiting on each other.
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, envelope FROM event_outbox ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        let mut published = Vec::with_capacity(rows.len());
        let mut failure = None;
        for (seq, bytes) in rows {
            match events::decode(&bytes) {
                Ok(envelope) => match self.publisher.publish(&envelope).await {
                    Ok(()) => published.push(seq),
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                },
                Err(error) => {
                    // Cannot happen for rows written by `enqueue`; dropping it
                    // beats blocking every later event behind it.
                    tracing::error!(seq, %error, "dropping an undecodable outbox row");
                    published.push(seq);
                }
            }
        }
        if !published.is_empty() {
            sqlx::query("DELETE FROM event_outbox WHERE seq = ANY($1)")
                .bind(&published)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(published.len()),
        }
    }

    /// Rows waiting to be published.
    pub async fn backlog(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM event_outbox")
            .fetch_one(&self.pool)
            .await
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
