//! `POST /get-online-features`: resolve feature references, serialize
//! entity keys per view, read every view's backend concurrently and merge
//! the columns in request order, in `feast serve`'s response shape.

use std::collections::HashMap;
use std::sync::Arc;

use api::entity_key::{self, SerializationVersion};
use api::json::{infer_key_value, json_to_value};
use api::keys::DUMMY_ENTITY_JOIN_KEY;
use api::proto::Value;
use api::routing::{JoinKey, RoutedView};
use axum::http::StatusCode;
use serde_json::{Map, Value as Json};

use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::guard::Op;
use crate::metrics::Metrics;
use crate::response::{
    FeatureColumn, KeyColumn, ResponseParts, ViewFailure, ViewResult, ViewRows, now_seconds,
};
use crate::state::Snapshot;

/// Per-request size limits, checked where a request is decoded (HTTP and
/// gRPC alike). Each is a `hos-proxy serve` flag of the same name.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body (`--max-body-bytes`).
    pub max_body_bytes: usize,
    /// Most entity rows per request (`--max-entity-rows`).
    pub max_entity_rows: usize,
    /// Most feature columns per request, feature services expanded
    /// (`--max-features`).
    pub max_features: usize,
    /// Longest accepted entity key value (string or bytes), in bytes
    /// (`--max-key-bytes`).
    pub max_key_bytes: usize,
    /// Most cells (entity rows x feature columns) one request may read or
    /// write (`--max-cells`); bounds the response as well.
    pub max_cells: usize,
    /// How far past the proxy's clock an event or created time a write
    /// carries may be (`--max-event-time-skew-seconds`).
    pub max_event_time_skew_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            max_entity_rows: 10_000,
            max_features: 1_000,
            max_key_bytes: 4_096,
            max_cells: 200_000,
            max_event_time_skew_seconds: 86_400,
        }
    }
}

impl Limits {
    /// Refuses a request of `rows` entity rows x `features` columns over
    /// the feature or cell limits.
    pub(crate) fn check_cells(&self, rows: usize, features: usize) -> Result<(), ApiError> {
        if features > self.max_features {
            return Err(ApiError::too_large(format!(
                "{features} feature columns exceed the limit of {} per request (--max-features)",
                self.max_features
            )));
        }
        let cells = rows.saturating_mul(features);
        if cells > self.max_cells {
            return Err(ApiError::too_large(format!(
                "{rows} entity rows x {features} features = {cells} cells exceed the limit of {} cells per request (--max-cells)",
                self.max_cells
            )));
        }
        Ok(())
    }
}

/// One requested feature column.
pub(crate) struct Column {
    pub view: Arc<RoutedView>,
    pub feature: String,
    /// The column's name in the response (`view__feature` with full names).
    pub name: String,
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
    let mut lengths = Vec::with_capacity(columns.len());
    for (k, v) in columns {
        let Json::Array(items) = v else {
            return Err(ApiError::invalid(format!("`{field}.{k}` must be a list")));
        };
        lengths.push((k.as_str(), items.len()));
    }
    let rows = entity_rows(lengths, field, limits)?;
    Ok(EntityColumns { columns, rows })
}

impl EntityColumns<'_> {
    /// The values of join key `jk` typed as its view declares (inferred
    /// where it declares no type); `None` when the request lacks the key.
    fn typed_column(&self, jk: &JoinKey, field: &str) -> Option<Result<Vec<Value>, ApiError>> {
        let Some(Json::Array(items)) = self.columns.get(&jk.name) else {
            return None;
        };
        Some(
            items
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
                .collect(),
        )
    }
}

fn missing_join_key(field: &str, jk: &JoinKey, view: &RoutedView) -> ApiError {
    ApiError::invalid(format!(
        "`{field}` is missing join key `{}` of feature view `{}`",
        jk.name, view.name
    ))
}

/// Where a read's join-key values come from: the JSON `entities` object or
/// the protobuf `entities` map. Each types a join key's column for the
/// view that declares it, or says it is absent.
pub(crate) trait EntitySource {
    fn column(&self, jk: &JoinKey) -> Option<Result<Vec<Value>, ApiError>>;
}

impl EntitySource for EntityColumns<'_> {
    fn column(&self, jk: &JoinKey) -> Option<Result<Vec<Value>, ApiError>> {
        self.typed_column(jk, "entities")
    }
}

