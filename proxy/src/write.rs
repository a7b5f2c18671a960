//! `POST /write-to-online-store` and `POST /push`: a column-oriented `df`
//! becomes rows written to the view's backend.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use api::json::{json_to_value, parse_timestamp, truncate};
use api::routing::RoutedView;
use axum::http::StatusCode;
use backends::{Timestamp, WriteRow};
use serde_json::{Map, Value as Json};

use crate::access;
use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::features::{Limits, entity_columns, refused, view_keys};
use crate::guard::Op;
use crate::metrics::Metrics;
use crate::state::Snapshot;
use crate::view_metrics::Outcome as ViewOutcome;

/// Column Feast's `remote` store always sends event times in.
const DEFAULT_TS_COLUMN: &str = "event_timestamp";
/// Column Feast's `remote` store always sends created times in.
const REMOTE_CREATED_COLUMN: &str = "created";

/// The earliest and the latest event time a write may carry: the Unix
/// epoch and the last second of year 9999 (RFC 3339 has four-digit years).
const MIN_EVENT_SECONDS: i64 = 0;
const MAX_EVENT_SECONDS: i64 = 253_402_300_799;

/// What every written event and created time must meet, fixed once per
/// request: within 1970..=9999 and not later than the proxy's clock plus
/// `--max-event-time-skew-seconds`.
#[derive(Debug, Clone, Copy)]
struct TimeBounds {
    latest: i64,
    skew_seconds: u64,
}

impl TimeBounds {
    fn new(limits: &Limits) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(MAX_EVENT_SECONDS))
            .unwrap_or(0);
        let skew = i64::try_from(limits.max_event_time_skew_seconds).unwrap_or(i64::MAX);
        TimeBounds {
            latest: now.saturating_add(skew).min(MAX_EVENT_SECONDS),
            skew_seconds: limits.max_event_time_skew_seconds,
        }
    }

    /// `j` read as a timestamp (`df.<column>` row `row`) within the bounds.
    fn read(&self, j: &Json, column: &str, row: usize) -> Result<Timestamp, ApiError> {
        let refuse = |why: String| {
            ApiError::invalid(format!("`df.{column}` row {row}: {} {why}", truncate(j)))
        };
        let ts = parse_ts(j).ok_or_else(|| refuse("cannot be read as a timestamp".into()))?;
        if ts.seconds < MIN_EVENT_SECONDS {
            return Err(refuse("is before 1970-01-01T00:00:00Z".into()));
        }
        if ts.seconds > MAX_EVENT_SECONDS {
            return Err(refuse("is after 9999-12-31T23:59:59Z".into()));
        }
        if ts.seconds > self.latest || (ts.seconds == self.latest && ts.nanos > 0) {
            return Err(refuse(format!(
                "is more than {} s after the proxy's clock (--max-event-time-skew-seconds)",
                self.skew_seconds
            )));
        }
        Ok(ts)
    }
}

/// A timestamp as clients send it: RFC 3339 or ISO 8601 text, or epoch
/// seconds (Feast's pandas path would read a bare number as nanoseconds,
/// which no client means). `None`: not a finite timestamp.
fn parse_ts(j: &Json) -> Option<Timestamp> {
    match j {
        Json::String(s) => parse_timestamp(s).map(|(seconds, nanos)| Timestamp { seconds, nanos }),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(Timestamp::from_seconds(i)),
            // Finite and within i64 (a float cast would saturate).
            (None, Some(f)) if f.is_finite() && f.abs() < 9.0e18 => Some(Timestamp {
                seconds: f.floor() as i64,
                nanos: ((f - f.floor()) * 1e9) as u32,
            }),
            _ => None,
        },
        _ => None,
    }
}

