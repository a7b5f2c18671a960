//! `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;
use crate::readiness::Readiness;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("health server: {0}")]
    Serve(std::io::Error),
}

/// `/readyz`: 200 when ready, 503 before; the body is the JSON
/// [`crate::readiness::Report`] either way.
fn readyz(readiness: &Readiness) -> Response {
    let report = readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route(
            "/readyz",
            get(move || {
                let r = Arc::clone(&readiness);
                async move { readyz(&r) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = Arc::clone(&metrics);
                async move {
                    (
                        [(
                            CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                        .into_response()
                }
            }),
        )
}

/// Binds `addr`; the returned future serves until the process ends.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> Result<impl std::future::Future<Output = Result<(), HealthError>>, HealthError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HealthError::Bind { addr, source })?;
    let app = router(metrics, readiness);
    Ok(async move { axum::serve(listener, app).await.map_err(HealthError::Serve) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readiness::Role;

    async fn get_readyz(r: Arc<Readiness>) -> (StatusCode, serde_json::Value) {
        let resp = readyz(&r);
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn readyz_is_503_naming_the_caches_until_they_sync() {
        let r = Arc::new(Readiness::new(None));
        let (status, body) = get_readyz(Arc::clone(&r)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["role"], "starting");
        r.set_role(Role::Leader);
        let c = r.cache("hybridonlinestore", "secrets");
        let (status, body) = get_readyz(Arc::clone(&r)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body["notSynced"],
            serde_json::json!(["hybridonlinestore/secrets"])
        );
        c.observe::<k8s_openapi::api::core::v1::Secret>(&kube::runtime::watcher::Event::InitDone);
        let (status, body) = get_readyz(r).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["ready"], true);
    }
}