/// A decoded read, whichever protocol it came in: the one typed input of
/// the serving core ([`read`]).
pub(crate) struct FeatureRequest<'a> {
    pub selection: Selection<'a>,
    pub full_names: bool,
    /// Entity rows (all key columns have this many values).
    pub rows: usize,
    pub entities: &'a (dyn EntitySource + Sync),
}

/// What a read found: the selection, each selected view's rows (or why its
/// backend failed), and the typed key columns (by join key) it used.
pub(crate) struct ReadOutcome {
    pub selected: Selected,
    pub results: Vec<ViewRows>,
    pub typed_keys: HashMap<String, Vec<Value>>,
}

/// The serving core behind HTTP and gRPC: authorizes the project, resolves
/// the selection (limits checked), authorizes its views, types each join
/// key once and serializes every view's keys, then reads every view's
/// backend concurrently.
pub(crate) async fn read(
    snap: &Snapshot,
    req: FeatureRequest<'_>,
    principal: &Principal,
    limits: &Limits,
    metrics: &Metrics,
) -> Result<ReadOutcome, ApiError> {
    // The project first: a caller not allowed it learns nothing about
    // which views exist.
    principal.authorize_project(snap, Access::Read)?;
    let selected = select(snap, req.selection, req.full_names, req.rows, limits)?;
    principal.authorize(
        snap,
        selected.order.iter().map(|(v, _)| v.as_ref()),
        Access::Read,
    )?;
    let version = snap.table.entity_key_serialization_version;
    // Each join key is typed once per declared type (views that share a
    // key name almost always share its type; one that declares another
    // gets its own column).
    let mut typed: HashMap<(&str, Option<api::Dtype>), Vec<Value>> = HashMap::new();
    let mut keys = Vec::with_capacity(selected.order.len());
    for (view, _) in &selected.order {
        let join_keys: Vec<&JoinKey> = view.join_keys().collect();
        if join_keys.is_empty() {
            keys.push(vec![dummy_key(version)?; req.rows]);
            continue;
        }
        for jk in &join_keys {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                typed.entry((jk.name.as_str(), jk.dtype))
            {
                let col = req
                    .entities
                    .column(jk)
                    .ok_or_else(|| missing_join_key("entities", jk, view))??;
                slot.insert(col);
            }
        }
        let names: Vec<&str> = join_keys.iter().map(|k| k.name.as_str()).collect();
        let columns: Vec<&[Value]> = join_keys
            .iter()
            .map(|k| {
                typed
                    .get(&(k.name.as_str(), k.dtype))
                    .map(Vec::as_slice)
                    .unwrap_or_default()
            })
            .collect();
        keys.push(encode_keys(
            &names, &columns, req.rows, version, "entities", limits,
        )?);
    }
    // The echo shows a key as the first selected view that declares it
    // typed it.
    let mut typed_keys: HashMap<String, Vec<Value>> = HashMap::new();
    for (view, _) in &selected.order {
        for jk in view.join_keys() {
            if !typed_keys.contains_key(&jk.name)
                && let Some(col) = typed.remove(&(jk.name.as_str(), jk.dtype))
            {
                typed_keys.insert(jk.name.clone(), col);
            }
        }
    }
    let results = read_views(snap, &selected, keys, metrics).await?;
    Ok(ReadOutcome {
        selected,
        results,
        typed_keys,
    })
}

/// The number of entity rows of key columns with these lengths: all equal,
/// within the limit (1 when there are no key columns).
pub(crate) fn entity_rows<'a>(
    lengths: impl IntoIterator<Item = (&'a str, usize)>,
    field: &str,
    limits: &Limits,
) -> Result<usize, ApiError> {
    let mut rows: Option<(usize, &str)> = None;
    for (k, len) in lengths {
        match rows {
            None => rows = Some((len, k)),
            Some((n, first)) if n != len => {
                return Err(ApiError::invalid(format!(
                    "`{field}` columns differ in length: `{first}` has {n} values, `{k}` has {len}"
                )));
            }
            Some(_) => {}
        }
    }
    let rows = rows.map(|(n, _)| n).unwrap_or(1);
    if rows > limits.max_entity_rows {
        return Err(ApiError::too_large(format!(
            "{rows} entity rows exceed the limit of {} per request (--max-entity-rows)",
            limits.max_entity_rows
        )));
    }
    Ok(rows)
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
    limits: &Limits,
) -> Result<Vec<Vec<u8>>, ApiError> {
    let join_keys: Vec<&api::routing::JoinKey> = view.join_keys().collect();
    if join_keys.is_empty() {
        let k = dummy_key(version)?;
        return Ok(vec![k; entities.rows]);
    }
    let mut values: Vec<Vec<Value>> = Vec::with_capacity(join_keys.len());
    for jk in &join_keys {
        let col = entities
            .typed_column(jk, field)
            .ok_or_else(|| missing_join_key(field, jk, view))??;
        values.push(col);
    }
    let names: Vec<&str> = join_keys.iter().map(|k| k.name.as_str()).collect();
    let columns: Vec<&[Value]> = values.iter().map(Vec::as_slice).collect();
    encode_keys(&names, &columns, entities.rows, version, field, limits)
}

