//! The answer of one `/get-online-features` read, columnar, written
//! straight into JSON bytes in `feast serve`'s shape: no `serde_json::Value`
//! tree, each stored row's event time formatted once (not once per cell),
//! each cell's value written by `api::json::write_value_json`.
//!
//! It also holds what a read found, view by view ([`ViewRows`]), and the
//! cells of a column ([`column_cells`], TTL at retrieval applied):
//! [`ResponseParts`] is everything the JSON answer holds and
//! `features::get_online_features` fills it; the gRPC adapter encodes the
//! same cells as protobuf.

use api::dtype::Dtype;
use api::json::{format_timestamp, json_to_value, write_str, write_value_json};
use api::proto::Value;
use backends::ReadRow;
use serde_json::Value as Json;

/// A view whose backend call failed; the request's other views still answer.
#[derive(Debug, Clone)]
pub(crate) struct ViewFailure {
    pub view: String,
    pub backend: String,
    pub message: String,
}

/// One view's rows, or why its backend could not give them.
pub(crate) type ViewRows = Result<Vec<Option<ReadRow>>, ViewFailure>;

/// One response cell.
pub(crate) enum Cell<'a> {
    Present(&'a Value, backends::Timestamp),
    NotFound,
    /// Stored, but older than the view's ttl (Feast's Go server semantics:
    /// null value, the stored event time).
    OutsideMaxAge(backends::Timestamp),
    /// The view's backend failed.
    Invalid,
}

impl Cell<'_> {
    pub fn status(&self) -> &'static str {
        match self {
            Cell::Present(..) => "PRESENT",
            Cell::NotFound => "NOT_FOUND",
            Cell::OutsideMaxAge(_) => "OUTSIDE_MAX_AGE",
            Cell::Invalid => "INVALID",
        }
    }
}

/// Seconds since the epoch, now.
pub(crate) fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The cells of one column, one per entity row. `ttl`: the view's
/// `ttl_seconds` (None or 0: no limit); an event time older than
/// `now - ttl` is outside the max age.
pub(crate) fn column_cells<'a>(
    rows: &'a ViewRows,
    feature_index: usize,
    entity_rows: usize,
    ttl: Option<u64>,
    now: i64,
) -> impl Iterator<Item = Cell<'a>> + 'a {
    let oldest = ttl
        .filter(|t| *t > 0)
        .map(|t| now.saturating_sub(i64::try_from(t).unwrap_or(i64::MAX)));
    (0..entity_rows).map(move |r| match rows {
        Err(_) => Cell::Invalid,
        Ok(rows) => match rows.get(r).and_then(Option::as_ref).and_then(|row| {
            row.values
                .get(feature_index)?
                .as_ref()
                .map(|v| (v, row.event_ts))
        }) {
            None => Cell::NotFound,
            Some((_, ts)) if oldest.is_some_and(|o| ts.seconds < o) => Cell::OutsideMaxAge(ts),
            Some((v, ts)) => Cell::Present(v, ts),
        },
    })
}

/// `feast serve`'s event time of a cell with nothing stored.
pub(crate) const EPOCH: &str = "1970-01-01T00:00:00Z";

/// A join-key column echoed from the request.
pub(crate) struct KeyColumn<'a> {
    pub name: &'a str,
    /// Typed like the view that declares the key (so `"7"` for an int64
    /// key prints `7`), else echoed as sent.
    pub dtype: Option<Dtype>,
    pub values: &'a [Json],
}

/// One selected feature column over its view's rows.
pub(crate) struct FeatureColumn<'a> {
    pub name: &'a str,
    /// Index into [`ResponseParts::views`].
    pub view: usize,
    /// Index of the feature in that view's read.
    pub feature: usize,
}

/// One view's rows as read, and its ttl at retrieval.
pub(crate) struct ViewResult<'a> {
    pub rows: &'a ViewRows,
    pub ttl_seconds: Option<u64>,
}

