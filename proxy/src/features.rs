//! `POST /get-online-features`: resolve feature references, serialize
//! entity keys per view, read every view's backend concurrently and merge
//! the columns in request order, in `feast serve`'s response shape.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use api::entity_key::{self, SerializationVersion};
use api::json::{infer_key_value, json_to_value};
use api::keys::DUMMY_ENTITY_JOIN_KEY;
use api::proto::Value;
use api::routing::{JoinKey, RoutedView};
use axum::http::StatusCode;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};

use crate::access;
use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::guard::Op;
use crate::metrics::Metrics;
use crate::response::{
    FeatureColumn, KeyColumn, ResponseParts, ViewFailure, ViewResult, ViewRows, now_seconds,
};
use crate::state::Snapshot;
use crate::view_metrics::Outcome;

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
    access::note_rows(req.rows);
    // The project first: a caller not allowed it learns nothing about
    // which views exist.
    principal.authorize_project(snap, Access::Read)?;
    let selected = select(snap, req.selection, req.full_names, req.rows, limits)?;
    access::note_views(selected.order.iter().map(|(v, _)| v));
    // Refused from here on, each selected view counts a client error.
    let keyed = view_keys_of(snap, req.rows, req.entities, &selected, principal, limits);
    let Keyed { keys, typed_keys } = match keyed {
        Ok(k) => k,
        Err(e) => {
            refused(
                snap,
                selected.order.iter().map(|(v, _)| (v, v.read_backend())),
                Op::Read,
                &e,
                metrics,
            );
            return Err(e);
        }
    };
    let results = read_views(snap, &selected, keys, metrics).await?;
    Ok(ReadOutcome {
        selected,
        results,
        typed_keys,
    })
}

/// Counts a request refused after its views were resolved against each of
/// them (`client_error` for a 4xx, else `error`): no backend was called.
pub(crate) fn refused<'a>(
    snap: &Snapshot,
    views: impl Iterator<Item = (&'a Arc<RoutedView>, &'a str)>,
    op: Op,
    e: &ApiError,
    metrics: &Metrics,
) {
    let outcome = if e.status.is_client_error() {
        Outcome::ClientError
    } else {
        Outcome::Error
    };
    for (view, backend) in views {
        if let Some(s) = snap.view_series(view, backend, metrics) {
            s.record(op, outcome, None, 0, 0);
        }
    }
}

/// What a read sends its backends: every selected view's serialized keys,
/// in selection order, and the typed key columns (by join key) the answer
/// echoes.
struct Keyed {
    keys: Vec<Vec<Vec<u8>>>,
    typed_keys: HashMap<String, Vec<Value>>,
}

/// Authorizes the selection, types each join key once and serializes
/// every selected view's keys.
fn view_keys_of(
    snap: &Snapshot,
    rows: usize,
    entities: &(dyn EntitySource + Sync),
    selected: &Selected,
    principal: &Principal,
    limits: &Limits,
) -> Result<Keyed, ApiError> {
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
            keys.push(vec![dummy_key(version)?; rows]);
            continue;
        }
        for jk in &join_keys {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                typed.entry((jk.name.as_str(), jk.dtype))
            {
                let col = entities
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
            &names, &columns, rows, version, "entities", limits,
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
    Ok(Keyed { keys, typed_keys })
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

/// The requested columns, grouped by view as Feast orders them, and each
/// view with the features to read from it.
pub(crate) struct Selected {
    pub cols: Vec<Column>,
    pub order: Vec<(Arc<RoutedView>, Vec<String>)>,
}

/// One selected view while a selection is resolved: its columns in request
/// order, the features to read (each once), and which of the view's
/// features are already read.
struct Group {
    view: Arc<RoutedView>,
    cols: Vec<Column>,
    read: Vec<String>,
    seen: Vec<bool>,
    /// Where the next feature lookup starts: requests list a view's
    /// features mostly in the view's order, so most lookups take one
    /// comparison.
    hint: usize,
}

/// The view groups of a selection, in order of first appearance (Feast
/// groups the columns by view this way, keeping request order within a
/// view). Few views are found by a scan, more through `by_name`.
struct Groups<'s, 'r> {
    snap: &'s Snapshot,
    groups: Vec<Group>,
    by_name: HashMap<&'r str, usize>,
}

impl<'r> Groups<'_, 'r> {
    fn of(&mut self, name: &'r str) -> Result<usize, ApiError> {
        let found = if self.groups.len() <= 8 {
            self.groups.iter().position(|g| g.view.name == name)
        } else {
            self.by_name.get(name).copied()
        };
        if let Some(i) = found {
            return Ok(i);
        }
        let view = self
            .snap
            .views
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::view_not_found(name, &self.snap.table.project))?;
        let n = view.features.len();
        self.groups.push(Group {
            view,
            cols: Vec::new(),
            read: Vec::new(),
            seen: vec![false; n],
            hint: 0,
        });
        let i = self.groups.len() - 1;
        self.by_name.insert(name, i);
        Ok(i)
    }
}

