//! Request bodies of the proxy's HTTP API, through the real axum router
//! (`proxy::server::router`) over a temporary Feast repo with two SQLite
//! backends, built once as `proxy/tests/http.rs` does.
//!
//! Input: byte 0 picks the endpoint (mod 3: /get-online-features,
//! /write-to-online-store, /push), the rest is the POST body. The replay
//! test `proxy/tests/fuzz_corpus.rs` reads the same layout.
//!
//! Properties: no panic (libfuzzer-sys aborts on a panic in any thread,
//! blocking SQLite tasks included); no 5xx but 503; every 4xx carries a
//! Feast-shaped error body with a non-empty message; a 200 from
//! /get-online-features is a JSON object.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::http::header::CONTENT_TYPE;
use libfuzzer_sys::fuzz_target;
use proxy::config::ConfigSource;
use proxy::features::Limits;
use proxy::server::{AppState, router};
use proxy::state::{Shared, reload};
use tower::ServiceExt;

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

struct Env {
    rt: tokio::runtime::Runtime,
    app: Router,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        // Statics are never dropped, so the directory outlives the process:
        // name it by pid and remove those of earlier, finished runs.
        let base = ["/dev/shm", "/tmp"]
            .map(std::path::PathBuf::from)
            .into_iter()
            .find(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("hos-fuzz-request_json-")
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = base.join(format!("hos-fuzz-request_json-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("feature_store.yaml"), STORE).unwrap();
        std::fs::write(dir.join("views.yaml"), VIEWS).unwrap();
        let source = ConfigSource::repo(dir.clone(), None, vec![dir.join("views.yaml")]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Shared::new(dir.join("secrets")));
        rt.block_on(reload(&shared, &source, true)).unwrap();
        let app = router(Arc::new(AppState::new(
            shared,
            Limits {
                max_body_bytes: 1 << 20,
                max_entity_rows: 100,
                ..Limits::default()
            },
            None,
        )));
        Env { rt, app }
    })
}

/// The message of a Feast-shaped error body (a JSON string holding
/// `{"module", "class", "message"}`).
fn error_message(body: &[u8]) -> Option<String> {
    let outer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let inner: serde_json::Value = serde_json::from_str(outer.as_str()?).ok()?;
    inner.get("message")?.as_str().map(str::to_string)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let endpoint = ENDPOINTS[usize::from(which) % ENDPOINTS.len()];
    let env = env();
    let req = Request::post(endpoint)
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap();
    let (status, bytes) = env.rt.block_on(async {
        let resp = env.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        (
            status,
            axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap(),
        )
    });
    let shown = String::from_utf8_lossy(&bytes);
    assert!(
        !status.is_server_error() || status.as_u16() == 503,
        "{endpoint} answered {status}: {shown}"
    );
    if status.as_u16() == 503 {
        eprintln!("note: {endpoint} answered 503: {shown}");
    }
    if status.is_client_error() {
        let msg = error_message(&bytes);
        assert!(
            msg.is_some_and(|m| !m.is_empty()),
            "{endpoint} answered {status} without a message: {shown}"
        );
    }
    if status.is_success() && endpoint == "/get-online-features" {
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v.is_object(), "200 body is not an object: {shown}");
    }
});
