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
use crate::guard::{Guard, GuardConfig, Op};
use crate::metrics::Metrics;
use crate::view_metrics::{SeriesRef, ViewSlots};

/// A backend of the routing table. It may be down (unreachable at start,
/// or failing health checks); a monitor task reconnects and re-checks it,
/// so its views recover without a restart while other backends serve on.
pub struct BackendHandle {
    pub name: String,
    pub conf: BackendConf,
    /// Where its relative paths and credential files resolve.
    pub open_ctx: OpenContext,
    store: ArcSwapOption<Arc<dyn OnlineStore>>,
    /// Why the backend is down; `None` while it is up.
    down: std::sync::Mutex<Option<String>>,
    /// Bounds every call to it (time, concurrency, retries, circuit).
    pub guard: Guard,
}

/// The cause of a failure, without the "backend unavailable" prefix the
/// 503 message adds again.
fn reason(e: &backends::BackendError) -> String {
    match e {
        backends::BackendError::Unavailable(m) => m.clone(),
        other => other.to_string(),
    }
}

/// How often a backend's health is checked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

impl BackendHandle {
    /// The connected store, or a 503-worthy error naming why not.
    pub fn store(&self) -> Result<Arc<dyn OnlineStore>, backends::BackendError> {
        match self.store.load_full() {
            Some(s) => Ok(Arc::clone(&s)),
            None => Err(backends::BackendError::Unavailable(
                self.down_reason()
                    .unwrap_or_else(|| "not connected yet".to_string()),
            )),
        }
    }

    /// `None` when up, else the last failure.
    pub fn down_reason(&self) -> Option<String> {
        self.down.lock().ok().and_then(|d| d.clone())
    }

    /// Records the backend's health; true when it just came back up.
    fn set_down(&self, reason: Option<String>, metrics: &Metrics) -> bool {
        metrics.backend_up(&self.name, reason.is_none());
        let mut recovered = false;
        if let Ok(mut d) = self.down.lock() {
            match (&*d, &reason) {
                (None, Some(r)) => {
                    tracing::warn!(backend = %self.name, reason = %r, "backend down")
                }
                (Some(_), None) => {
                    tracing::info!(backend = %self.name, "backend up");
                    recovered = true;
                }
                _ => {}
            }
            *d = reason;
        }
        if recovered {
            self.guard.reset();
        }
        recovered
    }

    /// Runs one call against the backend under its guard, and records it.
    pub async fn call<T, F, Fut>(
        &self,
        op: Op,
        metrics: &Metrics,
        mut f: F,
    ) -> Result<T, backends::BackendError>
    where
        F: FnMut(Arc<dyn OnlineStore>) -> Fut,
        Fut: Future<Output = Result<T, backends::BackendError>>,
    {
        use tracing::Instrument;
        let start = std::time::Instant::now();
        let span = crate::trace::backend_span(&self.name, op.label());
        let out = self
            .guard
            .run(op, || {
                let call = self.store().map(&mut f);
                async move {
                    match call {
                        Ok(fut) => fut.await,
                        Err(e) => Err(e),
                    }
                }
            })
            .instrument(span.clone())
            .await;
        if let Err(e) = &out.result {
            crate::trace::record_error(&span, e);
        }
        metrics.backend_guarded(
            &self.name,
            op.label(),
            out.retries,
            out.rejected,
            out.circuit_open,
        );
        metrics.backend_call(
            &self.name,
            op.label(),
            start.elapsed().as_secs_f64(),
            out.result
                .as_ref()
                .err()
                .map(|e| out.rejected.unwrap_or(e.label())),
        );
        out.result
    }

    /// Opens the store; `Ok(true)` when the backend was down and is now up.
    /// A failure marks the backend down (its views answer 503) and is
    /// returned, so a new table can tell a bad configuration from a
    /// backend that is only unreachable.
    async fn connect(&self, metrics: &Metrics) -> Result<bool, backends::BackendError> {
        let b = api::routing::Backend {
            name: self.name.clone(),
            backend_type: self.conf.backend_type(),
            conf: self.conf.clone(),
        };
        match backends::open(&b, &self.open_ctx).await {
            Ok(store) => {
                self.store.store(Some(Arc::new(store)));
                Ok(self.set_down(None, metrics))
            }
            Err(e) => {
                self.set_down(Some(reason(&e)), metrics);
                Err(e)
            }
        }
    }
}

