//! Per-view metrics: `hos_proxy_view_requests_total`,
//! `hos_proxy_view_duration_seconds`, `hos_proxy_view_rows_total` and
//! `hos_proxy_view_cells_total`, labelled by project, view, backend and op.
//!
//! A routing table may hold 100,000 views, and a histogram multiplies its
//! series by its buckets, so the views named in labels are bounded
//! (`--view-metrics-limit`, default 500): the first views served get a
//! label of their own, later ones are counted under `view="_other"` (project
//! and backend kept); 0 turns per-view metrics off. A view leaving the
//! routing table frees its place and its series are removed.
//!
//! Cost on the request path: each view of a snapshot has a slot, keyed by
//! its `Arc`'s address, that holds the view's series once resolved (the
//! first request to use the view in that snapshot takes a lock; unchanged
//! views carry their slot over to the next snapshot). A series creates its
//! Prometheus metrics on first use, then every record is atomic increments
//! and one histogram observation: no string is formatted and no label set
//! built per request.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use api::routing::RoutedView;
use backends::BackendError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::guard::Op;

/// The `view` label of views past the limit.
pub const OTHER_VIEW: &str = "_other";

/// Views named in per-view metrics unless `--view-metrics-limit` says otherwise.
pub const DEFAULT_VIEW_METRICS_LIMIT: usize = 500;