/// Everything one answer holds.
pub(crate) struct ResponseParts<'a> {
    pub entity_rows: usize,
    pub keys: Vec<KeyColumn<'a>>,
    pub views: Vec<ViewResult<'a>>,
    pub columns: Vec<FeatureColumn<'a>>,
    /// `include_feature_view_version_metadata`: the views' names.
    pub view_metadata: Option<Vec<&'a str>>,
    pub errors: Vec<&'a ViewFailure>,
    /// Seconds since the epoch, for ttl at retrieval.
    pub now: i64,
}

impl ResponseParts<'_> {
    /// The cells of column `c`.
    pub(crate) fn cells(&self, c: &FeatureColumn<'_>) -> impl Iterator<Item = Cell<'_>> + '_ {
        let v = &self.views[c.view];
        column_cells(v.rows, c.feature, self.entity_rows, v.ttl_seconds, self.now)
    }

    /// The answer as JSON text.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let cells = self.entity_rows * (self.keys.len() + self.columns.len());
        let mut out = Vec::with_capacity(64 + cells * 48);
        // Each view's stored event times, formatted once per row.
        let stamps: Vec<Vec<Option<String>>> = self
            .views
            .iter()
            .map(|v| match v.rows {
                Ok(rows) => rows
                    .iter()
                    .map(|r| {
                        r.as_ref()
                            .map(|r| format_timestamp(r.event_ts.seconds, r.event_ts.nanos))
                    })
                    .collect(),
                Err(_) => Vec::new(),
            })
            .collect();
        out.extend_from_slice(b"{\"results\":[");
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        for k in &self.keys {
            sep(&mut out);
            out.extend_from_slice(b"{\"values\":[");
            for (i, j) in k.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match k.dtype.map(|d| json_to_value(j, d)) {
                    Some(Ok(v)) => write_value_json(&v, &mut out),
                    _ => {
                        // Writing into a Vec cannot fail.
                        let _ = serde_json::to_writer(&mut out, j);
                    }
                }
            }
            out.extend_from_slice(b"],\"statuses\":[");
            repeat(&mut out, b"\"PRESENT\"", k.values.len());
            out.extend_from_slice(b"],\"event_timestamps\":[");
            repeat(&mut out, format!("\"{EPOCH}\"").as_bytes(), k.values.len());
            out.extend_from_slice(b"]}");
        }
        for c in &self.columns {
            sep(&mut out);
            out.extend_from_slice(b"{\"values\":[");
            for (i, cell) in self.cells(c).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match cell {
                    Cell::Present(v, _) => write_value_json(v, &mut out),
                    _ => out.extend_from_slice(b"null"),
                }
            }
            out.extend_from_slice(b"],\"statuses\":[");
            for (i, cell) in self.cells(c).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(cell.status().as_bytes());
                out.push(b'"');
            }
            out.extend_from_slice(b"],\"event_timestamps\":[");
            let view_stamps = &stamps[c.view];
            for (i, cell) in self.cells(c).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                let text = match cell {
                    // The row's own time (its cells share it).
                    Cell::Present(..) | Cell::OutsideMaxAge(_) => view_stamps
                        .get(i)
                        .and_then(Option::as_deref)
                        .unwrap_or(EPOCH),
                    Cell::NotFound | Cell::Invalid => EPOCH,
                };
                out.extend_from_slice(text.as_bytes());
                out.push(b'"');
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"],\"metadata\":{\"feature_names\":[");
        let names = self
            .keys
            .iter()
            .map(|k| k.name)
            .chain(self.columns.iter().map(|c| c.name));
        for (i, n) in names.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(n, &mut out);
        }
        out.push(b']');
        if let Some(views) = &self.view_metadata {
            out.extend_from_slice(b",\"feature_view_metadata\":[");
            for (i, v) in views.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"name\":");
                write_str(v, &mut out);
                out.push(b'}');
            }
            out.push(b']');
        }
        if !self.errors.is_empty() {
            out.extend_from_slice(b",\"errors\":[");
            for (i, f) in self.errors.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"feature_view\":");
                write_str(&f.view, &mut out);
                out.extend_from_slice(b",\"backend\":");
                write_str(&f.backend, &mut out);
                out.extend_from_slice(b",\"message\":");
                write_str(&f.message, &mut out);
                out.push(b'}');
            }
            out.push(b']');
        }
        out.extend_from_slice(b"}}");
        out
    }
}

