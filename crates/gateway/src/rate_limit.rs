//! Rate limits shared by every gateway replica (state in Redis): a burst
//! and a sustained rate per subject, by the generic cell rate algorithm
//! (GCRA, as in Redis-Cell and Stripe's limiter): one key per subject holding
//! its "theoretical arrival time", updated atomically by a Lua script that
//! reads Redis's own clock, so replicas' clocks do not matter.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use redis::aio::ConnectionManager;
use service_kit::{ApiError, ErrorCode};

/// `burst/period`: up to `burst` at once, refilling `burst` per `period`
/// (e.g. `20/1m`: 20 at once, then one every 3 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub burst: u32,
    pub period: Duration,
}

impl Limit {
    /// Time between two requests at the sustained rate.
    fn interval_ms(self) -> u64 {
        let period = u64::try_from(self.period.as_millis()).unwrap_or(u64::MAX);
        (period / u64::from(self.burst.max(1))).max(1)
    }
}

impl FromStr for Limit {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let (burst, period) = raw
            .split_once('/')
            .ok_or_else(|| format!("`{raw}`: expected BURST/PERIOD, e.g. 20/1m"))?;
        let burst: u32 = burst
            .trim()
            .parse()
            .map_err(|_| format!("`{raw}`: BURST must be a positive whole number"))?;
        if burst == 0 {
            return Err(format!("`{raw}`: BURST must be at least 1"));
        }
        let period = service_kit::config::parse_duration(period.trim())?;
        if period.is_zero() {
            return Err(format!("`{raw}`: PERIOD must be longer than zero"));
        }
        Ok(Self { burst, period })
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:?}", self.burst, self.period)
    }
}

/// GCRA: returns 0 when allowed (and records it), else the milliseconds to
/// wait. KEYS[1] the subject's key; ARGV: interval ms, burst.
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - burst * interval
if wait > 0 then return wait end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return 0
";

#[derive(Clone)]
pub struct RateLimiter {
    redis: ConnectionManager,
    prefix: String,
    script: redis::Script,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(redis: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            redis,
            prefix: prefix.into(),
            script: redis::Script::new(GCRA),
        }
    }

    /// Counts one request of `subject` against `limit` in `bucket`; a
    /// `RATE_LIMITED` error (with when to retry) when over it. If Redis is
    /// unreachable the request is let through: a limiter outage must not
    /// take the whole API down.
    pub async fn check(&self, bucket: &str, subject: &str, limit: Limit) -> Result<(), ApiError> {
        let key = format!("{}ratelimit:{bucket}:{subject}", self.prefix);
        let mut redis = self.redis.clone();
        let wait: Result<u64, _> = self
            .script
            .key(&key)
            .arg(limit.interval_ms())
            .arg(limit.burst)
            .invoke_async(&mut redis)
            .await;
        match wait {
            Ok(0) => Ok(()),
            Ok(wait_ms) => Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many requests ({bucket}: at most {}); slow down",
                    limit_text(limit)
                ),
            )
            .with_retry_after(Duration::from_millis(wait_ms))),
            Err(error) => {
                tracing::warn!(%error, bucket, "rate limiter unavailable; letting the request through");
                Ok(())
            }
        }
    }
}

fn limit_text(limit: Limit) -> String {
    format!("{} per {}s", limit.burst, limit.period.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_refuse_nonsense() {
        let limit: Limit = "20/1m".parse().unwrap();
        assert_eq!(
            limit,
            Limit {
                burst: 20,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(limit.interval_ms(), 3000);
        for bad in ["", "20", "0/1m", "x/1m", "5/0s", "5/soon"] {
            assert!(bad.parse::<Limit>().is_err(), "{bad}");
        }
    }
}