/// Serializes one key per row from per-join-key value columns (all of
/// `rows` values), refusing oversized string and bytes values.
pub(crate) fn encode_keys(
    names: &[&str],
    columns: &[&[Value]],
    rows: usize,
    version: SerializationVersion,
    field: &str,
    limits: &Limits,
) -> Result<Vec<Vec<u8>>, ApiError> {
    for (name, col) in names.iter().zip(columns) {
        if col.len() != rows {
            return Err(ApiError::invalid(format!(
                "`{field}.{name}` has {} values, expected {rows}",
                col.len()
            )));
        }
        for (i, v) in col.iter().enumerate() {
            let len = match &v.val {
                Some(api::proto::Val::StringVal(s)) => s.len(),
                Some(api::proto::Val::BytesVal(b)) => b.len(),
                _ => 0,
            };
            if len > limits.max_key_bytes {
                return Err(ApiError::too_large(format!(
                    "`{field}.{name}` row {i} is {len} bytes long; entity key values are limited to {} bytes",
                    limits.max_key_bytes
                )));
            }
        }
    }
    let mut keys = Vec::with_capacity(rows);
    let mut row_values: Vec<&Value> = Vec::with_capacity(names.len());
    for r in 0..rows {
        row_values.clear();
        row_values.extend(columns.iter().map(|c| &c[r]));
        let mut out = Vec::with_capacity(16 + 24 * names.len());
        entity_key::serialize_into(names, &row_values, version, &mut out)
            .map_err(|e| ApiError::invalid(format!("`{field}` row {r}: {e}")))?;
        keys.push(out);
    }
    Ok(keys)
}

