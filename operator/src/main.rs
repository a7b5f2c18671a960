//! `hos-operator`: reconciles HybridOnlineStore and FeatureView resources.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use operator::context::Context;
use operator::leader::{LeaderElection, Timing};
use operator::metrics::Metrics;
use operator::readiness::{Readiness, Role};

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
    /// Seconds a leader holds the Lease without renewing it (at least 3).
    #[arg(long, env = "HOS_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// Seconds without a successful renewal after which the leader stops
    /// acting; below --lease-seconds (default: 2/3 of it).
    #[arg(long, env = "HOS_LEASE_RENEW_DEADLINE_SECONDS")]
    lease_renew_deadline_seconds: Option<f64>,
    /// Seconds between the leader's renewals and a standby's tries; below
    /// the renew deadline (default: a third of the lease, at most 2).
    #[arg(long, env = "HOS_LEASE_RETRY_SECONDS")]
    lease_retry_seconds: Option<f64>,
    /// Seconds the controllers get on SIGTERM to finish their reconciles
    /// before they are aborted and the Lease is released.
    #[arg(long, env = "HOS_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    shutdown_grace_seconds: u64,
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
    /// Namespace the operator runs in (default: $POD_NAMESPACE): proxy
    /// NetworkPolicies let its Pods reach each proxy's HTTP port, where it
    /// reads the routing digest a Pod serves (`/ready`).
    #[arg(long, env = "HOS_OPERATOR_NAMESPACE")]
    operator_namespace: Option<String>,
    /// The operator Pods' labels, `k=v,k=v`: with the namespace, the peer
    /// proxy NetworkPolicies admit to the HTTP port (empty: every Pod of
    /// the operator's namespace).
    #[arg(long, env = "HOS_OPERATOR_POD_LABELS", default_value = "")]
    operator_pod_labels: String,
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

/// Listens for SIGTERM/Ctrl-C from now on (a signal is never missed
/// between two waits); each returned future completes once one came.
fn shutdown_listener() -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    move || {
        let mut rx = rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        })
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let pod_labels = operator::plan::parse_labels(&cli.operator_pod_labels)
        .map_err(|e| anyhow::anyhow!("--operator-pod-labels: {e}"))?;
    let operator_namespace = cli
        .operator_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok());
    let operator_peer = operator::plan::operator_peer(operator_namespace.as_deref(), &pod_labels);
    let timing = Timing::new(
        cli.lease_seconds,
        cli.lease_renew_deadline_seconds,
        cli.lease_retry_seconds,
    )?;
    let shutdown = shutdown_listener();
    let client = Client::try_default()
        .await
        .context("cannot reach the Kubernetes API")?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::new(Some(Arc::clone(&metrics))));
    let health = operator::health::bind(
        cli.metrics_addr,
        Arc::clone(&metrics),
        Arc::clone(&readiness),
    )
    .await?;
    tokio::spawn(async move {
        if let Err(e) = health.await {
            tracing::error!(error = %e, "health server stopped");
        }
    });

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
    let mut election = LeaderElection::new(
        client.clone(),
        &lease_ns,
        &cli.lease_name,
        &identity,
        timing,
    );
    tracing::info!(
        identity = %identity, lease = %cli.lease_name, namespace = %lease_ns,
        lease_seconds = timing.lease.as_secs_f64(),
        renew_deadline_seconds = timing.renew_deadline.as_secs_f64(),
        retry_seconds = timing.retry_period.as_secs_f64(),
        "waiting for the leader lease"
    );
    tokio::select! {
        _ = election.acquire(&readiness) => {}
        _ = shutdown() => return Ok(()),
    }
    readiness.set_role(Role::Leader);
    metrics.set_leader(true);
    tracing::info!(identity = %identity, "leading: starting controllers");

    let reporter = Reporter {
        controller: "hos-operator".into(),
        instance: Some(identity.clone()),
    };
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            Recorder::new(client, reporter),
            Arc::clone(&metrics),
            Duration::from_secs(cli.backend_timeout_seconds),
            cli.proxy_image.clone(),
            Duration::from_secs(cli.migration_settle_seconds),
            cli.data_dir.clone(),
        )
        .with_operator_peer(operator_peer),
    );
    let grace = Duration::from_secs(cli.shutdown_grace_seconds);
    let led = operator::leading::lead(
        &mut election,
        ctx,
        cli.namespace.clone(),
        &readiness,
        shutdown(),
        grace,
    )
    .await;
    metrics.set_leader(false);
    if let Err(lost) = led {
        anyhow::bail!("lost leadership ({lost}); exiting so a restart rejoins the election");
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
