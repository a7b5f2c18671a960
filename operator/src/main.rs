//! `hos-operator`: reconciles HybridOnlineStore and FeatureView resources.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Parser;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use operator::context::Context;
use operator::leader::LeaderElection;
use operator::metrics::Metrics;

#[derive(Parser)]
#[command(
    name = "hos-operator",
    version,
    about = "Reconciles HybridOnlineStore and FeatureView resources"
)]
struct Cli {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "HOS_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "HOS_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Namespace of the leader-election Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "HOS_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, env = "HOS_LEASE_NAME", default_value = "hos-operator")]
    lease_name: String,
    /// Seconds a leader holds the Lease without renewing it.
    #[arg(long, env = "HOS_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// This replica's identity in the Lease (default: $POD_NAME, else host name and pid).
    #[arg(long, env = "HOS_IDENTITY")]
    identity: Option<String>,
    /// Seconds allowed to connect to and check a backend.
    #[arg(long, env = "HOS_BACKEND_TIMEOUT_SECONDS", default_value_t = 10)]
    backend_timeout_seconds: u64,
    /// Seconds a live move waits after each routing change before its next
    /// phase, so every proxy has the change (proxies watching the ConfigMap
    /// see it at once; a mounted ConfigMap takes up to the kubelet's sync
    /// period, about a minute).
    #[arg(long, env = "HOS_MIGRATION_SETTLE_SECONDS", default_value_t = 90)]
    migration_settle_seconds: u64,
    /// Image of the proxy Deployment for stores with `spec.proxy.enabled`
    /// and no `spec.proxy.image`.
    #[arg(
        long,
        env = "HOS_PROXY_IMAGE",
        default_value = "hybrid-online-store:0.1.0"
    )]
    proxy_image: String,
    /// Directory under which the operator opens SQLite backends: a store's
    /// relative `path` resolves to `<data-dir>/<namespace>/<path>`.
    #[arg(long, env = "HOS_DATA_DIR", default_value = ".")]
    data_dir: std::path::PathBuf,
    /// Log format: `text` or `json`.
    #[arg(long, env = "HOS_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn serve_health(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route("/readyz", get(|| async { StatusCode::OK }))
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
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    axum::serve(listener, app).await.context("health server")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("cannot reach the Kubernetes API")?;
    let metrics = Arc::new(Metrics::new());
    tokio::spawn(serve_health(cli.metrics_addr, Arc::clone(&metrics)));

    let identity = cli.identity.clone().unwrap_or_else(|| {
        std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
    });
    let lease_ns = cli
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".to_string());
    let election = LeaderElection::new(
        client.clone(),
        &lease_ns,
        &cli.lease_name,
        &identity,
        Duration::from_secs(cli.lease_seconds.max(3)),
    );
    tracing::info!(identity = %identity, lease = %cli.lease_name, namespace = %lease_ns, "waiting for the leader lease");
    tokio::select! {
        _ = election.acquire() => {}
        _ = shutdown_signal() => return Ok(()),
    }
    metrics.set_leader(true);
    tracing::info!(identity = %identity, "leading: starting controllers");

    let reporter = Reporter {
        controller: "hos-operator".into(),
        instance: Some(identity.clone()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Recorder::new(client, reporter),
        Arc::clone(&metrics),
        Duration::from_secs(cli.backend_timeout_seconds),
        cli.proxy_image.clone(),
        Duration::from_secs(cli.migration_settle_seconds),
        cli.data_dir.clone(),
    ));
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let stop = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    let stores = tokio::spawn(operator::store::run(
        Arc::clone(&ctx),
        cli.namespace.clone(),
        stop(&stop_tx),
    ));
    let views = tokio::spawn(operator::view::run(
        Arc::clone(&ctx),
        cli.namespace.clone(),
        stop(&stop_tx),
    ));
    let lost = tokio::select! {
        _ = election.keep() => true,
        _ = shutdown_signal() => false,
    };
    metrics.set_leader(false);
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = stores.await;
        let _ = views.await;
    })
    .await;
    if lost {
        anyhow::bail!("lost leadership; exiting so a restart rejoins the election");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
