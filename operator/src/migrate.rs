//! Live moves of a FeatureView between backends, when its routing tag
//! changes under traffic. The FeatureView's `status.migration` carries the
//! state, so a move resumes where it stopped after an operator restart:
//!
//! 1. `DualWrite`: the new backend's tables exist; the routing table sends
//!    writes to both backends and reads to the old one. Waits
//!    `--migration-settle-seconds` so every proxy has the change.
//! 2. `Backfill`: copies the old backend's rows to the new one, a page of
//!    keys at a time, writing only rows missing there or older there (a
//!    dual write is never overwritten by an older copy). The cursor and
//!    counts are in the status after every slice; a second pass catches
//!    rows that changed during the first.
//! 3. `Switched`: reads go to the new backend, writes still to both; waits
//!    the settle time again.
//! 4. `Retiring`: the view routes to the new backend only; after the settle
//!    time (no proxy writes to the old backend any more) the old backend's
//!    tables go per the store's teardown policy, and the move is done.

use std::time::{Duration, Instant};

use api::crd::{
    FeatureView, FeatureViewStatus, HybridOnlineStore, MigrationStatus, TeardownPolicy,
};
use api::routing::{Backend, RoutedView};
use backends::{BackendError, OnlineStore, WriteRow};
use kube::ResourceExt;

use crate::context::Context;

/// Keys per backfill page.
const PAGE: usize = 500;
/// Time one reconcile spends copying before it records progress.
const SLICE: Duration = Duration::from_secs(5);

pub const DUAL_WRITE: &str = "DualWrite";
pub const BACKFILL: &str = "Backfill";
pub const SWITCHED: &str = "Switched";
pub const RETIRING: &str = "Retiring";

/// What the FeatureView reconciler does next.
pub enum Next {
    /// The move goes on: write this status, come back after the delay.
    Continue(FeatureViewStatus, Duration),
    /// The move is over: finish the view as routed to its new backend.
    Done(FeatureViewStatus),
    /// A transient failure to report (condition, reason, message).
    Failed(FeatureViewStatus, &'static str, String),
}

/// The move's inputs.
pub struct Move<'a> {
    pub ctx: &'a Context,
    pub fv: &'a FeatureView,
    pub ns: &'a str,
    pub store: &'a HybridOnlineStore,
    pub project: &'a str,
    pub view: &'a RoutedView,
    pub from: &'a Backend,
    pub to: &'a str,
    pub to_conn: &'a dyn OnlineStore,
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn elapsed_since(t: &str) -> Duration {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .and_then(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .to_std()
                .ok()
        })
        .unwrap_or(Duration::MAX)
}

/// Copies the rows of `keys` that `dst` lacks or holds older; returns how many.
pub async fn copy_rows(
    src: &dyn OnlineStore,
    dst: &dyn OnlineStore,
    project: &str,
    view: &RoutedView,
    keys: &[Vec<u8>],
) -> Result<i64, BackendError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let features: Vec<String> = view.features.iter().map(|f| f.name.clone()).collect();
    let have = src.read(project, view, keys, &features).await?;
    let there = dst.read(project, view, keys, &features).await?;
    let rows: Vec<WriteRow> = keys
        .iter()
        .zip(have)
        .zip(there)
        .filter_map(|((key, a), b)| {
            let a = a?;
            if b.is_some_and(|b| b.event_ts >= a.event_ts) {
                return None;
            }
            let values = features
                .iter()
                .zip(a.values)
                .filter_map(|(f, v)| v.map(|v| (f.clone(), v)))
                .collect();
            Some(WriteRow {
                entity_key: key.clone(),
                values,
                event_ts: a.event_ts,
                created_ts: None,
            })
        })
        .collect();
    let n = rows.len() as i64;
    if n > 0 {
        dst.write(project, view, rows).await?;
    }
    Ok(n)
}