/// Rows of `view` from a `df`; `None` when every feature value is null
/// (Feast skips such writes).
fn rows_from_df(
    snap: &Snapshot,
    view: &RoutedView,
    df: &Map<String, Json>,
    limits: &Limits,
    bounds: &TimeBounds,
) -> Result<Option<Vec<WriteRow>>, ApiError> {
    let entities = entity_columns(df, "df", limits)?;
    access::note_rows(entities.rows);
    limits.check_cells(entities.rows, view.features.len())?;
    let ts_column = view.timestamp_field.as_deref().unwrap_or(DEFAULT_TS_COLUMN);
    let ts_values = df
        .get(ts_column)
        .or_else(|| df.get(DEFAULT_TS_COLUMN))
        .and_then(Json::as_array)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "`df` is missing the event timestamp column `{ts_column}`"
            ))
        })?;
    let created_column = view
        .created_timestamp_column
        .as_deref()
        .unwrap_or(REMOTE_CREATED_COLUMN);
    let created_values = df
        .get(created_column)
        .or_else(|| df.get(REMOTE_CREATED_COLUMN))
        .and_then(Json::as_array);
    // Every feature must be given, as Feast requires: a partial row would
    // pair old values with the new event time.
    let missing: Vec<String> = view
        .features
        .iter()
        .filter(|f| !df.get(&f.name).is_some_and(Json::is_array))
        .map(|f| format!("`{}`", f.name))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::invalid(format!(
            "`df` is missing feature column(s) {} of feature view `{}`",
            missing.join(", "),
            view.name
        )));
    }
    let features: Vec<(&str, api::Dtype, &Vec<Json>)> = view
        .features
        .iter()
        .filter_map(|f| {
            df.get(&f.name)
                .and_then(Json::as_array)
                .map(|c| (f.name.as_str(), f.dtype, c))
        })
        .collect();
    if features.iter().all(|(_, _, c)| c.iter().all(Json::is_null)) {
        return Ok(None);
    }
    let keys = view_keys(
        view,
        &entities,
        snap.table.entity_key_serialization_version,
        "df",
        limits,
    )?;
    let mut rows = Vec::with_capacity(entities.rows);
    for (r, entity_key) in keys.into_iter().enumerate() {
        let event_ts = bounds.read(&ts_values[r], ts_column, r)?;
        let created_ts = match created_values.map(|c| c.get(r)) {
            None | Some(None | Some(Json::Null)) => None,
            Some(Some(j)) => Some(bounds.read(j, created_column, r)?),
        };
        let values = features
            .iter()
            .map(|(name, dtype, col)| {
                json_to_value(&col[r], *dtype)
                    .map(|v| (name.to_string(), v))
                    .map_err(|e| ApiError::invalid(format!("`df.{name}` row {r}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(WriteRow {
            entity_key,
            values,
            event_ts,
            created_ts,
        });
    }
    Ok(Some(rows))
}

/// One view's rows, validated, to write to each of the view's backends.
struct ViewRows<'a> {
    view: &'a Arc<RoutedView>,
    rows: Vec<WriteRow>,
}

/// Validates `df` for every view before anything is written: a bad row
/// refuses the whole request.
fn plan<'a>(
    snap: &Snapshot,
    views: &[&'a Arc<RoutedView>],
    df: &Map<String, Json>,
    limits: &Limits,
) -> Result<Vec<ViewRows<'a>>, ApiError> {
    let bounds = TimeBounds::new(limits);
    let mut out = Vec::with_capacity(views.len());
    for view in views {
        match rows_from_df(snap, view, df, limits, &bounds)? {
            Some(rows) => out.push(ViewRows { view, rows }),
            None => {
                tracing::info!(view = %view.name, "every feature value is null; nothing written")
            }
        }
    }
    Ok(out)
}

/// How one (view, backend) write ended.
struct Outcome<'a> {
    view: &'a str,
    backend: &'a str,
    error: Option<String>,
}

/// Writes every planned view to each of its backends (both during a live
/// move), all at once. Each backend's write is conditional (the newest
/// event wins), so a retry of a partly failed request converges; the
/// answer names what was and was not written.
async fn execute(
    snap: &Snapshot,
    planned: Vec<ViewRows<'_>>,
    metrics: &Metrics,
) -> Result<(), ApiError> {
    let mut jobs = Vec::new();
    for ViewRows { view, rows } in planned {
        let targets: Vec<&str> = view.write_backends().collect();
        let last = targets.len().saturating_sub(1);
        let mut rows = Some(rows);
        for (i, name) in targets.into_iter().enumerate() {
            // A copy for every backend but the last.
            let batch = if i == last {
                rows.take().unwrap_or_default()
            } else {
                rows.clone().unwrap_or_default()
            };
            jobs.push(write_one(snap, view, name, batch, metrics));
        }
    }
    let outcomes = futures::future::join_all(jobs).await;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    // Views with some backend write failed (a view's outcomes are adjacent).
    let mut failed_views: Vec<&str> = failed.iter().map(|o| o.view).collect();
    failed_views.dedup();
    access::note_failed_views(failed_views.len());
    let Some(first) = failed.first() else {
        return Ok(());
    };
    let entry = |o: &Outcome| {
        let mut m = Map::new();
        m.insert("feature_view".into(), o.view.into());
        m.insert("backend".into(), o.backend.into());
        if let Some(e) = &o.error {
            m.insert("error".into(), e.clone().into());
        }
        Json::Object(m)
    };
    let name = |o: &&Outcome| format!("`{}` (backend `{}`)", o.view, o.backend);
    let written: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_none()).collect();
    let mut message = format!(
        "backend `{}` failed: {}; not written: {}",
        first.backend,
        first.error.as_deref().unwrap_or_default(),
        failed.iter().map(name).collect::<Vec<_>>().join(", ")
    );
    if !written.is_empty() {
        message.push_str(&format!(
            "; written: {}",
            written.iter().map(name).collect::<Vec<_>>().join(", ")
        ));
    }
    let mut details = Map::new();
    details.insert(
        "not_written".into(),
        Json::Array(failed.iter().map(|o| entry(o)).collect()),
    );
    details.insert(
        "written".into(),
        Json::Array(written.iter().map(|o| entry(o)).collect()),
    );
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "BackendUnavailable",
        message,
    )
    .with_details(details))
}

