//! RabbitMQ: one topic exchange of domain events, publisher confirms,
//! consumers with manual acks, delayed retries and a dead-letter queue.
//!
//! Topology of a consumer whose queue is `Q`:
//! - `Q` (durable, bound to the events exchange by routing-key patterns),
//!   dead-lettering rejected messages to `Q.retry`;
//! - `Q.retry` (durable, per-queue TTL = retry delay), dead-lettering expired
//!   messages back to `Q`: a delayed redelivery without any plugin;
//! - `Q.dlq` (durable): messages that failed `max_attempts` times or can never
//!   succeed, parked with the reason, for an operator to inspect or replay.
//!
//! The attempt number comes from RabbitMQ's own `x-death` header, so it
//! survives consumer restarts and is shared by competing consumers.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use proto::EventEnvelope;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::Mutex;
use tracing::Instrument as _;

use crate::shutdown::Shutdown;
use crate::{events, telemetry};

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("RabbitMQ refused (nack) event {id}")]
    Nacked { id: String },
    #[error("the consumer of {queue} was cancelled or lost its connection")]
    ConsumerEnded { queue: String },
    #[error("RabbitMQ did not confirm event {id} within {timeout:?}")]
    ConfirmTimeout { id: String, timeout: Duration },
    #[error("RabbitMQ did not complete the connection within {0:?}")]
    ConnectTimeout(Duration),
}

/// How long opening a connection (TCP, AMQP handshake, the publishing
/// channel) may take. A broker that accepts TCP while still booting can
/// leave the handshake unanswered; without a bound the connection lock
/// would be held forever and every publisher, consumer and readiness check
/// behind it would hang after a broker restart.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A lazily (re)connected RabbitMQ connection shared by a service's
/// publishers and consumers.
pub struct Broker {
    url: SecretString,
    connection_name: String,
    state: Mutex<Option<Connected>>,
    generation: AtomicU64,
}

struct Connected {
    connection: Arc<Connection>,
    publish: Channel,
    generation: u64,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("connection_name", &self.connection_name)
            .finish_non_exhaustive()
    }
}

impl Broker {
    pub fn new(url: SecretString, connection_name: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            url,
            connection_name: connection_name.into(),
            state: Mutex::new(None),
            generation: AtomicU64::new(0),
        })
    }

    async fn connected(&self) -> Result<(Arc<Connection>, Channel, u64), AmqpError> {
        let mut state = self.state.lock().await;
        if let Some(current) = state.as_ref()
            && current.connection.status().connected()
            && current.publish.status().connected()
        {
            return Ok((
                current.connection.clone(),
                current.publish.clone(),
                current.generation,
            ));
        }
        let properties = ConnectionProperties::default()
            .with_connection_name(self.connection_name.clone().into());
        let open = async {
            let connection =
                Arc::new(Connection::connect(self.url.expose_secret(), properties).await?);
            let publish = connection.create_channel().await?;
            publish
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, AmqpError>((connection, publish))
        };
        let (connection, publish) = tokio::time::timeout(CONNECT_TIMEOUT, open)
            .await
            .map_err(|_| AmqpError::ConnectTimeout(CONNECT_TIMEOUT))??;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::info!(connection = %self.connection_name, generation, "connected to RabbitMQ");
        *state = Some(Connected {
            connection: connection.clone(),
            publish: publish.clone(),
            generation,
        });
        Ok((connection, publish, generation))
    }

    /// Forgets the current connection so the next use reconnects.
    async fn reset(&self) {
        if let Some(old) = self.state.lock().await.take() {
            let _ = old.connection.close(200, "reconnecting".into()).await;
        }
    }

    /// A new channel on the shared connection (consumers own theirs).
    pub async fn channel(&self) -> Result<Channel, AmqpError> {
        let (connection, _, _) = self.connected().await?;
        match connection.create_channel().await {
            Ok(channel) => Ok(channel),
            Err(error) => {
                self.reset().await;
                Err(error.into())
            }
        }
    }

    /// Readiness: connected, or able to connect now.
    pub async fn check(&self) -> Result<(), String> {
        self.connected()
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    pub async fn close(&self) {
        if let Some(old) = self.state.lock().await.take() {
            let _ = old.connection.close(200, "shutting down".into()).await;
        }
    }
}

