//! The definitions in force, and their hot reload.
//!
//! The file is polled (contents hashed) rather than watched with inotify: a
//! ConfigMap volume update swaps the `..data` symlink instead of writing the
//! file, which inotify watches on the file itself miss; reading through the
//! path always sees the current target. The kubelet takes up to a minute to
//! project a change anyway, so a one-second poll of a small file costs
//! nothing that matters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sha2::{Digest as _, Sha256};

use crate::definition::{self, BotSet};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub path: String,
    /// SHA-256 of the contents in force ("" before the first good load).
    pub loaded_digest: String,
    pub loaded_at: Option<SystemTime>,
    pub bot_count: usize,
    /// Set while the file on disk is invalid (the previous version stays).
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    /// Digest of the contents last examined, good or bad.
    seen_digest: String,
}

#[derive(Debug, Clone, Default)]
struct Metrics {
    reloads: Counter,
    reload_errors: Counter,
    invalid: Gauge,
}

#[derive(Debug)]
pub struct Definitions {
    path: PathBuf,
    current: RwLock<Arc<BotSet>>,
    status: Mutex<Status>,
    metrics: Metrics,
}

/// What one check of the file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Applied,
    Rejected(String),
}

impl Definitions {
    /// Loads `path` once; a missing or invalid file leaves no bots and an error.
    pub fn open(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let definitions = Self {
            status: Mutex::new(Status {
                path: path.display().to_string(),
                ..Status::default()
            }),
            path,
            current: RwLock::new(Arc::default()),
            metrics: Metrics::default(),
        };
        definitions.check();
        definitions
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "definitions_reloads",
            "Definition files applied",
            self.metrics.reloads.clone(),
        );
        registry.register(
            "definitions_reload_errors",
            "Definition files rejected (the previous version stayed in force)",
            self.metrics.reload_errors.clone(),
        );
        registry.register(
            "definitions_invalid",
            "1 while the definitions file on disk is invalid",
            self.metrics.invalid.clone(),
        );
    }

    pub fn current(&self) -> Arc<BotSet> {
        self.current
            .read()
            .map(|set| set.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub fn status(&self) -> Status {
        self.lock_status().clone()
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the file; applies it if it changed and compiles.
    pub fn check(&self) -> Reload {
        let read = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()));
        let digest = match &read {
            Ok(text) => hex::encode(Sha256::digest(text.as_bytes())),
            Err(message) => format!("unreadable: {message}"),
        };
        if self.lock_status().seen_digest == digest {
            return Reload::Unchanged;
        }
        let outcome = read.and_then(|text| definition::load(&text).map_err(|e| e.to_string()));
        let mut status = self.lock_status();
        status.seen_digest = digest.clone();
        match outcome {
            Ok(set) => {
                status.loaded_digest = digest;
                status.loaded_at = Some(SystemTime::now());
                status.bot_count = set.bots.len();
                status.last_error = None;
                status.last_error_at = None;
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(set);
                }
                self.metrics.reloads.inc();
                self.metrics.invalid.set(0);
                tracing::info!(path = %self.path.display(), bots = status.bot_count, "bot definitions applied");
                Reload::Applied
            }
            Err(message) => {
                status.last_error = Some(message.clone());
                status.last_error_at = Some(SystemTime::now());
                self.metrics.reload_errors.inc();
                self.metrics.invalid.set(1);
                tracing::error!(path = %self.path.display(), error = %message, "bot definitions rejected; the previous version stays in force");
                Reload::Rejected(message)
            }
        }
    }

    /// Checks the file every `interval` until `shutdown`; calls `applied`
    /// after each change that took effect.
    pub async fn watch<F>(
        self: Arc<Self>,
        interval: Duration,
        applied: F,
        shutdown: service_kit::Shutdown,
    ) where
        F: Fn(Arc<BotSet>) + Send + Sync + 'static,
    {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.cancelled() => return,
            }
            let this = self.clone();
            // File I/O and compilation off the async workers.
            let outcome = tokio::task::spawn_blocking(move || this.check()).await;
            if matches!(outcome, Ok(Reload::Applied)) {
                applied(self.current());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_good_version_and_reports_the_error() {
        let dir = std::env::temp_dir().join(format!("bots-reload-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bots.yaml");
        std::fs::write(&file, "bots:\n  - name: one_bot\n    fallback: hi\n").unwrap();
        let definitions = Definitions::open(&file);
        assert_eq!(definitions.current().bots.len(), 1);
        assert_eq!(definitions.check(), Reload::Unchanged);

        std::fs::write(&file, "bots:\n  - name: X\n").unwrap();
        assert!(matches!(definitions.check(), Reload::Rejected(m) if m.contains("bots[X].name")));
        assert_eq!(definitions.current().bots[0].name, "one_bot");
        assert!(definitions.status().last_error.is_some());

        // A ConfigMap update: the path becomes a symlink to a new file.
        let next = dir.join("next.yaml");
        std::fs::write(&next, "bots:\n  - name: two_bot\n    fallback: hi\n").unwrap();
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&next, &file).unwrap();
        assert_eq!(definitions.check(), Reload::Applied);
        assert_eq!(definitions.current().bots[0].name, "two_bot");
        assert_eq!(definitions.status().last_error, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
