//! Issue [K]: per-view metrics and the access log, asserted by value after
//! known requests over HTTP and gRPC, and the view-label bound abused with
//! thousands of views.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

mod common;

use api::proto::feast::serving::get_online_features_request::Kind;
use api::proto::feast::serving::serving_service_client::ServingServiceClient;
use api::proto::feast::serving::{FeatureList, GetOnlineFeaturesRequest};
use api::proto::feast::types::RepeatedValue;
use api::proto::{Val, Value};
use proxy::access::{AccessLog, AccessLogMode};
use proxy::features::Limits;
use proxy::state::reload;
use serde_json::{Value as Json, json};

const STORE: &str = r#"
project: obs
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - {name: team_a, type: sqlite, conf: {path: a.db}}
    - {name: team_b, type: sqlite, conf: {path: b.db}}
"#;

const VIEWS: &str = r#"
name: users
entities: [{name: user, join_keys: [user_id], dtype: int64}]
schema: [{name: age, dtype: int64}, {name: score, dtype: float64}]
tags: {team: team_a}
---
name: orders
entities: [{name: user, join_keys: [user_id], dtype: int64}]
schema: [{name: total, dtype: float64}]
tags: {team: team_a}
---
name: clicks
entities: [{name: user, join_keys: [user_id], dtype: int64}]
schema: [{name: count, dtype: int64}]
tags: {team: team_b}
source: {name: activity, type: push}
"#;

/// Everything the test binary logs, as the JSON formatter writes it.
fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    Arc::clone(LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Capture(Arc::clone(&sink)))
            .init();
        buf
    }))
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8(log_buffer().lock().unwrap().clone()).unwrap()
}

