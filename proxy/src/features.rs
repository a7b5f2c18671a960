//! `POST /get-online-features`: resolve feature references, serialize
//! entity keys per view, read every view's backend concurrently and merge
//! the columns in request order, in `feast serve`'s response shape.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use api::entity_key::{self, SerializationVersion};
use api::json::{format_timestamp, infer_key_value, json_to_value, value_to_json};
use api::keys::DUMMY_ENTITY_JOIN_KEY;
use api::proto::Value;
use api::routing::RoutedView;
use axum::http::StatusCode;
use backends::ReadRow;
use serde_json::{Map, Value as Json, json};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::Snapshot;

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_entity_rows: usize,
    /// Bound on one backend call; past it the views on that backend fail
    /// with 503 instead of holding the request.
    pub backend_timeout: std::time::Duration,
}

/// Runs a backend call under the request's time bound.
pub(crate) async fn bounded<T>(
    limit: std::time::Duration,
    call: impl Future<Output = Result<T, backends::BackendError>>,
) -> Result<T, backends::BackendError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(backends::BackendError::Unavailable(format!(
            "no answer within {limit:?}"
        )))
    })
}

const EPOCH: &str = "1970-01-01T00:00:00Z";

/// One requested feature column.
struct Column {
    view: Arc<RoutedView>,
    feature: String,
    name: String,
}

/// Entity rows of a request, by join key, all of one length.
pub(crate) struct EntityColumns<'a> {
    pub columns: &'a Map<String, Json>,
    pub rows: usize,
}

pub(crate) fn entity_columns<'a>(
    columns: &'a Map<String, Json>,
    field: &str,
    limits: &Limits,
) -> Result<EntityColumns<'a>, ApiError> {
    let mut rows: Option<(usize, &str)> = None;
    for (k, v) in columns {
        let Json::Array(items) = v else {
            return Err(ApiError::invalid(format!("`{field}.{k}` must be a list")));
        };
        match rows {
            None => rows = Some((items.len(), k)),
            Some((n, first)) if n != items.len() => {
                return Err(ApiError::invalid(format!(
                    "`{field}` columns differ in length: `{first}` has {n} values, `{k}` has {}",
                    items.len()
                )));
            }
            Some(_) => {}
        }
    }
    let rows = rows.map(|(n, _)| n).unwrap_or(1);
    if rows > limits.max_entity_rows {
        return Err(ApiError::too_large(format!(
            "{rows} entity rows exceed the limit of {} per request",
            limits.max_entity_rows
        )));
    }
    Ok(EntityColumns { columns, rows })
}

/// The serialized key of an entityless view's rows (Feast's dummy entity).
pub(crate) fn dummy_key(version: SerializationVersion) -> Result<Vec<u8>, ApiError> {
    let empty = Value {
        val: Some(api::proto::Val::StringVal(String::new())),
    };
    let mut out = Vec::new();
    entity_key::serialize_into(&[DUMMY_ENTITY_JOIN_KEY], &[&empty], version, &mut out)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(out)
}

