//! Presence in Redis: a user is online while any of their devices has a live
//! heartbeat. Each device entry expires by itself (its score is its deadline),
//! so a gateway that crashes cannot leave users online: the sweeper notices
//! the deadlines pass and records the transition.
//!
//! Keys (under the prefix):
//! - `presence:dev:{uid}`  sorted set: device id → deadline (ms)
//! - `presence:online`     sorted set: uid → latest device deadline (ms)
//! - `presence:last_seen`  hash: uid → last moment seen online (ms)
//!
//! Every transition is decided inside one Lua script, so exactly one caller
//! (a disconnect, or one sweeping replica) reports each online → offline.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use uuid::Uuid;

use crate::error::UsersError;

const TOUCH: &str = r"
local p, uid, device, now, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local devices = p..'presence:dev:'..uid
redis.call('ZREMRANGEBYSCORE', devices, '-inf', now)
local before = redis.call('ZCARD', devices)
redis.call('ZADD', devices, now + ttl, device)
redis.call('PEXPIRE', devices, ttl * 2)
local was_online = redis.call('ZSCORE', p..'presence:online', uid)
-- GT: keep the latest deadline; still adds a missing member.
redis.call('ZADD', p..'presence:online', 'GT', now + ttl, uid)
if before == 0 and not was_online then return 1 end
return 0
";

const LEAVE: &str = r"
local p, uid, device, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local devices = p..'presence:dev:'..uid
redis.call('ZREM', devices, device)
redis.call('ZREMRANGEBYSCORE', devices, '-inf', now)
if redis.call('ZCARD', devices) > 0 then return 0 end
if redis.call('ZREM', p..'presence:online', uid) == 1 then
  redis.call('HSET', p..'presence:last_seen', uid, now)
  return 1
end
return 0
";

const SWEEP: &str = r"
local p, now, ttl, batch = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local went_offline = {}
for _, uid in ipairs(redis.call('ZRANGEBYSCORE', p..'presence:online', '-inf', now, 'LIMIT', 0, batch)) do
  local devices = p..'presence:dev:'..uid
  redis.call('ZREMRANGEBYSCORE', devices, '-inf', now)
  local latest = redis.call('ZRANGE', devices, -1, -1, 'WITHSCORES')
  if #latest == 0 then
    local deadline = tonumber(redis.call('ZSCORE', p..'presence:online', uid))
    redis.call('ZREM', p..'presence:online', uid)
    local seen = deadline - ttl
    redis.call('HSET', p..'presence:last_seen', uid, seen)
    table.insert(went_offline, uid)
    table.insert(went_offline, tostring(seen))
  else
    redis.call('ZADD', p..'presence:online', latest[2], uid)
  end
end
return went_offline
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceState {
    pub online: bool,
    pub last_seen: Option<DateTime<Utc>>,
}

/// A transition to report as `presence.changed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub user_id: Uuid,
    pub online: bool,
    pub at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct PresenceStore {
    redis: ConnectionManager,
    prefix: String,
    ttl: Duration,
}

impl std::fmt::Debug for PresenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceStore")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish()
    }
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl PresenceStore {
    pub fn new(redis: ConnectionManager, prefix: impl Into<String>, ttl: Duration) -> Self {
        Self {
            redis,
            prefix: prefix.into(),
            ttl,
        }
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis())
            .unwrap_or(i64::MAX / 4)
            .max(1)
    }

    /// A device connected or sent a heartbeat. Returns the transition when
    /// this made the user come online.
    pub async fn touch(
        &self,
        user_id: Uuid,
        device: &str,
    ) -> Result<Option<Transition>, UsersError> {
        Ok(self
            .touch_many(&[(user_id, device.to_owned())])
            .await?
            .pop())
    }

    /// Many devices' heartbeats in one round trip. Returns the transitions
    /// of users this brought online (their devices had all expired).
    pub async fn touch_many(
        &self,
        devices: &[(Uuid, String)],
    ) -> Result<Vec<Transition>, UsersError> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let script = redis::Script::new(TOUCH);
        let mut pipe = redis::pipe();
        // EVALSHA in a pipeline does not load the script by itself.
        pipe.load_script(&script).ignore();
        for (user_id, device) in devices {
            pipe.invoke_script(
                script
                    .arg(&self.prefix)
                    .arg(user_id.to_string())
                    .arg(device)
                    .arg(millis(now))
                    .arg(self.ttl_ms()),
            );
        }
        let came_online: Vec<i64> = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(devices
            .iter()
            .zip(came_online)
            .filter(|(_, came)| *came == 1)
            .map(|((user_id, _), _)| Transition {
                user_id: *user_id,
                online: true,
                at: now,
            })
            .collect())
    }

    /// A device disconnected. Returns the transition when it was the last.
    pub async fn leave(
        &self,
        user_id: Uuid,
        device: &str,
    ) -> Result<Option<Transition>, UsersError> {
        let now = Utc::now();
        let went_offline: i64 = redis::Script::new(LEAVE)
            .arg(&self.prefix)
            .arg(user_id.to_string())
            .arg(device)
            .arg(millis(now))
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok((went_offline == 1).then_some(Transition {
            user_id,
            online: false,
            at: now,
        }))
    }

    /// Users whose every device missed its heartbeat: now offline.
    pub async fn sweep(&self, batch: usize) -> Result<Vec<Transition>, UsersError> {
        let reply: Vec<String> = redis::Script::new(SWEEP)
            .arg(&self.prefix)
            .arg(millis(Utc::now()))
            .arg(self.ttl_ms())
            .arg(batch)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(reply
            .chunks(2)
            .filter_map(|pair| {
                let user_id = Uuid::parse_str(pair.first()?).ok()?;
                let seen = pair.get(1)?.parse::<f64>().ok()? as i64;
                Some(Transition {
                    user_id,
                    online: false,
                    at: from_millis(seen),
                })
            })
            .collect())
    }

    /// Presence of many users in one round trip.
    pub async fn get_many(
        &self,
        users: &[Uuid],
    ) -> Result<HashMap<Uuid, PresenceState>, UsersError> {
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = users.iter().map(Uuid::to_string).collect();
        let (deadlines, seen): (Vec<Option<f64>>, Vec<Option<i64>>) = redis::pipe()
            .cmd("ZMSCORE")
            .arg(format!("{}presence:online", self.prefix))
            .arg(&ids)
            .cmd("HMGET")
            .arg(format!("{}presence:last_seen", self.prefix))
            .arg(&ids)
            .query_async(&mut self.redis.clone())
            .await?;
        let now = millis(Utc::now()) as f64;
        Ok(users
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let online = deadlines
                    .get(i)
                    .copied()
                    .flatten()
                    .is_some_and(|deadline| deadline > now);
                let last_seen = seen.get(i).copied().flatten().map(from_millis);
                (*user, PresenceState { online, last_seen })
            })
            .collect())
    }
}
