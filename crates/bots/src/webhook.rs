//! Webhook bots: the message is POSTed as JSON to the bot's endpoint, signed
//! like Stripe/Mattermost outgoing webhooks — `X-Bot-Timestamp` and
//! `X-Bot-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` — so
//! the receiver can check origin and freshness. Timeouts, connection errors,
//! 429 and 5xx are retried with jittered exponential backoff; other 4xx are
//! final. The answer is `{"replies": [...]}`, `{"reply": "..."}` or 204.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac as _};
use rand::Rng as _;
use serde::Deserialize;
use sha2::Sha256;

use crate::definition::{SecretSource, Webhook};

pub const SIGNATURE_HEADER: &str = "x-bot-signature";
pub const TIMESTAMP_HEADER: &str = "x-bot-timestamp";

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook secret unavailable: {0}")]
    Secret(String),
    #[error("webhook failed after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: String },
    #[error("webhook refused the message: HTTP {0}")]
    Refused(u16),
    #[error("webhook answered with an unreadable body: {0}")]
    Body(String),
}

impl WebhookError {
    /// Worth trying the whole event again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Exhausted { .. } | Self::Secret(_))
    }
}

fn secret(source: &SecretSource) -> Result<String, WebhookError> {
    let value = match source {
        SecretSource::Env(var) => {
            std::env::var(var).map_err(|_| WebhookError::Secret(format!("${var} is not set")))?
        }
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| WebhookError::Secret(format!("{path}: {e}")))?,
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(WebhookError::Secret("the secret is empty".to_owned()));
    }
    Ok(value)
}

/// `sha256=<hex>` over `<timestamp>.<body>`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    reply: Option<String>,
    #[serde(default)]
    replies: Vec<String>,
}

/// Delivers `payload`; returns the replies to post.
pub async fn call(
    client: &reqwest::Client,
    webhook: &Webhook,
    payload: &serde_json::Value,
) -> Result<Vec<String>, WebhookError> {
    let secret = secret(&webhook.secret)?;
    let body = serde_json::to_vec(payload).map_err(|e| WebhookError::Body(e.to_string()))?;
    let mut backoff = Duration::from_millis(200);
    let mut last = String::new();
    for attempt in 1..=webhook.max_attempts {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sent = client
            .post(webhook.url.clone())
            .timeout(webhook.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, sign(secret.as_bytes(), timestamp, &body))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == reqwest::StatusCode::NO_CONTENT => {
                return Ok(Vec::new());
            }
            Ok(response) if response.status().is_success() => {
                let answer: Answer = response
                    .json()
                    .await
                    .map_err(|e| WebhookError::Body(e.to_string()))?;
                return Ok(answer.reply.into_iter().chain(answer.replies).collect());
            }
            Ok(response)
                if response.status().is_server_error()
                    || response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                last = format!("HTTP {}", response.status().as_u16());
            }
            Ok(response) => return Err(WebhookError::Refused(response.status().as_u16())),
            Err(error) => last = error.to_string(),
        }
        if attempt < webhook.max_attempts {
            let jitter = rand::rng().random_range(0.5..1.5);
            tokio::time::sleep(backoff.mul_f64(jitter)).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
    Err(WebhookError::Exhausted {
        attempts: webhook.max_attempts,
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let a = sign(b"secret", 1, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, sign(b"secret", 2, b"{}"));
        assert_ne!(a, sign(b"secret", 1, b"{ }"));
        assert_ne!(a, sign(b"other", 1, b"{}"));
    }
}
