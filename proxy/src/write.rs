//! `POST /write-to-online-store` and `POST /push`: a column-oriented `df`
//! becomes rows written to the view's backend.

use std::sync::Arc;

use api::json::{json_to_value, parse_timestamp};
use api::routing::RoutedView;
use axum::http::StatusCode;
use backends::{Timestamp, WriteRow};
use serde_json::{Map, Value as Json};

use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::features::{Limits, entity_columns, view_keys};
use crate::guard::Op;
use crate::metrics::Metrics;
use crate::state::Snapshot;

/// Column Feast's `remote` store always sends event times in.
const DEFAULT_TS_COLUMN: &str = "event_timestamp";
/// Column Feast's `remote` store always sends created times in.
const REMOTE_CREATED_COLUMN: &str = "created";

fn timestamp(j: &Json, column: &str, row: usize) -> Result<Timestamp, ApiError> {
    let bad = || {
        ApiError::invalid(format!(
            "`df.{column}` row {row}: cannot read {j} as a timestamp"
        ))
    };
    match j {
        Json::String(s) => parse_timestamp(s)
            .map(|(seconds, nanos)| Timestamp { seconds, nanos })
            .ok_or_else(bad),
        // Epoch seconds (Feast's pandas path would read a bare number as
        // nanoseconds, which no client means).
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Timestamp::from_seconds(i)),
            (None, Some(f)) if f.is_finite() => Ok(Timestamp {
                seconds: f.floor() as i64,
                nanos: ((f - f.floor()) * 1e9) as u32,
            }),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// Rows of `view` from a `df`; `None` when every feature value is null
/// (Feast skips such writes).
fn rows_from_df(
    snap: &Snapshot,
    view: &RoutedView,
    df: &Map<String, Json>,
    limits: &Limits,
) -> Result<Option<Vec<WriteRow>>, ApiError> {
    let entities = entity_columns(df, "df", limits)?;
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
        let event_ts = timestamp(&ts_values[r], ts_column, r)?;
        let created_ts = match created_values.map(|c| &c[r]) {
            None | Some(Json::Null) => None,
            Some(j) => Some(timestamp(j, created_column, r)?),
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

async fn write_view(
    snap: &Snapshot,
    view: &Arc<RoutedView>,
    df: &Map<String, Json>,
    limits: &Limits,
    metrics: &Metrics,
) -> Result<(), ApiError> {
    let Some(rows) = rows_from_df(snap, view, df, limits)? else {
        tracing::info!(view = %view.name, "every feature value is null; nothing written");
        return Ok(());
    };
    // During a live move the view is written to both backends (the new
    // one first); the write is acknowledged only when both accepted it.
    let targets: Vec<&str> = view.write_backends().collect();
    let last = targets.len() - 1;
    let mut rows = Some(rows);
    for (i, name) in targets.into_iter().enumerate() {
        let backend = snap.backends.get(name).ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "BackendUnavailable",
                format!("backend `{name}` is not open"),
            )
        })?;
        // Writes are not retried: the closure runs once and takes the rows
        // (a copy for every backend but the last).
        let batch = if i == last {
            rows.take().unwrap_or_default()
        } else {
            rows.clone().unwrap_or_default()
        };
        let mut batch = Some(batch);
        backend
            .call(Op::Write, metrics, |store| {
                let rows = batch.take().unwrap_or_default();
                async move { store.write(&snap.table.project, view, rows).await }
            })
            .await
            .map_err(|e| {
                tracing::warn!(backend = %backend.name, view = %view.name, error = %e, "backend write failed");
                ApiError::backend(&backend.name, &e)
            })?;
    }
    Ok(())
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
    principal.authorize(snap, [view.as_ref()], Access::Write)?;
    write_view(snap, view, df, limits, metrics).await
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
    principal.authorize(snap, views.iter().map(|v| v.as_ref()), Access::Write)?;
    for v in views {
        write_view(snap, v, df, limits, metrics).await?;
    }
    Ok(())
}
