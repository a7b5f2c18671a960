//! Operator metrics (`hos_operator_` prefix).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub controller: &'static str,
    pub resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub controller: &'static str,
    pub step: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    pub reason: &'static str,
}

fn buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    step_failures: Family<StepLabels, Counter>,
    duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    leader: Gauge,
    cache_synced: Family<CacheLabels, Gauge>,
    backfilled: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hos_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "reconcile",
            "Reconciliations by controller",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by controller and reason",
            errors.clone(),
        );
        let step_failures = Family::<StepLabels, Counter>::default();
        registry.register(
            "step_failures",
            "Reconciles a step ended with a failure recorded in the object's status, by controller, step and condition reason",
            step_failures.clone(),
        );
        let duration =
            Family::<ControllerLabels, Histogram, fn() -> Histogram>::new_with_constructor(buckets);
        registry.register(
            "reconcile_duration_seconds",
            "Reconciliation latency",
            duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let cache_synced = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "cache_synced",
            "1 once the watch cache of a controller's resource has listed its objects, 0 before",
            cache_synced.clone(),
        );
        let backfilled = Counter::default();
        registry.register(
            "backfill_rows",
            "Rows copied to a view's new backend during live moves",
            backfilled.clone(),
        );
        Metrics {
            backfilled,
            registry,
            reconciles,
            errors,
            step_failures,
            duration,
            leader,
            cache_synced,
        }
    }

    pub fn reconciled(&self, controller: &'static str, seconds: f64) {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .inc();
        self.duration
            .get_or_create(&ControllerLabels { controller })
            .observe(seconds);
    }

    pub fn failed(&self, controller: &'static str, reason: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { controller, reason })
            .inc();
    }

    /// A reconcile step failed with `reason` (a condition reason: bounded).
    pub fn step_failed(&self, controller: &'static str, step: &'static str, reason: &'static str) {
        self.step_failures
            .get_or_create(&StepLabels {
                controller,
                step,
                reason,
            })
            .inc();
    }

    pub fn backfilled(&self, rows: u64) {
        self.backfilled.inc_by(rows);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn set_cache_synced(&self, controller: &'static str, resource: &'static str, synced: bool) {
        self.cache_synced
            .get_or_create(&CacheLabels {
                controller,
                resource,
            })
            .set(i64::from(synced));
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