/// The `fields` of the access-log lines whose request id starts with
/// `prefix`, in the order they were written.
fn access_lines(prefix: &str) -> Vec<serde_json::Map<String, Json>> {
    log_text()
        .lines()
        .map(|l| serde_json::from_str::<Json>(l).unwrap())
        .filter(|l| l["target"] == "hos_proxy::access")
        .filter_map(|l| l["fields"].as_object().cloned())
        .filter(|f| {
            f["request_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix))
        })
        .collect()
}

/// A line's fields without `latency_ms`, checked to be a number of
/// milliseconds under `max_ms`.
fn without_latency(mut fields: serde_json::Map<String, Json>, max_ms: f64) -> Json {
    let ms = fields.remove("latency_ms").unwrap().as_f64().unwrap();
    assert!((0.0..max_ms).contains(&ms), "latency_ms {ms}");
    Json::Object(fields)
}

/// Series of the text exposition whose name starts with `prefix`, by their
/// full name and labels.
fn series(text: &str, prefix: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn expected(entries: &[(&str, f64)]) -> BTreeMap<String, f64> {
    entries.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

async fn post(p: &common::InProcess, id: &str, path: &str, body: Json) -> (u16, String) {
    post_as(p, id, path, body, None).await
}

async fn post_as(
    p: &common::InProcess,
    id: &str,
    path: &str,
    body: Json,
    token: Option<&str>,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", p.base))
        .header("x-request-id", id)
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn metrics_text(p: &common::InProcess) -> String {
    metrics_text_as(p, None).await
}

async fn metrics_text_as(p: &common::InProcess, token: Option<&str>) -> String {
    let mut req = reqwest::Client::new().get(format!("{}/metrics", p.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

fn int64s(values: &[i64]) -> RepeatedValue {
    RepeatedValue {
        val: values
            .iter()
            .map(|v| Value {
                val: Some(Val::Int64Val(*v)),
            })
            .collect(),
    }
}

/// 1 write and 3 reads of `users` (2 over HTTP, 1 over gRPC), 2 pushes to
/// `clicks`, a read of an unknown view (404), a read missing a join key
/// (422), a read of `orders` whose table is gone (error) and a read of
/// `clicks` while its backend is down (unavailable): every per-view series
/// and every access-log line, by value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_metrics_and_access_log_by_value() {
    log_buffer();
    let mut options = common::Options::new(Limits::default());
    options.access_log = AccessLog::new(AccessLogMode::All, 1);
    let p = common::start_with(STORE, VIEWS, options).await;
    let ts = "2026-01-01T00:00:00Z";

    let (s, body) = post(
        &p,
        "obs-1",
        "/write-to-online-store",
        json!({"feature_view_name": "users", "df": {
            "user_id": [1, 2], "age": [30, 41], "score": [0.5, 1.5], "event_timestamp": [ts, ts]}}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let read_users =
        json!({"features": ["users:age", "users:score"], "entities": {"user_id": [1, 2, 3]}});
    for id in ["obs-2", "obs-3"] {
        let (s, body) = post(&p, id, "/get-online-features", read_users.clone()).await;
        assert_eq!(s, 200, "{body}");
    }
    // The third read of `users` over gRPC, through the gRPC listener's
    // middleware (request id, authentication, admission).
    let mut client = ServingServiceClient::new(proxy::grpc::router(Arc::clone(&p.state)));
    let mut req = tonic::Request::new(GetOnlineFeaturesRequest {
        kind: Some(Kind::Features(FeatureList {
            val: vec!["users:age".into(), "users:score".into()],
        })),
        entities: [("user_id".to_string(), int64s(&[1, 2, 3]))].into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-request-id", "obs-4".parse().unwrap());
    let resp = client.get_online_features(req).await.unwrap().into_inner();
    assert_eq!(resp.results[1].values[1].val, Some(Val::Int64Val(41)));

    for (id, users) in [("obs-5", vec![1]), ("obs-6", vec![1, 2])] {
        let n = users.len();
        let (s, body) = post(
            &p,
            id,
            "/push",
            json!({"push_source_name": "activity", "df": {
                "user_id": users, "count": vec![7; n], "event_timestamp": vec![ts; n]}}),
        )
        .await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, _) = post(
        &p,
        "obs-7",
        "/get-online-features",
        json!({"features": ["nope:x"], "entities": {"user_id": [1]}}),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = post(
        &p,
        "obs-8",
        "/get-online-features",
        json!({"features": ["users:age"], "entities": {"shop_id": [1]}}),
    )
    .await;
    assert_eq!(s, 422);
    // `orders` loses its table: the backend answers with an error.
    rusqlite::Connection::open(p.dir.path().join("a.db"))
        .unwrap()
        .execute_batch("DROP TABLE obs_orders;")
        .unwrap();
    let (s, _) = post(
        &p,
        "obs-9",
        "/get-online-features",
        json!({"features": ["orders:total"], "entities": {"user_id": [1]}}),
    )
    .await;
    assert_eq!(s, 503);
    // `team_b` moves to a file that cannot be opened: its views' backend
    // is down.
    std::fs::create_dir(p.dir.path().join("broken")).unwrap();
    std::fs::write(
        p.dir.path().join("feature_store.yaml"),
        STORE.replace("path: b.db", "path: broken"),
    )
    .unwrap();
    reload(&p.shared, &p.source, false).await.unwrap();
    let (s, _) = post(
        &p,
        "obs-10",
        "/get-online-features",
        json!({"features": ["clicks:count"], "entities": {"user_id": [1]}}),
    )
    .await;
    assert_eq!(s, 503);

    let text = metrics_text(&p).await;
    let l = |view: &str, backend: &str, op: &str| {
        format!("{{project=\"obs\",view=\"{view}\",backend=\"{backend}\",op=\"{op}\"")
    };
    let requests = |view: &str, backend: &str, op: &str, outcome: &str| {
        format!(
            "hos_proxy_view_requests_total{},outcome=\"{outcome}\"}}",
            l(view, backend, op)
        )
    };
    assert_eq!(
        series(&text, "hos_proxy_view_requests_total"),
        expected(&[
            (&requests("users", "team_a", "write", "ok"), 1.0),
            (&requests("users", "team_a", "read", "ok"), 3.0),
            (&requests("users", "team_a", "read", "client_error"), 1.0),
            (&requests("orders", "team_a", "read", "error"), 1.0),
            (&requests("clicks", "team_b", "write", "ok"), 2.0),
            (&requests("clicks", "team_b", "read", "unavailable"), 1.0),
        ]),
        "{text}"
    );
    let sized = |metric: &str, view: &str, backend: &str, op: &str| {
        format!("hos_proxy_view_{metric}{}}}", l(view, backend, op))
    };
    // Reads: rows requested, cells the backend had a value for (users 1
    // and 2 of 1, 2, 3: 2 rows x 2 features per read).
    assert_eq!(
        series(&text, "hos_proxy_view_rows_total"),
        expected(&[
            (&sized("rows_total", "users", "team_a", "write"), 2.0),
            (&sized("rows_total", "users", "team_a", "read"), 9.0),
            (&sized("rows_total", "clicks", "team_b", "write"), 3.0),
        ]),
        "{text}"
    );
    assert_eq!(
        series(&text, "hos_proxy_view_cells_total"),
        expected(&[
            (&sized("cells_total", "users", "team_a", "write"), 4.0),
            (&sized("cells_total", "users", "team_a", "read"), 12.0),
            (
                &sized("cells_total", "clicks", "team_b", "write"),
                2.0 * 1.0 + 1.0
            ),
        ]),
        "{text}"
    );
    // One observation per backend call; a refused request called nothing.
    assert_eq!(
        series(&text, "hos_proxy_view_duration_seconds_count"),
        expected(&[
            (
                &sized("duration_seconds_count", "users", "team_a", "write"),
                1.0
            ),
            (
                &sized("duration_seconds_count", "users", "team_a", "read"),
                3.0
            ),
            (
                &sized("duration_seconds_count", "orders", "team_a", "read"),
                1.0
            ),
            (
                &sized("duration_seconds_count", "clicks", "team_b", "write"),
                2.0
            ),
            (
                &sized("duration_seconds_count", "clicks", "team_b", "read"),
                1.0
            ),
        ]),
        "{text}"
    );
    for (name, sum) in series(&text, "hos_proxy_view_duration_seconds_sum") {
        assert!(sum > 0.0 && sum < 5.0, "{name} {sum}");
    }
    let suffix = format!("{}}}", &l("users", "team_a", "read")[1..]);
    let users_read: BTreeMap<String, f64> =
        series(&text, "hos_proxy_view_duration_seconds_bucket{")
            .into_iter()
            .filter(|(k, _)| k.ends_with(&suffix))
            .collect();
    assert_eq!(users_read.len(), 16, "15 buckets and +Inf: {users_read:?}");
    assert_eq!(users_read.values().cloned().fold(0.0, f64::max), 3.0);

    // The access log: one line per feature request, in order.
    let lines: Vec<Json> = access_lines("obs-")
        .into_iter()
        .map(|f| without_latency(f, 5_000.0))
        .collect();
    let ok = |id: &str, endpoint: &str, rows: u64, views: &str| {
        json!({"message": "access", "request_id": id, "endpoint": endpoint,
               "status": 200, "rows": rows, "views": views})
    };
    assert_eq!(
        lines,
        vec![
            ok("obs-1", "write-to-online-store", 2, "users"),
            ok("obs-2", "get-online-features", 3, "users"),
            ok("obs-3", "get-online-features", 3, "users"),
            ok("obs-4", "grpc-get-online-features", 3, "users"),
            ok("obs-5", "push", 1, "clicks"),
            ok("obs-6", "push", 2, "clicks"),
            json!({"message": "access", "request_id": "obs-7", "endpoint": "get-online-features",
                   "status": 404, "rows": 1, "error": "FeatureViewNotFoundException"}),
            json!({"message": "access", "request_id": "obs-8", "endpoint": "get-online-features",
                   "status": 422, "rows": 1, "views": "users", "error": "ValidationError"}),
            json!({"message": "access", "request_id": "obs-9", "endpoint": "get-online-features",
                   "status": 503, "rows": 1, "views": "orders", "failed_views": 1,
                   "error": "BackendUnavailable"}),
            json!({"message": "access", "request_id": "obs-10", "endpoint": "get-online-features",
                   "status": 503, "rows": 1, "views": "clicks", "failed_views": 1,
                   "error": "BackendUnavailable"}),
        ]
    );
}

const AUTH: &str = r#"
principals:
  - name: team-a-reader
    token: tok-A-9f8e7d6c5b4a
    teams: [team_a]
"#;

/// With authentication the line names the principal (never the token);
/// a view of another team is a client error of that view; entity key
/// values are never logged; 1 in N successes is logged, failures (a read
/// answered in part included) always.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_names_principals_and_samples_successes() {
    log_buffer();
    let auth_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(auth_file.path(), AUTH).unwrap();
    let mut options = common::Options::new(Limits::default());
    options.access_log = AccessLog::new(AccessLogMode::All, 3);
    options.auth = Some(Arc::new(
        proxy::auth::Authenticator::new(auth_file.path().to_path_buf(), None).unwrap(),
    ));
    let p = common::start_with(STORE, VIEWS, options).await;
    let token = Some("tok-A-9f8e7d6c5b4a");
    let read = |view: &str| json!({"features": [format!("{view}:count")], "entities": {"user_id": [918273645]}});
    let users = json!({"features": ["users:age"], "entities": {"user_id": [918273645]}});
    // Five successes: the first and the fourth are logged.
    for i in 1..=5 {
        let (s, body) = post_as(
            &p,
            &format!("auth-{i}"),
            "/get-online-features",
            users.clone(),
            token,
        )
        .await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, _) = post_as(&p, "auth-6", "/get-online-features", read("clicks"), token).await;
    assert_eq!(s, 403);
    let (s, _) = post_as(&p, "auth-7", "/get-online-features", users.clone(), None).await;
    assert_eq!(s, 401);
    let (s, _) = post_as(
        &p,
        "auth-8",
        "/get-online-features",
        users.clone(),
        Some("wrong-token-0123"),
    )
    .await;
    assert_eq!(s, 401);
    // A read answered in part (`orders` lost its table): logged whatever
    // the sampling counter says.
    rusqlite::Connection::open(p.dir.path().join("a.db"))
        .unwrap()
        .execute_batch("DROP TABLE obs_orders;")
        .unwrap();
    let (s, body) = post_as(
        &p,
        "auth-9",
        "/get-online-features",
        json!({"features": ["users:age", "orders:total"], "entities": {"user_id": [918273645]}}),
        token,
    )
    .await;
    assert_eq!(s, 200, "{body}");

    let lines: Vec<Json> = access_lines("auth-")
        .into_iter()
        .map(|f| without_latency(f, 5_000.0))
        .collect();
    let ok = |id: &str| {
        json!({"message": "access", "request_id": id, "principal": "team-a-reader",
               "endpoint": "get-online-features", "status": 200, "rows": 1, "views": "users"})
    };
    let unauthenticated = |id: &str| {
        json!({"message": "access", "request_id": id, "endpoint": "get-online-features",
               "status": 401, "error": "AuthenticationError"})
    };
    assert_eq!(
        lines,
        vec![
            ok("auth-1"),
            ok("auth-4"),
            json!({"message": "access", "request_id": "auth-6", "principal": "team-a-reader",
                   "endpoint": "get-online-features", "status": 403, "rows": 1,
                   "views": "clicks", "error": "FeastPermissionError"}),
            unauthenticated("auth-7"),
            unauthenticated("auth-8"),
            json!({"message": "access", "request_id": "auth-9", "principal": "team-a-reader",
                   "endpoint": "get-online-features", "status": 200, "rows": 1,
                   "views": "users,orders", "failed_views": 1}),
        ]
    );
    let text = metrics_text_as(&p, token).await;
    assert_eq!(
        series(&text, "hos_proxy_view_requests_total"),
        expected(&[
            (
                "hos_proxy_view_requests_total{project=\"obs\",view=\"users\",backend=\"team_a\",op=\"read\",outcome=\"ok\"}",
                6.0
            ),
            (
                "hos_proxy_view_requests_total{project=\"obs\",view=\"orders\",backend=\"team_a\",op=\"read\",outcome=\"error\"}",
                1.0
            ),
            (
                "hos_proxy_view_requests_total{project=\"obs\",view=\"clicks\",backend=\"team_b\",op=\"read\",outcome=\"client_error\"}",
                1.0
            ),
        ]),
        "{text}"
    );
    let log = log_text();
    for secret in ["tok-A-9f8e7d6c5b4a", "wrong-token-0123", "918273645"] {
        assert!(!log.contains(secret), "`{secret}` was logged");
    }
}

/// Views of `n` entityless views named `{prefix}{i}`, alternating between
/// backends `x` and `y`.
fn many_views(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            let team = if i % 2 == 0 { "x" } else { "y" };
            format!(
                "name: {prefix}{i}\nschema: [{{name: f, dtype: int64}}]\ntags: {{team: {team}}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

const MANY_STORE: &str = r#"
project: many
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - {name: x, type: sqlite, conf: {path: x.db}}
    - {name: y, type: sqlite, conf: {path: y.db}}
"#;

/// Reads every view `{prefix}0..n`, 100 per request (none has a table:
/// each view's call fails, which records like any other).
async fn read_all(p: &common::InProcess, prefix: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let features: Vec<String> = chunk.iter().map(|i| format!("{prefix}{i}:f")).collect();
        let (s, body) = post(
            p,
            "many",
            "/get-online-features",
            json!({"features": features, "entities": {}, "full_feature_names": true}),
        )
        .await;
        assert_eq!(s, 503, "{body}");
    }
}

/// The distinct `view` labels of `hos_proxy_view_requests_total` and the
/// sum of the `_other` series.
fn view_labels(text: &str) -> (Vec<String>, f64) {
    let mut views = std::collections::BTreeSet::new();
    let mut other = 0.0;
    for (name, value) in series(text, "hos_proxy_view_requests_total") {
        let view = name
            .split("view=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        if view == "_other" {
            other += value;
        }
        views.insert(view.to_string());
    }
    (views.into_iter().collect(), other)
}

/// 3,000 views read once each against a limit of 50: 50 views are named,
/// the other 2,950 are counted as `_other` (one series per backend), and
/// the exposition holds 988 per-view lines, not 57,000. A reload to 3,000
/// other views frees the places: the old views' series leave, the first 50
/// new ones are named. A limit of 0 exports no per-view series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_label_bound_holds_under_thousands_of_views() {
    const N: usize = 3_000;
    const LIMIT: usize = 50;
    let mut options = common::Options::new(Limits::default());
    options.apply = false;
    options.view_metrics_limit = LIMIT;
    options.access_log = AccessLog::new(AccessLogMode::Off, 1);
    let p = common::start_with(MANY_STORE, &many_views("v", N), options).await;
    read_all(&p, "v", N).await;
    let text = metrics_text(&p).await;
    let (views, other) = view_labels(&text);
    let mut want: Vec<String> = (0..LIMIT).map(|i| format!("v{i}")).collect();
    want.push("_other".into());
    want.sort();
    assert_eq!(views, want, "the first {LIMIT} views served are named");
    assert_eq!(other, (N - LIMIT) as f64);
    let total: f64 = series(&text, "hos_proxy_view_requests_total")
        .values()
        .sum();
    assert_eq!(total, N as f64, "every call counted once");
    let other_series: Vec<String> = series(&text, "hos_proxy_view_requests_total")
        .into_keys()
        .filter(|k| k.contains("view=\"_other\""))
        .collect();
    assert_eq!(other_series.len(), 2, "one per backend: {other_series:?}");
    // Per (view, backend, op): 1 outcome counter + 16 buckets + sum + count.
    let lines = text
        .lines()
        .filter(|l| l.starts_with("hos_proxy_view_"))
        .count();
    assert_eq!(lines, (LIMIT + 2) * 19, "{text}");

    // A new table of 3,000 other views: the old names leave, the first 50
    // new views served take their places; `_other` (same project and
    // backends) keeps counting.
    std::fs::write(p.dir.path().join("views.yaml"), many_views("w", N)).unwrap();
    reload(&p.shared, &p.source, false).await.unwrap();
    let (views, other) = view_labels(&metrics_text(&p).await);
    assert_eq!(views, vec!["_other".to_string()]);
    assert_eq!(other, (N - LIMIT) as f64);
    read_all(&p, "w", N).await;
    let text = metrics_text(&p).await;
    let (views, other) = view_labels(&text);
    let mut want: Vec<String> = (0..LIMIT).map(|i| format!("w{i}")).collect();
    want.push("_other".into());
    want.sort();
    assert_eq!(views, want);
    assert_eq!(other, 2.0 * (N - LIMIT) as f64);

    // Limit 0: no per-view series at all.
    let mut options = common::Options::new(Limits::default());
    options.apply = false;
    options.view_metrics_limit = 0;
    options.access_log = AccessLog::new(AccessLogMode::Off, 1);
    let off = common::start_with(MANY_STORE, &many_views("v", 200), options).await;
    read_all(&off, "v", 200).await;
    let text = metrics_text(&off).await;
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("hos_proxy_view_"))
            .count(),
        0,
        "{text}"
    );
    assert!(
        text.contains(
            "hos_proxy_requests_total{endpoint=\"get-online-features\",status=\"503\"} 2"
        )
    );
}

/// A client sending bad requests as fast as it can gets at most
/// `--access-log-max-failures-per-second` lines a second; the lines that
/// are written account for every dropped one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_lines_are_bounded_per_second() {
    log_buffer();
    let mut options = common::Options::new(Limits::default());
    options.access_log = AccessLog::new(AccessLogMode::All, 1).max_failures_per_second(5);
    let p = common::start_with(STORE, VIEWS, options).await;
    let unknown = json!({"features": ["nope:x"], "entities": {"user_id": [1]}});
    let started = std::time::Instant::now();
    for i in 0..60 {
        let id = format!("flood-{i}");
        let (s, _) = post_as(&p, &id, "/get-online-features", unknown.clone(), None).await;
        assert_eq!(s, 404);
    }
    let seconds = started.elapsed().as_secs_f64().ceil() + 1.0;
    let flood = access_lines("flood-");
    assert!(
        flood.len() >= 5 && flood.len() as f64 <= 5.0 * seconds,
        "{} lines for 60 failures in at most {seconds} windows",
        flood.len()
    );
    // In a later second, the next failure's line counts what was dropped.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, _) = post_as(&p, "flood-last", "/get-online-features", unknown, None).await;
    assert_eq!(s, 404);
    let all = access_lines("flood-");
    let dropped: u64 = all
        .iter()
        .filter_map(|f| f.get("dropped_failures").and_then(Json::as_u64))
        .sum();
    assert_eq!(all.len() as u64 + dropped, 61, "{all:?}");
    assert!(dropped > 0);
}
