//! HTTP `/get-online-features` and gRPC `GetOnlineFeatures` are one
//! serving core: the same requests sent both ways give the same columns,
//! values, statuses and event timestamps (and the same refusals).

use std::collections::HashMap;
use std::sync::Arc;

mod common;

use api::json::{format_timestamp, value_to_json};
use api::proto::feast::serving::get_online_features_request::Kind;
use api::proto::feast::serving::serving_service_server::ServingService;
use api::proto::feast::serving::{FeatureList, GetOnlineFeaturesRequest};
use api::proto::feast::types::RepeatedValue;
use api::proto::{FieldStatus, Val, Value};
use proxy::features::Limits;
use proxy::grpc::Serving;
use serde_json::{Value as Json, json};

const STORE: &str = r#"
project: same
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - {name: a, type: sqlite, conf: {path: a.db}}
    - {name: b, type: sqlite, conf: {path: b.db}}
"#;

const VIEWS: &str = r#"
name: users
entities: [{name: user, join_keys: [user_id], dtype: int64}]
schema: [{name: age, dtype: int64}, {name: tags, dtype: array<string>}, {name: score, dtype: float32}, {name: blob, dtype: bytes}]
tags: {team: a}
---
name: orders
entities: [{name: user, join_keys: [user_id], dtype: int64}, {name: shop, join_keys: [shop_id], dtype: string}]
schema: [{name: total, dtype: float64}]
tags: {team: b}
---
name: recent
entities: [{name: user, join_keys: [user_id], dtype: int64}]
schema: [{name: clicks, dtype: int64}]
ttl: 1h
tags: {team: b}
---
name: stats
schema: [{name: active, dtype: int64}]
tags: {team: a}
---
name: legacy
entities: [{name: user_s, join_keys: [user_id], dtype: string}]
schema: [{name: note, dtype: string}]
tags: {team: b}
"#;

/// A JSON entity value as the gRPC client would send it.
fn proto_value(j: &Json) -> Value {
    let val = match j {
        Json::Number(n) => Val::Int64Val(n.as_i64().unwrap()),
        Json::String(s) => Val::StringVal(s.clone()),
        other => panic!("no proto for {other}"),
    };
    Value { val: Some(val) }
}