/// Names the exchanges of one deployment (tests give each run its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub name: String,
}

impl Exchange {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    pub async fn declare(&self, channel: &Channel) -> Result<(), AmqpError> {
        channel
            .exchange_declare(
                self.name.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }
}

/// Publishes envelopes on the events exchange and waits for the broker's
/// confirm: `publish` returning `Ok` means RabbitMQ has taken responsibility.
#[derive(Debug)]
pub struct EventPublisher {
    broker: Arc<Broker>,
    exchange: Exchange,
    declared_generation: AtomicU64,
    confirm_timeout: Duration,
}

impl EventPublisher {
    pub fn new(broker: Arc<Broker>, exchange: Exchange) -> Self {
        Self {
            broker,
            exchange,
            declared_generation: AtomicU64::new(0),
            confirm_timeout: Duration::from_secs(10),
        }
    }

    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    pub async fn publish(&self, envelope: &EventEnvelope) -> Result<(), AmqpError> {
        let result = self.try_publish(envelope).await;
        if result.is_err() {
            self.broker.reset().await;
        }
        result
    }

    async fn try_publish(&self, envelope: &EventEnvelope) -> Result<(), AmqpError> {
        let (_, channel, generation) = self.broker.connected().await?;
        if self.declared_generation.load(Ordering::SeqCst) != generation {
            self.exchange.declare(&channel).await?;
            self.declared_generation.store(generation, Ordering::SeqCst);
        }
        let mut headers = FieldTable::default();
        for (key, value) in &envelope.trace_context {
            headers.insert(
                key.as_str().into(),
                AMQPValue::LongString(value.as_str().into()),
            );
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/x-protobuf".into())
            .with_message_id(envelope.id.as_str().into())
            .with_type(envelope.r#type.as_str().into())
            .with_app_id(envelope.producer.as_str().into())
            .with_timestamp(
                envelope
                    .occurred_at
                    .as_ref()
                    .map(|at| u64::try_from(at.seconds).unwrap_or(0))
                    .unwrap_or(0),
            )
            .with_headers(headers);
        let confirm = channel
            .basic_publish(
                self.exchange.name.as_str().into(),
                envelope.r#type.as_str().into(),
                BasicPublishOptions::default(),
                &events::encode(envelope),
                properties,
            )
            .await?;
        let confirmation = tokio::time::timeout(self.confirm_timeout, confirm)
            .await
            .map_err(|_| AmqpError::ConfirmTimeout {
                id: envelope.id.clone(),
                timeout: self.confirm_timeout,
            })??;
        if confirmation.is_nack() {
            return Err(AmqpError::Nacked {
                id: envelope.id.clone(),
            });
        }
        Ok(())
    }
}

/// What a consumer declares and how it treats failures.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Durable queue name; competing consumers share it.
    pub queue: String,
    /// Routing-key patterns bound from the events exchange (`message.*`).
    pub bindings: Vec<String>,
    /// Unacknowledged deliveries in flight per consumer.
    pub prefetch: u16,
    /// Deliveries handled concurrently (≤ prefetch).
    pub concurrency: usize,
    /// Attempts before a failing message is parked in `Q.dlq`.
    pub max_attempts: u32,
    /// Delay before a failed message is tried again.
    pub retry_delay: Duration,
    /// Handle what has arrived together as one batch and ack its handled
    /// deliveries with one `multiple` ack once all of it is settled: one
    /// ack frame (and one hand-off to the connection's I/O thread) per
    /// batch instead of per delivery. For fast handlers: the next batch
    /// waits for the slowest delivery of this one.
    pub ack_in_batches: bool,
}

impl ConsumerSpec {
    pub fn new(queue: impl Into<String>, bindings: &[&str]) -> Self {
        Self {
            queue: queue.into(),
            bindings: bindings.iter().map(|b| (*b).to_owned()).collect(),
            prefetch: 64,
            concurrency: 16,
            max_attempts: 5,
            retry_delay: Duration::from_secs(2),
            ack_in_batches: false,
        }
    }