/// Serialized entity keys of `view` for every row; errors name the column.
pub(crate) fn view_keys(
    view: &RoutedView,
    entities: &EntityColumns<'_>,
    version: SerializationVersion,
    field: &str,
) -> Result<Vec<Vec<u8>>, ApiError> {
    let join_keys: Vec<&api::routing::JoinKey> = view.join_keys().collect();
    if join_keys.is_empty() {
        let k = dummy_key(version)?;
        return Ok(vec![k; entities.rows]);
    }
    let mut values: Vec<Vec<Value>> = Vec::with_capacity(join_keys.len());
    for jk in &join_keys {
        let Some(Json::Array(items)) = entities.columns.get(&jk.name) else {
            return Err(ApiError::invalid(format!(
                "`{field}` is missing join key `{}` of feature view `{}`",
                jk.name, view.name
            )));
        };
        let col = items
            .iter()
            .enumerate()
            .map(|(i, j)| {
                if j.is_null() {
                    return Err(ApiError::invalid(format!(
                        "`{field}.{}` row {i} is null",
                        jk.name
                    )));
                }
                match jk.dtype {
                    Some(d) => json_to_value(j, d),
                    None => infer_key_value(j),
                }
                .map_err(|e| ApiError::invalid(format!("`{field}.{}` row {i}: {e}", jk.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        values.push(col);
    }
    let names: Vec<&str> = join_keys.iter().map(|k| k.name.as_str()).collect();
    let mut keys = Vec::with_capacity(entities.rows);
    let mut row_values: Vec<&Value> = Vec::with_capacity(names.len());
    for r in 0..entities.rows {
        row_values.clear();
        row_values.extend(values.iter().map(|c| &c[r]));
        let mut out = Vec::with_capacity(16 + 24 * names.len());
        entity_key::serialize_into(&names, &row_values, version, &mut out)
            .map_err(|e| ApiError::invalid(format!("`{field}` row {r}: {e}")))?;
        keys.push(out);
    }
    Ok(keys)
}

fn resolve_columns(
    snap: &Snapshot,
    body: &Map<String, Json>,
    full_names: bool,
) -> Result<Vec<Column>, ApiError> {
    let project = &snap.table.project;
    let view = |name: &str| {
        snap.views
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::view_not_found(name, project))
    };
    let mut cols = Vec::new();
    let service = match body.get("feature_service") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.as_str()),
        Some(_) => return Err(ApiError::invalid("`feature_service` must be a string")),
    };
    if let Some(name) = service {
        let svc = snap
            .table
            .feature_services
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "FeatureServiceNotFoundException",
                    format!("Feature service {name} does not exist in project {project}"),
                )
            })?;
        for p in &svc.projections {
            let v = view(&p.feature_view)?;
            let prefix = p.alias.clone().unwrap_or_else(|| v.name.clone());
            let features: Vec<String> = if p.features.is_empty() {
                v.features.iter().map(|f| f.name.clone()).collect()
            } else {
                p.features.clone()
            };
            for f in features {
                let name = if full_names {
                    format!("{prefix}__{f}")
                } else {
                    f.clone()
                };
                cols.push(Column {
                    view: Arc::clone(&v),
                    feature: f,
                    name,
                });
            }
        }
    } else {
        let refs = match body.get("features") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(a)) => a.clone(),
            Some(_) => {
                return Err(ApiError::invalid(
                    "`features` must be a list of \"<feature_view>:<feature>\" strings",
                ));
            }
        };
        for r in &refs {
            let Some(s) = r.as_str() else {
                return Err(ApiError::invalid(format!(
                    "feature reference {r} must be a string"
                )));
            };
            let Some((vname, fname)) = s.split_once(':') else {
                return Err(ApiError::invalid(format!(
                    "Invalid feature reference '{s}'. Expected format: '<feature_view>:<feature>'"
                )));
            };
            let v = view(vname)?;
            if v.feature(fname).is_none() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "FeatureNotFoundException",
                    format!("Feature {fname} not found in feature view {vname}"),
                ));
            }
            let name = if full_names {
                format!("{vname}__{fname}")
            } else {
                fname.to_string()
            };
            cols.push(Column {
                view: v,
                feature: fname.to_string(),
                name,
            });
        }
    }
    if cols.is_empty() {
        return Err(ApiError::invalid("No features specified for retrieval"));
    }
    // Feast groups columns by view (in order of first appearance), keeping
    // request order within a view.
    let mut first_seen: Vec<&str> = Vec::new();
    for c in &cols {
        if !first_seen.contains(&c.view.name.as_str()) {
            first_seen.push(c.view.name.as_str());
        }
    }
    let rank: HashMap<String, usize> = first_seen
        .iter()
        .enumerate()
        .map(|(i, v)| (v.to_string(), i))
        .collect();
    cols.sort_by_key(|c| rank.get(&c.view.name).copied().unwrap_or(usize::MAX));
    let mut seen = HashMap::new();
    for c in &cols {
        if let Some(prev) = seen.insert(c.name.as_str(), c.view.name.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "FeatureNameCollisionError",
                format!(
                    "Duplicate features named {} found (views {prev} and {}). Use full_feature_names=true or request distinct features.",
                    c.name, c.view.name
                ),
            ));
        }
    }
    Ok(cols)
}

