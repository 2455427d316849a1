//! Sessions and refresh tokens in Redis.
//!
//! A session is one refresh-token family (one device login). Its refresh
//! tokens are opaque random strings stored only as SHA-256 hashes. Each is
//! single-use: refreshing marks it spent and issues the next one in the same
//! family; presenting a spent token again means it was stolen (or raced) and
//! revokes the whole family (RFC 6819 §5.2.2.3, OAuth 2.0 Security BCP
//! §4.14). Every change is one Lua script, so it is atomic.
//!
//! Keys (under the configured prefix):
//! - `auth:rt:{hash}`      hash {sid, uid, used}          TTL = refresh TTL
//! - `auth:sess:{sid}`     hash {uid, ua, ip, device, created, last_used, expires}
//! - `auth:sess_rt:{sid}`  set of the family's token hashes
//! - `auth:user_sess:{uid}` set of the user's session ids (pruned on read)
//!
//! Scripts build keys from the prefix, so this assumes one Redis (not a
//! cluster), as the platform deploys it.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use redis::aio::ConnectionManager;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::error::AuthError;

/// Where a login came from (shown in the session list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub user_agent: String,
    pub ip: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: Uuid,
    pub device: Device,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A new refresh token (shown to the client once) and its session.
#[derive(Debug, Clone)]
pub struct IssuedRefresh {
    pub token: String,
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct SessionStore {
    redis: ConnectionManager,
    prefix: String,
    ttl: Duration,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("rt_{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_token(&token);
    (token, hash)
}

fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

const CREATE: &str = r"
local p, sid, uid, hash, ttl, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local sess = p..'auth:sess:'..sid
redis.call('HSET', sess, 'uid', uid, 'ua', ARGV[7], 'ip', ARGV[8], 'device', ARGV[9],
  'created', now, 'last_used', now, 'expires', tonumber(now) + ttl)
redis.call('EXPIRE', sess, ttl)
redis.call('HSET', p..'auth:rt:'..hash, 'sid', sid, 'uid', uid, 'used', '0')
redis.call('EXPIRE', p..'auth:rt:'..hash, ttl)
redis.call('SADD', p..'auth:sess_rt:'..sid, hash)
redis.call('EXPIRE', p..'auth:sess_rt:'..sid, ttl)
redis.call('SADD', p..'auth:user_sess:'..uid, sid)
return 1
";

// Revokes a family. Shared by the scripts below (prepended).
const REVOKE_FN: &str = r"
local function revoke(p, sid)
  local sess = p..'auth:sess:'..sid
  local uid = redis.call('HGET', sess, 'uid')
  for _, h in ipairs(redis.call('SMEMBERS', p..'auth:sess_rt:'..sid)) do
    redis.call('DEL', p..'auth:rt:'..h)
  end
  redis.call('DEL', p..'auth:sess_rt:'..sid)
  local existed = redis.call('DEL', sess)
  if uid then redis.call('SREM', p..'auth:user_sess:'..uid, sid) end
  return existed
end
";

const ROTATE: &str = r"
local p, old, new, ttl, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local key = p..'auth:rt:'..old
local sid = redis.call('HGET', key, 'sid')
if not sid then return {'invalid'} end
local uid = redis.call('HGET', key, 'uid')
if redis.call('HGET', key, 'used') == '1' then
  revoke(p, sid)
  return {'reused', sid, uid}
end
local sess = p..'auth:sess:'..sid
if redis.call('EXISTS', sess) == 0 then
  redis.call('DEL', key)
  return {'invalid'}
end
redis.call('HSET', key, 'used', '1')
redis.call('HSET', p..'auth:rt:'..new, 'sid', sid, 'uid', uid, 'used', '0')
redis.call('EXPIRE', p..'auth:rt:'..new, ttl)
redis.call('SADD', p..'auth:sess_rt:'..sid, new)
redis.call('EXPIRE', p..'auth:sess_rt:'..sid, ttl)
redis.call('HSET', sess, 'last_used', now, 'expires', tonumber(now) + ttl)
redis.call('EXPIRE', sess, ttl)
return {'ok', sid, uid}
";

const REVOKE_BY_TOKEN: &str = r"
local p = ARGV[1]
local sid = redis.call('HGET', p..'auth:rt:'..ARGV[2], 'sid')
if not sid then return 0 end
return revoke(p, sid)
";

const REVOKE_ONE: &str = r"
local p, sid, uid = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', p..'auth:sess:'..sid, 'uid') ~= uid then return 0 end
return revoke(p, sid)
";

const REVOKE_ALL: &str = r"
local p, uid, keep = ARGV[1], ARGV[2], ARGV[3]
local n = 0
for _, sid in ipairs(redis.call('SMEMBERS', p..'auth:user_sess:'..uid)) do
  if sid ~= keep then
    n = n + revoke(p, sid)
    redis.call('SREM', p..'auth:user_sess:'..uid, sid)
  end
end
return n
";

/// The outcome of presenting a refresh token.
#[derive(Debug)]
pub enum Rotation {
    Rotated(IssuedRefresh),
    Invalid,
    /// A spent token came back: its family is now revoked.
    Reused {
        session_id: Uuid,
        user_id: Uuid,
    },
}

fn timestamp(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

impl SessionStore {
    pub fn new(redis: ConnectionManager, prefix: impl Into<String>, ttl: Duration) -> Self {
        Self {
            redis,
            prefix: prefix.into(),
            ttl,
        }
    }

    fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs().max(1)
    }

    fn expiry(&self, now: i64) -> DateTime<Utc> {
        timestamp(now + i64::try_from(self.ttl_secs()).unwrap_or(i64::MAX / 2))
    }

    /// Starts a new session (login) with its first refresh token.
    pub async fn create(&self, user_id: Uuid, device: &Device) -> Result<IssuedRefresh, AuthError> {
        let (token, hash) = new_token();
        let session_id = Uuid::now_v7();
        let now = Utc::now().timestamp();
        redis::Script::new(CREATE)
            .arg(&self.prefix)
            .arg(session_id.to_string())
            .arg(user_id.to_string())
            .arg(&hash)
            .arg(self.ttl_secs())
            .arg(now)
            .arg(&device.user_agent)
            .arg(&device.ip)
            .arg(&device.name)
            .invoke_async::<i64>(&mut self.redis.clone())
            .await?;
        Ok(IssuedRefresh {
            token,
            session_id,
            user_id,
            expires_at: self.expiry(now),
        })
    }

    /// Spends `token` and issues its successor, or detects reuse.
    pub async fn rotate(&self, token: &str) -> Result<Rotation, AuthError> {
        let (next, next_hash) = new_token();
        let now = Utc::now().timestamp();
        let reply: Vec<String> = redis::Script::new(&format!("{REVOKE_FN}{ROTATE}"))
            .arg(&self.prefix)
            .arg(hash_token(token))
            .arg(&next_hash)
            .arg(self.ttl_secs())
            .arg(now)
            .invoke_async(&mut self.redis.clone())
            .await?;
        let ids = |i: usize| {
            reply
                .get(i)
                .and_then(|s| Uuid::parse_str(s).ok())
                .unwrap_or_default()
        };
        Ok(match reply.first().map(String::as_str) {
            Some("ok") => Rotation::Rotated(IssuedRefresh {
                token: next,
                session_id: ids(1),
                user_id: ids(2),
                expires_at: self.expiry(now),
            }),
            Some("reused") => Rotation::Reused {
                session_id: ids(1),
                user_id: ids(2),
            },
            _ => Rotation::Invalid,
        })
    }

    /// Ends the session owning `token` (logout). Unknown tokens are a no-op.
    pub async fn revoke_by_token(&self, token: &str) -> Result<bool, AuthError> {
        let removed: i64 = redis::Script::new(&format!("{REVOKE_FN}{REVOKE_BY_TOKEN}"))
            .arg(&self.prefix)
            .arg(hash_token(token))
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(removed > 0)
    }

    /// Ends one of `user_id`'s sessions; false when it is not theirs or gone.
    pub async fn revoke(&self, user_id: Uuid, session_id: Uuid) -> Result<bool, AuthError> {
        let removed: i64 = redis::Script::new(&format!("{REVOKE_FN}{REVOKE_ONE}"))
            .arg(&self.prefix)
            .arg(session_id.to_string())
            .arg(user_id.to_string())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(removed > 0)
    }

    /// Ends every session of the user except `keep`; returns how many.
    pub async fn revoke_all(&self, user_id: Uuid, keep: Option<Uuid>) -> Result<u32, AuthError> {
        let removed: i64 = redis::Script::new(&format!("{REVOKE_FN}{REVOKE_ALL}"))
            .arg(&self.prefix)
            .arg(user_id.to_string())
            .arg(keep.map(|id| id.to_string()).unwrap_or_default())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(u32::try_from(removed).unwrap_or(0))
    }

    /// The user's live sessions, newest first, in two round trips.
    pub async fn list(&self, user_id: Uuid) -> Result<Vec<SessionInfo>, AuthError> {
        let mut redis = self.redis.clone();
        let index = format!("{}auth:user_sess:{user_id}", self.prefix);
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&index)
            .query_async(&mut redis)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL")
                .arg(format!("{}auth:sess:{id}", self.prefix));
        }
        let rows: Vec<HashMap<String, String>> = pipe.query_async(&mut redis).await?;
        let mut sessions = Vec::with_capacity(ids.len());
        let mut expired = Vec::new();
        for (id, row) in ids.iter().zip(rows) {
            let Ok(session_id) = Uuid::parse_str(id) else {
                continue;
            };
            if row.is_empty() {
                expired.push(id.clone());
                continue;
            }
            let at =
                |field: &str| timestamp(row.get(field).and_then(|v| v.parse().ok()).unwrap_or(0));
            let text = |field: &str| row.get(field).cloned().unwrap_or_default();
            sessions.push(SessionInfo {
                id: session_id,
                device: Device {
                    user_agent: text("ua"),
                    ip: text("ip"),
                    name: text("device"),
                },
                created_at: at("created"),
                last_used_at: at("last_used"),
                expires_at: at("expires"),
            });
        }
        if !expired.is_empty() {
            redis::cmd("SREM")
                .arg(&index)
                .arg(&expired)
                .query_async::<i64>(&mut redis)
                .await?;
        }
        sessions.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(sessions)
    }

    /// Readiness.
    pub fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, hash_a) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with("rt_") && a.len() > 40);
        assert_eq!(hash_a, hash_token(&a));
        assert_eq!(hash_a.len(), 64);
        assert!(!hash_a.contains(&a[3..]));
    }
}
