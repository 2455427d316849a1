//! Receipts: per-member watermarks, and the statuses derived from them.
//!
//! A receipt never touches message documents: "delivered/read up to seq N"
//! is one `$max` on the member's document, whatever N covers. Bursts of acks
//! for the same member (a client acknowledging each of 50 messages as they
//! arrive) are coalesced: while one write for a member is in flight, later
//! acks merge into the next write, so a burst costs at most two writes and
//! two `receipt.updated` events.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use proto::chat::v1::{DeliveryStatus, RecipientStatus};
use service_kit::ApiError;
use tokio::sync::watch;

use crate::store::{MemberDoc, Watermarks};

type Outcome = Option<Result<Watermarks, ApiError>>;

#[derive(Debug)]
struct Slot {
    wanted: Watermarks,
    outcome: watch::Sender<Outcome>,
}

/// Merges concurrent watermark writes per member.
#[derive(Debug, Default)]
pub struct ReceiptCoalescer {
    slots: Mutex<HashMap<String, Slot>>,
}

fn covers(have: Watermarks, wanted: Watermarks) -> bool {
    have.delivered_seq >= wanted.delivered_seq && have.read_seq >= wanted.read_seq
}

fn merge(a: Watermarks, b: Watermarks) -> Watermarks {
    Watermarks {
        delivered_seq: a.delivered_seq.max(b.delivered_seq),
        read_seq: a.read_seq.max(b.read_seq),
    }
}

impl ReceiptCoalescer {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves `key`'s watermarks to at least `wanted` with `write` (which
    /// returns the stored watermarks after a `$max`), sharing the write with
    /// concurrent callers for the same key. The write runs in its own task,
    /// so a caller that goes away does not strand the others.
    pub async fn advance<W, F>(
        self: &Arc<Self>,
        key: String,
        wanted: Watermarks,
        write: W,
    ) -> Result<Watermarks, ApiError>
    where
        W: Fn(Watermarks) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Watermarks, ApiError>> + Send,
    {
        let (mut outcome, lead) = {
            let mut slots = self.lock();
            match slots.get_mut(&key) {
                Some(slot) => {
                    slot.wanted = merge(slot.wanted, wanted);
                    (slot.outcome.subscribe(), false)
                }
                None => {
                    let (sender, receiver) = watch::channel(None);
                    slots.insert(
                        key.clone(),
                        Slot {
                            wanted,
                            outcome: sender,
                        },
                    );
                    (receiver, true)
                }
            }
        };
        if lead {
            let coalescer = Arc::clone(self);
            tokio::spawn(async move { coalescer.write_until_covered(key, write).await });
        }
        loop {
            if outcome.changed().await.is_err() {
                return Err(ApiError::unavailable(
                    "receipt write was interrupted; try again",
                ));
            }
            match &*outcome.borrow_and_update() {
                Some(Ok(have)) if covers(*have, wanted) => return Ok(*have),
                Some(Err(error)) => return Err(error.clone()),
                _ => {}
            }
        }
    }

    /// The leader: writes the merged wish until no caller wants more.
    async fn write_until_covered<W, F>(&self, key: String, write: W)
    where
        W: Fn(Watermarks) -> F,
        F: Future<Output = Result<Watermarks, ApiError>>,
    {
        loop {
            let Some(target) = self.lock().get(&key).map(|slot| slot.wanted) else {
                return;
            };
            let result = write(target).await;
            let mut slots = self.lock();
            let Some(slot) = slots.get_mut(&key) else {
                return;
            };
            let done = match &result {
                Ok(have) => covers(*have, slot.wanted),
                Err(_) => true,
            };
            slot.outcome.send_replace(Some(result));
            if done {
                slots.remove(&key);
                return;
            }
        }
    }
}

/// Statuses of messages as seen by their sender: derived from the other
/// members' watermarks. Members who hide read receipts show as delivered.
#[derive(Debug, Clone)]
pub struct ReceiptView {
    members: Vec<(String, Watermarks)>,
}

impl ReceiptView {
    pub fn new(members: &[MemberDoc], hidden: &HashSet<String>) -> Self {
        Self {
            members: members
                .iter()
                .map(|member| {
                    let read_seq = if hidden.contains(&member.user_id) {
                        0
                    } else {
                        member.read_seq
                    };
                    (
                        member.user_id.clone(),
                        Watermarks {
                            delivered_seq: member.delivered_seq.max(member.read_seq),
                            read_seq,
                        },
                    )
                })
                .collect(),
        }
    }

