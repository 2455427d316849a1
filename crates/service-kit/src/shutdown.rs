//! Graceful shutdown, passed around as a value.
//!
//! One [`Shutdown`] per process: servers stop accepting when it fires, and
//! every piece of in-flight work spawned through [`Shutdown::spawn`] (or
//! holding a [`Shutdown::guard`]) is waited for by [`Shutdown::drain`]. Tests
//! create their own and trigger it; `main` ties it to SIGTERM / Ctrl-C.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown: everything waiting on [`Self::cancelled`] wakes.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown has started. Pass it to servers as their stop
    /// signal.
    pub fn cancelled(&self) -> WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }

    /// A child token: cancelled with this shutdown, or on its own.
    pub fn child_token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Spawns work that [`Self::drain`] waits for.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Marks in-flight work (e.g. one request) that [`Self::drain`] waits for
    /// while the guard lives.
    pub fn guard(&self) -> TaskTrackerToken {
        self.tracker.token()
    }

    /// Waits for tracked work to finish, at most `grace`. Returns whether
    /// everything finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tracker.close();
        let drained = tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                still_running = self.tracker.len(),
                ?grace,
                "shutdown grace period over; abandoning in-flight work"
            );
        }
        drained
    }

    /// Triggers this shutdown on SIGTERM or Ctrl-C.
    pub fn trigger_on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            os_signal().await;
            tracing::info!("shutdown signal received");
            this.trigger();
        });
    }
}

/// Resolves on SIGTERM (Kubernetes' stop signal) or Ctrl-C.
pub async fn os_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_tracked_work_and_guards() {
        let shutdown = Shutdown::new();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let guard = shutdown.guard();
        shutdown.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = done_tx.send(());
        });
        shutdown.trigger();
        assert!(shutdown.is_triggered());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(80)).await;
            drop(guard);
        });
        assert!(shutdown.drain(Duration::from_secs(5)).await);
        assert!(done_rx.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_the_grace_period() {
        let shutdown = Shutdown::new();
        shutdown.spawn(std::future::pending::<()>());
        assert!(!shutdown.drain(Duration::from_secs(1)).await);
    }
}
