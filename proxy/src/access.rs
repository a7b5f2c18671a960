//! The access log: one line per feature request (HTTP and gRPC), through
//! `tracing` on target `hos_proxy::access`, so `--log-format json` makes it
//! JSON and `RUST_LOG` filters it like any other log.
//!
//! Fields: `request_id` (the `x-request-id` the request carried or was
//! given), `principal` (only with authentication on), `endpoint`, `status`,
//! `latency_ms`, `rows` (entity rows of the request, once decoded), `views`
//! (the resolved feature views, comma-separated, at most
//! [`MAX_LOGGED_VIEWS`]), `views_more` (how many more there were),
//! `failed_views` (views whose backend failed) and `error` (the Feast
//! exception class of a refused request). Never logged: tokens and other
//! headers, bodies, entity key values, error messages (they may quote
//! request values).
//!
//! `--access-log off|errors|all` and `--access-log-sample N`: with `all`,
//! requests that failed (status >= 400, or some view's backend failed) are
//! logged and 1 in N others; `errors` logs only the failed ones. Failed
//! requests get at most `--access-log-max-failures-per-second` lines a
//! second; the next line counts the ones dropped (`dropped_failures`).
//!
//! While a request runs, the serving core notes what it resolved into a
//! task-local record ([`note_views`], [`note_rows`], ...); the request-id
//! middleware, outermost, writes the line when the answer is ready, so
//! requests refused by authentication, admission or the request deadline
//! are logged too. With the access log off no record exists and noting
//! costs a thread-local lookup.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use api::routing::RoutedView;

use crate::auth::Principal;

/// The `tracing` target of access-log lines.
pub const TARGET: &str = "hos_proxy::access";

/// Views named in one line; more are counted in `views_more`.
pub const MAX_LOGGED_VIEWS: usize = 20;

/// Successful requests logged per one by default (`--access-log-sample`).
pub const DEFAULT_SAMPLE: u64 = 100;

/// Failed requests logged per second at most by default
/// (`--access-log-max-failures-per-second`): a client sending bad requests
/// as fast as it can must not turn the log into its amplifier.
pub const DEFAULT_MAX_FAILURES_PER_SECOND: u64 = 100;

/// Which requests the access log records (`--access-log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogMode {
    Off,
    /// Failed requests only.
    Errors,
    /// Failed requests and 1 in `--access-log-sample` others.
    All,
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an access-log mode: use off, errors or all")]
pub struct ParseModeError(String);

impl std::str::FromStr for AccessLogMode {
    type Err = ParseModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(AccessLogMode::Off),
            "errors" => Ok(AccessLogMode::Errors),
            "all" => Ok(AccessLogMode::All),
            other => Err(ParseModeError(other.to_string())),
        }
    }
}

/// The access log's settings and its sampling counter.
#[derive(Debug)]
pub struct AccessLog {
    mode: AccessLogMode,
    sample: u64,
    successes: AtomicU64,
    failures: FailureBudget,
}

/// At most `per_second` failure lines per second (0: no bound); the lines
/// dropped are counted and reported by the next line written.
#[derive(Debug)]
struct FailureBudget {
    per_second: u64,
    start: std::time::Instant,
    second: AtomicU64,
    used: AtomicU64,
    dropped: AtomicU64,
}

