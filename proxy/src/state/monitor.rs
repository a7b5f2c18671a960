//! The background tasks that read the current snapshot: a monitor per
//! backend (reconnects it, checks its health, provisions its views again
//! when it comes back under `--apply`) and the expiry sweeper.

use std::sync::Arc;
use std::time::Duration;

use super::backend::{BackendHandle, reason};
use super::provision::provision_backend;
use super::shared::Shared;

/// How often a backend's health is checked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps a backend connected and its health known, until the handle is dropped.
pub(super) fn spawn_monitor(handle: &Arc<BackendHandle>, shared: Arc<Shared>) {
    let weak = Arc::downgrade(handle);
    tokio::spawn(async move {
        // Set when the backend comes back under `--apply`; cleared once its
        // views' tables are provisioned (retried on every check until then).
        let mut provision_pending = false;
        loop {
            tokio::time::sleep(HEALTH_INTERVAL).await;
            let Some(h) = weak.upgrade() else { break };
            let metrics = &shared.metrics;
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
            provision_pending |= recovered && shared.apply;
            if provision_pending
                && h.down_reason().is_none()
                && let Some(snap) = shared.current.load_full()
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