/// Keeps a backend connected and its health known, until the handle is dropped.
fn spawn_monitor(handle: &Arc<BackendHandle>, shared_metrics: Arc<Shared>) {
    let weak = Arc::downgrade(handle);
    tokio::spawn(async move {
        // Set when the backend comes back under `--apply`; cleared once its
        // views' tables are provisioned (retried on every check until then).
        let mut provision_pending = false;
        loop {
            tokio::time::sleep(HEALTH_INTERVAL).await;
            let Some(h) = weak.upgrade() else { break };
            let metrics = &shared_metrics.metrics;
            let recovered = match h.store.load_full() {
                None => h.connect(metrics).await.unwrap_or(false),
                Some(store) => {
                    let health = tokio::time::timeout(h.guard.config().timeout, store.check())
                        .await
                        .unwrap_or_else(|_| {
                            Err(backends::BackendError::Unavailable(
                                "health check timed out".into(),
                            ))
                        });
                    match health {
                        Ok(()) => h.set_down(None, metrics),
                        Err(e) => h.set_down(Some(reason(&e)), metrics),
                    }
                }
            };
            // A backend that comes back (a restarted server may have lost
            // its schema) gets its views' tables again under `--apply`.
            provision_pending |= recovered && shared_metrics.apply;
            if provision_pending
                && h.down_reason().is_none()
                && let Some(snap) = shared_metrics.current.load_full()
            {
                match provision_backend(&snap, &h.name).await {
                    Ok(done) => {
                        provision_pending = false;
                        for line in done {
                            tracing::info!(object = %line, "provisioned after recovery");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(backend = %h.name, error = %e, "provisioning after recovery failed; retrying at the next check")
                    }
                }
            }
        }
    });
}

/// Everything a request needs, fixed for its lifetime.
pub struct Snapshot {
    /// This process's count of routing tables installed (1, 2, ...).
    pub version: u64,
    /// The routing table's content digest: equal across processes serving
    /// the same routes ([`api::RoutingTable::digest`]).
    pub digest: String,
    pub table: RoutingTable,
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

/// Opens the backends of `loaded` (reusing unchanged ones from `previous`)
/// and indexes its views. Every backend's configuration is checked against
/// the trust of its source before anything connects: a refused path or
/// credential reference rejects the whole table. While serving, a backend
/// that is only unreachable is retried in the background instead.
pub async fn build_snapshot(
    loaded: Loaded,
    version: u64,
    previous: Option<&Snapshot>,
    shared: Option<&Arc<Shared>>,
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
                    guard: Guard::new(shared.map(|s| s.guard).unwrap_or_default()),
                });
                let fail = |source| BuildError::Backend {
                    backend: b.name.clone(),
                    source,
                };
                match shared {
                    // Serving: a backend that is down now is retried in the
                    // background; its views answer 503 meanwhile. One whose
                    // configuration its client refuses rejects the table.
                    Some(sh) => {
                        if let Err(e @ backends::BackendError::Config(_)) =
                            h.connect(&sh.metrics).await
                        {
                            return Err(fail(e));
                        }
                        spawn_monitor(&h, Arc::clone(sh));
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
    // Unchanged views keep the previous snapshot's `Arc`s: a reload of a
    // large table that changed one view allocates one view.
    let views = loaded
        .table
        .feature_views
        .iter()
        .map(|v| {
            let view = previous
                .and_then(|p| p.views.get(&v.name))
                .filter(|old| old.as_ref() == v)
                .map(Arc::clone)
                .unwrap_or_else(|| Arc::new(v.clone()));
            (v.name.clone(), view)
        })
        .collect::<HashMap<String, Arc<RoutedView>>>();
    // Serving: a metric slot per view (one-shot commands record nothing).
    let view_metrics = match shared {
        Some(sh) => ViewSlots::build(
            &sh.metrics.views,
            &loaded.table.project,
            views.values(),
            previous.map(|p| &p.view_metrics),
        ),
        None => ViewSlots::default(),
    };
    Ok(Snapshot {
        version,
        digest: loaded.digest,
        table: loaded.table,
        views,
        backends,
        view_metrics,
    })
}

/// Creates every view's tables in its backend (standalone `--apply`).
pub async fn provision(snapshot: &Snapshot) -> Result<Vec<String>, String> {
    provision_views(snapshot, None).await
}

/// Creates the tables of the views routed to `backend`.
pub async fn provision_backend(snapshot: &Snapshot, backend: &str) -> Result<Vec<String>, String> {
    provision_views(snapshot, Some(backend)).await
}

async fn provision_views(snapshot: &Snapshot, only: Option<&str>) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    for view in snapshot.views.values() {
        if only.is_some_and(|b| b != view.backend) {
            continue;
        }
        let Some(b) = snapshot.backend_of(view) else {
            continue;
        };
        let store = match b.store() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(backend = %b.name, view = %view.name, error = %e, "not provisioned: backend down");
                continue;
            }
        };
        store
            .create(&snapshot.table.project, view)
            .await
            .map_err(|e| format!("view `{}` in backend `{}`: {e}", view.name, b.name))?;
        for o in store.storage_objects(&snapshot.table.project, view) {
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

/// Why a new configuration was not installed (the previous snapshot
/// keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Load(#[from] crate::config::LoadError),
    #[error("{0}")]
    ConfigMap(String),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("provisioning the new routes' tables: {0}")]
    Provision(String),
    #[error("building the new routes panicked; the table is rejected")]
    Panicked,
    #[error("building the new routes was cancelled")]
    Cancelled,
}

