//! Dialogue state per (bot, conversation, user) in Redis, so a dialogue
//! survives a restart and any replica can take the next answer. Updates are
//! compare-and-set against the state the answer was computed from: two
//! answers racing on two replicas cannot both advance the same step.

use std::time::Duration;

use crate::engine::{DialogueChange, DialogueState};

/// A timed-out state is kept this long past its deadline, to tell the user
/// it timed out instead of treating the late answer as a new message.
const KEEP_AFTER_DEADLINE: Duration = Duration::from_secs(86_400);

const COMPARE_AND_SET: &str = r"
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  end
  return 1
end
return 0
";

#[derive(Clone)]
pub struct DialogueStore {
    redis: redis::aio::ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for DialogueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialogueStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A state as read, with the raw value the update must still find.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    raw: String,
    pub state: Option<DialogueState>,
}

impl DialogueStore {
    pub fn new(redis: redis::aio::ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            redis,
            prefix: prefix.into(),
        }
    }

    fn key(&self, bot: &str, conversation: &str, user: &str) -> String {
        format!("{}dialogue:{bot}:{conversation}:{user}", self.prefix)
    }

    pub async fn get(
        &self,
        bot: &str,
        conversation: &str,
        user: &str,
    ) -> redis::RedisResult<Snapshot> {
        let mut redis = self.redis.clone();
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.key(bot, conversation, user))
            .query_async(&mut redis)
            .await?;
        let raw = raw.unwrap_or_default();
        // An unreadable state (older format) is treated as none.
        let state = serde_json::from_str(&raw).ok();
        Ok(Snapshot { raw, state })
    }

    /// Applies `change` if the state is still `snapshot`; false if it moved.
    pub async fn apply(
        &self,
        bot: &str,
        conversation: &str,
        user: &str,
        snapshot: &Snapshot,
        change: &DialogueChange,
        now_ms: i64,
    ) -> redis::RedisResult<bool> {
        let (value, ttl_ms) = match change {
            DialogueChange::Unchanged => return Ok(true),
            DialogueChange::Clear => (String::new(), 0),
            DialogueChange::Set(state) => {
                let until_deadline =
                    u64::try_from(state.deadline_ms.saturating_sub(now_ms)).unwrap_or(0);
                let keep = u64::try_from(KEEP_AFTER_DEADLINE.as_millis()).unwrap_or(u64::MAX);
                (
                    serde_json::to_string(state).unwrap_or_default(),
                    until_deadline.saturating_add(keep),
                )
            }
        };
        let mut redis = self.redis.clone();
        let applied: i64 = redis::Script::new(COMPARE_AND_SET)
            .key(self.key(bot, conversation, user))
            .arg(&snapshot.raw)
            .arg(value)
            .arg(ttl_ms.max(1))
            .invoke_async(&mut redis)
            .await?;
        Ok(applied == 1)
    }
}
