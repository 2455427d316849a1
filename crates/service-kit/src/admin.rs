//! The admin port every service serves beside its API:
//! - `/healthz`: the process is alive (never touches dependencies);
//! - `/readyz`: every dependency check passes and shutdown has not begun;
//! - `/metrics`: Prometheus text format.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;

type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;
type NoteFn = Arc<dyn Fn() -> Option<String> + Send + Sync>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabels {
    dependency: String,
}

/// The set of dependency checks behind `/readyz`.
#[derive(Clone)]
pub struct Readiness {
    checks: Arc<RwLock<Vec<(String, CheckFn)>>>,
    notes: Arc<RwLock<Vec<(String, NoteFn)>>>,
    draining: Arc<AtomicBool>,
    check_timeout: Duration,
    dependency_up: Family<DependencyLabels, Gauge>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .checks
            .read()
            .map(|checks| checks.iter().map(|(name, _)| name.clone()).collect())
            .unwrap_or_default();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new(Duration::from_secs(2))
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReadinessReport {
    pub ready: bool,
    pub draining: bool,
    /// Dependency name → "ok" or the reason it failed.
    pub checks: BTreeMap<String, String>,
    /// Problems worth seeing that do not make the service unready (e.g. a
    /// rejected configuration while the previous one stays in force).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub notes: BTreeMap<String, String>,
}

impl Readiness {
    /// `check_timeout` bounds each check, so one hung dependency cannot hang
    /// the probe.
    pub fn new(check_timeout: Duration) -> Self {
        Self {
            checks: Arc::default(),
            notes: Arc::default(),
            draining: Arc::default(),
            check_timeout,
            dependency_up: Family::default(),
        }
    }

    /// Adds a named check; it passes when the future returns `Ok`.
    pub fn add<F, Fut>(&self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: CheckFn = Arc::new(move || Box::pin(check()));
        if let Ok(mut checks) = self.checks.write() {
            checks.push((name.into(), check));
        }
    }

    /// Adds a named note, shown in the report while `note` returns Some.
    pub fn note<F>(&self, name: impl Into<String>, note: F)
    where
        F: Fn() -> Option<String> + Send + Sync + 'static,
    {
        if let Ok(mut notes) = self.notes.write() {
            notes.push((name.into(), Arc::new(note)));
        }
    }

    /// From now on the service reports not ready, so load balancers stop
    /// sending it new work while it drains.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Exposes `dependency_up{dependency}` (1 or 0, as of the last probe).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "dependency_up",
            "Whether a dependency passed its last readiness check",
            self.dependency_up.clone(),
        );
    }

    /// Runs every check concurrently.
    pub async fn evaluate(&self) -> ReadinessReport {
        let checks: Vec<(String, CheckFn)> = self
            .checks
            .read()
            .map(|checks| checks.clone())
            .unwrap_or_default();
        let timeout = self.check_timeout;
        let results =
            futures::future::join_all(checks.into_iter().map(|(name, check)| async move {
                let outcome = match tokio::time::timeout(timeout, check()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(reason)) => Err(reason),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                (name, outcome)
            }))
            .await;
        let draining = self.draining.load(Ordering::SeqCst);
        let mut ready = !draining;
        let mut report = BTreeMap::new();
        for (name, outcome) in results {
            let labels = DependencyLabels {
                dependency: name.clone(),
            };
            match outcome {
                Ok(()) => {
                    self.dependency_up.get_or_create(&labels).set(1);
                    report.insert(name, "ok".to_owned());
                }
                Err(reason) => {
                    self.dependency_up.get_or_create(&labels).set(0);
                    ready = false;
                    report.insert(name, reason);
                }
            }
        }
        let notes = self
            .notes
            .read()
            .map(|notes| {
                notes
                    .iter()
                    .filter_map(|(name, note)| note().map(|text| (name.clone(), text)))
                    .collect()
            })
            .unwrap_or_default();
        ReadinessReport {
            ready,
            draining,
            checks: report,
            notes,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AdminState {
    pub readiness: Readiness,
    pub registry: Arc<Registry>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let report = state.readiness.evaluate().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => crate::ApiError::internal(error).into_response(),
    }
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the admin port in a task until shutdown, and turns `/readyz` to
/// 503 as soon as shutdown begins, so load balancers stop routing before the
/// servers stop accepting.
pub fn spawn(
    listener: TcpListener,
    state: AdminState,
    shutdown: &crate::Shutdown,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let readiness = state.readiness.clone();
    let draining = shutdown.clone();
    tokio::spawn(async move {
        draining.cancelled().await;
        readiness.set_draining();
    });
    tokio::spawn(serve(listener, state, shutdown.cancelled()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[tokio::test]
    async fn readiness_follows_checks_and_draining() {
        let readiness = Readiness::new(Duration::from_millis(200));
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        readiness.add("redis", move || {
            let up = flag.load(Ordering::SeqCst);
            async move {
                if up {
                    Ok(())
                } else {
                    Err("connection refused".to_owned())
                }
            }
        });
        readiness.add("slow", || async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        });
        assert!(readiness.evaluate().await.ready);

        up.store(false, Ordering::SeqCst);
        let report = readiness.evaluate().await;
        assert!(!report.ready);
        assert_eq!(report.checks["redis"], "connection refused");
        assert_eq!(report.checks["slow"], "ok");

        up.store(true, Ordering::SeqCst);
        assert!(readiness.evaluate().await.ready);
        readiness.set_draining();
        let report = readiness.evaluate().await;
        assert!(!report.ready && report.draining);
    }

    #[tokio::test]
    async fn a_hung_check_fails_by_timeout() {
        let readiness = Readiness::new(Duration::from_millis(50));
        readiness.add("hung", std::future::pending);
        let report = readiness.evaluate().await;
        assert!(!report.ready);
        assert!(report.checks["hung"].contains("no answer"), "{report:?}");
    }
}