impl ReloadError {
    /// The `hos_proxy_reload_total` result label.
    fn label(&self) -> &'static str {
        match self {
            ReloadError::Panicked => "panic",
            _ => "error",
        }
    }
}

/// Loads the source, builds a snapshot and publishes it. On failure the
/// previous snapshot keeps serving and the error is returned. Reading and
/// parsing (YAML, a registry.db) run on the blocking pool, off the
/// runtime's workers that serve requests.
pub async fn reload(
    shared: &Arc<Shared>,
    source: &ConfigSource,
    apply: bool,
) -> Result<u64, ReloadError> {
    let source = source.clone();
    let loaded = match tokio::task::spawn_blocking(move || source.load()).await {
        Ok(loaded) => loaded.map_err(ReloadError::from),
        Err(e) if e.is_panic() => Err(ReloadError::Panicked),
        Err(_) => Err(ReloadError::Cancelled),
    };
    install(shared, loaded, apply).await
}

/// Builds a snapshot from a loaded configuration and publishes it; on
/// failure the previous snapshot keeps serving and the error is returned.
/// The build runs in a task of its own: a panic anywhere in it (a client
/// library, a bug) rejects this table like an error, counted apart
/// (`hos_proxy_reload_total{result="panic"}`), and the caller lives on.
pub async fn install(
    shared: &Arc<Shared>,
    loaded: Result<Loaded, ReloadError>,
    apply: bool,
) -> Result<u64, ReloadError> {
    let result = match loaded {
        Err(e) => Err(e),
        Ok(loaded) => {
            match tokio::spawn(build_and_publish(Arc::clone(shared), loaded, apply)).await {
                Ok(r) => r,
                Err(e) if e.is_panic() => Err(ReloadError::Panicked),
                Err(_) => Err(ReloadError::Cancelled),
            }
        }
    };
    if let Err(e) = &result {
        let label = e.label();
        shared.metrics.reload(label);
        tracing::error!(error = %e, result = label, "configuration rejected; previous routes keep serving");
    }
    result
}

async fn build_and_publish(
    shared: Arc<Shared>,
    loaded: Loaded,
    apply: bool,
) -> Result<u64, ReloadError> {
    let previous = shared.current.load_full();
    let version = previous.as_ref().map(|p| p.version + 1).unwrap_or(1);
    let snap = build_snapshot(
        loaded,
        version,
        previous.as_deref(),
        Some(&shared),
        &shared.secrets_dir,
    )
    .await?;
    // The previous snapshot is released here (or when its last request
    // ends), not kept alive by this task.
    drop(previous);
    if apply {
        for line in provision(&snap).await.map_err(ReloadError::Provision)? {
            tracing::info!(object = %line, "provisioned");
        }
    }
    let views = snap.views.len();
    let mut counts: std::collections::BTreeMap<&str, i64> =
        snap.backends.keys().map(|b| (b.as_str(), 0)).collect();
    for v in snap.views.values() {
        *counts.entry(v.backend.as_str()).or_default() += 1;
    }
    shared
        .metrics
        .set_routing(version, &snap.digest, views, &counts);
    // Views that left the table free their place in per-view metrics.
    shared
        .metrics
        .views
        .retain(&snap.table.project, &snap.views, |b| {
            snap.backends.contains_key(b)
        });
    let digest = snap.digest.clone();
    shared.current.store(Some(Arc::new(snap)));
    shared.metrics.reload("success");
    tracing::info!(version, digest, views, "routing table loaded");
    Ok(version)
}

/// Periodically deletes expired rows from stores that do not expire data by
/// themselves (SQLite with `key_ttl_seconds`), every `every`.
pub fn spawn_sweeper(shared: Arc<Shared>, every: Duration) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(snap) = shared.current.load_full() else {
                continue;
            };
            for view in snap.views.values() {
                let Some(b) = snap.backend_of(view) else {
                    continue;
                };
                let Ok(store) = b.store() else { continue };
                match store.sweep_expired(&snap.table.project, view).await {
                    Ok(0) => {}
                    Ok(n) => {
                        shared.metrics.expired(&b.name, n);
                        tracing::info!(backend = %b.name, view = %view.name, rows = n, "expired rows deleted");
                    }
                    Err(e) => {
                        tracing::warn!(backend = %b.name, view = %view.name, error = %e, "sweep failed")
                    }
                }
            }
        }
    });
}