async fn write_one<'a>(
    snap: &Snapshot,
    view: &'a Arc<RoutedView>,
    name: &'a str,
    rows: Vec<WriteRow>,
    metrics: &Metrics,
) -> Outcome<'a> {
    let series = snap.view_series(view, name, metrics);
    let error = match snap.backends.get(name) {
        None => {
            if let Some(s) = &series {
                s.record(Op::Write, ViewOutcome::Unavailable, None, 0, 0);
            }
            Some(format!("backend `{name}` is not open"))
        }
        Some(backend) => {
            let written = rows.len() as u64;
            let cells = rows.iter().map(|r| r.values.len() as u64).sum::<u64>();
            let start = series.as_ref().map(|_| Instant::now());
            // Writes are not retried: the closure runs once and takes the rows.
            let mut batch = Some(rows);
            let result = backend
                .call(Op::Write, metrics, |store| {
                    let rows = batch.take().unwrap_or_default();
                    async move { store.write(&snap.table.project, view, rows).await }
                })
                .await;
            if let (Some(s), Some(start)) = (&series, start) {
                s.record_call(Op::Write, start, &result, ViewOutcome::of, |_| {
                    (written, cells)
                });
            }
            result.err().map(|e| {
                tracing::warn!(backend = %name, view = %view.name, error = %e, "backend write failed");
                e.to_string()
            })
        }
    };
    Outcome {
        view: &view.name,
        backend: name,
        error,
    }
}

fn df_of(body: &Map<String, Json>) -> Result<&Map<String, Json>, ApiError> {
    match body.get("df") {
        Some(Json::Object(m)) => Ok(m),
        Some(_) => Err(ApiError::invalid(
            "`df` must be an object of column name -> list of values",
        )),
        None => Err(ApiError::invalid("`df` is required")),
    }
}

fn string_field<'a>(body: &'a Map<String, Json>, field: &str) -> Result<&'a str, ApiError> {
    match body.get(field) {
        Some(Json::String(s)) => Ok(s),
        Some(_) => Err(ApiError::invalid(format!("`{field}` must be a string"))),
        None => Err(ApiError::invalid(format!("`{field}` is required"))),
    }
}

/// Serves one `/write-to-online-store` body.
pub async fn write_to_online_store(
    snap: &Snapshot,
    body: &Json,
    limits: &Limits,
    metrics: &Metrics,
    principal: &Principal,
) -> Result<(), ApiError> {
    let Json::Object(body) = body else {
        return Err(ApiError::invalid("request body must be a JSON object"));
    };
    let name = string_field(body, "feature_view_name")?;
    let df = df_of(body)?;
    // The project first: a caller not allowed it learns nothing about
    // which views exist.
    principal.authorize_project(snap, Access::Write)?;
    let view = snap.views.get(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "FeastObjectNotFoundException",
            format!("Can't recognize feast object with a name {name}"),
        )
    })?;
    access::note_views(std::iter::once(view));
    let planned = checked(snap, &[view], metrics, || {
        principal.authorize(snap, [view.as_ref()], Access::Write)?;
        plan(snap, &[view], df, limits)
    })?;
    execute(snap, planned, metrics).await
}

/// Runs `check` (authorization and validation of a write to `views`); a
/// refusal counts against each view and backend it would have written.
fn checked<T>(
    snap: &Snapshot,
    views: &[&Arc<RoutedView>],
    metrics: &Metrics,
    check: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    check().inspect_err(|e| {
        let targets = views
            .iter()
            .flat_map(|v| v.write_backends().map(move |b| (*v, b)));
        refused(snap, targets, Op::Write, e, metrics);
    })
}

/// Serves one `/push` body: writes `df` to every view fed by the push source.
pub async fn push(
    snap: &Snapshot,
    body: &Json,
    limits: &Limits,
    metrics: &Metrics,
    principal: &Principal,
) -> Result<(), ApiError> {
    let Json::Object(body) = body else {
        return Err(ApiError::invalid("request body must be a JSON object"));
    };
    let source = string_field(body, "push_source_name")?;
    let df = df_of(body)?;
    principal.authorize_project(snap, Access::Write)?;
    match body.get("to").and_then(Json::as_str).unwrap_or("online") {
        "online" => {}
        other @ ("offline" | "online_and_offline") => {
            return Err(ApiError::invalid(format!(
                "push to `{other}` needs Feast's offline store; this proxy serves online stores only (use \"to\": \"online\")"
            )));
        }
        other => {
            return Err(ApiError::invalid(format!(
                "`to` must be one of online, offline, online_and_offline; got `{other}`"
            )));
        }
    }
    let mut views: Vec<&Arc<RoutedView>> = snap
        .views
        .values()
        .filter(|v| v.push_source.as_deref() == Some(source))
        .collect();
    if views.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "PushSourceNotFoundException",
            format!("Unable to find push source '{source}'."),
        ));
    }
    views.sort_by(|a, b| a.name.cmp(&b.name));
    access::note_views(views.iter().copied());
    let planned = checked(snap, &views, metrics, || {
        principal.authorize(snap, views.iter().map(|v| v.as_ref()), Access::Write)?;
        plan(snap, &views, df, limits)
    })?;
    execute(snap, planned, metrics).await
}