impl Group {
    /// The index of feature `name` in the view.
    fn find(&mut self, name: &str) -> Option<usize> {
        let fs = &self.view.features;
        let start = self.hint.min(fs.len());
        let i = fs[start..]
            .iter()
            .position(|f| f.name == name)
            .map(|i| i + start)
            .or_else(|| fs[..start].iter().position(|f| f.name == name))?;
        self.hint = i + 1;
        Some(i)
    }

    /// Adds column `name` for feature `i`; `false` when the view's feature
    /// was already selected.
    fn add(&mut self, i: usize, name: String) -> bool {
        let feature = self.view.features[i].name.clone();
        let first = !std::mem::replace(&mut self.seen[i], true);
        if first {
            self.read.push(feature.clone());
        }
        self.cols.push(Column {
            view: Arc::clone(&self.view),
            feature,
            name,
        });
        first
    }
}

fn feature_not_found(feature: &str, view: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "FeatureNotFoundException",
        format!("Feature {feature} not found in feature view {view}"),
    )
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
    let mut groups = Groups {
        snap,
        groups: Vec::new(),
        by_name: HashMap::new(),
    };
    let mut total = 0usize;
    // Whether two columns may share a name without selecting one feature
    // of one view twice (then names are compared as a whole below).
    let mut names_may_collide = full_names;
    let mut repeated = false;
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
            names_may_collide = true;
            for p in &svc.projections {
                let g = groups.of(&p.feature_view)?;
                let group = &mut groups.groups[g];
                let n = if p.features.is_empty() {
                    group.view.features.len()
                } else {
                    p.features.len()
                };
                total = total.saturating_add(n);
                limits.check_cells(rows, total)?;
                let prefix = p.alias.as_deref().unwrap_or(&group.view.name).to_string();
                let column = |f: &str| {
                    if full_names {
                        format!("{prefix}__{f}")
                    } else {
                        f.to_string()
                    }
                };
                if p.features.is_empty() {
                    for i in 0..group.view.features.len() {
                        let name = column(&group.view.features[i].name);
                        group.add(i, name);
                    }
                } else {
                    for f in &p.features {
                        let i = group
                            .find(f)
                            .ok_or_else(|| feature_not_found(f, &p.feature_view))?;
                        group.add(i, column(f));
                    }
                }
            }
        }
        Selection::Refs(refs) => {
            // Checked before resolving, so a huge list costs no lookups.
            limits.check_cells(rows, refs.len())?;
            total = refs.len();
            for s in refs {
                let Some((vname, fname)) = s.split_once(':') else {
                    return Err(ApiError::invalid(format!(
                        "Invalid feature reference '{s}'. Expected format: '<feature_view>:<feature>'"
                    )));
                };
                let g = groups.of(vname)?;
                let group = &mut groups.groups[g];
                let i = group
                    .find(fname)
                    .ok_or_else(|| feature_not_found(fname, vname))?;
                let name = if full_names {
                    format!("{vname}__{fname}")
                } else {
                    fname.to_string()
                };
                // One feature of one view twice: its two columns share a
                // name (with full names or without).
                repeated |= !group.add(i, name);
            }
            // Without full names two views' features may share a name.
            names_may_collide |= groups.groups.len() > 1;
        }
    }
    if total == 0 {
        return Err(ApiError::invalid("No features specified for retrieval"));
    }
    let mut cols = Vec::with_capacity(total);
    let mut order = Vec::with_capacity(groups.groups.len());
    for g in groups.groups {
        cols.extend(g.cols);
        order.push((g.view, g.read));
    }
    if names_may_collide || repeated {
        let mut seen = HashMap::with_capacity(cols.len());
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
    }
    Ok(Selected { cols, order })
}