/// How one view's part of a request ended (`outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered.
    Ok,
    /// The request was refused (4xx) after its views were resolved: a
    /// missing or mistyped join key, a value refused, not authorized.
    ClientError,
    /// The backend could not be reached: down, not open, timed out,
    /// saturated or its circuit open.
    Unavailable,
    /// The backend answered with an error (a query error, a missing table,
    /// a stored value that does not decode).
    Error,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::ClientError,
        Outcome::Unavailable,
        Outcome::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientError => "client_error",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
        }
    }

    /// The outcome of a failed backend call.
    pub fn of(e: &BackendError) -> Outcome {
        match e {
            BackendError::Unavailable(_) => Outcome::Unavailable,
            _ => Outcome::Error,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

fn op_index(op: Op) -> usize {
    match op {
        Op::Read => 0,
        Op::Write => 1,
    }
}

const OPS: [Op; 2] = [Op::Read, Op::Write];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViewOpLabels {
    pub project: String,
    pub view: String,
    pub backend: String,
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViewOutcomeLabels {
    pub project: String,
    pub view: String,
    pub backend: String,
    pub op: &'static str,
    pub outcome: &'static str,
}

/// Buckets of `hos_proxy_view_duration_seconds`: 100 µs to 1.6 s, doubling
/// (15 buckets; fewer than the per-backend histograms', as there are many
/// more views than backends).
fn view_latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

#[derive(Clone)]
struct Families {
    requests: Family<ViewOutcomeLabels, Counter>,
    duration: Family<ViewOpLabels, Histogram, fn() -> Histogram>,
    rows: Family<ViewOpLabels, Counter>,
    cells: Family<ViewOpLabels, Counter>,
}

impl Families {
    fn new(registry: &mut Registry) -> Families {
        let f = Families {
            requests: Family::default(),
            duration: Family::new_with_constructor(view_latency),
            rows: Family::default(),
            cells: Family::default(),
        };
        registry.register(
            "view_requests",
            "Per feature view and backend: backend reads and writes (op) by outcome (ok, client_error, unavailable, error); views past --view-metrics-limit are counted as view=\"_other\"",
            f.requests.clone(),
        );
        registry.register(
            "view_duration_seconds",
            "Per feature view and backend: time of the view's backend call within a request",
            f.duration.clone(),
        );
        registry.register(
            "view_rows",
            "Per feature view and backend: entity rows of successful calls (reads: rows requested; writes: rows written)",
            f.rows.clone(),
        );
        registry.register(
            "view_cells",
            "Per feature view and backend: feature cells of successful calls (reads: cells the backend returned a stored value for; writes: cells written)",
            f.cells.clone(),
        );
        f
    }
}

/// The metrics of one op of one series, each created on first use. `None`
/// inside: the series was retired before the metric was created.
#[derive(Default)]
struct OpSeries {
    outcomes: [OnceLock<Option<Counter>>; 4],
    duration: OnceLock<Option<Histogram>>,
    rows: OnceLock<Option<Counter>>,
    cells: OnceLock<Option<Counter>>,
}

/// The series of one (project, view or `_other`, backend).
pub struct ViewSeries {
    project: String,
    view: String,
    backend: String,
    /// Whether `view` is the view's own name (not `_other`).
    named: bool,
    registry: Weak<Inner>,
    /// Set (under the registry's lock) when the series leaves the
    /// exposition; no metric of it is created afterwards.
    retired: AtomicBool,
    ops: [OpSeries; 2],
}

impl ViewSeries {
    fn op_labels(&self, op: Op) -> ViewOpLabels {
        ViewOpLabels {
            project: self.project.clone(),
            view: self.view.clone(),
            backend: self.backend.clone(),
            op: op.label(),
        }
    }

    fn outcome_labels(&self, op: Op, outcome: Outcome) -> ViewOutcomeLabels {
        ViewOutcomeLabels {
            project: self.project.clone(),
            view: self.view.clone(),
            backend: self.backend.clone(),
            op: op.label(),
            outcome: outcome.label(),
        }
    }

    /// The metric in `cell`, created by `make` on first use (under the
    /// registry's lock, so a retired series creates nothing).
    fn metric<'a, M>(
        &self,
        cell: &'a OnceLock<Option<M>>,
        make: impl FnOnce(&Families) -> M,
    ) -> Option<&'a M> {
        cell.get_or_init(|| {
            let inner = self.registry.upgrade()?;
            let _tracked = inner.tracked.lock().ok()?;
            if self.retired.load(Ordering::Relaxed) {
                return None;
            }
            Some(make(&inner.families))
        })
        .as_ref()
    }

    /// Records one backend call of this view: its outcome, its time and,
    /// when it succeeded, its rows and cells.
    pub fn record(&self, op: Op, outcome: Outcome, seconds: Option<f64>, rows: u64, cells: u64) {
        let s = &self.ops[op_index(op)];
        if let Some(c) = self.metric(&s.outcomes[outcome.index()], |f| {
            f.requests
                .get_or_create_owned(&self.outcome_labels(op, outcome))
        }) {
            c.inc();
        }
        if let Some(seconds) = seconds
            && let Some(h) = self.metric(&s.duration, |f| {
                f.duration.get_or_create_owned(&self.op_labels(op))
            })
        {
            h.observe(seconds);
        }
        if outcome == Outcome::Ok {
            if let Some(c) =
                self.metric(&s.rows, |f| f.rows.get_or_create_owned(&self.op_labels(op)))
            {
                c.inc_by(rows);
            }
            if let Some(c) = self.metric(&s.cells, |f| {
                f.cells.get_or_create_owned(&self.op_labels(op))
            }) {
                c.inc_by(cells);
            }
        }
    }

    /// Records a backend call that started at `start` and ended with
    /// `result`; `sizes` gives the rows and cells of a success.
    pub fn record_call<T, E>(
        &self,
        op: Op,
        start: Instant,
        result: &Result<T, E>,
        outcome_of: impl FnOnce(&E) -> Outcome,
        sizes: impl FnOnce(&T) -> (u64, u64),
    ) {
        let seconds = Some(start.elapsed().as_secs_f64());
        match result {
            Ok(v) => {
                let (rows, cells) = sizes(v);
                self.record(op, Outcome::Ok, seconds, rows, cells);
            }
            Err(e) => self.record(op, outcome_of(e), seconds, 0, 0),
        }
    }

    /// Takes the series out of the exposition (its view left the routing
    /// table, or moved off its backend). Called under the registry's lock.
    fn retire(&self, families: &Families) {
        self.retired.store(true, Ordering::Relaxed);
        for op in OPS {
            for outcome in Outcome::ALL {
                families.requests.remove(&self.outcome_labels(op, outcome));
            }
            let labels = self.op_labels(op);
            families.duration.remove(&labels);
            families.rows.remove(&labels);
            families.cells.remove(&labels);
        }
    }
}

/// The series of one view: one per backend it is read from or written to
/// (two during a live move).
pub struct ViewHandles {
    series: [Option<Arc<ViewSeries>>; 2],
}

impl ViewHandles {
    fn get(&self, backend: &str) -> Option<&ViewSeries> {
        self.series
            .iter()
            .flatten()
            .find(|s| s.backend == backend)
            .map(Arc::as_ref)
    }

    fn all_named(&self) -> bool {
        self.series.iter().flatten().all(|s| s.named)
    }
}

#[derive(Default)]
struct Tracked {
    /// Views with a label of their own, by (project, view): their series
    /// by backend. At most `limit` entries.
    named: HashMap<(String, String), Vec<Arc<ViewSeries>>>,
    /// `_other` series by (project, backend).
    other: HashMap<(String, String), Arc<ViewSeries>>,
}

struct Inner {
    limit: usize,
    families: Families,
    tracked: Mutex<Tracked>,
}

/// The per-view metric families and which views they name.
pub struct ViewMetrics {
    inner: Arc<Inner>,
}

impl ViewMetrics {
    /// Registers the families in `registry`; `limit` views get a label of
    /// their own (0: per-view metrics off).
    pub(crate) fn new(registry: &mut Registry, limit: usize) -> ViewMetrics {
        ViewMetrics {
            inner: Arc::new(Inner {
                limit,
                families: Families::new(registry),
                tracked: Mutex::new(Tracked::default()),
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.limit > 0
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    fn new_series(&self, project: &str, view: &str, backend: &str, named: bool) -> Arc<ViewSeries> {
        Arc::new(ViewSeries {
            project: project.to_string(),
            view: view.to_string(),
            backend: backend.to_string(),
            named,
            registry: Arc::downgrade(&self.inner),
            retired: AtomicBool::new(false),
            ops: Default::default(),
        })
    }

    /// The series of (`project`, `view`, `backend`): the view's own while it
    /// holds one of the `limit` places (taking a free one), else `_other`.
    fn resolve_locked(
        &self,
        tracked: &mut Tracked,
        project: &str,
        view: &str,
        backend: &str,
    ) -> Arc<ViewSeries> {
        let key = (project.to_string(), view.to_string());
        if !tracked.named.contains_key(&key) && tracked.named.len() < self.inner.limit {
            tracked.named.insert(key.clone(), Vec::new());
        }
        if let Some(list) = tracked.named.get_mut(&key) {
            if let Some(s) = list.iter().find(|s| s.backend == backend) {
                return Arc::clone(s);
            }
            let s = self.new_series(project, view, backend, true);
            list.push(Arc::clone(&s));
            return s;
        }
        let s = tracked
            .other
            .entry((project.to_string(), backend.to_string()))
            .or_insert_with(|| self.new_series(project, OTHER_VIEW, backend, false));
        Arc::clone(s)
    }

    /// One series, not cached (a view that is not in the snapshot's slots).
    fn resolve(&self, project: &str, view: &str, backend: &str) -> Option<Arc<ViewSeries>> {
        if !self.enabled() {
            return None;
        }
        let mut tracked = self.inner.tracked.lock().ok()?;
        Some(self.resolve_locked(&mut tracked, project, view, backend))
    }

    /// The series of every backend `view` is read from or written to.
    fn handles(&self, project: &str, view: &RoutedView) -> ViewHandles {
        let mut series: [Option<Arc<ViewSeries>>; 2] = [None, None];
        let Ok(mut tracked) = self.inner.tracked.lock() else {
            return ViewHandles { series };
        };
        let backends = view
            .write_backends()
            .chain(std::iter::once(view.read_backend()));
        for b in backends {
            if series.iter().flatten().any(|s| s.backend == b) {
                continue;
            }
            if let Some(free) = series.iter_mut().find(|s| s.is_none()) {
                *free = Some(self.resolve_locked(&mut tracked, project, &view.name, b));
            }
        }
        ViewHandles { series }
    }

    /// Whether a view not named yet would get a label of its own.
    fn has_free_place(&self) -> bool {
        self.inner
            .tracked
            .lock()
            .map(|t| t.named.len() < self.inner.limit)
            .unwrap_or(false)
    }

    /// After a reload to `views` of `project` (`backend_open`: the table's
    /// backends): views that left the table free their place and their
    /// series leave the exposition, as do series of backends a view no
    /// longer uses and `_other` series of backends that left.
    pub(crate) fn retain(
        &self,
        project: &str,
        views: &HashMap<String, Arc<RoutedView>>,
        backend_open: impl Fn(&str) -> bool,
    ) {
        let Ok(mut tracked) = self.inner.tracked.lock() else {
            return;
        };
        let families = &self.inner.families;
        tracked.named.retain(|(p, v), list| {
            let view = views.get(v).filter(|_| p == project);
            list.retain(|s| {
                let used = view.is_some_and(|view| {
                    view.read_backend() == s.backend
                        || view.write_backends().any(|b| b == s.backend)
                });
                if !used {
                    s.retire(families);
                }
                used
            });
            view.is_some()
        });
        tracked.other.retain(|(p, b), s| {
            let keep = p == project && backend_open(b);
            if !keep {
                s.retire(families);
            }
            keep
        });
    }
}

/// Hashes an address: multiplied by an odd constant, high bits folded into
/// the low ones (addresses end in zero bits).
#[derive(Default)]
pub struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_usize(&mut self, n: usize) {
        let x = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}

fn address(view: &Arc<RoutedView>) -> usize {
    Arc::as_ptr(view) as usize
}

/// A view's series, borrowed from its snapshot slot or (rarely) owned.
pub enum SeriesRef<'a> {
    Borrowed(&'a ViewSeries),
    Owned(Arc<ViewSeries>),
}

impl std::ops::Deref for SeriesRef<'_> {
    type Target = ViewSeries;
    fn deref(&self) -> &ViewSeries {
        match self {
            SeriesRef::Borrowed(s) => s,
            SeriesRef::Owned(s) => s,
        }
    }
}

/// The per-view series slots of one routing snapshot, keyed by the
/// address of each view's `Arc` (the snapshot holds every one).
#[derive(Default)]
pub struct ViewSlots {
    project: String,
    slots: HashMap<usize, OnceLock<Arc<ViewHandles>>, BuildHasherDefault<AddressHasher>>,
}

impl ViewSlots {
    /// A slot for each of `views`; views unchanged since `previous` (the
    /// same `Arc`, the same project) keep their series when those are
    /// named, or when no place is free for them to take.
    pub(crate) fn build<'a>(
        metrics: &ViewMetrics,
        project: &str,
        views: impl ExactSizeIterator<Item = &'a Arc<RoutedView>>,
        previous: Option<&ViewSlots>,
    ) -> ViewSlots {
        if !metrics.enabled() {
            return ViewSlots::default();
        }
        let previous = previous.filter(|p| p.project == project);
        let free = previous.is_some() && metrics.has_free_place();
        let mut slots = HashMap::with_capacity_and_hasher(views.len(), Default::default());
        for view in views {
            let slot = OnceLock::new();
            if let Some(h) = previous
                .and_then(|p| p.slots.get(&address(view)))
                .and_then(OnceLock::get)
                .filter(|h| h.all_named() || !free)
            {
                let _ = slot.set(Arc::clone(h));
            }
            slots.insert(address(view), slot);
        }
        ViewSlots {
            project: project.to_string(),
            slots,
        }
    }

    /// The series of `view` on `backend` (`None` when per-view metrics are
    /// off).
    pub fn series<'a>(
        &'a self,
        metrics: &ViewMetrics,
        project: &str,
        view: &Arc<RoutedView>,
        backend: &str,
    ) -> Option<SeriesRef<'a>> {
        if !metrics.enabled() {
            return None;
        }
        match self.slots.get(&address(view)) {
            Some(slot) => slot
                .get_or_init(|| Arc::new(metrics.handles(project, view)))
                .get(backend)
                .map(SeriesRef::Borrowed),
            None => metrics
                .resolve(project, &view.name, backend)
                .map(SeriesRef::Owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, backend: &str) -> Arc<RoutedView> {
        Arc::new(RoutedView {
            name: name.into(),
            entities: Vec::new(),
            features: Vec::new(),
            ttl_seconds: None,
            online: true,
            tags: Default::default(),
            backend: backend.into(),
            timestamp_field: None,
            created_timestamp_column: None,
            push_source: None,
            migration: None,
        })
    }

    fn encode(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn views_past_the_limit_share_other_and_leaving_frees_a_place() {
        let mut registry = Registry::with_prefix("hos_proxy");
        let m = ViewMetrics::new(&mut registry, 2);
        let views: Vec<Arc<RoutedView>> = (0..5).map(|i| view(&format!("v{i}"), "b")).collect();
        let slots = ViewSlots::build(&m, "p", views.iter(), None);
        for v in &views {
            let s = slots.series(&m, "p", v, "b").unwrap();
            s.record(Op::Read, Outcome::Ok, Some(0.001), 2, 3);
        }
        let text = encode(&registry);
        let line = |view: &str| {
            format!(
                "hos_proxy_view_requests_total{{project=\"p\",view=\"{view}\",backend=\"b\",op=\"read\",outcome=\"ok\"}} "
            )
        };
        assert!(text.contains(&format!("{}1\n", line("v0"))), "{text}");
        assert!(text.contains(&format!("{}1\n", line("v1"))), "{text}");
        assert!(text.contains(&format!("{}3\n", line("_other"))), "{text}");
        assert!(!text.contains("view=\"v2\""), "{text}");
        // v0 leaves the table: its series go and its place is free for v2
        // (after the next reload, whose snapshot re-resolves `_other` views).
        let kept: HashMap<String, Arc<RoutedView>> = views[1..]
            .iter()
            .map(|v| (v.name.clone(), Arc::clone(v)))
            .collect();
        m.retain("p", &kept, |b| b == "b");
        let text = encode(&registry);
        assert!(!text.contains("view=\"v0\""), "{text}");
        let slots = ViewSlots::build(&m, "p", views[1..].iter(), Some(&slots));
        slots.series(&m, "p", &views[2], "b").unwrap().record(
            Op::Write,
            Outcome::Unavailable,
            None,
            0,
            0,
        );
        let text = encode(&registry);
        assert!(
            text.contains("hos_proxy_view_requests_total{project=\"p\",view=\"v2\",backend=\"b\",op=\"write\",outcome=\"unavailable\"} 1\n"),
            "{text}"
        );
        // No duration was given, none recorded; failures count no rows.
        assert!(
            !text.contains("view_duration_seconds_count{project=\"p\",view=\"v2\""),
            "{text}"
        );
        assert!(
            !text.contains("view_rows_total{project=\"p\",view=\"v2\""),
            "{text}"
        );
    }

    #[test]
    fn a_retired_series_creates_nothing() {
        let mut registry = Registry::with_prefix("hos_proxy");
        let m = ViewMetrics::new(&mut registry, 10);
        let v = view("gone", "b");
        let slots = ViewSlots::build(&m, "p", std::iter::once(&v), None);
        let s = slots.series(&m, "p", &v, "b").unwrap();
        m.retain("p", &HashMap::new(), |_| true);
        // A request still on the old snapshot records after the reload.
        s.record(Op::Read, Outcome::Ok, Some(0.01), 1, 1);
        assert!(!encode(&registry).contains("gone"));
    }

    #[test]
    fn zero_turns_it_off() {
        let mut registry = Registry::with_prefix("hos_proxy");
        let m = ViewMetrics::new(&mut registry, 0);
        let v = view("a", "b");
        let slots = ViewSlots::build(&m, "p", std::iter::once(&v), None);
        assert!(slots.series(&m, "p", &v, "b").is_none());
    }
}
