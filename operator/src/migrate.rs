//! Live moves of a FeatureView between backends, when its routing tag
//! changes under traffic. The FeatureView's `status.migration` carries the
//! state, so a move resumes where it stopped after an operator restart:
//!
//! 1. `DualWrite`: the new backend's tables exist; the routing table sends
//!    writes to both backends and reads to the old one. Waits
//!    `--migration-settle-seconds` so every proxy has the change.
//! 2. `Backfill`: copies the old backend's rows to the new one, a page of
//!    keys at a time, writing only rows missing there or behind there. The
//!    backends' writes keep the newest event time, so a dual write is never
//!    replaced by an older copy. The cursor and counts are in the status
//!    after every slice; a second pass catches rows that changed during the
//!    first.
//! 3. `Verify`: every key of the old backend is looked up in the new one
//!    and a sample is compared row against row (see `verify.rs`), figures in
//!    `status.migration.verification`. A failed verification is a Warning
//!    event and one more backfill pass, then another verification; after
//!    `verify::MAX_ATTEMPTS` failures in a row the move is `Stuck`: reads
//!    stay on the old backend, writes go to both, the `Routed` condition
//!    says why, and the backfill starts over after [`STUCK_RETRY`].
//! 4. `Switched`: reads go to the new backend, writes still to both; waits
//!    the settle time again.
//! 5. `Retiring`: the view routes to the new backend only; after the settle
//!    time (no proxy writes to the old backend any more) the old backend's
//!    tables go per the store's teardown policy, and the move is done.

use std::time::{Duration, Instant};

use api::crd::{
    FeatureView, FeatureViewStatus, HybridOnlineStore, MigrationPhase, MigrationStatus,
    TeardownPolicy,
};
use api::routing::{Backend, RoutedView};
use backends::{BackendError, OnlineStore};
use kube::ResourceExt;

use crate::context::Context;
use crate::verify::{self, Decision, Pair};

/// Keys per backfill and verification page.
const PAGE: usize = 500;
/// Time one reconcile spends copying or verifying before it records progress.
const SLICE: Duration = Duration::from_secs(5);
/// How long a stuck move waits before its backfill and verification start
/// over (a flapping backend or a burst of failed dual writes may have
/// passed by then).
pub const STUCK_RETRY: Duration = Duration::from_secs(15 * 60);

