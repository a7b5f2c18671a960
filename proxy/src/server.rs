//! HTTP front end: Feast's feature-server endpoints plus health, readiness
//! and metrics.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use serde_json::{Value as Json, json};

use crate::access::{self, AccessLog};
use crate::auth::{Authenticator, Principal};
use crate::error::ApiError;
use crate::features::{Limits, get_online_features};
use crate::limits::{Admission, FailureLimiter, RETRY_AFTER_SECONDS, Tenant, too_many_failures};
use crate::state::{Shared, Snapshot};
use crate::trace;
use crate::write::{push, write_to_online_store};

/// What handlers share.
pub struct AppState {
    pub shared: Arc<Shared>,
    pub limits: Limits,
    /// `None`: no authentication, every request may do everything.
    pub auth: Option<Arc<Authenticator>>,
    /// Bounds on feature requests in flight (global and per principal).
    pub admission: Arc<Admission>,
    /// Longest a feature request may take, body upload included.
    pub request_timeout: Duration,
    /// Bound on failed authentications per client address.
    pub auth_failures: FailureLimiter,
    /// The access log (`--access-log`, `--access-log-sample`).
    pub access_log: AccessLog,
}

impl AppState {
    /// State with the default bounds (tests and embedders).
    pub fn new(shared: Arc<Shared>, limits: Limits, auth: Option<Arc<Authenticator>>) -> AppState {
        AppState {
            shared,
            limits,
            auth,
            admission: Arc::new(Admission::new(
                crate::limits::DEFAULT_MAX_IN_FLIGHT,
                crate::limits::DEFAULT_MAX_IN_FLIGHT_PER_PRINCIPAL,
            )),
            request_timeout: crate::limits::DEFAULT_REQUEST_TIMEOUT,
            auth_failures: FailureLimiter::new(crate::limits::DEFAULT_AUTH_FAILURES_PER_MINUTE),
            access_log: AccessLog::default(),
        }
    }
}

impl crate::listener::ConnEvents for AppState {
    fn opened(&self) {
        self.shared.metrics.connection_opened();
    }
    fn closed(&self) {
        self.shared.metrics.connection_closed();
    }
    fn refused(&self) {
        self.shared.metrics.connection_refused();
    }
}

/// Whether a request is gRPC (its errors are gRPC statuses, not JSON).
pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// `e` in the protocol of the request it answers.
pub fn error_response<B>(req: &Request<B>, e: ApiError) -> Response {
    access::note_status(e.status.as_u16(), Some(e.class));
    if is_grpc(req) {
        e.grpc_status().into_http()
    } else {
        e.into_response()
    }
}

fn with_retry_after(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    resp
}

/// The client address of a request, as the listener recorded it.
pub fn client_ip<B>(req: &Request<B>) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The principal a request acts as (set by [`authenticate`]).
#[derive(Clone)]
pub struct Caller(pub Arc<Principal>);

/// Middleware: resolves the bearer token into a [`Caller`], or answers 401
/// (for gRPC, status UNAUTHENTICATED). Without auth every caller is
/// anonymous and allowed everything. A client address that failed too
/// often in the last minute gets 429 before its token is looked at.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request<Body>,
    next: Next,
) -> Response {
    let principal = match &state.auth {
        None => Ok(Arc::new(Principal::anonymous())),
        Some(auth) => {
            let ip = client_ip(&req);
            if let Some(ip) = ip
                && !state.auth_failures.allowed(ip)
            {
                state.shared.metrics.auth_failure(429);
                let e = too_many_failures(state.auth_failures.per_minute());
                return with_retry_after(error_response(&req, e));
            }
            let header = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|h| h.to_str().ok());
            let result = auth.authenticate(header).await;
            if let (Err(e), Some(ip)) = (&result, ip)
                && e.status == StatusCode::UNAUTHORIZED
            {
                state.auth_failures.failed(ip);
            }
            result
        }
    };
    match principal {
        Ok(p) => {
            if state.auth.is_some() {
                access::note_principal(&p);
            }
            req.extensions_mut().insert(Caller(p));
            next.run(req).await
        }
        Err(e) => {
            state.shared.metrics.auth_failure(e.status.as_u16());
            tracing::debug!(status = e.status.as_u16(), error = %e.message, "request not authenticated");
            error_response(&req, e)
        }
    }
}