/// Which features a request selects.
pub(crate) enum Selection<'a> {
    Service(&'a str),
    Refs(Vec<&'a str>),
}

/// The selection of a JSON body: `feature_service`, else `features`.
fn json_selection(body: &Map<String, Json>) -> Result<Selection<'_>, ApiError> {
    match body.get("feature_service") {
        None | Some(Json::Null) => {}
        Some(Json::String(s)) => return Ok(Selection::Service(s)),
        Some(_) => return Err(ApiError::invalid("`feature_service` must be a string")),
    }
    let refs = match body.get("features") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(a)) => a
            .iter()
            .map(|r| {
                r.as_str().ok_or_else(|| {
                    ApiError::invalid(format!("feature reference {r} must be a string"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(ApiError::invalid(
                "`features` must be a list of \"<feature_view>:<feature>\" strings",
            ));
        }
    };
    Ok(Selection::Refs(refs))
}

/// The requested columns, grouped by view as Feast orders them, and each
/// view with the features to read from it.
pub(crate) struct Selected {
    pub cols: Vec<Column>,
    pub order: Vec<(Arc<RoutedView>, Vec<String>)>,
}

/// Resolves the selection against the snapshot, for a request of `rows`
/// entity rows: the feature and cell limits apply to the expanded columns
/// (a feature service counts as all the features it selects).
pub(crate) fn select(
    snap: &Snapshot,
    selection: Selection<'_>,
    full_names: bool,
    rows: usize,
    limits: &Limits,
) -> Result<Selected, ApiError> {
    let project = &snap.table.project;
    let view = |name: &str| {
        snap.views
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::view_not_found(name, project))
    };
    let mut cols = Vec::new();
    match selection {
        Selection::Service(name) => {
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
                let n = if p.features.is_empty() {
                    v.features.len()
                } else {
                    p.features.len()
                };
                limits.check_cells(rows, cols.len().saturating_add(n))?;
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
        }
        Selection::Refs(refs) => {
            // Checked before resolving, so a huge list costs no lookups.
            limits.check_cells(rows, refs.len())?;
            for s in refs {
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
    Ok(Selected { cols, order })
}

/// Reads every selected view from its backend concurrently, each call under
/// its backend's guard. One failing backend fails only its views; when every
/// view failed the request fails with 503 naming the backends.
pub(crate) async fn read_views(
    snap: &Snapshot,
    selected: &Selected,
    keys: Vec<Vec<Vec<u8>>>,
    metrics: &Metrics,
) -> Result<Vec<ViewRows>, ApiError> {
    let project = snap.table.project.as_str();
    let reads = selected
        .order
        .iter()
        .zip(keys)
        .map(|((view, features), keys)| async move {
            // During a live move reads stay on the old backend until switched.
            let Some(backend) = snap.backends.get(view.read_backend()) else {
                return Err(ViewFailure {
                    view: view.name.clone(),
                    backend: view.read_backend().to_string(),
                    message: format!("backend `{}` is not open", view.read_backend()),
                });
            };
            backend
                .call(Op::Read, metrics, |store| {
                    let keys = &keys;
                    async move { store.read(project, view, keys, features).await }
                })
                .await
                .map_err(|e| {
                    tracing::warn!(backend = %backend.name, view = %view.name, error = %e, "backend read failed");
                    ViewFailure {
                        view: view.name.clone(),
                        backend: backend.name.clone(),
                        message: ApiError::backend(&backend.name, &e).message,
                    }
                })
        });
    let results = futures::future::join_all(reads).await;
    let failures: Vec<&ViewFailure> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if !results.is_empty() && failures.len() == results.len() {
        let mut message = failures
            .iter()
            .map(|f| format!("feature view `{}`: {}", f.view, f.message))
            .collect::<Vec<_>>()
            .join("; ");
        if failures.len() == 1 {
            message = failures[0].message.clone();
        }
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "BackendUnavailable",
            message,
        ));
    }
    Ok(results)
}

/// Serves one `/get-online-features` request body.
pub async fn get_online_features(
    snap: &Snapshot,
    body: &Json,
    limits: &Limits,
    metrics: &Metrics,
    principal: &Principal,
) -> Result<Vec<u8>, ApiError> {
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
    let outcome = read(
        snap,
        FeatureRequest {
            selection: json_selection(body)?,
            full_names,
            rows: entities.rows,
            entities: &entities,
        },
        principal,
        limits,
        metrics,
    )
    .await?;
    let include_views = body
        .get("include_feature_view_version_metadata")
        .and_then(Json::as_bool)
        == Some(true);
    Ok(response_parts(
        snap,
        &entities,
        &outcome.selected,
        &outcome.results,
        include_views,
    )
    .to_json())
}

/// The answer's parts: join keys first, echoed in request order (typed
/// where a selected view declares the type; like Feast, keys that are no
/// view's join key are dropped), then the selected columns.
fn response_parts<'a>(
    snap: &Snapshot,
    entities: &EntityColumns<'a>,
    selected: &'a Selected,
    results: &'a [ViewRows],
    include_views: bool,
) -> ResponseParts<'a> {
    let mut keys = Vec::with_capacity(entities.columns.len());
    for (k, v) in entities.columns {
        let known = snap
            .views
            .values()
            .any(|view| view.join_keys().any(|j| &j.name == k));
        if k == DUMMY_ENTITY_JOIN_KEY || !known {
            continue;
        }
        let dtype = selected
            .order
            .iter()
            .flat_map(|(v, _)| v.join_keys())
            .find(|j| &j.name == k)
            .and_then(|j| j.dtype);
        keys.push(KeyColumn {
            name: k.as_str(),
            dtype,
            values: v.as_array().map(Vec::as_slice).unwrap_or_default(),
        });
    }
    let views: Vec<ViewResult<'a>> = selected
        .order
        .iter()
        .zip(results)
        .map(|((v, _), rows)| ViewResult {
            rows,
            ttl_seconds: v.ttl_seconds,
        })
        .collect();
    let columns = selected
        .cols
        .iter()
        .map(|c| {
            let view = selected
                .order
                .iter()
                .position(|(v, _)| v.name == c.view.name)
                .unwrap_or(0);
            let feature = selected.order[view]
                .1
                .iter()
                .position(|f| *f == c.feature)
                .unwrap_or(0);
            FeatureColumn {
                name: c.name.as_str(),
                view,
                feature,
            }
        })
        .collect();
    ResponseParts {
        entity_rows: entities.rows,
        keys,
        views,
        columns,
        view_metadata: include_views.then(|| {
            selected
                .order
                .iter()
                .map(|(v, _)| v.name.as_str())
                .collect()
        }),
        errors: results.iter().filter_map(|r| r.as_ref().err()).collect(),
        now: now_seconds(),
    }
}
