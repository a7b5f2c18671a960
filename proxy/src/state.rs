//! The routing snapshot requests read, and the reloader that swaps it.
//!
//! A snapshot is immutable; requests take an `Arc` to the current one at
//! their start, so a reload never changes a request mid-flight. Backends
//! whose configuration did not change are carried over with their pools.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use api::feast_config::BackendConf;
use api::routing::{RoutedView, RoutingTable};
use arc_swap::ArcSwapOption;
use backends::{OnlineStore, OpenContext};
use notify::Watcher;
use tokio::sync::mpsc;

use crate::config::{ConfigSource, Loaded};
use crate::metrics::Metrics;

/// An opened backend.
pub struct BackendHandle {
    pub name: String,
    pub conf: BackendConf,
    pub base_dir: PathBuf,
    pub store: Arc<dyn OnlineStore>,
}

/// Everything a request needs, fixed for its lifetime.
pub struct Snapshot {
    pub version: u64,
    pub table: RoutingTable,
    pub views: HashMap<String, Arc<RoutedView>>,
    pub backends: HashMap<String, Arc<BackendHandle>>,
}

impl Snapshot {
    pub fn backend_of(&self, view: &RoutedView) -> Option<&Arc<BackendHandle>> {
        self.backends.get(&view.backend)
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

/// Opens the backends of `loaded` (reusing unchanged ones from `previous`)
/// and indexes its views.
pub async fn build_snapshot(
    loaded: Loaded,
    version: u64,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, BuildError> {
    let mut backends = HashMap::new();
    for b in &loaded.table.backends {
        let reuse = previous
            .and_then(|p| p.backends.get(&b.name))
            .filter(|h| h.conf == b.conf && h.base_dir == loaded.base_dir);
        let handle = match reuse {
            Some(h) => Arc::clone(h),
            None => {
                let ctx = OpenContext {
                    base_dir: loaded.base_dir.clone(),
                };
                let store =
                    backends::open(b, &ctx)
                        .await
                        .map_err(|source| BuildError::Backend {
                            backend: b.name.clone(),
                            source,
                        })?;
                Arc::new(BackendHandle {
                    name: b.name.clone(),
                    conf: b.conf.clone(),
                    base_dir: loaded.base_dir.clone(),
                    store,
                })
            }
        };
        backends.insert(b.name.clone(), handle);
    }
    let views = loaded
        .table
        .feature_views
        .iter()
        .map(|v| (v.name.clone(), Arc::new(v.clone())))
        .collect();
    Ok(Snapshot {
        version,
        table: loaded.table,
        views,
        backends,
    })
}

/// Creates every view's tables in its backend (standalone `--apply`).
pub async fn provision(snapshot: &Snapshot) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    for view in snapshot.views.values() {
        let Some(b) = snapshot.backend_of(view) else {
            continue;
        };
        b.store
            .create(&snapshot.table.project, view)
            .await
            .map_err(|e| format!("view `{}` in backend `{}`: {e}", view.name, b.name))?;
        for o in b.store.storage_objects(&snapshot.table.project, view) {
            done.push(format!(
                "{} {} ({}) for view {} in backend {}",
                o.kind, o.name, o.location, view.name, b.name
            ));
        }
    }
    done.sort();
    Ok(done)
}

/// Shared, swappable state.
pub struct Shared {
    pub current: ArcSwapOption<Snapshot>,
    pub metrics: Metrics,
}

/// Loads the source, builds a snapshot and publishes it. On failure the
/// previous snapshot keeps serving and the error is returned.
pub async fn reload(shared: &Shared, source: &ConfigSource, apply: bool) -> Result<u64, String> {
    let previous = shared.current.load_full();
    let version = previous.as_ref().map(|p| p.version + 1).unwrap_or(1);
    let result = async {
        let loaded = source.load().map_err(|e| e.to_string())?;
        let snap = build_snapshot(loaded, version, previous.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        if apply {
            for line in provision(&snap).await? {
                tracing::info!(object = %line, "provisioned");
            }
        }
        Ok::<Snapshot, String>(snap)
    }
    .await;
    match result {
        Ok(snap) => {
            let views = snap.views.len();
            shared.metrics.set_routing(version, views, &snap);
            shared.current.store(Some(Arc::new(snap)));
            shared.metrics.reload("success");
            tracing::info!(version, views, "routing table loaded");
            Ok(version)
        }
        Err(e) => {
            shared.metrics.reload("error");
            tracing::error!(error = %e, "configuration rejected; previous routes keep serving");
            Err(e)
        }
    }
}

/// Directories to watch for `source`: each file's directory and, when the
/// file is a symlink (a Kubernetes ConfigMap mount: `f -> ..data/f`,
/// `..data -> ..<timestamp>`), the directory it currently resolves into.
fn watch_dirs(source: &ConfigSource) -> std::collections::BTreeSet<PathBuf> {
    let parent = |f: &std::path::Path| {
        if f.is_dir() {
            f.to_path_buf()
        } else {
            match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            }
        }
    };
    let mut dirs = std::collections::BTreeSet::new();
    for f in source.watched_files() {
        dirs.insert(parent(&f));
        if let Ok(real) = std::fs::canonicalize(&f) {
            dirs.insert(parent(&real));
        }
    }
    dirs
}

/// Watches the source's files (their directories, so renames and symlink
/// swaps are seen, and re-adds watches when a swap moves the target),
/// debounces, and reloads when the content changed. A periodic check
/// backs up missed events.
pub fn spawn_reloader(shared: Arc<Shared>, source: ConfigSource, apply: bool, poll: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watch_tx = tx.clone();
    let mut watcher =
        match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = watch_tx.send(());
            }
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file watching unavailable; relying on periodic checks");
                None
            }
        };
    let ticker = tx;
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(poll);
        loop {
            interval.tick().await;
            if ticker.send(()).is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut watched = std::collections::BTreeSet::new();
        let mut rewatch = |watcher: &mut Option<notify::RecommendedWatcher>| {
            let Some(w) = watcher.as_mut() else { return };
            let wanted = watch_dirs(&source);
            for d in wanted.difference(&watched) {
                if let Err(e) = w.watch(d, notify::RecursiveMode::NonRecursive) {
                    tracing::debug!(dir = %d.display(), error = %e, "cannot watch; relying on periodic checks");
                }
            }
            for d in watched.difference(&wanted) {
                let _ = w.unwatch(d);
            }
            watched = wanted;
        };
        rewatch(&mut watcher);
        let mut last = source.fingerprint();
        while rx.recv().await.is_some() {
            // Debounce: a ConfigMap update or an editor save is several events.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while rx.try_recv().is_ok() {}
            rewatch(&mut watcher);
            let fp = source.fingerprint();
            if fp == last {
                continue;
            }
            last = fp;
            let _ = reload(&shared, &source, apply).await;
        }
    });
}
