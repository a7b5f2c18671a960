//! HTTP front end: Feast's feature-server endpoints plus health, readiness
//! and metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value as Json, json};

use crate::error::ApiError;
use crate::features::{Limits, get_online_features};
use crate::state::{Shared, Snapshot};
use crate::write::{push, write_to_online_store};

/// What handlers share.
pub struct AppState {
    pub shared: Arc<Shared>,
    pub limits: Limits,
}

/// The proxy's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/get-online-features", post(get_features_handler))
        .route("/write-to-online-store", post(write_handler))
        .route("/push", post(push_handler))
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/ready", get(ready_handler))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

async fn body_json(state: &AppState, req: Request<Body>) -> Result<Json, ApiError> {
    let limit = state.limits.max_body_bytes;
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit")
            {
                ApiError::too_large(format!("request body exceeds the limit of {limit} bytes"))
            } else {
                ApiError::invalid(format!("cannot read request body: {e}"))
            }
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("malformed JSON body: {e}")))
}

fn snapshot(state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
    state
        .shared
        .current
        .load_full()
        .ok_or_else(ApiError::not_ready)
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

/// Runs `f`, records the request metric, and turns errors into responses.
async fn instrumented<F>(state: &AppState, endpoint: &'static str, f: F) -> Response
where
    F: Future<Output = Result<Response, ApiError>>,
{
    let start = Instant::now();
    let resp = match f.await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(endpoint, status = e.status.as_u16(), error = %e.message, "request failed");
            } else {
                tracing::debug!(endpoint, status = e.status.as_u16(), error = %e.message, "request rejected");
            }
            e.into_response()
        }
    };
    state.shared.metrics.request(
        endpoint,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

async fn get_features_handler(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let st = Arc::clone(&state);
    instrumented(&state, "get-online-features", async move {
        let body = body_json(&st, req).await?;
        let snap = snapshot(&st)?;
        let out = get_online_features(&snap, &body, &st.limits, &st.shared.metrics).await?;
        Ok(json_response(StatusCode::OK, out.to_string()))
    })
    .await
}

async fn write_handler(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let st = Arc::clone(&state);
    instrumented(&state, "write-to-online-store", async move {
        let body = body_json(&st, req).await?;
        let snap = snapshot(&st)?;
        write_to_online_store(&snap, &body, &st.limits, &st.shared.metrics).await?;
        Ok(json_response(StatusCode::OK, "null".into()))
    })
    .await
}

async fn push_handler(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let st = Arc::clone(&state);
    instrumented(&state, "push", async move {
        let body = body_json(&st, req).await?;
        let snap = snapshot(&st)?;
        push(&snap, &body, &st.limits, &st.shared.metrics).await?;
        Ok(StatusCode::OK.into_response())
    })
    .await
}

async fn ready_handler(State(state): State<Arc<AppState>>) -> Response {
    match state.shared.current.load_full() {
        None => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reason": "no routing configuration loaded yet"}).to_string(),
        ),
        Some(snap) => {
            let mut names: Vec<&String> = snap.backends.keys().collect();
            names.sort();
            let mut up = 0;
            let backends: serde_json::Map<String, Json> = names
                .into_iter()
                .map(|n| {
                    let b = &snap.backends[n];
                    let mut detail = match b.down_reason() {
                        None => {
                            up += 1;
                            json!({"ready": true})
                        }
                        Some(reason) => json!({"ready": false, "reason": reason}),
                    };
                    if let Some(c) = b.guard.open_reason() {
                        detail["circuit"] = Json::String(c);
                    }
                    (n.clone(), detail)
                })
                .collect();
            // Ready while routes are loaded and some backend answers: a
            // backend that is down fails only its own views (detailed
            // here); with every backend down nothing can be served.
            let ready = up > 0 || snap.backends.is_empty();
            json_response(
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                json!({
                    "ready": ready,
                    "routing_version": snap.version,
                    "project": snap.table.project,
                    "feature_views": snap.views.len(),
                    "backends": backends,
                })
                .to_string(),
            )
        }
    }
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    (
        StatusCode::OK,
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.shared.metrics.encode(),
    )
        .into_response()
}
