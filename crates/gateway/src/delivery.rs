//! "Delivered" from socket acknowledgements. `message:new` is emitted with
//! an ack request; when a recipient's client acknowledges it, the gateway
//! moves that user's delivered watermark in chat (`MarkDelivered`, with
//! chat's service credential on the user's behalf: sockets outlive access
//! tokens).
//!
//! Acks come back as socket ids, also from sockets on other replicas
//! (through the Redis adapter), so each replica records `socket id → user`
//! in Redis for its sockets (renewed with the presence heartbeat). Acks are
//! coalesced per (user, conversation) over a short window, so a burst of
//! messages costs one call per reader, and chat's receipt coalescer merges
//! what is left.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use proto::chat::v1::MarkRequest;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use service_kit::grpc::{CallKind, Downstream};
use tokio::sync::mpsc;

/// How long the gateway waits for a client's ack of `message:new`.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Acks gathered before one round of `MarkDelivered` calls: at most one
/// call per (reader, conversation) per second, however busy the
/// conversation. Each call is a write in chat and a `receipt.updated` to
/// every member, and a delivered tick may lag by a second (the platform
/// benchmark's groups saturated the database on receipts at 100 ms).
const COALESCE_WINDOW: Duration = Duration::from_secs(1);
const MAX_BATCH: usize = 1_000;
/// Concurrent `MarkDelivered` calls per round.
const CALLS_IN_FLIGHT: usize = 16;

/// `socket id → user id` for every connected socket of every replica.
#[derive(Clone)]
pub struct SocketDirectory {
    redis: redis::aio::ConnectionManager,
    prefix: String,
    ttl: Duration,
}

impl std::fmt::Debug for SocketDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketDirectory")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SocketDirectory {
    /// Entries expire after `ttl` unless renewed (a crashed replica's
    /// sockets disappear by themselves).
    pub fn new(redis: redis::aio::ConnectionManager, prefix: &str, ttl: Duration) -> Self {
        Self {
            redis,
            prefix: format!("{prefix}sockets:"),
            ttl,
        }
    }

    fn key(&self, socket_id: &str) -> String {
        format!("{}{socket_id}", self.prefix)
    }

    /// Records (or renews) `(socket id, user id)` pairs in one round trip.
    pub async fn register(&self, entries: &[(String, String)]) {
        if entries.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        let seconds = self.ttl.as_secs().max(1);
        for (socket, user) in entries {
            pipe.cmd("SET")
                .arg(self.key(socket))
                .arg(user)
                .arg("EX")
                .arg(seconds)
                .ignore();
        }
        let mut redis = self.redis.clone();
        if let Err(error) = pipe.query_async::<()>(&mut redis).await {
            tracing::warn!(%error, "could not record sockets in Redis");
        }
    }

    pub async fn forget(&self, socket_id: &str) {
        let mut redis = self.redis.clone();
        if let Err(error) = redis::cmd("DEL")
            .arg(self.key(socket_id))
            .query_async::<()>(&mut redis)
            .await
        {
            tracing::debug!(%error, "could not forget a socket");
        }
    }

    /// The users of these sockets (`None` where unknown), in one round trip.
    pub async fn users_of(&self, socket_ids: &[String]) -> Vec<Option<String>> {
        if socket_ids.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = socket_ids.iter().map(|id| self.key(id)).collect();
        let mut redis = self.redis.clone();
        match redis::cmd("MGET")
            .arg(&keys)
            .query_async::<Vec<Option<String>>>(&mut redis)
            .await
        {
            Ok(users) => users,
            Err(error) => {
                tracing::debug!(%error, "could not look up acknowledging sockets");
                vec![None; socket_ids.len()]
            }
        }
    }
}

/// One acknowledged message: `user` has it, up to `seq`, in `conversation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub user_id: String,
    pub conversation_id: String,
    pub seq: u64,
}

/// Where acknowledgements go; cheap to clone.
#[derive(Debug, Clone)]
pub struct DeliveryTracker {
    pub directory: SocketDirectory,
    sender: mpsc::UnboundedSender<Delivered>,
}

impl DeliveryTracker {
    /// The tracker, and the task that marks deliveries in chat until `stop`
    /// (then it marks what is already queued and ends).
    pub fn new(
        directory: SocketDirectory,
        chat: Downstream,
        credential: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
        stop: impl Future<Output = ()> + Send,
    ) -> (Self, impl Future<Output = ()> + Send) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            Self { directory, sender },
            mark_delivered(receiver, chat, credential, stop),
        )
    }

    pub fn acknowledged(&self, delivered: Delivered) {
        let _ = self.sender.send(delivered);
    }
}

/// Keeps the highest seq per (user, conversation).
fn coalesce(batch: Vec<Delivered>) -> Vec<Delivered> {
    let mut highest: HashMap<(String, String), u64> = HashMap::new();
    for item in batch {
        let seq = highest
            .entry((item.user_id, item.conversation_id))
            .or_default();
        *seq = (*seq).max(item.seq);
    }
    highest
        .into_iter()
        .map(|((user_id, conversation_id), seq)| Delivered {
            user_id,
            conversation_id,
            seq,
        })
        .collect()
}

