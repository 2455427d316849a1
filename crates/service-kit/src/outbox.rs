//! The loop both outbox relays ([`crate::pg_outbox`], [`crate::mongo_outbox`]) run.

use std::fmt::Display;
use std::time::Duration;

use tokio::sync::Notify;

use crate::Shutdown;

/// Publishes batches until shutdown: straight on while batches come back
/// full, then on every `wake` and every `poll_every` regardless; backs off
/// (up to 5 s) while publishing fails.
pub(crate) async fn relay_loop<F, Fut, E>(
    batch: usize,
    wake: &Notify,
    poll_every: Duration,
    shutdown: &Shutdown,
    mut publish_batch: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, E>>,
    E: Display,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match publish_batch().await {
            Ok(n) if n == batch => continue,
            Ok(_) => backoff = Duration::from_millis(200),
            Err(error) => {
                tracing::warn!(%error, ?backoff, "outbox relay failed; will retry");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(poll_every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
