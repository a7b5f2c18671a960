//! The state a serving process shares between its tasks: the current
//! snapshot and what every reload needs.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::snapshot::{Serving, Snapshot};
use crate::guard::GuardConfig;
use crate::metrics::Metrics;

/// Shared, swappable state.
pub struct Shared {
    pub current: ArcSwapOption<Snapshot>,
    pub metrics: Metrics,
    /// Where credential files of the routing table resolve (`--secrets-dir`).
    pub secrets_dir: PathBuf,
    /// Bounds of every backend call.
    pub guard: GuardConfig,
    /// `--apply`: provision tables on load and when a backend recovers.
    pub apply: bool,
    /// The Feast registry read over the network or from a database, if
    /// any (reported by `/ready`).
    pub registry: std::sync::OnceLock<Arc<crate::registry::RegistryFeed>>,
}

impl AsRef<Metrics> for Shared {
    fn as_ref(&self) -> &Metrics {
        &self.metrics
    }
}

impl Shared {
    pub fn new(secrets_dir: PathBuf) -> Shared {
        Shared {
            current: ArcSwapOption::empty(),
            metrics: Metrics::new(),
            secrets_dir,
            guard: GuardConfig::default(),
            apply: false,
            registry: std::sync::OnceLock::new(),
        }
    }

    pub fn with_guard(mut self, guard: GuardConfig) -> Shared {
        self.guard = guard;
        self
    }

    pub fn with_apply(mut self, apply: bool) -> Shared {
        self.apply = apply;
        self
    }

    /// `--view-metrics-limit`: views named in per-view metrics (0: none).
    /// Call before any routes are loaded (it starts the metrics afresh).
    pub fn with_view_metrics_limit(mut self, limit: usize) -> Shared {
        self.metrics = Metrics::with_view_limit(limit);
        self
    }

    /// What a snapshot built for this process gives its new backends.
    pub fn serving(&self) -> Serving<'_> {
        Serving {
            metrics: &self.metrics,
            guard: self.guard,
        }
    }
}