    pub fn retry_queue(&self) -> String {
        format!("{}.retry", self.queue)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.queue)
    }

    /// Declares the exchange, the three queues and the bindings. Idempotent.
    pub async fn declare(&self, channel: &Channel, exchange: &Exchange) -> Result<(), AmqpError> {
        exchange.declare(channel).await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let dead_letter_to = |queue: String| {
            let mut args = BTreeMap::new();
            args.insert(
                ShortString::from("x-dead-letter-exchange"),
                AMQPValue::LongString("".into()),
            );
            args.insert(
                ShortString::from("x-dead-letter-routing-key"),
                AMQPValue::LongString(LongString::from(queue)),
            );
            args
        };
        channel
            .queue_declare(
                self.queue.as_str().into(),
                durable,
                FieldTable::from(dead_letter_to(self.retry_queue())),
            )
            .await?;
        let mut retry_args = dead_letter_to(self.queue.clone());
        let ttl_ms = i64::try_from(self.retry_delay.as_millis()).unwrap_or(i64::MAX);
        retry_args.insert(
            ShortString::from("x-message-ttl"),
            AMQPValue::LongLongInt(ttl_ms),
        );
        channel
            .queue_declare(
                self.retry_queue().into(),
                durable,
                FieldTable::from(retry_args),
            )
            .await?;
        channel
            .queue_declare(
                self.dead_letter_queue().into(),
                durable,
                FieldTable::default(),
            )
            .await?;
        for pattern in &self.bindings {
            channel
                .queue_bind(
                    self.queue.as_str().into(),
                    exchange.name.as_str().into(),
                    pattern.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}

/// Why a handler could not process an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth another attempt later (a dependency was down).
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed (invalid content): parked at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Processes one event. Must be idempotent: the same event may arrive again.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, event: EventEnvelope)
    -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// How many times RabbitMQ already dead-lettered this message out of `queue`.
fn previous_attempts(properties: &BasicProperties, queue: &str) -> u32 {
    let Some(headers) = properties.headers() else {
        return 0;
    };
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        return 0;
    };
    deaths
        .as_slice()
        .iter()
        .filter_map(AMQPValue::as_field_table)
        .filter(|death| {
            let field = |name: &str| -> Option<Vec<u8>> {
                match death.inner().get(name)? {
                    AMQPValue::LongString(s) => Some(s.as_bytes().to_vec()),
                    AMQPValue::ShortString(s) => Some(s.as_str().as_bytes().to_vec()),
                    _ => None,
                }
            };
            field("queue").as_deref() == Some(queue.as_bytes())
                && field("reason").as_deref() == Some(b"rejected")
        })
        .filter_map(|death| match death.inner().get("count")? {
            AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongUInt(n) => Some(*n),
            _ => None,
        })
        .sum()
}

/// Consumes `spec.queue` until `shutdown`, reconnecting with backoff when the
/// broker goes away. In-flight deliveries finish (and are acked) before it
/// returns.
pub async fn run_consumer<H: EventHandler>(
    broker: Arc<Broker>,
    exchange: Exchange,
    spec: ConsumerSpec,
    handler: Arc<H>,
    shutdown: Shutdown,
) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_triggered() {
        match consume_once(&broker, &exchange, &spec, &handler, &shutdown).await {
            Ok(()) if shutdown.is_triggered() => break,
            Ok(()) => tracing::warn!(queue = %spec.queue, "consumer stream ended; reconnecting"),
            Err(error) => {
                tracing::warn!(queue = %spec.queue, %error, ?backoff, "consumer failed; reconnecting");
            }
        }
        broker.reset().await;
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    tracing::info!(queue = %spec.queue, "consumer stopped");
}

async fn consume_once<H: EventHandler>(
    broker: &Broker,
    exchange: &Exchange,
    spec: &ConsumerSpec,
    handler: &Arc<H>,
    shutdown: &Shutdown,
) -> Result<(), AmqpError> {
    let channel = broker.channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    spec.declare(&channel, exchange).await?;
    channel
        .basic_qos(spec.prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            spec.queue.as_str().into(),
            format!("{}-{}", spec.queue, uuid::Uuid::new_v4()).into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %spec.queue, "consuming");
    let deliveries = consumer.take_until(shutdown.cancelled());
    if spec.ack_in_batches {
        consume_in_batches(&channel, spec, handler.as_ref(), deliveries).await?;
    } else {
        deliveries
            .for_each_concurrent(spec.concurrency.max(1), |delivery| {
                let channel = channel.clone();
                async move {
                    let settled = match delivery {
                        Ok(delivery) => match process(&channel, spec, handler.as_ref(), &delivery).await {
                            Ok(Outcome::Handled) => delivery
                                .acker
                                .ack(BasicAckOptions::default())
                                .await
                                .map(drop)
                                .map_err(AmqpError::from),
                            Ok(Outcome::Settled) => Ok(()),
                            Err(error) => Err(error),
                        },
                        Err(error) => {
                            tracing::warn!(queue = %spec.queue, %error, "delivery error");
                            return;
                        }
                    };
                    if let Err(error) = settled {
                        tracing::warn!(queue = %spec.queue, %error, "could not settle a delivery; it will be redelivered");
                    }
                }
            })
            .await;
    }
    if shutdown.is_triggered() {
        let _ = channel.close(200, "shutting down".into()).await;
        return Ok(());
    }
    Err(AmqpError::ConsumerEnded {
        queue: spec.queue.clone(),
    })
}

/// What became of a delivery once handled.
enum Outcome {
    /// The handler succeeded: the delivery is still to be acked.
    Handled,
    /// Nacked for a retry, or parked: nothing more to do.
    Settled,
}

/// Handles what arrives together as one batch; see
/// [`ConsumerSpec::ack_in_batches`]. Returns an error (the caller opens a
/// new channel, and the broker redelivers what this one left unsettled)
/// when a delivery could not be settled: a later `multiple` ack would
/// otherwise ack it too.
async fn consume_in_batches<H: EventHandler>(
    channel: &Channel,
    spec: &ConsumerSpec,
    handler: &H,
    deliveries: impl Stream<Item = Result<lapin::message::Delivery, lapin::Error>>,
) -> Result<(), AmqpError> {
    let mut batches = std::pin::pin!(deliveries.ready_chunks(usize::from(spec.prefetch.max(1))));
    while let Some(batch) = batches.next().await {
        let batch: Vec<_> = batch
            .into_iter()
            .filter_map(|delivery| {
                delivery
                    .inspect_err(
                        |error| tracing::warn!(queue = %spec.queue, %error, "delivery error"),
                    )
                    .ok()
            })
            .collect();
        // In order, so the last handled one is known.
        let handling: Vec<_> = batch
            .iter()
            .map(|delivery| process(channel, spec, handler, delivery))
            .collect();
        let outcomes: Vec<_> = futures::stream::iter(handling)
            .buffered(spec.concurrency.max(1))
            .collect()
            .await;
        let mut last_handled = None;
        for (delivery, outcome) in batch.iter().zip(outcomes) {
            match outcome? {
                Outcome::Handled => last_handled = Some(delivery),
                Outcome::Settled => {}
            }
        }
        // Earlier batches are settled, and so is every delivery of this one
        // that was not handled: this acks exactly the handled ones.
        if let Some(last) = last_handled {
            last.acker.ack(BasicAckOptions { multiple: true }).await?;
        }
    }
    Ok(())
}

async fn process<H: EventHandler>(
    channel: &Channel,
    spec: &ConsumerSpec,
    handler: &H,
    delivery: &lapin::message::Delivery,
) -> Result<Outcome, AmqpError> {
    let attempt = previous_attempts(&delivery.properties, &spec.queue) + 1;
    let event = match events::decode(&delivery.data) {
        Ok(event) => event,
        Err(error) => {
            park(channel, spec, delivery, &format!("undecodable: {error}")).await?;
            return Ok(Outcome::Settled);
        }
    };
    let span = tracing::info_span!(
        "event",
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.destination = %spec.queue,
        event.id = %event.id,
        event.r#type = %event.r#type,
        attempt,
    );
    telemetry::set_remote_parent(&span, telemetry::context_from_map(&event.trace_context));
    let outcome = handler.handle(event).instrument(span.clone()).await;
    let _entered = span.enter();
    match outcome {
        Ok(()) => return Ok(Outcome::Handled),
        Err(HandlerError::Transient(reason)) if attempt < spec.max_attempts => {
            tracing::warn!(%reason, attempt, "handler failed; retrying later");
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: false,
                    ..BasicNackOptions::default()
                })
                .await?;
        }
        Err(error) => {
            tracing::error!(%error, attempt, "handler gave up; parking the event");
            park(channel, spec, delivery, &error.to_string()).await?;
        }
    }
    Ok(Outcome::Settled)
}