/// Directories to watch for `source`: each file's directory and, when the
/// file is a symlink (a Kubernetes ConfigMap mount: `f -> ..data/f`,
/// `..data -> ..<timestamp>`), the directory it currently resolves into.
fn watch_dirs(watched_files: &[PathBuf]) -> std::collections::BTreeSet<PathBuf> {
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
    for f in watched_files {
        dirs.insert(parent(f));
        if let Ok(real) = std::fs::canonicalize(f) {
            dirs.insert(parent(&real));
        }
    }
    dirs
}

/// Watches the source's files (their directories, so renames and symlink
/// swaps are seen, and re-adds watches when a swap moves the target),
/// debounces, and reloads when the content changed. A periodic check
/// backs up missed events. The watch is supervised: should it panic, the
/// panic is counted like a panicking reload and the watch starts again.
pub fn spawn_reloader(shared: Arc<Shared>, source: ConfigSource, apply: bool, poll: Duration) {
    tokio::spawn(async move {
        loop {
            let watch = tokio::spawn(watch_and_reload(
                Arc::clone(&shared),
                source.clone(),
                apply,
                poll,
            ));
            match watch.await {
                Err(e) if e.is_panic() => {
                    shared.metrics.reload("panic");
                    tracing::error!("configuration watch panicked; restarting it");
                    tokio::time::sleep(SUPERVISOR_BACKOFF).await;
                }
                Ok(()) | Err(_) => break,
            }
        }
    });
}

/// Pause before a panicked watch starts again, so a panic that repeats
/// costs a log line a second, not a busy loop.
pub(crate) const SUPERVISOR_BACKOFF: Duration = Duration::from_secs(1);

async fn watch_and_reload(shared: Arc<Shared>, source: ConfigSource, apply: bool, poll: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watch_tx = tx.clone();
    let mut watcher =
        match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Reads (the watch's own included: inotify reports opens and
            // closes of the watched files) change nothing.
            if let Ok(event) = res
                && !event.kind.is_access()
            {
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
    // Ends when this watch ends (its receiver is gone).
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(poll);
        loop {
            interval.tick().await;
            if ticker.send(()).is_err() {
                break;
            }
        }
    });
    let mut watched = std::collections::BTreeSet::new();
    let mut rewatch = |watcher: &mut Option<notify::RecommendedWatcher>, files: &[PathBuf]| {
        let Some(w) = watcher.as_mut() else { return };
        let wanted = watch_dirs(files);
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
    // The files to watch and stamp, listed once per check (listing a
    // repo parses its feature_store.yaml and lists its view directories).
    let files = source.watched_files();
    rewatch(&mut watcher, &files);
    let mut last_stamp = ConfigSource::stamp(source.with_view_files(files));
    let mut last = fingerprint_off_runtime(&shared, &source).await;
    let mut last_registry = source.registry_generation();
    let feed = source.registry_feed().cloned();
    loop {
        // A file event or periodic check, or a registry read that changed.
        tokio::select! {
            got = rx.recv() => if got.is_none() { break },
            () = async {
                match &feed {
                    Some(f) => f.changed().await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        // Debounce: a ConfigMap update or an editor save is several events,
        // and other files of a watched directory (a SQLite database next to
        // feature_store.yaml) send theirs too.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while rx.try_recv().is_ok() {}
        let registry = source.registry_generation();
        let registry_moved = registry != last_registry;
        last_registry = registry;
        let files = source.watched_files();
        rewatch(&mut watcher, &files);
        // Files are read and hashed only when their metadata moved or they
        // were modified within the last seconds; otherwise a check costs a
        // few `stat` calls.
        let stamp = ConfigSource::stamp(source.with_view_files(files));
        let now = std::time::SystemTime::now();
        let racy = stamp
            .iter()
            .any(|(_, s)| s.is_some_and(|s| s.is_recent(now, RACY_WINDOW)));
        if stamp == last_stamp && !racy && !registry_moved {
            continue;
        }
        last_stamp = stamp;
        let fp = fingerprint_off_runtime(&shared, &source).await;
        if fp == last {
            continue;
        }
        last = fp;
        // Failures (panics included) are counted and logged by `install`.
        let _ = reload(&shared, &source, apply).await;
    }
}

/// Files modified this recently are compared by content even when their
/// size and times look unchanged (timestamps are coarser than writes).
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// `ConfigSource::fingerprint` on the blocking pool: it reads every file,
/// which at 100,000 views is tens of megabytes.
async fn fingerprint_off_runtime(shared: &Shared, source: &ConfigSource) -> Option<u64> {
    shared.metrics.config_read();
    let source = source.clone();
    tokio::task::spawn_blocking(move || source.fingerprint())
        .await
        .ok()
}
