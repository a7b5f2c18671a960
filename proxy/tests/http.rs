//! The proxy in-process on 127.0.0.1 over a temporary Feast repo with a
//! hybrid store of two SQLite backends (one file per team).

use std::path::Path;
use std::sync::Arc;

mod common;

use proxy::config::ConfigSource;
use proxy::features::Limits;
use proxy::state::{Shared, reload};
use serde_json::{Value, json};

const STORE: &str = r#"
project: demo
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
schema: [{name: age, dtype: int64}, {name: tags, dtype: array<string>}, {name: score, dtype: float32}]
tags: {team: team_a}
---
name: orders
entities: [{name: user, join_keys: [user_id], dtype: int64}, {name: shop, join_keys: [shop_id], dtype: string}]
schema: [{name: total, dtype: float64}]
tags: {team: team_b}
---
name: stats
schema: [{name: active, dtype: int64}]
tags: {team: team_b}
source: {name: activity, type: push}
---
name: sessions
entities: [{name: user, join_keys: [user_id], dtype: int64}]
schema: [{name: clicks, dtype: int64}]
ttl: 1h
tags: {team: team_a}
source: {name: activity, type: push}
"#;

struct Proxy {
    base: String,
    shared: Arc<Shared>,
    source: ConfigSource,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

async fn start(limits: Limits) -> Proxy {
    let p = common::start(STORE, VIEWS, limits).await;
    Proxy {
        base: p.base,
        shared: p.shared,
        source: p.source,
        dir: p.dir,
        http: reqwest::Client::new(),
    }
}

const DEFAULT_LIMITS: Limits = Limits {
    max_body_bytes: 1 << 20,
    max_entity_rows: 100,
    max_features: 50,
    max_key_bytes: 256,
    max_cells: 5_000,
    max_event_time_skew_seconds: 86_400,
};

impl Proxy {
    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        self.post(path, body.to_string()).await
    }
}

/// The message inside a Feast-shaped error body.
fn message(body: &Value) -> String {
    let inner: Value = serde_json::from_str(body.as_str().unwrap()).unwrap();
    inner["message"].as_str().unwrap().to_string()
}