/// Copies the delivery into the dead-letter queue (confirmed), then acks it.
async fn park(
    channel: &Channel,
    spec: &ConsumerSpec,
    delivery: &lapin::message::Delivery,
    reason: &str,
) -> Result<(), AmqpError> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(
        "x-parked-reason".into(),
        AMQPValue::LongString(reason.into()),
    );
    headers.insert(
        "x-parked-from".into(),
        AMQPValue::LongString(spec.queue.as_str().into()),
    );
    let properties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    let confirm = channel
        .basic_publish(
            "".into(),
            spec.dead_letter_queue().into(),
            BasicPublishOptions::default(),
            &delivery.data,
            properties,
        )
        .await?
        .await?;
    if confirm.is_nack() {
        return Err(AmqpError::Nacked {
            id: format!("parked copy from {}", spec.queue),
        });
    }
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

/// Exactly-once effects on top of at-least-once delivery, for handlers whose
/// effect is not naturally idempotent (e.g. sending a reply).
///
/// `claim` marks an event id as in progress (expires, so a crashed worker's
/// claim frees itself); `complete` marks it done for `done_ttl`; `release`
/// gives up a claim after a failure so a retry can take it.
#[derive(Clone)]
pub struct IdempotencyStore {
    redis: redis::aio::ConnectionManager,
    prefix: String,
    claim_ttl: Duration,
    done_ttl: Duration,
}