/// Cells a backend read returned a stored value for (TTL not applied).
fn stored_cells(rows: &[Option<backends::ReadRow>]) -> u64 {
    rows.iter()
        .flatten()
        .map(|r| r.values.iter().filter(|v| v.is_some()).count() as u64)
        .sum()
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
            let name = view.read_backend();
            let series = snap.view_series(view, name, metrics);
            let Some(backend) = snap.backends.get(name) else {
                if let Some(s) = &series {
                    s.record(Op::Read, Outcome::Unavailable, None, 0, 0);
                }
                return Err(ViewFailure {
                    view: view.name.clone(),
                    backend: name.to_string(),
                    message: format!("backend `{name}` is not open"),
                });
            };
            let start = series.as_ref().map(|_| Instant::now());
            let result = backend
                .call(Op::Read, metrics, |store| {
                    let keys = &keys;
                    async move { store.read(project, view, keys, features).await }
                })
                .await;
            if let (Some(s), Some(start)) = (&series, start) {
                s.record_call(Op::Read, start, &result, Outcome::of, |rows| {
                    (keys.len() as u64, stored_cells(rows))
                });
            }
            result.map_err(|e| {
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
    access::note_failed_views(failures.len());
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

/// The members of a `/get-online-features` body, each kept as its raw
/// JSON text until it is read: the feature references are then borrowed
/// from the body (no string copied unless it has escapes), the rest read
/// into the types below. Other members are ignored, as `feast serve` does.
#[derive(serde::Deserialize)]
struct ReadBody<'a> {
    #[serde(borrow, default)]
    features: Option<&'a RawValue>,
    #[serde(borrow, default)]
    feature_service: Option<&'a RawValue>,
    #[serde(borrow, default)]
    full_feature_names: Option<&'a RawValue>,
    #[serde(borrow, default)]
    entities: Option<&'a RawValue>,
    #[serde(borrow, default)]
    include_feature_view_version_metadata: Option<&'a RawValue>,
}

/// A string of the body, borrowed unless it has escapes.
#[derive(serde::Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// Reads a raw member as `T`; `None` for JSON `null`.
fn member<'a, T: serde::Deserialize<'a>>(raw: Option<&'a RawValue>) -> Option<Result<T, ()>> {
    let raw = raw?;
    if raw.get() == "null" {
        return None;
    }
    Some(serde_json::from_str(raw.get()).map_err(|_| ()))
}

/// Decodes a `/get-online-features` body into its parts; every error names
/// the member at fault.
fn decode_read(bytes: &[u8]) -> Result<ReadBody<'_>, ApiError> {
    let malformed = |e: serde_json::Error| ApiError::invalid(format!("malformed JSON body: {e}"));
    // A derived struct also reads a JSON array (as its fields in order):
    // anything but an object is refused first.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(malformed)?;
        return Err(ApiError::invalid("request body must be a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(malformed)
}

/// The selection of a body: `feature_service`, else `features`.
fn body_selection<'a>(
    body: &ReadBody<'a>,
    refs: &'a mut Vec<Text<'a>>,
) -> Result<Selection<'a>, ApiError> {
    if let Some(s) = member::<Text<'a>>(body.feature_service) {
        return match s {
            Ok(Text(Cow::Borrowed(s))) => Ok(Selection::Service(s)),
            // A service name with escapes: rare enough to leak nothing
            // but its one copy, held by the caller's `refs`.
            Ok(t) => {
                refs.push(t);
                let refs: &'a [Text<'a>] = refs;
                Ok(Selection::Service(refs[0].0.as_ref()))
            }
            Err(()) => Err(ApiError::invalid("`feature_service` must be a string")),
        };
    }
    match member::<Vec<Text<'a>>>(body.features) {
        None => Ok(Selection::Refs(Vec::new())),
        Some(Ok(list)) => {
            *refs = list;
            let refs: &'a [Text<'a>] = refs;
            Ok(Selection::Refs(refs.iter().map(|t| t.0.as_ref()).collect()))
        }
        Some(Err(())) => {
            // Name the element at fault, as the message always did.
            if let Some(Ok(Json::Array(items))) = member::<Json>(body.features)
                && let Some(bad) = items.iter().find(|r| !r.is_string())
            {
                return Err(ApiError::invalid(format!(
                    "feature reference {bad} must be a string"
                )));
            }
            Err(ApiError::invalid(
                "`features` must be a list of \"<feature_view>:<feature>\" strings",
            ))
        }
    }
}

/// Serves one `/get-online-features` request body.
pub async fn get_online_features(
    snap: &Snapshot,
    body: &[u8],
    limits: &Limits,
    metrics: &Metrics,
    principal: &Principal,
) -> Result<Vec<u8>, ApiError> {
    let body = decode_read(body)?;
    let full_names = match member::<bool>(body.full_feature_names) {
        None => false,
        Some(Ok(b)) => b,
        Some(Err(())) => {
            return Err(ApiError::invalid(
                "`full_feature_names` must be true or false",
            ));
        }
    };
    let columns: Map<String, Json> = match member(body.entities) {
        Some(Ok(m)) => m,
        Some(Err(())) => {
            return Err(ApiError::invalid(
                "`entities` must be an object of join key -> list of values",
            ));
        }
        None => return Err(ApiError::invalid("`entities` is required")),
    };
    let entities = entity_columns(&columns, "entities", limits)?;
    let mut refs = Vec::new();
    let outcome = read(
        snap,
        FeatureRequest {
            selection: body_selection(&body, &mut refs)?,
            full_names,
            rows: entities.rows,
            entities: &entities,
        },
        principal,
        limits,
        metrics,
    )
    .await?;
    let include_views = matches!(
        member::<Json>(body.include_feature_view_version_metadata),
        Some(Ok(Json::Bool(true)))
    );
    Ok(response_parts(
        snap,
        &entities,
        &outcome.selected,
        &outcome.results,
        include_views,
    )
    .to_json())
}

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
