//! Backend handles: one per backend of the routing table, carried over
//! across reloads while their configuration is unchanged, each with the
//! guard that bounds its calls (the task that keeps it connected is in
//! [`super::monitor`]).

use std::sync::Arc;

use api::feast_config::BackendConf;
use arc_swap::ArcSwapOption;
use backends::{OnlineStore, OpenContext};

use crate::guard::{Guard, Op};
use crate::metrics::Metrics;

/// A backend of the routing table. It may be down (unreachable at start,
/// or failing health checks); a monitor task reconnects and re-checks it,
/// so its views recover without a restart while other backends serve on.
pub struct BackendHandle {
    pub name: String,
    pub conf: BackendConf,
    /// Where its relative paths and credential files resolve.
    pub open_ctx: OpenContext,
    pub(super) store: ArcSwapOption<Arc<dyn OnlineStore>>,
    /// Why the backend is down; `None` while it is up.
    pub(super) down: std::sync::Mutex<Option<String>>,
    /// Bounds every call to it (time, concurrency, retries, circuit).
    pub guard: Guard,
}

/// The cause of a failure, without the "backend unavailable" prefix the
/// 503 message adds again.
pub(super) fn reason(e: &backends::BackendError) -> String {
    match e {
        backends::BackendError::Unavailable(m) => m.clone(),
        other => other.to_string(),
    }
}

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
    pub(super) fn set_down(&self, reason: Option<String>, metrics: &Metrics) -> bool {
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
    pub(super) async fn connect(&self, metrics: &Metrics) -> Result<bool, backends::BackendError> {
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