impl std::fmt::Debug for IdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First to see it: process, then `complete` (or `release` on failure).
    Acquired,
    /// Already processed: ack and skip.
    Done,
    /// Another worker is processing it right now: retry later.
    InProgress,
}

impl IdempotencyStore {
    pub fn new(redis: redis::aio::ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            redis,
            prefix: prefix.into(),
            claim_ttl: Duration::from_secs(60),
            done_ttl: Duration::from_secs(7 * 86_400),
        }
    }

    fn key(&self, event_id: &str) -> String {
        format!("{}idem:{}", self.prefix, event_id)
    }

    pub async fn claim(&self, event_id: &str) -> redis::RedisResult<Claim> {
        let mut redis = self.redis.clone();
        let key = self.key(event_id);
        let ttl_ms = u64::try_from(self.claim_ttl.as_millis()).unwrap_or(u64::MAX);
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg("claimed")
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut redis)
            .await?;
        if set.is_some() {
            return Ok(Claim::Acquired);
        }
        let state: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut redis).await?;
        Ok(match state.as_deref() {
            Some("done") => Claim::Done,
            Some(_) => Claim::InProgress,
            // Expired between SET and GET: the next attempt will claim it.
            None => Claim::InProgress,
        })
    }

    pub async fn complete(&self, event_id: &str) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        let ttl_ms = u64::try_from(self.done_ttl.as_millis()).unwrap_or(u64::MAX);
        redis::cmd("SET")
            .arg(self.key(event_id))
            .arg("done")
            .arg("PX")
            .arg(ttl_ms)
            .query_async::<()>(&mut redis)
            .await
    }

    pub async fn release(&self, event_id: &str) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        // Only a claim is released; a completed mark stays.
        redis::Script::new(
            "if redis.call('GET', KEYS[1]) == 'claimed' then return redis.call('DEL', KEYS[1]) else return 0 end",
        )
        .key(self.key(event_id))
        .invoke_async::<i64>(&mut redis)
        .await
        .map(|_| ())
    }
}
