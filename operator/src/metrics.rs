//! The operator's Prometheus metrics (served on the admin port).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: &'static str,
    error: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    reconciles: Family<ReconcileLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    writes: Counter,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 12))
            }),
            writes: Counter::default(),
            leader: Gauge::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "operator_reconciliations",
            "Reconciliations by controller and result",
            self.reconciles.clone(),
        );
        registry.register(
            "operator_reconcile_errors",
            "Failed reconciliations by controller and error kind",
            self.errors.clone(),
        );
        registry.register(
            "operator_reconcile_duration_seconds",
            "Time spent in one reconciliation",
            self.duration.clone(),
        );
        registry.register(
            "operator_api_writes",
            "Creates, patches and deletes sent to the API server (a no-op reconcile sends none)",
            self.writes.clone(),
        );
        registry.register(
            "operator_leader",
            "1 while this replica holds the leader lease",
            self.leader.clone(),
        );
    }

    pub fn reconciled(
        &self,
        controller: &'static str,
        took: Duration,
        error: Option<&'static str>,
    ) {
        let result = if error.is_some() { "error" } else { "ok" };
        self.reconciles
            .get_or_create(&ReconcileLabels { controller, result })
            .inc();
        if let Some(error) = error {
            self.errors
                .get_or_create(&ErrorLabels { controller, error })
                .inc();
        }
        self.duration
            .get_or_create(&ControllerLabels { controller })
            .observe(took.as_secs_f64());
    }

    pub fn wrote(&self, count: u64) {
        self.writes.inc_by(count);
    }

    /// Writes sent so far (tests assert a no-op resync adds none).
    pub fn writes(&self) -> u64 {
        self.writes.get()
    }

    pub fn reconciliations(&self, controller: &'static str) -> u64 {
        ["ok", "error"]
            .into_iter()
            .map(|result| {
                self.reconciles
                    .get_or_create(&ReconcileLabels { controller, result })
                    .get()
            })
            .sum()
    }
}