/// Advances the move by one step.
pub async fn step(m: Move<'_>, mut status: FeatureViewStatus) -> Next {
    let settle = m.ctx.migration_settle;
    let fresh = || MigrationStatus {
        from: m.from.name.clone(),
        to: m.to.to_string(),
        phase: DUAL_WRITE.to_string(),
        phase_since: now_text(),
        ..Default::default()
    };
    let mut mig = match status.migration.clone() {
        Some(x) if x.from == m.from.name && x.to == m.to => x,
        _ => {
            m.ctx
                .event(
                    m.fv,
                    false,
                    "MigrationStarted",
                    format!(
                        "moving from backend {} to {}: writes go to both, reads stay on {} until the copy is done",
                        m.from.name, m.to, m.from.name
                    ),
                )
                .await;
            fresh()
        }
    };
    status.backend = Some(m.to.to_string());
    let elapsed = elapsed_since(&mig.phase_since);
    let mut delay = Duration::from_millis(200);
    match mig.phase.as_str() {
        DUAL_WRITE => {
            if elapsed >= settle {
                mig.phase = BACKFILL.into();
                mig.phase_since = now_text();
            } else {
                delay = settle - elapsed;
            }
        }
        BACKFILL => {
            let src = match m.ctx.connect(m.ns, &m.store.name_any(), m.from).await {
                Ok(s) => s,
                Err(e) => {
                    status.migration = Some(mig);
                    return Next::Failed(
                        status,
                        "BackendUnreachable",
                        format!("backfill source {}: {e}", m.from.name),
                    );
                }
            };
            let until = Instant::now() + SLICE;
            loop {
                let cursor = mig.cursor.as_ref().and_then(|c| hex::decode(c).ok());
                let page = match src.scan_keys(m.project, m.view, cursor, PAGE).await {
                    Ok(p) => p,
                    Err(BackendError::Config(why)) => {
                        // The source cannot list its keys: move on without
                        // a copy (rows written since the move began are in
                        // the new backend), and say so.
                        m.ctx
                            .event(
                                m.fv,
                                true,
                                "BackfillSkipped",
                                format!(
                                    "{why}; only rows written since the move began are in {}",
                                    m.to
                                ),
                            )
                            .await;
                        mig.note = Some(why);
                        mig.phase = SWITCHED.into();
                        mig.phase_since = now_text();
                        break;
                    }
                    Err(e) => {
                        status.migration = Some(mig);
                        return Next::Failed(
                            status,
                            "BackfillFailed",
                            format!("listing keys in {}: {e}", m.from.name),
                        );
                    }
                };
                match copy_rows(&*src, m.to_conn, m.project, m.view, &page.keys).await {
                    Ok(n) => {
                        mig.copied_rows += n;
                        m.ctx.metrics.backfilled(n as u64);
                    }
                    Err(e) => {
                        status.migration = Some(mig);
                        return Next::Failed(
                            status,
                            "BackfillFailed",
                            format!("copying to {}: {e}", m.to),
                        );
                    }
                }
                mig.scanned_keys += page.keys.len() as i64;
                mig.cursor = page.next.map(hex::encode);
                if mig.cursor.is_none() {
                    if mig.pass == 0 {
                        mig.pass = 1;
                    } else {
                        mig.phase = SWITCHED.into();
                        mig.phase_since = now_text();
                        break;
                    }
                }
                if Instant::now() >= until {
                    break;
                }
            }
        }
        SWITCHED => {
            if elapsed < settle {
                delay = settle - elapsed;
            } else {
                mig.phase = RETIRING.into();
                mig.phase_since = now_text();
            }
        }
        RETIRING => {
            if elapsed < settle {
                delay = settle - elapsed;
            } else {
                if let Err(e) = retire(&m).await {
                    status.migration = Some(mig);
                    return Next::Failed(status, "RetireFailed", e);
                }
                m.ctx
                    .event(
                        m.fv,
                        false,
                        "Migrated",
                        format!(
                            "moved from backend {} to {} ({} keys examined, {} rows copied); {}",
                            m.from.name,
                            m.to,
                            mig.scanned_keys,
                            mig.copied_rows,
                            match m.store.spec.teardown_policy {
                                TeardownPolicy::Delete => "the old tables were dropped",
                                TeardownPolicy::Retain => "the old tables were kept",
                            }
                        ),
                    )
                    .await;
                status.migration = None;
                return Next::Done(status);
            }
        }
        _ => {
            mig = fresh();
        }
    }
    status.migration = Some(mig);
    Next::Continue(status, delay)
}

/// Drops the view's storage in the old backend when the policy says so,
/// keeping tables other views there still use.
async fn retire(m: &Move<'_>) -> Result<(), String> {
    if m.store.spec.teardown_policy != TeardownPolicy::Delete {
        return Ok(());
    }
    let src = m
        .ctx
        .connect(m.ns, &m.store.name_any(), m.from)
        .await
        .map_err(|e| format!("backend {}: {e}", m.from.name))?;
    let remaining = crate::view::staying_views(m.ctx, m.ns, m.fv, &m.from.name)
        .await
        .map_err(|e| e.to_string())?;
    let refs: Vec<&RoutedView> = remaining.iter().collect();
    src.drop_view(m.project, m.view, &refs)
        .await
        .map_err(|e| format!("dropping the old tables in {}: {e}", m.from.name))
}
