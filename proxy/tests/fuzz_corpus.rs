//! Replays the checked-in corpus of the `request_json` fuzz target
//! (`fuzz/corpus/request_json/`) against the proxy, set up as the target
//! does: a temporary Feast repo with two SQLite backends. Byte 0 of an
//! input picks the endpoint (mod 3), the rest is the POST body.
//!
//! No input may panic (in any thread) or get a 5xx other than 503; a 4xx
//! carries a Feast-shaped error with a message. Hand-written `seed-*`
//! inputs must succeed and `malformed-*` ones must get a 4xx.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use proxy::features::Limits;

const ENDPOINTS: [&str; 3] = ["/get-online-features", "/write-to-online-store", "/push"];

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
source: {type: push, name: users_push, timestamp_field: event_timestamp}
tags: {team: team_a}
---
name: orders
entities: [{name: user, join_keys: [user_id], dtype: int64}, {name: shop, join_keys: [shop_id], dtype: string}]
schema: [{name: total, dtype: float64}, {name: raw, dtype: bytes}]
source: {created_timestamp_column: created}
tags: {team: team_b}
---
name: stats
schema: [{name: active, dtype: int64}]
tags: {team: team_b}
"#;

static PANICKED: AtomicBool = AtomicBool::new(false);

fn error_message(body: &[u8]) -> Option<String> {
    let outer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let inner: serde_json::Value = serde_json::from_str(outer.as_str()?).ok()?;
    inner.get("message")?.as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_json_corpus() {
    // A panic in a spawned task (e.g. a blocking SQLite call) would only
    // fail that task; record it instead.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        previous(info);
    }));

    let p = common::start(
        STORE,
        VIEWS,
        Limits {
            max_body_bytes: 1 << 20,
            max_entity_rows: 100,
            ..Limits::default()
        },
    )
    .await;
    let base = p.base.clone();
    let http = reqwest::Client::new();

    let corpus =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/request_json");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() > 10, "{}: corpus missing", corpus.display());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let Some((&which, body)) = data.split_first() else {
            continue;
        };
        let endpoint = ENDPOINTS[usize::from(which) % ENDPOINTS.len()];
        let resp = http
            .post(format!("{base}{endpoint}"))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap();
        let shown = String::from_utf8_lossy(&bytes);
        assert!(
            !status.is_server_error() || status.as_u16() == 503,
            "{name}: {endpoint} answered {status}: {shown}"
        );
        if status.is_client_error() {
            let msg = error_message(&bytes);
            assert!(
                msg.is_some_and(|m| !m.is_empty()),
                "{name}: {status} without a message: {shown}"
            );
        }
        if status.is_success() && endpoint == "/get-online-features" {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert!(v.is_object(), "{name}: 200 body is not an object: {shown}");
        }
        if name.starts_with("seed-") {
            assert!(status.is_success(), "{name}: {status}: {shown}");
        }
        if name.starts_with("malformed-") {
            assert!(status.is_client_error(), "{name}: {status}: {shown}");
        }
    }
    assert!(
        !PANICKED.load(Ordering::SeqCst),
        "a panic happened while replaying"
    );
}
