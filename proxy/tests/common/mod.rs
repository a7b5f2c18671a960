//! The proxy in-process on 127.0.0.1 over a temporary Feast repo: what the
//! HTTP, HTTP-vs-gRPC and fuzz-corpus tests share.

use std::sync::Arc;

use proxy::config::ConfigSource;
use proxy::features::Limits;
use proxy::server::{AppState, router};
use proxy::state::{Shared, reload};

// Each test binary uses the fields it needs.
#[allow(dead_code)]
pub struct InProcess {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub state: Arc<AppState>,
    pub shared: Arc<Shared>,
    pub source: ConfigSource,
    /// The repo: `feature_store.yaml`, `views.yaml` and the SQLite files.
    pub dir: tempfile::TempDir,
}

/// A repo of `store` (feature_store.yaml) and `views` (FeatureView YAML
/// documents), loaded with `--apply` and served on a free port.
pub async fn start(store: &str, views: &str, limits: Limits) -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("feature_store.yaml"), store).unwrap();
    std::fs::write(dir.path().join("views.yaml"), views).unwrap();
    let source = ConfigSource::repo(
        dir.path().to_path_buf(),
        None,
        vec![dir.path().join("views.yaml")],
    );
    let shared = Arc::new(Shared::new(dir.path().join("secrets")));
    reload(&shared, &source, true).await.unwrap();
    let state = Arc::new(AppState::new(Arc::clone(&shared), limits, None));
    let app = router(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    InProcess {
        base,
        state,
        shared,
        source,
        dir,
    }
}