/// Serves one `/get-online-features` request body.
pub async fn get_online_features(
    snap: &Snapshot,
    body: &Json,
    limits: &Limits,
    metrics: &Metrics,
) -> Result<Json, ApiError> {
    let Json::Object(body) = body else {
        return Err(ApiError::invalid("request body must be a JSON object"));
    };
    let full_names = match body.get("full_feature_names") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid(
                "`full_feature_names` must be true or false",
            ));
        }
    };
    let entities = match body.get("entities") {
        Some(Json::Object(m)) => entity_columns(m, "entities", limits)?,
        Some(_) => {
            return Err(ApiError::invalid(
                "`entities` must be an object of join key -> list of values",
            ));
        }
        None => return Err(ApiError::invalid("`entities` is required")),
    };
    let cols = resolve_columns(snap, body, full_names)?;
    let version = snap.table.entity_key_serialization_version;

    // Views in order of first appearance, each with its features.
    let mut order: Vec<(Arc<RoutedView>, Vec<String>)> = Vec::new();
    for c in &cols {
        match order.iter_mut().find(|(v, _)| v.name == c.view.name) {
            Some((_, fs)) => {
                if !fs.contains(&c.feature) {
                    fs.push(c.feature.clone())
                }
            }
            None => order.push((Arc::clone(&c.view), vec![c.feature.clone()])),
        }
    }
    let mut reads = Vec::with_capacity(order.len());
    for (view, features) in &order {
        let keys = view_keys(view, &entities, version, "entities")?;
        let backend = snap.backend_of(view).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "BackendUnavailable",
                format!(
                    "feature view `{}` routes to backend `{}`, which is not open",
                    view.name, view.backend
                ),
            )
        })?;
        let project = snap.table.project.as_str();
        reads.push(async move {
            let start = Instant::now();
            let res = match backend.store() {
                Ok(store) => bounded(limits.backend_timeout, store.read(project, view, &keys, features)).await,
                Err(e) => Err(e),
            };
            metrics.backend_call(&backend.name, "read", start.elapsed().as_secs_f64(), res.as_ref().err().map(|e| e.label()));
            res.map_err(|e| {
                tracing::warn!(backend = %backend.name, view = %view.name, error = %e, "backend read failed");
                ApiError::backend(&backend.name, &e)
            })
        });
    }
    let results: Vec<Vec<Option<ReadRow>>> = futures::future::try_join_all(reads).await?;
    let by_view: HashMap<&str, (&Vec<String>, &Vec<Option<ReadRow>>)> = order
        .iter()
        .zip(results.iter())
        .map(|((v, fs), rows)| (v.name.as_str(), (fs, rows)))
        .collect();

    let mut names = Vec::with_capacity(entities.columns.len() + cols.len());
    let mut out = Vec::with_capacity(names.capacity());
    // Join keys first, echoed in request order (typed where a view declares
    // the type); like Feast, keys that are no view's join key are dropped.
    for (k, v) in entities.columns {
        let known = snap
            .views
            .values()
            .any(|view| view.join_keys().any(|j| &j.name == k));
        if k == DUMMY_ENTITY_JOIN_KEY || !known {
            continue;
        }
        let dtype = order
            .iter()
            .flat_map(|(v, _)| v.join_keys())
            .find(|j| &j.name == k)
            .and_then(|j| j.dtype);
        let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
        let values: Vec<Json> = items
            .iter()
            .map(|j| match dtype.map(|d| json_to_value(j, d)) {
                Some(Ok(val)) => value_to_json(&val),
                _ => j.clone(),
            })
            .collect();
        names.push(Json::String(k.clone()));
        out.push(json!({
            "values": values,
            "statuses": vec!["PRESENT"; items.len()],
            "event_timestamps": vec![EPOCH; items.len()],
        }));
    }
    for c in &cols {
        let (features, rows) = by_view[c.view.name.as_str()];
        let fi = features.iter().position(|f| *f == c.feature).unwrap_or(0);
        let mut values = Vec::with_capacity(entities.rows);
        let mut statuses = Vec::with_capacity(entities.rows);
        let mut stamps = Vec::with_capacity(entities.rows);
        for row in rows.iter() {
            match row
                .as_ref()
                .and_then(|r| r.values[fi].as_ref().map(|v| (v, r.event_ts)))
            {
                Some((v, ts)) => {
                    values.push(value_to_json(v));
                    statuses.push("PRESENT");
                    stamps.push(Json::String(format_timestamp(ts.seconds, ts.nanos)));
                }
                None => {
                    values.push(Json::Null);
                    statuses.push("NOT_FOUND");
                    stamps.push(Json::String(EPOCH.to_string()));
                }
            }
        }
        names.push(Json::String(c.name.clone()));
        out.push(json!({ "values": values, "statuses": statuses, "event_timestamps": stamps }));
    }
    let mut metadata = Map::new();
    metadata.insert("feature_names".into(), Json::Array(names));
    if body
        .get("include_feature_view_version_metadata")
        .and_then(Json::as_bool)
        == Some(true)
    {
        let views: Vec<Json> = order
            .iter()
            .map(|(v, _)| json!({ "name": v.name }))
            .collect();
        metadata.insert("feature_view_metadata".into(), Json::Array(views));
    }
    let mut resp = Map::new();
    resp.insert("results".into(), Json::Array(out));
    resp.insert("metadata".into(), Json::Object(metadata));
    Ok(Json::Object(resp))
}