/// Who a request counts against for the per-principal bound: its principal
/// when authentication is on, else the client's address (without auth every
/// request is the same anonymous principal, and one client must not starve
/// the others).
fn tenant_of(state: &AppState, req: &Request<Body>) -> Tenant {
    if state.auth.is_some()
        && let Some(c) = req.extensions().get::<Caller>()
    {
        return Tenant::Principal(c.0.name.clone());
    }
    match client_ip(req) {
        Some(ip) => Tenant::Client(ip),
        None => Tenant::Unknown,
    }
}

/// Largest body read (and dropped) from a shed request to keep its
/// connection open.
const SHED_DRAIN_BYTES: u64 = 64 * 1024;

fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Middleware (after [`authenticate`]): admits the request under the
/// in-flight bounds, shedding with 503/429 + `Retry-After` instead of
/// queueing, then runs it under the request deadline (504).
pub async fn admit(State(state): State<Arc<AppState>>, req: Request<Body>, next: Next) -> Response {
    let admitted = match state.admission.admit(tenant_of(&state, &req)) {
        Ok(a) => a,
        Err(shed) => {
            state.shared.metrics.shed(shed.metric_label());
            tracing::debug!(reason = shed.metric_label(), error = %shed, "request shed");
            let resp = with_retry_after(error_response(&req, shed.to_api_error()));
            // HTTP/1.1 closes a connection whose request body was left
            // unread; a small body is read and dropped so a shed client
            // keeps its connection for the retry.
            if declared_length(&req).is_some_and(|n| n <= SHED_DRAIN_BYTES) {
                let _ = axum::body::to_bytes(req.into_body(), SHED_DRAIN_BYTES as usize).await;
            }
            return resp;
        }
    };
    let deadline = state.request_timeout;
    let grpc = is_grpc(&req);
    let resp = match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            state.shared.metrics.shed("timeout");
            let e = ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "RequestTimeout",
                format!(
                    "the request took longer than the proxy's limit of {} ms (--request-timeout-ms)",
                    deadline.as_millis()
                ),
            );
            access::note_status(e.status.as_u16(), Some(e.class));
            if grpc {
                e.grpc_status().into_http()
            } else {
                e.into_response()
            }
        }
    };
    drop(admitted);
    resp
}

fn caller(req: &Request<Body>) -> Arc<Principal> {
    req.extensions()
        .get::<Caller>()
        .map(|c| Arc::clone(&c.0))
        .unwrap_or_else(|| Arc::new(Principal::anonymous()))
}

/// Which listener a router serves: the one clients use, or the admin
/// listener (`--admin-listen`) for probes and Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Client,
    Admin,
}

/// The proxy's routes on the client listener. Feature endpoints go through
/// authentication, then admission and the request deadline. `/health` is
/// always open. With authentication on, `/ready` answers only
/// `{"ready": bool, "routing_digest": "<digest>"}` (the digest names no
/// backend; the operator reads it per Pod; details, which name backends
/// and their errors, are on
/// the admin listener) and `/metrics` needs a valid bearer token.
pub fn router(state: Arc<AppState>) -> Router {
    let features = Router::new()
        .route("/get-online-features", post(get_features_handler))
        .route("/write-to-online-store", post(write_handler))
        .route("/push", post(push_handler))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), admit))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authenticate,
        ));
    let metrics = Router::new().route("/metrics", get(metrics_handler));
    let metrics = if state.auth.is_some() {
        metrics.route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authenticate,
        ))
    } else {
        metrics
    };
    let detailed = state.auth.is_none();
    Router::new()
        .merge(features)
        .merge(metrics)
        .route("/health", get(|| async { StatusCode::OK }))
        .route(
            "/ready",
            get(move |s: State<Arc<AppState>>| ready_handler(s, detailed)),
        )
        .with_state(Arc::clone(&state))
        .layer(middleware::from_fn_with_state(state, request_id))
}

/// Header carrying a request's id, on the request and on its answer.
pub const REQUEST_ID: &str = "x-request-id";