async fn mark_delivered(
    mut receiver: mpsc::UnboundedReceiver<Delivered>,
    chat: Downstream,
    credential: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    stop: impl Future<Output = ()> + Send,
) {
    // Ends when every tracker is dropped, or at `stop` once the queue is
    // empty (trackers live as long as the Socket.IO state, so waiting for
    // them alone held shutdown for the whole grace period).
    tokio::pin!(stop);
    let mut stopping = false;
    loop {
        let first = tokio::select! {
            item = receiver.recv() => item,
            () = &mut stop, if !stopping => {
                stopping = true;
                receiver.close();
                receiver.recv().await
            }
        };
        let Some(first) = first else {
            return;
        };
        let mut batch = vec![first];
        let window = tokio::time::sleep(COALESCE_WINDOW);
        tokio::pin!(window);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                () = &mut window => break,
                item = receiver.recv() => match item {
                    Some(item) => batch.push(item),
                    None => break,
                },
            }
        }
        futures::stream::iter(coalesce(batch))
            .for_each_concurrent(CALLS_IN_FLIGHT, |delivered| {
                let chat = &chat;
                let credential = credential.clone();
                async move {
                    let request = MarkRequest {
                        conversation_id: delivered.conversation_id,
                        up_to_seq: delivered.seq,
                        user_id: delivered.user_id,
                    };
                    let result = chat
                        .call_as_service(CallKind::Idempotent, &credential, request, |channel, request| async move {
                            ChatServiceClient::new(channel).mark_delivered(request).await
                        })
                        .await;
                    if let Err(status) = result {
                        tracing::warn!(code = ?status.code(), message = status.message(), "could not mark a delivery");
                    }
                }
            })
            .await;
    }
}

/// Whatever a client passes to its `message:new` ack callback: nothing
/// (`ack()`, as README documents) or any values. Read as a tuple, so
/// socketioxide hands over the whole (possibly empty) argument list instead
/// of failing on a missing first argument.
#[derive(Debug, Clone, Copy)]
pub struct AnyAck;

impl<'de> serde::Deserialize<'de> for AnyAck {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Arguments;
        impl<'de> serde::de::Visitor<'de> for Arguments {
            type Value = AnyAck;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("ack arguments")
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<AnyAck, S::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(AnyAck)
            }
        }
        deserializer.deserialize_tuple(usize::MAX, Arguments)
    }
}

/// Acks resolved together: those that arrive together (a remote replica's
/// come in bursts through Redis) cost one directory lookup.
const ACK_CHUNK: usize = 256;

/// Follows the acks of one emitted message until they are all in (or time out).
pub async fn follow_acks<A: socketioxide::adapter::Adapter>(
    acks: socketioxide::ack::AckStream<AnyAck, A>,
    io: socketioxide::SocketIo<A>,
    tracker: DeliveryTracker,
    conversation_id: String,
    seq: u64,
    local_user: impl Fn(&socketioxide::extract::SocketRef<A>) -> Option<String>,
) {
    let mut acks = std::pin::pin!(acks.ready_chunks(ACK_CHUNK));
    while let Some(chunk) = acks.next().await {
        let mut users = Vec::new();
        let mut remote = Vec::new();
        for (socket_id, result) in chunk {
            if result.is_err() {
                continue;
            }
            match io.get_socket(socket_id) {
                Some(socket) => users.extend(local_user(&socket)),
                None => remote.push(socket_id.to_string()),
            }
        }
        users.extend(
            tracker
                .directory
                .users_of(&remote)
                .await
                .into_iter()
                .flatten(),
        );
        for user_id in users {
            tracker.acknowledged(Delivered {
                user_id,
                conversation_id: conversation_id.clone(),
                seq,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_resolve_to_users_in_one_lookup() {
        let redis = test_kit::TestRedis::new().await.unwrap();
        let directory =
            SocketDirectory::new(redis.redis.clone(), &redis.prefix, Duration::from_secs(60));
        directory
            .register(&[
                ("s1".to_owned(), "ann".to_owned()),
                ("s2".to_owned(), "bob".to_owned()),
            ])
            .await;
        let ids = ["s2", "gone", "s1"].map(str::to_owned);
        assert_eq!(
            directory.users_of(&ids).await,
            [Some("bob".to_owned()), None, Some("ann".to_owned())]
        );
        assert!(directory.users_of(&[]).await.is_empty());
        directory.forget("s1").await;
        assert_eq!(directory.users_of(&ids[2..]).await, [None]);
    }

    #[test]
    fn acks_coalesce_to_the_highest_seq_per_reader_and_conversation() {
        let item = |user: &str, conversation: &str, seq| Delivered {
            user_id: user.into(),
            conversation_id: conversation.into(),
            seq,
        };
        let mut merged = coalesce(vec![
            item("a", "c1", 3),
            item("a", "c1", 5),
            item("a", "c1", 4),
            item("b", "c1", 2),
            item("a", "c2", 1),
        ]);
        merged.sort_by(|x, y| {
            (&x.user_id, &x.conversation_id).cmp(&(&y.user_id, &y.conversation_id))
        });
        assert_eq!(
            merged,
            [item("a", "c1", 5), item("a", "c2", 1), item("b", "c1", 2)]
        );
    }
}