impl FailureBudget {
    fn new(per_second: u64) -> FailureBudget {
        FailureBudget {
            per_second,
            start: std::time::Instant::now(),
            second: AtomicU64::new(0),
            used: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn admit(&self) -> bool {
        self.admit_at(self.start.elapsed().as_secs())
    }

    /// `now`: whole seconds since the budget was made. Approximate under
    /// races at a second's boundary (a few lines more or fewer), never
    /// unbounded.
    fn admit_at(&self, now: u64) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let seen = self.second.load(Ordering::Relaxed);
        if now > seen
            && self
                .second
                .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < self.per_second {
            true
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog::new(AccessLogMode::All, DEFAULT_SAMPLE)
    }
}

impl AccessLog {
    /// `sample`: 1 in `sample` successful requests is logged in mode `All`
    /// (0 or 1: every one).
    pub fn new(mode: AccessLogMode, sample: u64) -> AccessLog {
        AccessLog {
            mode,
            sample: sample.max(1),
            successes: AtomicU64::new(0),
            failures: FailureBudget::new(DEFAULT_MAX_FAILURES_PER_SECOND),
        }
    }

    /// At most `per_second` lines of failed requests a second (0: every
    /// one); the dropped ones are counted in the next line's
    /// `dropped_failures`.
    pub fn max_failures_per_second(mut self, per_second: u64) -> AccessLog {
        self.failures = FailureBudget::new(per_second);
        self
    }

    pub fn enabled(&self) -> bool {
        self.mode != AccessLogMode::Off
    }

    /// Whether a request that ended so gets a line: failures within their
    /// budget, the first success and every `sample`-th after it.
    fn wanted(&self, failed: bool) -> bool {
        match self.mode {
            AccessLogMode::Off => false,
            AccessLogMode::Errors => failed && self.failures.admit(),
            AccessLogMode::All if failed => self.failures.admit(),
            AccessLogMode::All => {
                self.sample == 1
                    || self
                        .successes
                        .fetch_add(1, Ordering::Relaxed)
                        .is_multiple_of(self.sample)
            }
        }
    }

    /// Writes the line of a finished request (if it is wanted).
    pub fn finish(
        &self,
        request_id: &str,
        endpoint: &'static str,
        note: &Note,
        http_status: u16,
        latency: Duration,
    ) {
        let status = note.status.unwrap_or(http_status);
        let failed = status >= 400 || note.failed_views > 0;
        if !self.wanted(failed) {
            return;
        }
        let views = note.views_text();
        let more = note.view_count.saturating_sub(MAX_LOGGED_VIEWS) as u64;
        // Milliseconds to the microsecond.
        let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
        let dropped = self.failures.dropped.swap(0, Ordering::Relaxed);
        tracing::info!(
            target: TARGET,
            request_id,
            principal = note.principal.as_ref().map(|p| p.name.as_str()),
            endpoint,
            status,
            latency_ms,
            rows = note.rows.map(|r| r as u64),
            views = views.as_deref(),
            views_more = (more > 0).then_some(more),
            failed_views = (note.failed_views > 0).then_some(note.failed_views as u64),
            error = note.error,
            dropped_failures = (dropped > 0).then_some(dropped),
            "access"
        );
    }
}

/// What a request noted for its line.
#[derive(Default)]
pub struct Note {
    principal: Option<Arc<Principal>>,
    views: [Option<Arc<RoutedView>>; MAX_LOGGED_VIEWS],
    view_count: usize,
    rows: Option<usize>,
    failed_views: usize,
    /// The status the request ended with when its response does not say
    /// (gRPC answers HTTP 200 with the status in a header or trailer).
    status: Option<u16>,
    error: Option<&'static str>,
}

impl Note {
    fn views_text(&self) -> Option<String> {
        let mut out = String::new();
        for v in self.views.iter().flatten() {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&v.name);
        }
        (!out.is_empty()).then_some(out)
    }
}

tokio::task_local! {
    static NOTE: RefCell<Note>;
}

/// Runs `f` with a fresh record to note into; returns its output and
/// the record.
pub async fn scoped<F: Future>(f: F) -> (F::Output, Note) {
    let fut = NOTE.scope(RefCell::new(Note::default()), f);
    let mut fut = std::pin::pin!(fut);
    let out = fut.as_mut().await;
    let note = fut
        .as_mut()
        .take_value()
        .map(RefCell::into_inner)
        .unwrap_or_default();
    (out, note)
}

fn note(f: impl FnOnce(&mut Note)) {
    let _ = NOTE.try_with(|n| {
        if let Ok(mut n) = n.try_borrow_mut() {
            f(&mut n);
        }
    });
}

/// The views a request resolved (the first [`MAX_LOGGED_VIEWS`] are named).
pub(crate) fn note_views<'a>(views: impl Iterator<Item = &'a Arc<RoutedView>>) {
    note(|n| {
        for v in views {
            if let Some(slot) = n.views.get_mut(n.view_count) {
                *slot = Some(Arc::clone(v));
            }
            n.view_count += 1;
        }
    });
}

/// The entity rows of the request.
pub(crate) fn note_rows(rows: usize) {
    note(|n| n.rows = Some(rows));
}

/// Views whose backend failed while the request still answered.
pub(crate) fn note_failed_views(count: usize) {
    note(|n| n.failed_views = count);
}

