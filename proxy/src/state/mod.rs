//! The routing snapshot requests read, and the reloader that swaps it.
//!
//! A snapshot is immutable; requests take an `Arc` to the current one at
//! their start, so a reload never changes a request mid-flight. Backends
//! whose configuration did not change are carried over with their pools.
//!
//! - [`backend`]: a backend's handle, its guard and health monitor, and
//!   the expiry sweeper;
//! - [`snapshot`]: building a snapshot from a loaded table, provisioning;
//! - [`reload`]: installing a new table (the previous one keeps serving on
//!   failure);
//! - [`watch`]: watching the source's files and reloading on change.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::guard::GuardConfig;
use crate::metrics::Metrics;

mod backend;
mod reload;
mod snapshot;
mod watch;

use backend::spawn_monitor;
pub use backend::{BackendHandle, spawn_sweeper};
pub use reload::{ReloadError, install, reload};
pub use snapshot::{
    BuildError, ProvisionError, Snapshot, build_snapshot, provision, provision_backend,
};
pub(crate) use watch::SUPERVISOR_BACKOFF;
pub use watch::spawn_reloader;

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
}
