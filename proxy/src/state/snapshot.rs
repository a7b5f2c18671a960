//! The routing snapshot: everything a request needs, immutable, swapped
//! whole by a reload.

use std::collections::HashMap;
use std::sync::Arc;

use api::routing::{RoutedView, RoutingTable};
use arc_swap::ArcSwapOption;
use backends::OpenContext;

use super::backend::BackendHandle;
use crate::config::Loaded;
use crate::guard::{Guard, GuardConfig};
use crate::metrics::Metrics;
use crate::view_metrics::{SeriesRef, ViewSlots};

/// Everything a request needs, fixed for its lifetime.
pub struct Snapshot {
    /// This process's count of routing tables installed (1, 2, ...).
    pub version: u64,
    /// The routing table's content digest: equal across processes serving
    /// the same routes ([`api::RoutingTable::digest`]).
    pub digest: String,
    /// The routing table without its views (`feature_views` is empty):
    /// they live once, shared, in `view_list` and `views`.
    pub table: RoutingTable,
    /// The views in the document's order.
    pub view_list: Vec<Arc<RoutedView>>,
    /// The same views by name.
    pub views: HashMap<String, Arc<RoutedView>>,
    pub backends: HashMap<String, Arc<BackendHandle>>,
    /// Each view's per-view metric series, resolved on first use.
    pub view_metrics: ViewSlots,
}

impl Snapshot {
    /// The per-view series of `view` (a view of this snapshot) on
    /// `backend`; `None` when per-view metrics are off.
    pub fn view_series<'a>(
        &'a self,
        view: &Arc<RoutedView>,
        backend: &str,
        metrics: &Metrics,
    ) -> Option<SeriesRef<'a>> {
        self.view_metrics
            .series(&metrics.views, &self.table.project, view, backend)
    }

    /// The whole routing table, views included (for one-shot commands
    /// that record or print it).
    pub fn table_with_views(&self) -> RoutingTable {
        let mut table = self.table.clone();
        table.feature_views = self.view_list.iter().map(|v| v.as_ref().clone()).collect();
        table
    }

    /// The backend handles this snapshot opened (not carried over from
    /// `previous`, the snapshot it was built from).
    pub fn new_backends<'a>(
        &'a self,
        previous: Option<&'a Snapshot>,
    ) -> impl Iterator<Item = &'a Arc<BackendHandle>> + 'a {
        self.backends.iter().filter_map(move |(name, h)| {
            let carried = previous
                .and_then(|p| p.backends.get(name))
                .is_some_and(|old| Arc::ptr_eq(old, h));
            (!carried).then_some(h)
        })
    }

    pub fn backend_of(&self, view: &RoutedView) -> Option<&Arc<BackendHandle>> {
        self.backends.get(&view.backend)
    }

    /// Whether the proxy serves with these routes (`/ready`, gRPC health):
    /// some backend answers, or there are none. A backend that is down
    /// fails only its own views; with every backend down nothing can be
    /// served.
    pub fn serving(&self) -> bool {
        self.backends.is_empty() || self.backends.values().any(|b| b.down_reason().is_none())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("backend `{backend}`: {source}")]
    Backend {
        backend: String,
        #[source]
        source: backends::BackendError,
    },
}

/// What a serving process gives a snapshot's new backends: where they
/// record their health and per-view series, and the bounds of their calls.
/// One-shot commands build without it (and need every backend up).
#[derive(Clone, Copy)]
pub struct Serving<'a> {
    pub metrics: &'a Metrics,
    pub guard: GuardConfig,
}

/// Opens the backends of `loaded` (reusing unchanged ones from `previous`)
/// and indexes its views. Every backend's configuration is checked against
/// the trust of its source before anything connects: a refused path or
/// credential reference rejects the whole table. While serving, a backend
/// that is only unreachable is marked down instead, and retried by its
/// monitor (which the caller starts for each of
/// [`Snapshot::new_backends`]).
pub async fn build_snapshot(
    loaded: Loaded,
    version: u64,
    previous: Option<&Snapshot>,
    serving: Option<Serving<'_>>,
    secrets_dir: &std::path::Path,
) -> Result<Snapshot, BuildError> {
    let open_ctx = OpenContext {
        base_dir: loaded.base_dir.clone(),
        secrets_dir: secrets_dir.to_path_buf(),
        trust: loaded.trust,
    };
    for b in &loaded.table.backends {
        backends::validate(b, &open_ctx).map_err(|source| BuildError::Backend {
            backend: b.name.clone(),
            source,
        })?;
    }
    let mut backends = HashMap::new();
    for b in &loaded.table.backends {
        let reuse = previous
            .and_then(|p| p.backends.get(&b.name))
            .filter(|h| h.conf == b.conf && h.open_ctx == open_ctx);
        let handle = match reuse {
            Some(h) => Arc::clone(h),
            None => {
                let h = Arc::new(BackendHandle {
                    name: b.name.clone(),
                    conf: b.conf.clone(),
                    open_ctx: open_ctx.clone(),
                    store: ArcSwapOption::empty(),
                    down: std::sync::Mutex::new(None),
                    guard: Guard::new(serving.map(|s| s.guard).unwrap_or_default()),
                });
                let fail = |source| BuildError::Backend {
                    backend: b.name.clone(),
                    source,
                };
                match serving {
                    // Serving: a backend that is down now is retried in the
                    // background; its views answer 503 meanwhile. One whose
                    // configuration its client refuses rejects the table.
                    Some(sv) => {
                        if let Err(e @ backends::BackendError::Config(_)) =
                            h.connect(sv.metrics).await
                        {
                            return Err(fail(e));
                        }
                    }
                    // One-shot commands need every backend.
                    None => {
                        let store = backends::open(b, &open_ctx).await.map_err(fail)?;
                        h.store.store(Some(Arc::new(store)));
                    }
                }
                h
            }
        };
        backends.insert(b.name.clone(), handle);
    }
    // The views move out of the table (one copy of each, not two).
    // Unchanged views keep the previous snapshot's `Arc`s: a reload of a
    // large table that changed one view allocates one view.
    let mut table = loaded.table;
    let view_list: Vec<Arc<RoutedView>> = std::mem::take(&mut table.feature_views)
        .into_iter()
        .map(|v| {
            previous
                .and_then(|p| p.views.get(&v.name))
                .filter(|old| old.as_ref() == &v)
                .map(Arc::clone)
                .unwrap_or_else(|| Arc::new(v))
        })
        .collect();
    let views = view_list
        .iter()
        .map(|v| (v.name.clone(), Arc::clone(v)))
        .collect::<HashMap<String, Arc<RoutedView>>>();
    // Serving: a metric slot per view (one-shot commands record nothing).
    let view_metrics = match serving {
        Some(sv) => ViewSlots::build(
            &sv.metrics.views,
            &table.project,
            views.values(),
            previous.map(|p| &p.view_metrics),
        ),
        None => ViewSlots::default(),
    };
    Ok(Snapshot {
        version,
        digest: loaded.digest,
        table,
        view_list,
        views,
        backends,
        view_metrics,
    })
}