/// What the FeatureView reconciler does next.
pub enum Next {
    /// The move goes on: write this status, come back after the delay.
    Continue(FeatureViewStatus, Duration),
    /// The move is over: finish the view as routed to its new backend.
    Done(FeatureViewStatus),
    /// A transient failure to report (condition, reason, message).
    Failed(FeatureViewStatus, &'static str, String),
    /// Verification failed too often: report why (a `MigrationStuck`
    /// condition) and come back after the delay.
    Stuck(FeatureViewStatus, String, Duration),
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
    pub to: &'a Backend,
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

fn enter(mig: &mut MigrationStatus, phase: MigrationPhase) {
    mig.phase = phase;
    mig.phase_since = now_text();
    mig.cursor = None;
}

/// Why a stuck move does not switch, for its condition (the same text on
/// every reconcile while it waits, so the condition and its event do not
/// churn).
fn stuck_message(m: &Move<'_>, mig: &MigrationStatus) -> String {
    let figures = mig
        .verification
        .as_ref()
        .map(verify::summary)
        .unwrap_or_default();
    let restart = chrono::DateTime::parse_from_rfc3339(&mig.phase_since)
        .ok()
        .and_then(|t| chrono::TimeDelta::from_std(STUCK_RETRY).ok().map(|d| t + d))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{}s", STUCK_RETRY.as_secs()));
    format!(
        "the copy to backend {} failed verification {} times in a row (last {figures}); reads stay on {}, writes go to both; the backfill starts over at {restart}",
        m.to.name,
        verify::MAX_ATTEMPTS,
        m.from.name,
    )
}

/// Advances the move by one step.
pub async fn step(m: Move<'_>, mut status: FeatureViewStatus) -> Next {
    let settle = m.ctx.migration_settle;
    let fresh = || MigrationStatus {
        from: m.from.name.clone(),
        to: m.to.name.clone(),
        phase: MigrationPhase::DualWrite,
        phase_since: now_text(),
        ..Default::default()
    };
    let mut mig = match status.migration.clone() {
        Some(x) if x.from == m.from.name && x.to == m.to.name => x,
        _ => {
            m.ctx
                .event(
                    m.fv,
                    false,
                    "MigrationStarted",
                    format!(
                        "moving from backend {} to {}: writes go to both, reads stay on {} until the copy is verified",
                        m.from.name, m.to.name, m.from.name
                    ),
                )
                .await;
            fresh()
        }
    };
    status.backend = Some(m.to.name.clone());
    let elapsed = elapsed_since(&mig.phase_since);
    let mut delay = Duration::from_millis(200);
    match mig.phase {
        MigrationPhase::DualWrite => {
            if elapsed >= settle {
                enter(&mut mig, MigrationPhase::Backfill);
            } else {
                delay = settle - elapsed;
            }
        }
        MigrationPhase::Backfill | MigrationPhase::Verify => {
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
            let pair = Pair {
                from: &*src,
                to: m.to_conn,
                project: m.project,
                view: m.view,
                step: verify::common_step(m.from.backend_type, m.to.backend_type),
            };
            let outcome = if mig.phase == MigrationPhase::Backfill {
                backfill(&m, &pair, &mut mig).await
            } else {
                verification(&m, &pair, &mut mig).await
            };
            if let Err((reason, message)) = outcome {
                status.migration = Some(mig);
                return Next::Failed(status, reason, message);
            }
            if mig.phase == MigrationPhase::Stuck {
                let message = stuck_message(&m, &mig);
                status.migration = Some(mig);
                return Next::Stuck(status, message, STUCK_RETRY);
            }
        }
        MigrationPhase::Stuck => {
            if elapsed >= STUCK_RETRY {
                m.ctx
                    .event(
                        m.fv,
                        false,
                        "BackfillRestarted",
                        format!(
                            "the move to {} was stuck for {}s: one more backfill pass, then up to {} verifications",
                            m.to.name,
                            STUCK_RETRY.as_secs(),
                            verify::MAX_ATTEMPTS
                        ),
                    )
                    .await;
                enter(&mut mig, MigrationPhase::Backfill);
                mig.pass += 1;
                mig.verification = None;
            } else {
                let retry_in = STUCK_RETRY - elapsed;
                let message = stuck_message(&m, &mig);
                status.migration = Some(mig);
                return Next::Stuck(status, message, retry_in);
            }
        }
        MigrationPhase::Switched => {
            if elapsed < settle {
                delay = settle - elapsed;
            } else {
                enter(&mut mig, MigrationPhase::Retiring);
            }
        }
        MigrationPhase::Retiring => {
            if elapsed < settle {
                delay = settle - elapsed;
            } else {
                if let Err(e) = retire(&m).await {
                    status.migration = Some(mig);
                    return Next::Failed(status, "RetireFailed", e);
                }
                let verified = mig
                    .verification
                    .as_ref()
                    .map(|v| format!(", {}", verify::summary(v)))
                    .unwrap_or_default();
                m.ctx
                    .event(
                        m.fv,
                        false,
                        "Migrated",
                        format!(
                            "moved from backend {} to {} ({} keys examined, {} rows copied{verified}); {}",
                            m.from.name,
                            m.to.name,
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
    }
    status.migration = Some(mig);
    Next::Continue(status, delay)
}

/// One slice of the backfill: pages of `from`'s keys copied to `to` until
/// the slice is up or the pass ends. The pass after the first copy ends in
/// `Verify`. Errors are (reason, message) for the view's condition.
async fn backfill(
    m: &Move<'_>,
    pair: &Pair<'_>,
    mig: &mut MigrationStatus,
) -> Result<(), (&'static str, String)> {
    let until = Instant::now() + SLICE;
    loop {
        let cursor = mig.cursor.as_ref().and_then(|c| hex::decode(c).ok());
        let page = match pair.from.scan_keys(m.project, m.view, cursor, PAGE).await {
            Ok(p) => p,
            Err(BackendError::Config(why)) => {
                // The source cannot list its keys: move on without a copy
                // or a verification (rows written since the move began are
                // in the new backend), and say so.
                m.ctx
                    .event(
                        m.fv,
                        true,
                        "BackfillSkipped",
                        format!(
                            "{why}; only rows written since the move began are in {}, and the copy cannot be verified",
                            m.to.name
                        ),
                    )
                    .await;
                mig.note = Some(why);
                enter(mig, MigrationPhase::Switched);
                return Ok(());
            }
            Err(e) => {
                return Err((
                    "BackfillFailed",
                    format!("listing keys in {}: {e}", m.from.name),
                ));
            }
        };
        let n = verify::copy_rows(pair, &page.keys)
            .await
            .map_err(|e| ("BackfillFailed", named(m, &e)))?;
        mig.copied_rows += n;
        m.ctx.metrics.backfilled(n as u64);
        mig.scanned_keys += page.keys.len() as i64;
        mig.cursor = page.next.map(hex::encode);
        if mig.cursor.is_none() {
            if mig.pass == 0 {
                mig.pass = 1;
            } else {
                let attempt = mig.verification.as_ref().map_or(0, |v| v.attempt) + 1;
                enter(mig, MigrationPhase::Verify);
                mig.verification = Some(verify::start(attempt));
                return Ok(());
            }
        }
        if Instant::now() >= until {
            return Ok(());
        }
    }
}

/// One slice of the verification; at its end, the switch, one more
/// backfill pass, or `Stuck`.
async fn verification(
    m: &Move<'_>,
    pair: &Pair<'_>,
    mig: &mut MigrationStatus,
) -> Result<(), (&'static str, String)> {
    let until = Instant::now() + SLICE;
    let mut v = mig.verification.take().unwrap_or_else(|| verify::start(1));
    let result = loop {
        let cursor = mig.cursor.as_ref().and_then(|c| hex::decode(c).ok());
        let page = match pair.from.scan_keys(m.project, m.view, cursor, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                break Err((
                    "VerificationError",
                    format!("listing keys in {}: {e}", m.from.name),
                ));
            }
        };
        let salt = verify::salt(v.attempt, v.source_keys);
        match verify::verify_page(pair, &page.keys, salt, verify::RECHECK_DELAY).await {
            Ok(fig) => verify::add(&mut v, &fig),
            Err(e) => break Err(("VerificationError", named(m, &e))),
        }
        mig.cursor = page.next.map(hex::encode);
        if mig.cursor.is_none() {
            finish(m, mig, &mut v).await;
            break Ok(());
        }
        if Instant::now() >= until {
            break Ok(());
        }
    };
    mig.verification = Some(v);
    result
}

/// A finished verification: records the verdict and moves on.
async fn finish(m: &Move<'_>, mig: &mut MigrationStatus, v: &mut api::crd::MigrationVerification) {
    let decision = verify::decide(v);
    v.result = if decision == Decision::Switch {
        verify::PASSED
    } else {
        verify::FAILED
    }
    .to_string();
    let figures = verify::summary(v);
    tracing::info!(
        view = %m.view.name, from = %m.from.name, to = %m.to.name,
        source_keys = v.source_keys, destination_keys = v.destination_keys,
        sampled_keys = v.sampled_keys, rechecked_keys = v.rechecked_keys,
        mismatches = v.mismatches,
        result = %v.result, "live move verified"
    );
    match decision {
        Decision::Switch => {
            m.ctx
                .event(
                    m.fv,
                    false,
                    "Verified",
                    format!("{figures}; reads switch to {}", m.to.name),
                )
                .await;
            enter(mig, MigrationPhase::Switched);
        }
        Decision::Backfill => {
            m.ctx
                .event(
                    m.fv,
                    true,
                    "VerificationFailed",
                    format!(
                        "{figures}; reads stay on {}: one more backfill pass, then verification {}",
                        m.from.name,
                        v.attempt + 1
                    ),
                )
                .await;
            enter(mig, MigrationPhase::Backfill);
            mig.pass += 1;
        }
        Decision::Stuck => {
            m.ctx
                .event(
                    m.fv,
                    true,
                    "VerificationFailed",
                    format!(
                        "{figures}; reads stay on {}: the move is stuck, retried in {}s",
                        m.from.name,
                        STUCK_RETRY.as_secs()
                    ),
                )
                .await;
            enter(mig, MigrationPhase::Stuck);
        }
    }
}

/// A verification or copy error with the backend it concerns named.
fn named(m: &Move<'_>, e: &verify::VerifyError) -> String {
    let backend = match e {
        verify::VerifyError::Source(_) => &m.from.name,
        verify::VerifyError::Destination(_) => &m.to.name,
    };
    format!("backend {backend}: {e}")
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