fn repeat(out: &mut Vec<u8>, item: &[u8], n: usize) {
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::json::value_to_json;
    use api::proto::{Val, Value};
    use backends::{ReadRow, Timestamp};
    use proptest::prelude::*;
    use serde_json::{Map, json};

    /// The response as the proxy built it before this module: a
    /// `serde_json::Value` tree, every cell's timestamp formatted on its
    /// own. Kept here only, as the reference for the writer.
    fn tree(p: &ResponseParts<'_>) -> Json {
        let mut names = Vec::new();
        let mut out = Vec::new();
        for k in &p.keys {
            let values: Vec<Json> = k
                .values
                .iter()
                .map(|j| match k.dtype.map(|d| json_to_value(j, d)) {
                    Some(Ok(val)) => value_to_json(&val),
                    _ => j.clone(),
                })
                .collect();
            names.push(Json::String(k.name.to_string()));
            out.push(json!({
                "values": values,
                "statuses": vec!["PRESENT"; k.values.len()],
                "event_timestamps": vec![EPOCH; k.values.len()],
            }));
        }
        for c in &p.columns {
            let (mut values, mut statuses, mut stamps) = (vec![], vec![], vec![]);
            for cell in p.cells(c) {
                statuses.push(cell.status());
                match cell {
                    Cell::Present(v, ts) => {
                        values.push(value_to_json(v));
                        stamps.push(Json::String(format_timestamp(ts.seconds, ts.nanos)));
                    }
                    Cell::OutsideMaxAge(ts) => {
                        values.push(Json::Null);
                        stamps.push(Json::String(format_timestamp(ts.seconds, ts.nanos)));
                    }
                    Cell::NotFound | Cell::Invalid => {
                        values.push(Json::Null);
                        stamps.push(Json::String(EPOCH.to_string()));
                    }
                }
            }
            names.push(Json::String(c.name.to_string()));
            out.push(json!({ "values": values, "statuses": statuses, "event_timestamps": stamps }));
        }
        let mut metadata = Map::new();
        metadata.insert("feature_names".into(), Json::Array(names));
        if let Some(views) = &p.view_metadata {
            let views: Vec<Json> = views.iter().map(|v| json!({ "name": v })).collect();
            metadata.insert("feature_view_metadata".into(), Json::Array(views));
        }
        let errors: Vec<Json> = p
            .errors
            .iter()
            .map(|f| json!({"feature_view": f.view, "backend": f.backend, "message": f.message}))
            .collect();
        if !errors.is_empty() {
            metadata.insert("errors".into(), Json::Array(errors));
        }
        json!({"results": out, "metadata": metadata})
    }

    fn arb_value() -> impl Strategy<Value = Option<Value>> {
        let v = |val| Some(Value { val: Some(val) });
        prop_oneof![
            Just(None),
            Just(Some(Value { val: None })),
            any::<i64>().prop_map(move |i| v(Val::Int64Val(i))),
            any::<f64>().prop_map(move |f| v(Val::DoubleVal(f))),
            any::<f32>().prop_map(move |f| v(Val::FloatVal(f))),
            ".{0,8}".prop_map(move |s| v(Val::StringVal(s))),
            proptest::collection::vec(any::<u8>(), 0..6).prop_map(move |b| v(Val::BytesVal(b))),
            proptest::collection::vec(any::<i64>(), 0..3).prop_map(move |val| v(
                Val::Int64ListVal(api::proto::feast::types::Int64List { val })
            )),
        ]
    }

    fn arb_ts() -> impl Strategy<Value = Timestamp> {
        prop_oneof![
            (0i64..4_000_000_000, 0u32..1_000_000_000)
                .prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }),
            (any::<i64>(), 0u32..1_000_000_000)
                .prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }),
            Just(Timestamp::default()),
        ]
    }

    /// A view's read: `rows` entity rows of `features` values, some rows
    /// missing, or a failed backend.
    fn arb_view(rows: usize, features: usize) -> impl Strategy<Value = ViewRows> {
        let row = (proptest::collection::vec(arb_value(), features), arb_ts())
            .prop_map(|(values, event_ts)| ReadRow { values, event_ts });
        prop_oneof![
            4 => proptest::collection::vec(proptest::option::of(row), rows).prop_map(Ok),
            1 => ".{0,12}".prop_map(|message| Err(ViewFailure {
                view: "v".into(),
                backend: "b\"e".into(),
                message,
            })),
        ]
    }

    fn arb_key_json() -> impl Strategy<Value = Json> {
        prop_oneof![
            any::<i64>().prop_map(Json::from),
            "-?[0-9]{1,5}".prop_map(Json::from),
            ".{0,6}".prop_map(Json::from),
            any::<f64>().prop_map(Json::from),
            Just(Json::Null),
            Just(json!([1, "x"])),
        ]
    }

    struct Case {
        rows: usize,
        keys: Vec<(String, Option<Dtype>, Vec<Json>)>,
        views: Vec<(ViewRows, Option<u64>, usize)>,
        columns: Vec<(String, usize, usize)>,
        meta: bool,
        now: i64,
    }

    impl std::fmt::Debug for Case {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "{} rows, {} keys, {} views, {} columns",
                self.rows,
                self.keys.len(),
                self.views.len(),
                self.columns.len()
            )
        }
    }

    fn arb_case() -> impl Strategy<Value = Case> {
        (0usize..5, 1usize..4, 1usize..4).prop_flat_map(|(rows, nviews, nfeat)| {
            let dtype = prop_oneof![
                Just(None),
                Just(Some(Dtype::Int64)),
                Just(Some(Dtype::String)),
                Just(Some(Dtype::Float32)),
            ];
            let keys = proptest::collection::vec(
                (
                    "[a-z_\"\\\\]{1,6}",
                    dtype,
                    proptest::collection::vec(arb_key_json(), rows),
                ),
                0..3,
            );
            let views = proptest::collection::vec(
                (
                    arb_view(rows, nfeat),
                    proptest::option::of(0u64..10_000_000_000),
                    Just(nfeat),
                ),
                nviews,
            );
            let columns = proptest::collection::vec((".{1,6}", 0..nviews, 0..nfeat), 1..6);
            (
                Just(rows),
                keys,
                views,
                columns,
                any::<bool>(),
                0i64..5_000_000_000,
            )
                .prop_map(|(rows, keys, views, columns, meta, now)| Case {
                    rows,
                    keys,
                    views,
                    columns,
                    meta,
                    now,
                })
        })
    }

    proptest! {
        /// For random reads over random views, the bytes the writer
        /// produces parse to the value the old tree path built.
        #[test]
        fn the_writer_matches_the_serde_json_tree(case in arb_case()) {
            let errors: Vec<&ViewFailure> = case.views.iter().filter_map(|(r, _, _)| r.as_ref().err()).collect();
            let parts = ResponseParts {
                entity_rows: case.rows,
                keys: case.keys.iter().map(|(name, dtype, values)| KeyColumn { name, dtype: *dtype, values }).collect(),
                views: case.views.iter().map(|(rows, ttl, _)| ViewResult { rows, ttl_seconds: *ttl }).collect(),
                columns: case.columns.iter().map(|(name, view, feature)| FeatureColumn { name, view: *view, feature: *feature }).collect(),
                view_metadata: case.meta.then(|| vec!["a", "b\u{1}"]),
                errors,
                now: case.now,
            };
            let bytes = parts.to_json();
            // Both as sent on the wire: parsed alike (serde_json parses
            // floats to within one ulp, so values are compared as parsed
            // from text on both sides) and byte for byte.
            let old = serde_json::to_vec(&tree(&parts)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let parse = |b: &[u8]| serde_json::from_slice::<Json>(b)
                .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(b))));
            prop_assert_eq!(parse(&bytes)?, parse(&old)?);
            prop_assert_eq!(String::from_utf8_lossy(&bytes), String::from_utf8_lossy(&old));
        }
    }
}