/// Gives every request an id: the client's `x-request-id` when it is a
/// plain token (1 to 128 letters, digits, `-`, `_`, `.`, `:`), otherwise a
/// new one. It is returned on the answer and carried by every log line
/// the request makes (span `request`, field `request_id`). Outermost, it
/// also writes a feature request's access-log line ([`crate::access`]).
pub async fn request_id(
    State(state): State<Arc<AppState>>,
    req: Request<Body>,
    next: Next,
) -> Response {
    use tracing::Instrument;
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let span = tracing::info_span!("request", request_id = %id);
    // Feature endpoints only: probes and scrapes are not traced.
    let feature = access::endpoint_of(req.uri().path());
    let traced = match feature {
        Some(_) => trace::request_span(req.headers(), req.method().as_str(), req.uri().path(), &id),
        None => tracing::Span::none(),
    };
    let endpoint = feature.filter(|_| state.access_log.enabled());
    let run = next.run(req).instrument(span).instrument(traced.clone());
    let mut resp = match endpoint {
        None => run.await,
        Some(endpoint) => {
            let start = Instant::now();
            let (resp, note) = access::scoped(run).await;
            state.access_log.finish(
                &id,
                endpoint,
                &note,
                resp.status().as_u16(),
                start.elapsed(),
            );
            resp
        }
    };
    trace::record_status(&traced, resp.status().as_u16());
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

fn valid_request_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new id: a per-process random hash of a counter, then the counter
/// (unique within the process, not guessable across processes).
fn new_request_id() -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: std::sync::LazyLock<std::collections::hash_map::RandomState> =
        std::sync::LazyLock::new(std::collections::hash_map::RandomState::new);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}{n:08x}", SEED.hash_one(n))
}

/// The admin listener's routes: `/health`, `/ready` with details and
/// `/metrics`, without authentication. Bind it where only the kubelet and
/// Prometheus reach it (a pod port a NetworkPolicy keeps from clients).
pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(|| async { StatusCode::OK }))
        .route(
            "/ready",
            get(|s: State<Arc<AppState>>| ready_handler(s, true)),
        )
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

async fn body_json(state: &AppState, req: Request<Body>) -> Result<Json, ApiError> {
    let bytes = body_bytes(state, req).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("malformed JSON body: {e}")))
}

/// The request body, refused past `--max-body-bytes`.
async fn body_bytes(state: &AppState, req: Request<Body>) -> Result<Bytes, ApiError> {
    let limit = state.limits.max_body_bytes;
    // A declared length over the limit is refused before a byte is read;
    // a chunked body is cut when it passes the limit (`to_bytes`), so no
    // more than the limit is ever buffered.
    if let Some(declared) = declared_length(&req)
        && declared > limit as u64
    {
        return Err(ApiError::too_large(format!(
            "request body of {declared} bytes exceeds the limit of {limit} bytes (--max-body-bytes)"
        )));
    }
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            // The limit's error, however deeply the body's layers wrap it.
            let mut cause = std::error::Error::source(&e);
            let mut over_limit = false;
            while let Some(c) = cause {
                over_limit |= c.is::<http_body_util::LengthLimitError>();
                cause = c.source();
            }
            if over_limit {
                ApiError::too_large(format!(
                    "request body exceeds the limit of {limit} bytes (--max-body-bytes)"
                ))
            } else {
                ApiError::invalid(format!("cannot read request body: {e}"))
            }
        })?;
    Ok(bytes)
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
            access::note_status(e.status.as_u16(), Some(e.class));
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
        let body = body_bytes(&st, req).await?;
        let snap = snapshot(&st)?;
        let out = get_online_features(&snap, &body, &st.limits, &st.shared.metrics, &who).await?;
        Ok((StatusCode::OK, [(CONTENT_TYPE, "application/json")], out).into_response())
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

async fn ready_handler(State(state): State<Arc<AppState>>, detailed: bool) -> Response {
    match state.shared.current.load_full() {
        None => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reason": "no routing configuration loaded yet"}).to_string(),
        ),
        Some(snap) => {
            let mut names: Vec<&String> = snap.backends.keys().collect();
            names.sort();
            let backends: serde_json::Map<String, Json> = names
                .into_iter()
                .map(|n| {
                    let b = &snap.backends[n];
                    let mut detail = match b.down_reason() {
                        None => json!({"ready": true}),
                        Some(reason) => json!({"ready": false, "reason": reason}),
                    };
                    if let Some(c) = b.guard.open_reason() {
                        detail["circuit"] = Json::String(c.to_string());
                    }
                    (n.clone(), detail)
                })
                .collect();
            // Ready while routes are loaded and some backend answers
            // (each backend detailed here).
            let ready = snap.serving();
            if !detailed {
                return json_response(
                    if ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    },
                    json!({ "ready": ready, "routing_digest": snap.digest }).to_string(),
                );
            }
            let mut body = json!({
                "ready": ready,
                "routing_version": snap.version,
                "routing_digest": snap.digest,
                "project": snap.table.project,
                "feature_views": snap.views.len(),
                "backends": backends,
            });
            // A registry that cannot be read is reported; the routes read
            // from it last keep serving, so readiness does not change.
            if let Some(feed) = state.shared.registry.get()
                && let Ok(status) = serde_json::to_value(feed.status())
            {
                body["registry"] = status;
            }
            json_response(
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                body.to_string(),
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