/// The authenticated principal (authentication on).
pub(crate) fn note_principal(p: &Arc<Principal>) {
    note(|n| n.principal = Some(Arc::clone(p)));
}

/// How the request ended: its HTTP status (for gRPC, the HTTP status its
/// gRPC status maps from) and, when refused, the error class.
pub(crate) fn note_status(status: u16, error: Option<&'static str>) {
    note(|n| {
        n.status = Some(status);
        n.error = error;
    });
}

/// The `endpoint` of a feature request's path (the label of
/// `hos_proxy_requests_total`); `None` for other paths (health, readiness,
/// metrics), which are not access-logged.
pub fn endpoint_of(path: &str) -> Option<&'static str> {
    match path {
        "/get-online-features" => Some("get-online-features"),
        "/write-to-online-store" => Some("write-to-online-store"),
        "/push" => Some("push"),
        "/feast.serving.ServingService/GetOnlineFeatures" => Some("grpc-get-online-features"),
        "/feast.serving.ServingService/GetFeastServingInfo" => Some("grpc-get-feast-serving-info"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_logs_failures_and_one_in_n_successes() {
        let log = AccessLog::new(AccessLogMode::All, 3);
        let picked: Vec<bool> = (0..7).map(|_| log.wanted(false)).collect();
        assert_eq!(
            picked,
            [true, false, false, true, false, false, true],
            "the first success and every third after it"
        );
        assert!(log.wanted(true));
        let errors = AccessLog::new(AccessLogMode::Errors, 1);
        assert!(!errors.wanted(false));
        assert!(errors.wanted(true));
        let off = AccessLog::new(AccessLogMode::Off, 1);
        assert!(!off.wanted(true));
        assert!(!off.enabled());
    }

    #[test]
    fn failure_lines_are_bounded_per_second() {
        let budget = FailureBudget::new(3);
        let first: Vec<bool> = (0..5).map(|_| budget.admit_at(0)).collect();
        assert_eq!(first, [true, true, true, false, false]);
        assert_eq!(budget.dropped.load(Ordering::Relaxed), 2);
        // A new second, a new budget.
        assert!(budget.admit_at(1));
        let unbounded = FailureBudget::new(0);
        assert!((0..10_000).all(|_| unbounded.admit_at(0)));
        // Successes are sampled, not charged to the failures' budget.
        let log = AccessLog::new(AccessLogMode::All, 1).max_failures_per_second(1);
        assert!(log.wanted(false) && log.wanted(false));
    }

    #[test]
    fn modes_parse() {
        assert_eq!("all".parse::<AccessLogMode>().unwrap(), AccessLogMode::All);
        assert_eq!(
            "errors".parse::<AccessLogMode>().unwrap(),
            AccessLogMode::Errors
        );
        assert_eq!("off".parse::<AccessLogMode>().unwrap(), AccessLogMode::Off);
        let e = "some".parse::<AccessLogMode>().unwrap_err().to_string();
        assert_eq!(
            e,
            "`some` is not an access-log mode: use off, errors or all"
        );
    }

    #[tokio::test]
    async fn notes_outside_a_scope_are_dropped_and_views_are_bounded() {
        note_rows(3);
        let views: Vec<Arc<RoutedView>> = (0..25)
            .map(|i| {
                Arc::new(RoutedView {
                    name: format!("v{i}"),
                    entities: Vec::new(),
                    features: Vec::new(),
                    ttl_seconds: None,
                    online: true,
                    tags: Default::default(),
                    backend: "b".into(),
                    timestamp_field: None,
                    created_timestamp_column: None,
                    push_source: None,
                    migration: None,
                })
            })
            .collect();
        let ((), n) = scoped(async {
            note_rows(2);
            note_views(views.iter());
            tokio::task::yield_now().await;
            note_status(503, Some("BackendUnavailable"));
        })
        .await;
        assert_eq!(n.rows, Some(2));
        assert_eq!(n.view_count, 25);
        let text = n.views_text().unwrap();
        assert_eq!(text.split(',').count(), MAX_LOGGED_VIEWS);
        assert!(
            text.starts_with("v0,v1,") && text.ends_with(",v19"),
            "{text}"
        );
        assert_eq!((n.status, n.error), (Some(503), Some("BackendUnavailable")));
    }
}
