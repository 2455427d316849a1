//! The Socket.IO Redis adapter's pub/sub driver on a Redis
//! `ConnectionManager`, which reconnects after a Redis restart and
//! subscribes to the adapter's channels again. socketioxide-redis's own
//! driver holds one multiplexed connection that never reconnects: after a
//! Redis restart every broadcast failed with "broken pipe" until the gateway
//! was restarted (found by the end-to-end fault test).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, FromRedisValue as _, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

#[derive(Clone)]
pub struct ReconnectingDriver {
    handlers: Handlers,
    connection: ConnectionManager,
}

impl std::fmt::Debug for ReconnectingDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingDriver").finish_non_exhaustive()
    }
}

impl ReconnectingDriver {
    /// Connects (RESP3 is needed for pub/sub on a shared connection).
    pub async fn new(client: redis::Client, timeout: Duration) -> redis::RedisResult<Self> {
        let handlers = Handlers::default();
        let sink = handlers.clone();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(move |message: PushInfo| {
                deliver(&sink, message);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            handlers,
            connection,
        })
    }
}

/// Hands a pub/sub message to its channel's subscriber (dropped, with a
/// warning, if that subscriber is too far behind).
fn deliver(handlers: &Handlers, message: PushInfo) {
    if !matches!(message.kind, PushKind::Message | PushKind::SMessage) || message.data.len() < 2 {
        return;
    }
    let mut data = message.data.into_iter();
    let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
        return;
    };
    let (Ok(channel), Ok(payload)) = (
        String::from_redis_value(channel),
        Vec::<u8>::from_redis_value(payload),
    ) else {
        return;
    };
    let Ok(handlers) = handlers.read() else {
        return;
    };
    if let Some(sender) = handlers.get(&channel)
        && let Err(error) = sender.try_send((channel, payload))
    {
        tracing::warn!(%error, "Socket.IO adapter channel full; message dropped");
    }
}

impl Driver for ReconnectingDriver {
    type Error = redis::RedisError;

    async fn publish(&self, channel: String, payload: Vec<u8>) -> Result<(), Self::Error> {
        self.connection
            .clone()
            .publish::<_, _, redis::Value>(channel, payload)
            .await?;
        Ok(())
    }

    async fn subscribe(
        &self,
        channel: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        let (sender, receiver) = mpsc::channel(size);
        if let Ok(mut handlers) = self.handlers.write() {
            handlers.insert(channel.clone(), sender);
        }
        self.connection.clone().subscribe(channel.as_str()).await?;
        Ok(MessageStream::new(receiver))
    }

    async fn unsubscribe(&self, channel: String) -> Result<(), Self::Error> {
        if let Ok(mut handlers) = self.handlers.write() {
            handlers.remove(&channel);
        }
        self.connection.clone().unsubscribe(channel).await
    }

    async fn num_serv(&self, channel: &str) -> Result<u16, Self::Error> {
        let (_, count): (String, u16) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(count)
    }
}
