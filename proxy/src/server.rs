//! HTTP front end: Feast's feature-server endpoints plus health, readiness
//! and metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use serde_json::{Value as Json, json};

use crate::auth::{Authenticator, Principal};
use crate::error::ApiError;
use crate::features::{Limits, get_online_features};
use crate::state::{Shared, Snapshot};
use crate::write::{push, write_to_online_store};

/// What handlers share.
pub struct AppState {
    pub shared: Arc<Shared>,
    pub limits: Limits,
    /// `None`: no authentication, every request may do everything.
    pub auth: Option<Arc<Authenticator>>,
}

/// The principal a request acts as (set by [`authenticate`]).
#[derive(Clone)]
pub struct Caller(pub Arc<Principal>);

/// Middleware: resolves the bearer token into a [`Caller`], or answers 401
/// (for gRPC, status UNAUTHENTICATED). Without auth every caller is
/// anonymous and allowed everything.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request<Body>,
    next: Next,
) -> Response {
    let principal = match &state.auth {
        None => Ok(Arc::new(Principal::anonymous())),
        Some(auth) => {
            let header = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|h| h.to_str().ok());
            auth.authenticate(header).await
        }
    };
    match principal {
        Ok(p) => {
            req.extensions_mut().insert(Caller(p));
            next.run(req).await
        }
        Err(e) => {
            let grpc = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/grpc"));
            state.shared.metrics.auth_failure(e.status.as_u16());
            tracing::debug!(status = e.status.as_u16(), error = %e.message, "request not authenticated");
            if grpc {
                crate::grpc::status_of(&e).into_http()
            } else {
                e.into_response()
            }
        }
    }
}

fn caller(req: &Request<Body>) -> Arc<Principal> {
    req.extensions()
        .get::<Caller>()
        .map(|c| Arc::clone(&c.0))
        .unwrap_or_else(|| Arc::new(Principal::anonymous()))
}

/// The proxy's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let features = Router::new()
        .route("/get-online-features", post(get_features_handler))
        .route("/write-to-online-store", post(write_handler))
        .route("/push", post(push_handler))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authenticate,
        ));
    Router::new()
        .merge(features)
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
        let who = caller(&req);
        let body = body_json(&st, req).await?;
        let snap = snapshot(&st)?;
        let out = get_online_features(&snap, &body, &st.limits, &st.shared.metrics, &who).await?;
        Ok(json_response(StatusCode::OK, out.to_string()))
    })
    .await
}

async fn write_handler(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let st = Arc::clone(&state);
    instrumented(&state, "write-to-online-store", async move {
        let who = caller(&req);
        let body = body_json(&st, req).await?;
        let snap = snapshot(&st)?;
        write_to_online_store(&snap, &body, &st.limits, &st.shared.metrics, &who).await?;
        Ok(json_response(StatusCode::OK, "null".into()))
    })
    .await
}

async fn push_handler(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let st = Arc::clone(&state);
    instrumented(&state, "push", async move {
        let who = caller(&req);
        let body = body_json(&st, req).await?;
        let snap = snapshot(&st)?;
        push(&snap, &body, &st.limits, &st.shared.metrics, &who).await?;
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

/// The gRPC ServingService's routes (its own listener, `--grpc-listen`),
/// behind the same authentication.
pub fn grpc_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route_service(
            "/feast.serving.ServingService/{*method}",
            crate::grpc::service(Arc::clone(&state)),
        )
        .route_layer(middleware::from_fn_with_state(state, authenticate))
}

/// TLS settings of the listeners: PEM files, re-read when they change.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// How often the files are checked for a new certificate.
    pub check_every: std::time::Duration,
}

/// A TLS configuration that follows its files: a replaced certificate is
/// served to new connections without a restart; a bad replacement is
/// logged and the previous certificate kept.
pub async fn tls_config(files: &TlsFiles) -> Result<RustlsConfig, std::io::Error> {
    let config = RustlsConfig::from_pem_file(&files.cert, &files.key).await?;
    let watched = config.clone();
    let files = files.clone();
    tokio::spawn(async move {
        let read = |f: &TlsFiles| (std::fs::read(&f.cert).ok(), std::fs::read(&f.key).ok());
        let mut last = read(&files);
        loop {
            tokio::time::sleep(files.check_every).await;
            let now = read(&files);
            if now == last {
                continue;
            }
            match watched.reload_from_pem_file(&files.cert, &files.key).await {
                Ok(()) => {
                    tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                    last = now;
                }
                // Half-written files fail here; the next check retries.
                Err(e) => {
                    tracing::warn!(cert = %files.cert.display(), error = %e, "TLS certificate not reloaded; the previous one keeps serving")
                }
            }
        }
    });
    Ok(config)
}

/// Serves `app` on `listener` (over TLS when `tls` is set) until `stop`
/// flips, then stops accepting and lets in-flight requests finish.
pub async fn serve_listener(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<RustlsConfig>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    match tls {
        None => {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        Some(config) => {
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                stopped.await;
                h.graceful_shutdown(None);
            });
            axum_server::from_tcp_rustls(listener, config)?
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
    }
}