fn tables(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn rows(db: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
        r.get(0)
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_each_team_to_its_own_file_and_reads_back() {
    let p = start(DEFAULT_LIMITS).await;
    let w = |view: &str, df: Value| json!({"feature_view_name": view, "df": df});
    let (s, body) = p
        .post_json(
            "/write-to-online-store",
            w("users", json!({"user_id": [1, 2], "age": [30, null], "tags": [["a"], []], "score": [0.5, 1.25],
                              "event_timestamp": ["2024-05-01T12:34:56Z", "2024-05-01T12:34:57.250Z"]})),
        )
        .await;
    assert_eq!((s, body), (200, Value::Null));
    let (s, _) = p
        .post_json(
            "/write-to-online-store",
            w("orders", json!({"user_id": [1], "shop_id": ["s1"], "total": [9.5], "event_timestamp": ["2024-05-02"]})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = p
        .post_json(
            "/write-to-online-store",
            w(
                "stats",
                json!({"active": [7], "event_timestamp": [1714566896]}),
            ),
        )
        .await;
    assert_eq!(s, 200);

    let a = p.dir.path().join("a.db");
    let b = p.dir.path().join("b.db");
    assert_eq!(tables(&a), vec!["demo_sessions", "demo_users"]);
    assert_eq!(tables(&b), vec!["demo_orders", "demo_stats"]);
    assert_eq!(rows(&a, "demo_users"), 6);
    assert_eq!(rows(&b, "demo_orders"), 1);

    let (s, body) = p
        .post_json(
            "/get-online-features",
            json!({"features": ["users:age", "users:tags", "users:score", "orders:total", "stats:active"],
                   "entities": {"user_id": [1, 2, 3], "shop_id": ["s1", "s1", "s1"]}}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["metadata"]["feature_names"],
        json!([
            "user_id", "shop_id", "age", "tags", "score", "total", "active"
        ])
    );
    let col = |i: usize| &body["results"][i];
    assert_eq!(col(2)["values"], json!([30, null, null]));
    assert_eq!(
        col(2)["statuses"],
        json!(["PRESENT", "PRESENT", "NOT_FOUND"])
    );
    assert_eq!(
        col(2)["event_timestamps"],
        json!([
            "2024-05-01T12:34:56Z",
            "2024-05-01T12:34:57Z",
            "1970-01-01T00:00:00Z"
        ])
    );
    assert_eq!(col(3)["values"], json!([["a"], [], null]));
    assert_eq!(col(4)["values"], json!([0.5, 1.25, null]));
    assert_eq!(col(5)["values"], json!([9.5, null, null]));
    assert_eq!(col(5)["event_timestamps"][0], "2024-05-02T00:00:00Z");
    assert_eq!(
        col(6)["values"],
        json!([7, 7, 7]),
        "entityless view answers every row"
    );

    let (s, body) = p
        .post_json(
            "/get-online-features",
            json!({"features": ["users:age"], "entities": {"user_id": [1]}, "full_feature_names": true}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        body["metadata"]["feature_names"],
        json!(["user_id", "users__age"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_group_by_view_and_unknown_entity_keys_are_dropped() {
    let p = start(DEFAULT_LIMITS).await;
    let (s, body) = p
        .post_json(
            "/get-online-features",
            json!({"features": ["users:age", "orders:total", "users:tags"],
                   "entities": {"zzz": ["q"], "user_id": [1], "shop_id": ["s1"]}}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["metadata"]["feature_names"],
        json!(["user_id", "shop_id", "age", "tags", "total"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_naming_the_problem() {
    let p = start(Limits {
        max_body_bytes: 4096,
        max_entity_rows: 5,
        max_features: 3,
        max_key_bytes: 16,
        max_cells: 6,
        max_event_time_skew_seconds: 86_400,
    })
    .await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"features": ["users:age"], "entities": {"user_id": ["abc"]}}),
            422,
            "`entities.user_id` row 0: expected int64",
        ),
        (
            json!({"features": ["nope:age"], "entities": {"user_id": [1]}}),
            404,
            "Feature view nope does not exist",
        ),
        (
            json!({"features": ["users:nope"], "entities": {"user_id": [1]}}),
            404,
            "Feature nope not found in feature view users",
        ),
        (
            json!({"features": ["users"], "entities": {"user_id": [1]}}),
            422,
            "Invalid feature reference 'users'",
        ),
        (
            json!({"features": ["users:age"]}),
            422,
            "`entities` is required",
        ),
        (
            json!({"features": ["users:age"], "entities": {"user_id": 1}}),
            422,
            "`entities.user_id` must be a list",
        ),
        (
            json!({"features": ["orders:total"], "entities": {"user_id": [1]}}),
            422,
            "missing join key `shop_id`",
        ),
        (
            json!({"features": ["users:age"], "entities": {"user_id": [1, 2], "x": [1]}}),
            422,
            "differ in length",
        ),
        (
            json!({"features": ["users:age"], "entities": {"user_id": [1, 2, 3, 4, 5, 6]}}),
            413,
            "6 entity rows exceed the limit of 5",
        ),
        (
            json!({"features": [], "entities": {"user_id": [1]}}),
            422,
            "No features specified",
        ),
        (
            json!({"feature_service": "nope", "entities": {"user_id": [1]}}),
            404,
            "Feature service nope does not exist",
        ),
        (json!([1, 2]), 422, "must be a JSON object"),
        (json!("users:age"), 422, "must be a JSON object"),
        (
            json!({"features": ["users:age", 5], "entities": {"user_id": [1]}}),
            422,
            "feature reference 5 must be a string",
        ),
        (
            json!({"features": "users:age", "entities": {"user_id": [1]}}),
            422,
            "`features` must be a list of",
        ),
        (
            json!({"feature_service": 3, "entities": {"user_id": [1]}}),
            422,
            "`feature_service` must be a string",
        ),
        (
            json!({"features": ["users:age"], "full_feature_names": "yes", "entities": {"user_id": [1]}}),
            422,
            "`full_feature_names` must be true or false",
        ),
        (
            json!({"features": ["users:age"], "entities": [1]}),
            422,
            "`entities` must be an object",
        ),
        (
            json!({"features": ["users:age", "users:age"], "entities": {"user_id": [1]}}),
            400,
            "Duplicate features named age",
        ),
        (
            json!({"features": ["users:age", "users:tags", "users:score", "orders:total"], "entities": {"user_id": [1]}}),
            413,
            "4 feature columns exceed the limit of 3 per request (--max-features)",
        ),
        (
            json!({"features": ["users:age", "users:tags", "users:score"], "entities": {"user_id": [1, 2, 3]}}),
            413,
            "3 entity rows x 3 features = 9 cells exceed the limit of 6 cells per request (--max-cells)",
        ),
        (
            json!({"features": ["orders:total"], "entities": {"user_id": [1], "shop_id": ["s".repeat(17)]}}),
            413,
            "`entities.shop_id` row 0 is 17 bytes long; entity key values are limited to 16 bytes",
        ),
    ];
    for (body, status, msg) in cases {
        let (s, resp) = p.post_json("/get-online-features", body.clone()).await;
        assert_eq!(s, status, "{body} -> {resp}");
        assert!(message(&resp).contains(msg), "{body} -> {}", message(&resp));
    }
    for bad in [
        "{not json",
        "[1, 2",
        r#"{"features": ["users:age"], "features": ["users:age"], "entities": {"user_id": [1]}}"#,
    ] {
        let (s, resp) = p.post("/get-online-features", bad).await;
        assert_eq!(s, 422, "{bad}");
        assert!(message(&resp).contains("malformed JSON"), "{bad} -> {resp}");
    }
    // Escaped names are read like any other (a copy is made only for them).
    let (s, resp) = p
        .post(
            "/get-online-features",
            r#"{"features": ["users:\u0061ge"], "entities": {"user_id": [1]}, "full_feature_names": true}"#,
        )
        .await;
    assert_eq!(s, 200, "{resp}");
    assert_eq!(
        resp["metadata"]["feature_names"],
        json!(["user_id", "users__age"])
    );
    let (s, resp) = p.post("/get-online-features", "x".repeat(10_000)).await;
    assert_eq!(s, 413);
    assert!(
        message(&resp).contains("request body of 10000 bytes exceeds the limit of 4096 bytes"),
        "{resp}"
    );
    // Without a Content-Length (chunked), the body is cut at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let (s, resp) = p
        .post(
            "/get-online-features",
            reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        )
        .await;
    assert_eq!(s, 413);
    assert!(
        message(&resp).contains("request body exceeds the limit of 4096 bytes"),
        "{resp}"
    );

    let write_cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/write-to-online-store",
            json!({"feature_view_name": "nope", "df": {}}),
            404,
            "Can't recognize feast object with a name nope",
        ),
        (
            "/write-to-online-store",
            json!({"feature_view_name": "users", "df": {"user_id": [1], "age": [3]}}),
            422,
            "missing the event timestamp column",
        ),
        (
            "/write-to-online-store",
            json!({"feature_view_name": "users", "df": {"user_id": [1], "age": ["x"], "tags": [[]], "score": [1], "event_timestamp": ["2024-01-01"]}}),
            422,
            "`df.age` row 0: expected int64",
        ),
        (
            "/write-to-online-store",
            json!({"feature_view_name": "users", "df": {"user_id": [1], "age": [1], "tags": [[]], "score": [1], "event_timestamp": ["soon"]}}),
            422,
            "`df.event_timestamp` row 0: \"soon\" cannot be read as a timestamp",
        ),
        (
            "/write-to-online-store",
            json!({"feature_view_name": "users", "df": {"user_id": [1], "age": [1], "event_timestamp": ["2024-01-01"]}}),
            422,
            "missing feature column(s) `tags`, `score` of feature view `users`",
        ),
        (
            "/write-to-online-store",
            json!({"df": {}}),
            422,
            "`feature_view_name` is required",
        ),
        (
            "/push",
            json!({"push_source_name": "nope", "df": {}}),
            422,
            "Unable to find push source 'nope'",
        ),
    ];
    for (path, body, status, msg) in write_cases {
        let (s, resp) = p.post_json(path, body.clone()).await;
        assert_eq!(s, status, "{path} {body} -> {resp}");
        assert!(
            message(&resp).contains(msg),
            "{path} {body} -> {}",
            message(&resp)
        );
    }
    let health = p
        .http
        .get(format!("{}/health", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let metrics = p
        .http
        .get(format!("{}/metrics", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("hos_proxy_requests_total{endpoint=\"get-online-features\",status=\"422\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reload_keeps_serving_the_previous_routes() {
    let p = start(DEFAULT_LIMITS).await;
    let views = p.dir.path().join("views.yaml");
    std::fs::write(
        &views,
        VIEWS.replace("tags: {team: team_a}", "tags: {team: team_c}"),
    )
    .unwrap();
    let err = reload(&p.shared, &p.source, true).await.unwrap_err();
    assert!(matches!(err, proxy::state::ReloadError::Load(_)), "{err:?}");
    assert!(
        err.to_string().contains("`team_c` names no backend"),
        "{err}"
    );
    assert_eq!(p.shared.current.load().as_ref().unwrap().version, 1);
    // `/ready` names the routes serving: the content digest of the table
    // loaded first, also in the metrics (one series).
    let ready = |p: &Proxy| {
        let (http, url) = (p.http.clone(), format!("{}/ready", p.base));
        async move {
            let body: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            body["routing_digest"].as_str().unwrap().to_string()
        }
    };
    let first = p.shared.current.load_full().unwrap().digest.clone();
    assert_eq!(
        first,
        p.shared
            .current
            .load_full()
            .unwrap()
            .table_with_views()
            .digest()
    );
    assert_eq!(ready(&p).await, first);
    let metrics = p.shared.metrics.encode();
    assert!(
        metrics.contains(&format!("hos_proxy_routing_info{{digest=\"{first}\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains("hos_proxy_reload_total{result=\"error\"} 1"),
        "{metrics}"
    );
    let (s, _) = p
        .post_json(
            "/get-online-features",
            json!({"features": ["users:age"], "entities": {"user_id": [1]}}),
        )
        .await;
    assert_eq!(s, 200);

    // Re-routing users to team_b takes effect on the next good reload.
    std::fs::write(
        &views,
        VIEWS.replace("tags: {team: team_a}", "tags: {team: team_b}"),
    )
    .unwrap();
    let before = p.shared.current.load_full().unwrap();
    assert_eq!(reload(&p.shared, &p.source, true).await.unwrap(), 2);
    assert!(tables(&p.dir.path().join("b.db")).contains(&"demo_users".to_string()));
    // Structural sharing: the views the reload did not change are the same
    // allocations as before; the changed one is new.
    let after = p.shared.current.load_full().unwrap();
    assert!(Arc::ptr_eq(&before.views["orders"], &after.views["orders"]));
    assert!(Arc::ptr_eq(&before.views["stats"], &after.views["stats"]));
    assert!(!Arc::ptr_eq(&before.views["users"], &after.views["users"]));
    assert_eq!(after.views["users"].backend, "team_b");
    let second = ready(&p).await;
    assert_ne!(second, first);
    assert_eq!(second, after.digest);
    let metrics = p.shared.metrics.encode();
    assert_eq!(
        metrics.matches("hos_proxy_routing_info{").count(),
        1,
        "{metrics}"
    );
    assert!(metrics.contains(&format!("hos_proxy_routing_info{{digest=\"{second}\"}} 1")));
    // Reloading the same routes changes neither.
    reload(&p.shared, &p.source, true).await.unwrap();
    assert_eq!(ready(&p).await, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_at_retrieval_marks_old_values_outside_max_age() {
    let p = start(DEFAULT_LIMITS).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // ttl 1h: 59 minutes old is served, 61 minutes old is not.
    let (s, body) = p
        .post_json(
            "/write-to-online-store",
            json!({"feature_view_name": "sessions", "df": {
                "user_id": [1, 2],
                "clicks": [10, 20],
                "event_timestamp": [now - 59 * 60, now - 61 * 60],
            }}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = p
        .post_json(
            "/get-online-features",
            json!({"features": ["sessions:clicks"], "entities": {"user_id": [1, 2, 3]}}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let col = &body["results"][1];
    assert_eq!(col["values"], json!([10, null, null]));
    assert_eq!(
        col["statuses"],
        json!(["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"])
    );
    // The expired cell keeps its stored event time, as Feast's Go server does.
    let stamp = col["event_timestamps"][1].as_str().unwrap();
    let ts = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
    assert_eq!(ts.timestamp(), now - 61 * 60);
    // A view without ttl serves any age (the old rows of the other tests).
    let (s, _) = p
        .post_json(
            "/write-to-online-store",
            json!({"feature_view_name": "users", "df": {
                "user_id": [7], "age": [3], "tags": [["a"]], "score": [1.5],
                "event_timestamp": ["2001-01-01T00:00:00Z"],
            }}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, body) = p
        .post_json(
            "/get-online-features",
            json!({"features": ["users:age"], "entities": {"user_id": [7]}}),
        )
        .await;
    assert_eq!(body["results"][1]["statuses"], json!(["PRESENT"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_fails_only_its_views() {
    let p = start(DEFAULT_LIMITS).await;
    let (s, _) = p
        .post_json(
            "/write-to-online-store",
            json!({"feature_view_name": "users", "df": {
                "user_id": [1], "age": [30], "tags": [["x"]], "score": [0.5],
                "event_timestamp": ["2024-05-01T12:34:56Z"],
            }}),
        )
        .await;
    assert_eq!(s, 200);
    // team_b's store loses its tables behind the proxy's back.
    let b = rusqlite::Connection::open(p.dir.path().join("b.db")).unwrap();
    b.execute_batch("DROP TABLE demo_orders; DROP TABLE demo_stats;")
        .unwrap();
    let (s, body) = p
        .post_json(
            "/get-online-features",
            json!({"features": ["users:age", "orders:total"], "entities": {"user_id": [1], "shop_id": ["s1"]}}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["metadata"]["feature_names"],
        json!(["user_id", "shop_id", "age", "total"])
    );
    assert_eq!(body["results"][2]["values"], json!([30]));
    assert_eq!(body["results"][2]["statuses"], json!(["PRESENT"]));
    assert_eq!(body["results"][3]["values"], json!([null]));
    assert_eq!(body["results"][3]["statuses"], json!(["INVALID"]));
    let errors = body["metadata"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["feature_view"], "orders");
    assert_eq!(errors[0]["backend"], "team_b");
    let msg = errors[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("backend `team_b` failed") && msg.contains("demo_orders"),
        "{msg}"
    );
    // Only failed views: 503 naming the backend.
    let (s, body) = p
        .post_json(
            "/get-online-features",
            json!({"features": ["stats:active"], "entities": {}}),
        )
        .await;
    assert_eq!(s, 503, "{body}");
    assert!(message(&body).contains("backend `team_b` failed"), "{body}");
    // A healthy view alone carries no errors.
    let (s, body) = p
        .post_json(
            "/get-online-features",
            json!({"features": ["users:age"], "entities": {"user_id": [1]}}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(body["metadata"].get("errors").is_none(), "{body}");
}

/// The inner detail object of a Feast-shaped error body.
fn detail(body: &Value) -> Value {
    serde_json::from_str(body.as_str().unwrap()).unwrap()
}

/// Issue [L]: event times are validated (4xx naming the row and column,
/// nothing of the request written), and the newest event wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_times_are_validated_and_the_newest_wins() {
    let p = start(DEFAULT_LIMITS).await;
    let write = |id: i64, clicks: i64, ts: Value| {
        json!({"feature_view_name": "sessions", "df": {
            "user_id": [1000, id], "clicks": [1, clicks], "event_timestamp": ["2024-05-01T00:00:00Z", ts]}})
    };
    let now = chrono::Utc::now();
    let in_two_days = (now + chrono::Duration::days(2)).to_rfc3339();
    let bad: Vec<(Value, &str)> = vec![
        (
            json!("200000-01-01T00:00:00Z"),
            "cannot be read as a timestamp",
        ),
        (json!(1e300), "cannot be read as a timestamp"),
        (json!(i64::MAX), "is after 9999-12-31T23:59:59Z"),
        (json!(253_402_300_800i64), "is after 9999-12-31T23:59:59Z"),
        (
            json!("1969-12-31T23:59:59Z"),
            "is before 1970-01-01T00:00:00Z",
        ),
        (json!(-1), "is before 1970-01-01T00:00:00Z"),
        (json!("NaN"), "cannot be read as a timestamp"),
        (json!(true), "cannot be read as a timestamp"),
        (
            json!(in_two_days),
            "is more than 86400 s after the proxy's clock",
        ),
    ];
    let a = p.dir.path().join("a.db");
    for (ts, why) in bad {
        let (s, body) = p
            .post_json("/write-to-online-store", write(1, 5, ts.clone()))
            .await;
        assert_eq!(s, 422, "{ts} -> {body}");
        let m = message(&body);
        assert!(
            m.starts_with("`df.event_timestamp` row 1: ") && m.contains(why),
            "{ts}: {m}"
        );
        assert_eq!(
            rows(&a, "demo_sessions"),
            0,
            "{ts}: a row of a refused request was written"
        );
    }
    // The created time is checked the same way.
    let (s, body) = p
        .post_json(
            "/write-to-online-store",
            json!({"feature_view_name": "sessions", "df": {"user_id": [1], "clicks": [1],
                   "event_timestamp": ["2024-05-01T00:00:00Z"], "created": [1e300]}}),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(message(&body).starts_with("`df.created` row 0: "), "{body}");

    // Within the skew, and the newest event wins whatever the order.
    let soon = (now + chrono::Duration::hours(1)).timestamp();
    for (clicks, ts) in [(2, soon), (1, soon - 3600), (3, soon - 1)] {
        let (s, body) = p
            .post_json("/write-to-online-store", write(1, clicks, json!(ts)))
            .await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, body) = p
        .post_json(
            "/get-online-features",
            json!({"features": ["sessions:clicks"], "entities": {"user_id": [1]}}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["results"][1]["values"], json!([2]));
    assert_eq!(
        body["results"][1]["event_timestamps"],
        json!([api::json::format_timestamp(soon, 0)])
    );
}

/// Issue [L]: a push to views on two backends, one failing, writes the
/// other, answers 503 naming what was not written, and the same request
/// retried after recovery completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_failed_push_names_what_was_not_written() {
    let p = start(DEFAULT_LIMITS).await;
    let b = rusqlite::Connection::open(p.dir.path().join("b.db")).unwrap();
    b.execute_batch("DROP TABLE demo_stats;").unwrap();
    // `sessions` has a 1 h ttl: a recent event time.
    let ts = chrono::Utc::now().timestamp() - 10;
    let push = json!({"push_source_name": "activity", "df": {
        "user_id": [1], "clicks": [4], "active": [9], "event_timestamp": [ts]}});
    let (s, body) = p.post_json("/push", push.clone()).await;
    assert_eq!(s, 503, "{body}");
    let d = detail(&body);
    assert_eq!(d["class"], "BackendUnavailable");
    assert_eq!(d["not_written"][0]["feature_view"], "stats", "{d}");
    assert_eq!(d["not_written"][0]["backend"], "team_b");
    assert!(
        d["not_written"][0]["error"]
            .as_str()
            .unwrap()
            .contains("demo_stats"),
        "{d}"
    );
    assert_eq!(
        d["written"],
        json!([{"feature_view": "sessions", "backend": "team_a"}])
    );
    let m = d["message"].as_str().unwrap();
    assert!(
        m.contains("not written: `stats` (backend `team_b`)")
            && m.contains("written: `sessions` (backend `team_a`)"),
        "{m}"
    );
    let read = |features: Value, entities: Value| {
        let p = &p;
        async move {
            p.post_json(
                "/get-online-features",
                json!({"features": features, "entities": entities}),
            )
            .await
        }
    };
    let (s, body) = read(json!(["sessions:clicks"]), json!({"user_id": [1]})).await;
    assert_eq!(
        (s, &body["results"][1]["values"]),
        (200, &json!([4])),
        "{body}"
    );

    // The backend recovers (its table is back); the same request converges.
    b.execute_batch(
        "CREATE TABLE demo_stats (entity_key BLOB, feature_name TEXT, value BLOB, vector_value BLOB, \
         event_ts timestamp, created_ts timestamp, PRIMARY KEY(entity_key, feature_name));",
    )
    .unwrap();
    let (s, body) = p.post_json("/push", push).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = read(
        json!(["sessions:clicks", "stats:active"]),
        json!({"user_id": [1]}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["results"][1]["values"], json!([4]));
    assert_eq!(body["results"][2]["values"], json!([9]));
    assert_eq!(rows(&p.dir.path().join("a.db"), "demo_sessions"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_or_made_and_returned() {
    let p = start(Limits::default()).await;
    let client = reqwest::Client::new();
    let id_of = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string())
    };
    // A client's plain id comes back as sent, on errors too.
    for (path, body) in [
        (
            "/get-online-features",
            json!({"features": ["users:age"], "entities": {"user_id": [1]}}),
        ),
        (
            "/get-online-features",
            json!({"features": ["nope:x"], "entities": {"user_id": [1]}}),
        ),
    ] {
        let r = client
            .post(format!("{}{path}", p.base))
            .header("x-request-id", "trace-42:a.b_c")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(id_of(&r).as_deref(), Some("trace-42:a.b_c"));
    }
    // Without one, or with one that is not a plain token (too long, spaces,
    // control characters), the proxy makes one: 24 hex digits, new each time.
    let mut made = std::collections::HashSet::new();
    for sent in [
        None,
        Some("x".repeat(129)),
        Some("has space".into()),
        Some("a\tb".into()),
    ] {
        let mut req = client.get(format!("{}/health", p.base));
        if let Some(s) = &sent {
            req = req.header("x-request-id", s.as_str());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let id = id_of(&r).unwrap();
        assert_eq!(id.len(), 24, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_ne!(Some(id.as_str()), sent.as_deref());
        assert!(made.insert(id), "an id was made twice");
    }
}

/// Reading a metric's value from the text exposition.
fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_reads_the_files_only_when_they_change() {
    let p = start(DEFAULT_LIMITS).await;
    // Configuration written a minute ago (files modified in the last 2 s
    // are compared by content on every check).
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for name in ["feature_store.yaml", "views.yaml"] {
        let f = std::fs::File::options()
            .write(true)
            .open(p.dir.path().join(name))
            .unwrap();
        f.set_modified(past).unwrap();
    }
    // A periodic check every 50 ms: each one must cost a few `stat` calls,
    // not a read of every file (the watch once re-read the files on the
    // access events of its own reads, forever).
    proxy::state::spawn_reloader(
        Arc::clone(&p.shared),
        p.source.clone(),
        true,
        std::time::Duration::from_millis(50),
    );
    let reads = || metric_value(&p.shared.metrics.encode(), "hos_proxy_config_reads_total");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let idle = reads();
    assert!(idle <= 1.0, "{idle} reads of unchanged files in 1.5 s");
    assert_eq!(p.shared.current.load().as_ref().unwrap().version, 1);

    // A change is seen, read and loaded.
    std::fs::write(
        p.dir.path().join("views.yaml"),
        VIEWS.replace("tags: {team: team_a}", "tags: {team: team_b}"),
    )
    .unwrap();
    let mut version = 1;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        version = p.shared.current.load().as_ref().unwrap().version;
        if version == 2 {
            break;
        }
    }
    assert_eq!(version, 2, "the change was not loaded in 5 s");
    let after_change = reads();
    assert!(after_change > idle, "{after_change}");
    // Files modified in the last 2 s are compared by content on each check
    // (timestamps are coarser than writes); then the watch is quiet again,
    // though requests write the SQLite files next to the configuration.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let after_change = reads();
    let (s, _) = p
        .post_json(
            "/push",
            json!({"push_source_name": "activity", "to": "online",
                   "df": {"user_id": [1], "clicks": [3], "active": [1],
                          "event_timestamp": ["2026-01-01T00:00:00Z"]}}),
        )
        .await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let quiet = reads();
    assert!(quiet <= after_change + 1.0, "{after_change} -> {quiet}");
    assert_eq!(p.shared.current.load().as_ref().unwrap().version, 2);
}