/// The gRPC answer in the HTTP answer's JSON shape.
fn as_json(resp: &api::proto::feast::serving::GetOnlineFeaturesResponse) -> Json {
    let names = &resp
        .metadata
        .as_ref()
        .unwrap()
        .feature_names
        .as_ref()
        .unwrap()
        .val;
    let results: Vec<Json> = resp
        .results
        .iter()
        .map(|fv| {
            json!({
                "values": fv.values.iter().map(value_to_json).collect::<Vec<_>>(),
                "statuses": fv.statuses.iter().map(|s| {
                    FieldStatus::try_from(*s).unwrap().as_str_name()
                }).collect::<Vec<_>>(),
                "event_timestamps": fv.event_timestamps.iter().map(|t| {
                    format_timestamp(t.seconds, u32::try_from(t.nanos).unwrap())
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"results": results, "metadata": {"feature_names": names}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_grpc_answer_alike() {
    let p = common::start(STORE, VIEWS, Limits::default()).await;
    let (base, state) = (p.base.clone(), Arc::clone(&p.state));
    let http = reqwest::Client::new();
    let grpc = Serving::new(state);
    let post = |path: &'static str, body: Json| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .post(format!("{base}{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Json>().await.unwrap_or(Json::Null),
            )
        }
    };
    let now = chrono::Utc::now().timestamp();
    for (view, df) in [
        (
            "users",
            json!({"user_id": [1, 2, 3], "age": [30, null, -4], "tags": [["a", "é"], [], null],
                   "score": [0.1, 1.5, null], "blob": ["AAH/", "", null],
                   "event_timestamp": ["2024-05-01T12:34:56.789123Z", "2024-05-01T12:34:57Z", 1714566900]}),
        ),
        (
            "orders",
            json!({"user_id": [1, 2], "shop_id": ["s1", "s2"], "total": [9.5, 1e-7],
                   "event_timestamp": ["2024-05-02", "2024-05-02T00:00:00.5Z"]}),
        ),
        (
            "recent",
            json!({"user_id": [1, 2], "clicks": [5, 6], "event_timestamp": [now - 10, now - 7200]}),
        ),
        (
            "stats",
            json!({"active": [7], "event_timestamp": [now - 5]}),
        ),
    ] {
        let (s, body) = post(
            "/write-to-online-store",
            json!({"feature_view_name": view, "df": df}),
        )
        .await;
        assert_eq!(s, 200, "{view}: {body}");
    }

    let cases: Vec<(Vec<&str>, Json, bool)> = vec![
        (vec!["users:age"], json!({"user_id": [1]}), false),
        (
            vec!["users:age", "users:tags", "users:score", "users:blob"],
            json!({"user_id": [3, 1, 2, 99]}),
            false,
        ),
        (
            vec!["orders:total", "users:age", "users:blob"],
            json!({"user_id": [1, 2, 1], "shop_id": ["s1", "s2", "zz"]}),
            true,
        ),
        // ttl at retrieval: user 2's click is older than the view's hour.
        (vec!["recent:clicks"], json!({"user_id": [1, 2, 5]}), false),
        (
            vec!["stats:active", "users:score"],
            json!({"user_id": [2, 1]}),
            true,
        ),
    ];
    let mut compared = 0;
    for (features, entities, full) in cases {
        let (s, http_body) = post(
            "/get-online-features",
            json!({"features": features, "entities": entities, "full_feature_names": full}),
        )
        .await;
        assert_eq!(s, 200, "{http_body}");
        let req = GetOnlineFeaturesRequest {
            kind: Some(Kind::Features(FeatureList {
                val: features.iter().map(|f| f.to_string()).collect(),
            })),
            entities: entities
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let val = v.as_array().unwrap().iter().map(proto_value).collect();
                    (k.clone(), RepeatedValue { val })
                })
                .collect::<HashMap<_, _>>(),
            full_feature_names: full,
            ..Default::default()
        };
        let resp = grpc
            .get_online_features(tonic::Request::new(req))
            .await
            .unwrap()
            .into_inner();
        assert!(resp.status, "gRPC status false for {features:?}");
        // Join keys come back in request order over HTTP and in the map's
        // order over gRPC: compare columns by name.
        let by_name = |j: &Json| -> HashMap<String, Json> {
            let names = j["metadata"]["feature_names"].as_array().unwrap();
            names
                .iter()
                .zip(j["results"].as_array().unwrap())
                .map(|(n, r)| (n.as_str().unwrap().to_string(), r.clone()))
                .collect()
        };
        let (h, g) = (by_name(&http_body), by_name(&as_json(&resp)));
        assert_eq!(h, g, "{features:?} {entities}");
        // Feature columns keep request order both ways.
        let tail = |j: &Json| {
            let n = j["metadata"]["feature_names"].as_array().unwrap().clone();
            n[n.len() - features.len()..].to_vec()
        };
        assert_eq!(tail(&http_body), tail(&as_json(&resp)));
        compared += h.len();
    }
    assert!(compared >= 15, "only {compared} columns compared");

    // Two views that type one join key differently (int64 and string):
    // each reads its own key, from one request (HTTP; a gRPC client sends
    // one typed value per key).
    let (s, body) = post(
        "/write-to-online-store",
        json!({"feature_view_name": "legacy", "df": {"user_id": ["1"], "note": ["n1"],
               "event_timestamp": [now - 5]}}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = post(
        "/get-online-features",
        json!({"features": ["users:age", "legacy:note"], "entities": {"user_id": [1]}}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["results"][1]["values"], json!([30]), "{body}");
    assert_eq!(body["results"][2]["values"], json!(["n1"]), "{body}");

    // Refusals agree too: an unknown view is 404 / NOT_FOUND, a bad
    // reference 422 / INVALID_ARGUMENT.
    for (features, http_status, code) in [
        (vec!["nope:x"], 404, tonic::Code::NotFound),
        (vec!["users"], 422, tonic::Code::InvalidArgument),
    ] {
        let (s, _) = post(
            "/get-online-features",
            json!({"features": features, "entities": {"user_id": [1]}}),
        )
        .await;
        assert_eq!(s, http_status, "{features:?}");
        let req = GetOnlineFeaturesRequest {
            kind: Some(Kind::Features(FeatureList {
                val: features.iter().map(|f| f.to_string()).collect(),
            })),
            entities: [(
                "user_id".to_string(),
                RepeatedValue {
                    val: vec![proto_value(&json!(1))],
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let err = grpc
            .get_online_features(tonic::Request::new(req))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{features:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_reports_serving_and_unknown_services() {
    use futures::StreamExt;
    use proxy::grpc::Health;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_server::Health as _;

    let p = common::start(STORE, VIEWS, Limits::default()).await;
    let health = Health::new(Arc::clone(&p.state));
    let ask = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    for service in ["", "feast.serving.ServingService"] {
        let status = health
            .check(tonic::Request::new(ask(service)))
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "`{service}`");
    }
    let unknown = health
        .check(tonic::Request::new(ask(
            "grpc.reflection.v1.ServerReflection",
        )))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    // Watch sends the current status at once; an unknown service is
    // SERVICE_UNKNOWN on the stream (not an error), per the protocol.
    let mut watch = health
        .watch(tonic::Request::new(ask("")))
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let mut unknown = health
        .watch(tonic::Request::new(ask("nope")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unknown.next().await.unwrap().unwrap().status,
        ServingStatus::ServiceUnknown as i32
    );
    // Watchers are bounded: the 65th open stream is refused.
    let mut open = Vec::new();
    let refused = loop {
        match health.watch(tonic::Request::new(ask(""))).await {
            Ok(s) => open.push(s),
            Err(e) => break e,
        }
        assert!(open.len() <= 64, "more than 64 health watchers accepted");
    };
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(open.len(), 62, "64 minus the two streams still open above");
    // Closing a stream frees its place.
    drop(open.pop());
    drop(watch);
    assert!(health.watch(tonic::Request::new(ask(""))).await.is_ok());
}
