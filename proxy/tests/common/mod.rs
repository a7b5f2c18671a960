//! The proxy in-process on 127.0.0.1 over a temporary Feast repo: what the
//! HTTP, HTTP-vs-gRPC and fuzz-corpus tests share.

use std::sync::Arc;

use proxy::access::AccessLog;
use proxy::auth::Authenticator;
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
#[allow(dead_code)]
pub async fn start(store: &str, views: &str, limits: Limits) -> InProcess {
    start_with(store, views, Options::new(limits)).await
}

/// What else a test may set on the proxy it starts.
// Each test binary uses the fields it needs.
#[allow(dead_code)]
pub struct Options {
    pub limits: Limits,
    /// `--apply`: create the views' tables.
    pub apply: bool,
    /// `--view-metrics-limit`.
    pub view_metrics_limit: usize,
    /// `--access-log` and `--access-log-sample`.
    pub access_log: AccessLog,
    /// `--auth-config`.
    pub auth: Option<Arc<Authenticator>>,
}

#[allow(dead_code)]
impl Options {
    pub fn new(limits: Limits) -> Options {
        Options {
            limits,
            apply: true,
            view_metrics_limit: proxy::view_metrics::DEFAULT_VIEW_METRICS_LIMIT,
            access_log: AccessLog::default(),
            auth: None,
        }
    }
}

/// As [`start`], with `options`.
#[allow(dead_code)]
pub async fn start_with(store: &str, views: &str, options: Options) -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("feature_store.yaml"), store).unwrap();
    std::fs::write(dir.path().join("views.yaml"), views).unwrap();
    let source = ConfigSource::repo(
        dir.path().to_path_buf(),
        None,
        vec![dir.path().join("views.yaml")],
    );
    let shared = Arc::new(
        Shared::new(dir.path().join("secrets")).with_view_metrics_limit(options.view_metrics_limit),
    );
    reload(&shared, &source, options.apply).await.unwrap();
    let state = Arc::new(AppState {
        access_log: options.access_log,
        ..AppState::new(Arc::clone(&shared), options.limits, options.auth)
    });
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