    fn status(marks: Watermarks, seq: i64) -> DeliveryStatus {
        if marks.read_seq >= seq {
            DeliveryStatus::Read
        } else if marks.delivered_seq >= seq {
            DeliveryStatus::Delivered
        } else {
            DeliveryStatus::Sent
        }
    }

    /// Every recipient's status of message `seq` sent by `sender`.
    pub fn statuses(&self, sender: &str, seq: i64) -> Vec<RecipientStatus> {
        self.members
            .iter()
            .filter(|(user, _)| user != sender)
            .map(|(user, marks)| RecipientStatus {
                user_id: user.clone(),
                status: Self::status(*marks, seq) as i32,
            })
            .collect()
    }

    /// (delivered, read, recipients) counts of message `seq` by `sender`.
    pub fn counts(&self, sender: &str, seq: i64) -> (u32, u32, u32) {
        let mut delivered = 0u32;
        let mut read = 0u32;
        let mut recipients = 0u32;
        for (user, marks) in &self.members {
            if user == sender {
                continue;
            }
            recipients += 1;
            match Self::status(*marks, seq) {
                DeliveryStatus::Read => {
                    read += 1;
                    delivered += 1;
                }
                DeliveryStatus::Delivered => delivered += 1,
                _ => {}
            }
        }
        (delivered, read, recipients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn marks(delivered_seq: i64, read_seq: i64) -> Watermarks {
        Watermarks {
            delivered_seq,
            read_seq,
        }
    }

    #[tokio::test]
    async fn a_burst_of_acks_costs_at_most_two_writes() {
        let coalescer = Arc::new(ReceiptCoalescer::default());
        let writes = Arc::new(AtomicUsize::new(0));
        let stored = Arc::new(Mutex::new(marks(0, 0)));
        let write = {
            let writes = writes.clone();
            let stored = stored.clone();
            move |target: Watermarks| {
                let writes = writes.clone();
                let stored = stored.clone();
                async move {
                    writes.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let mut stored = stored.lock().unwrap();
                    *stored = merge(*stored, target);
                    Ok(*stored)
                }
            }
        };
        let acks = (1..=50).map(|seq| {
            let coalescer = coalescer.clone();
            let write = write.clone();
            async move { coalescer.advance("c:u".into(), marks(seq, 0), write).await }
        });
        let results = futures::future::join_all(acks).await;
        for (i, result) in results.into_iter().enumerate() {
            let have = result.unwrap();
            assert!(have.delivered_seq > i as i64);
        }
        assert_eq!(*stored.lock().unwrap(), marks(50, 0));
        assert!(writes.load(Ordering::SeqCst) <= 2, "{writes:?} writes");
        assert!(coalescer.lock().is_empty());
    }

    #[tokio::test]
    async fn errors_reach_every_waiter() {
        let coalescer = Arc::new(ReceiptCoalescer::default());
        let write = |_: Watermarks| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Err(ApiError::permission_denied("not a member"))
        };
        let (a, b) = tokio::join!(
            coalescer.advance("k".into(), marks(1, 1), write),
            coalescer.advance("k".into(), marks(2, 2), write),
        );
        assert!(a.is_err() && b.is_err());
        assert!(coalescer.lock().is_empty());
    }

    #[test]
    fn statuses_follow_watermarks_and_privacy() {
        let member = |user: &str, delivered, read| {
            let mut doc = MemberDoc::new(
                "c",
                user,
                crate::domain::Role::Member,
                false,
                mongodb::bson::DateTime::now(),
            );
            doc.delivered_seq = delivered;
            doc.read_seq = read;
            doc
        };
        let members = [
            member("s", 9, 9),
            member("a", 5, 3),
            member("b", 9, 9),
            member("h", 9, 9),
        ];
        let hidden = HashSet::from(["h".to_owned()]);
        let view = ReceiptView::new(&members, &hidden);
        let status_of = |seq| {
            view.statuses("s", seq)
                .into_iter()
                .map(|s| (s.user_id, DeliveryStatus::try_from(s.status).unwrap()))
                .collect::<HashMap<_, _>>()
        };
        let at4 = status_of(4);
        assert_eq!(at4["a"], DeliveryStatus::Delivered);
        assert_eq!(at4["b"], DeliveryStatus::Read);
        assert_eq!(at4["h"], DeliveryStatus::Delivered, "hidden read receipts");
        assert!(!at4.contains_key("s"));
        assert_eq!(status_of(3)["a"], DeliveryStatus::Read);
        assert_eq!(status_of(6)["a"], DeliveryStatus::Sent);
        assert_eq!(view.counts("s", 4), (3, 1, 3));
    }
}
