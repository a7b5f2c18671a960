//! `hos-proxy`: serves Feast's feature-server API over routed backends.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use api::routing::RoutingTable;
use clap::{Args, Parser, Subcommand};
use proxy::auth::Authenticator;
use proxy::config::ConfigSource;
use proxy::configmap::ConfigMapSource;
use proxy::features::Limits;
use proxy::guard::GuardConfig;
use proxy::listener::ConnLimits;
use proxy::server::{AppState, TlsFiles, admin_router, router, tls_config};
use proxy::state::{
    Shared, Snapshot, build_snapshot, provision, reload, spawn_reloader, spawn_sweeper,
};

#[derive(Parser)]
#[command(
    name = "hos-proxy",
    version,
    about = "Feast online feature server routing each feature view to its own backend"
)]
struct Cli {
    /// Log format: `text` or `json`.
    #[arg(long, env = "HOS_LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Feast's HTTP feature-server API.
    Serve(Box<ServeArgs>),
    /// Show what `apply` would change (tables to create or drop, routes that
    /// change), without changing anything.
    Plan(PlanArgs),
    /// Create every feature view's tables in the backend it routes to (with
    /// --prune, also drop those of views removed or moved since the last
    /// apply), record the applied routes, then exit.
    Apply(ApplyArgs),
    /// Drop the storage of the named feature views (all views if none are
    /// named) in the backends they route to, then exit. Data is lost.
    Teardown(TeardownArgs),
    /// Print the routing table the configuration produces (the document the
    /// operator stores in a ConfigMap), then exit.
    RoutingTable(SourceArgs),
}

#[derive(Args, Clone)]
#[command(group(clap::ArgGroup::new("config").required(true).args(["repo", "routing_table", "configmap"])))]
struct SourceArgs {
    /// Feast repo directory: `feature_store.yaml` and the registry it names
    /// (relative SQLite paths resolve here).
    #[arg(long, env = "HOS_REPO")]
    repo: Option<PathBuf>,
    /// The repo's config file, if not `<repo>/feature_store.yaml`.
    #[arg(long, env = "HOS_FEATURE_STORE_YAML", requires = "repo")]
    feature_store_yaml: Option<PathBuf>,
    /// FeatureView YAML files or directories of them (repeatable, or
    /// comma-separated in the env var); they override registry views of the same name.
    #[arg(
        long = "feature-views",
        env = "HOS_FEATURE_VIEWS",
        value_delimiter = ',',
        requires = "repo"
    )]
    feature_views: Vec<PathBuf>,
    /// A routing-table document to serve instead of a repo (e.g. a mounted
    /// ConfigMap key); watched and reloaded on change.
    #[arg(long, env = "HOS_ROUTING_TABLE")]
    routing_table: Option<PathBuf>,
    /// `NAMESPACE/NAME` of a routing ConfigMap to watch through the
    /// Kubernetes API (in-cluster or $KUBECONFIG credentials); `serve` only.
    #[arg(long, env = "HOS_CONFIGMAP")]
    configmap: Option<String>,
    /// ConfigMap key holding the routing table.
    #[arg(
        long,
        env = "HOS_CONFIGMAP_KEY",
        default_value = "routing.yaml",
        requires = "configmap"
    )]
    configmap_key: String,
    /// Data directory of a routing table (--routing-table or --configmap):
    /// its relative SQLite paths resolve here, and every SQLite file it
    /// names must stay under it (`..`, absolute paths and symbolic links
    /// leading out are refused). Default: the routing table's directory, or
    /// the working directory with --configmap. A --repo keeps Feast's
    /// semantics. `--base-dir`/HOS_BASE_DIR: former names.
    #[arg(long = "data-dir", visible_alias = "base-dir", env = "HOS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Directory where backend Secrets are mounted: credential files named
    /// `<secret>/<key>` in the routing table are read under it, and a
    /// routing table's `{file: ...}` references may not leave it (nor use
    /// `{env: ...}`).
    #[arg(long, env = "HOS_SECRETS_DIR", default_value = "/etc/hos/secrets")]
    secrets_dir: PathBuf,
    /// Refresh period of a registry that is not a local file (s3://, gs://,
    /// SQL, a registry server), overriding the registry's
    /// `cache_ttl_seconds` (Feast's default 600); 0 reads it once.
    #[arg(long, env = "HOS_REGISTRY_TTL_SECONDS")]
    registry_ttl_seconds: Option<f64>,
    /// File holding a bearer token sent to a Feast registry server
    /// (`registry_type: remote`), read before each call (e.g. a projected
    /// ServiceAccount token for a server with Kubernetes auth).
    #[arg(long, env = "HOS_REGISTRY_TOKEN_FILE")]
    registry_token_file: Option<PathBuf>,
    /// Largest registry read, in bytes; a larger one is refused before it
    /// is decoded.
    #[arg(long, env = "HOS_REGISTRY_MAX_BYTES", default_value_t = proxy::registry::DEFAULT_MAX_BYTES)]
    registry_max_bytes: usize,
}

impl SourceArgs {
    /// The configuration source, with its registry read once when that is
    /// not a local file (a registry that cannot be read is an error here).
    async fn source_with_registry(
        &self,
        metrics: &proxy::metrics::Metrics,
    ) -> anyhow::Result<ConfigSource> {
        let source = self.source()?;
        let Some(config) = source.repo_config().map_err(|e| anyhow::anyhow!("{e}"))? else {
            return Ok(source);
        };
        let (Some(registry), Some(dir)) = (&config.registry, &self.repo) else {
            return Ok(source);
        };
        let options = proxy::registry::FeedOptions {
            ttl: self
                .registry_ttl_seconds
                .map(|s| Duration::from_secs_f64(s.max(0.0))),
            token_file: self.registry_token_file.clone(),
            max_bytes: self.registry_max_bytes,
        };
        let Some(feed) =
            proxy::registry::RegistryFeed::new(registry, &config.project, dir, &options)
        else {
            return Ok(source);
        };
        feed.refresh(metrics)
            .await
            .with_context(|| format!("cannot read the Feast registry {}", feed.location()))?;
        Ok(source.with_registry_feed(feed))
    }

    /// `--data-dir` (or `--base-dir`), else HOS_DATA_DIR, else the former
    /// HOS_BASE_DIR.
    fn data_dir(&self) -> Option<PathBuf> {
        self.data_dir
            .clone()
            .or_else(|| std::env::var_os("HOS_BASE_DIR").map(PathBuf::from))
            .filter(|d| !d.as_os_str().is_empty())
    }

    fn source(&self) -> anyhow::Result<ConfigSource> {
        match (&self.repo, &self.routing_table) {
            (Some(dir), None) => Ok(ConfigSource::repo(
                dir.clone(),
                self.feature_store_yaml.clone(),
                self.feature_views.clone(),
            )),
            (None, Some(path)) => Ok(ConfigSource::RoutingTableFile {
                path: path.clone(),
                data_dir: self.data_dir(),
            }),
            _ => anyhow::bail!(
                "give exactly one of --repo and --routing-table (--configmap works with `serve` only)"
            ),
        }
    }
}

#[derive(Args)]
struct ApplyArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Also drop the storage of views that left the configuration or moved
    /// to another backend since the last apply (data is lost).
    #[arg(long)]
    prune: bool,
    /// Where the applied routing table is recorded (default:
    /// `<repo>/.hos-applied.yaml`, or `<routing table>.applied`).
    #[arg(long)]
    state: Option<PathBuf>,
}

impl ApplyArgs {
    fn state_file(&self) -> anyhow::Result<PathBuf> {
        if let Some(s) = &self.state {
            return Ok(s.clone());
        }
        match (&self.source.repo, &self.source.routing_table) {
            (Some(dir), _) => Ok(dir.join(".hos-applied.yaml")),
            (None, Some(f)) => {
                let mut name = f.as_os_str().to_owned();
                name.push(".applied");
                Ok(PathBuf::from(name))
            }
            _ => anyhow::bail!("give --repo or --routing-table"),
        }
    }
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    apply: ApplyArgs,
    /// Output format: `text` or `json`.
    #[arg(long, default_value = "text")]
    output: String,
    /// Exit with status 2 when the plan has changes (0: none, 1: error).
    #[arg(long)]
    exit_code: bool,
}

#[derive(Args)]
struct TeardownArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Feature view to tear down (repeatable); all views when omitted.
    #[arg(long = "view")]
    views: Vec<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Address to listen on (Feast's feature server port by default).
    #[arg(long, env = "HOS_LISTEN", default_value = "127.0.0.1:6566")]
    listen: SocketAddr,
    /// Create missing tables for every routed view at start and on each reload.
    #[arg(long, env = "HOS_APPLY")]
    apply: bool,
    /// Address of the admin listener: `/health`, `/ready` with per-backend
    /// details and `/metrics`, without authentication. Bind it where only
    /// the kubelet and Prometheus reach it. With --auth-config and without
    /// it, the client listener's `/ready` answers only `ready` and `routing_digest`
    /// and its `/metrics` needs a bearer token.
    #[arg(long, env = "HOS_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Largest accepted request body, in bytes (larger: 413). A declared
    /// Content-Length over it is refused before the body is read; a chunked
    /// body is cut at it. Also the largest gRPC message.
    #[arg(long, env = "HOS_MAX_BODY_BYTES", default_value_t = proxy::features::Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Most cells (entity rows x feature columns, feature services
    /// expanded) one request may read or write (more: 413). Bounds the
    /// response size too.
    #[arg(long, env = "HOS_MAX_CELLS", default_value_t = proxy::features::Limits::default().max_cells)]
    max_cells: usize,
    /// How far past this proxy's clock a written event (or created) time
    /// may be, in seconds (later: 422 naming the row and column). Event
    /// times must also lie in 1970-01-01T00:00:00Z..=9999-12-31T23:59:59Z.
    #[arg(long, env = "HOS_MAX_EVENT_TIME_SKEW_SECONDS", default_value_t = proxy::features::Limits::default().max_event_time_skew_seconds)]
    max_event_time_skew_seconds: u64,
    /// Most feature requests in flight in the whole proxy (HTTP and gRPC);
    /// more are refused at once with 503 and `Retry-After` instead of queueing.
    #[arg(long, env = "HOS_MAX_IN_FLIGHT", default_value_t = proxy::limits::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Most feature requests in flight per principal (per client address
    /// without --auth-config); more get 429 and `Retry-After`, so one team
    /// cannot take every slot.
    #[arg(long, env = "HOS_MAX_IN_FLIGHT_PER_PRINCIPAL", default_value_t = proxy::limits::DEFAULT_MAX_IN_FLIGHT_PER_PRINCIPAL)]
    max_in_flight_per_principal: usize,
    /// Milliseconds a feature request may take, body upload included (more: 504).
    #[arg(long, env = "HOS_REQUEST_TIMEOUT_MS", default_value_t = proxy::limits::DEFAULT_REQUEST_TIMEOUT.as_millis() as u64)]
    request_timeout_ms: u64,
    /// Milliseconds a client has to send a request's headers (and to finish
    /// the TLS handshake); slower connections are closed.
    #[arg(long, env = "HOS_HEADER_READ_TIMEOUT_MS", default_value_t = proxy::listener::DEFAULT_HEADER_READ_TIMEOUT.as_millis() as u64)]
    header_read_timeout_ms: u64,
    /// Seconds a connection may stay open with no request in flight and no
    /// bytes moving (keep-alive and HTTP/2 alike) before it is closed.
    #[arg(long, env = "HOS_IDLE_TIMEOUT_SECONDS", default_value_t = proxy::listener::DEFAULT_IDLE_TIMEOUT.as_secs_f64())]
    idle_timeout_seconds: f64,
    /// Most client connections open at once per listener; more are closed
    /// at accept.
    #[arg(long, env = "HOS_MAX_CONNECTIONS", default_value_t = proxy::listener::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Most concurrent streams on one HTTP/2 (gRPC) connection.
    #[arg(long, env = "HOS_HTTP2_MAX_STREAMS", default_value_t = proxy::listener::DEFAULT_HTTP2_MAX_STREAMS)]
    http2_max_streams: u32,
    /// Milliseconds one backend call may take (a read's retry included)
    /// before its views fail (INVALID columns, or 503 when nothing else answers).
    #[arg(long, env = "HOS_BACKEND_TIMEOUT_MS", default_value_t = 5000)]
    backend_timeout_ms: u64,
    /// Most calls in flight to one backend; more wait for a slot within the timeout.
    #[arg(long, env = "HOS_BACKEND_MAX_IN_FLIGHT", default_value_t = 256)]
    backend_max_in_flight: usize,
    /// Consecutive failed calls that open a backend's circuit (0: no breaker).
    #[arg(long, env = "HOS_BREAKER_FAILURES", default_value_t = 5)]
    breaker_failures: u32,
    /// Milliseconds an open circuit fails calls at once before one probe call.
    #[arg(long, env = "HOS_BREAKER_COOLDOWN_MS", default_value_t = 2000)]
    breaker_cooldown_ms: u64,
    /// Retries of failed reads allowed per read (the retry budget's ratio; 0: no retries).
    #[arg(long, env = "HOS_RETRY_RATIO", default_value_t = 0.1)]
    retry_ratio: f64,
    /// Most entity rows per request (more: 413).
    #[arg(long, env = "HOS_MAX_ENTITY_ROWS", default_value_t = 10_000)]
    max_entity_rows: usize,
    /// Most feature references per request (more: 413).
    #[arg(long, env = "HOS_MAX_FEATURES", default_value_t = 1_000)]
    max_features: usize,
    /// Longest entity key value (string or bytes) accepted, in bytes (longer: 413).
    #[arg(long, env = "HOS_MAX_KEY_BYTES", default_value_t = 4_096)]
    max_key_bytes: usize,
    /// Seconds between checks of the configuration files, besides file-change events.
    #[arg(long, env = "HOS_POLL_SECONDS", default_value_t = 2.0)]
    poll_seconds: f64,
    /// Also serve Feast's gRPC ServingService (GetOnlineFeatures) on this
    /// address (Feast's Go/Java servers use 6566 for it).
    #[arg(long, env = "HOS_GRPC_LISTEN")]
    grpc_listen: Option<SocketAddr>,
    /// PEM certificate chain: serve HTTP and gRPC over TLS (rustls). The
    /// file pair is re-read when it changes (e.g. cert-manager renewal).
    #[arg(long, env = "HOS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "HOS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds between checks of the TLS files for a new certificate.
    #[arg(long, env = "HOS_TLS_CHECK_SECONDS", default_value_t = 5.0)]
    tls_check_seconds: f64,
    /// Principals file (YAML, mount it from a Secret): bearer tokens and the
    /// projects, teams and access each may use. Without it, no authentication.
    #[arg(long, env = "HOS_AUTH_CONFIG")]
    auth_config: Option<PathBuf>,
    /// Verify bearer tokens not listed in --auth-config with a Kubernetes
    /// TokenReview (in-cluster or $KUBECONFIG credentials); principals name
    /// the reviewed users or groups.
    #[arg(long, env = "HOS_AUTH_TOKEN_REVIEW", requires = "auth_config")]
    auth_token_review: bool,
    /// Audiences a reviewed token must be valid for (repeatable, or
    /// comma-separated in the env var); none: the API server's own.
    #[arg(
        long = "auth-audience",
        env = "HOS_AUTH_AUDIENCES",
        value_delimiter = ','
    )]
    auth_audiences: Vec<String>,
    /// Seconds a TokenReview answer (valid or not) is reused.
    #[arg(long, env = "HOS_AUTH_CACHE_SECONDS", default_value_t = proxy::auth::DEFAULT_REVIEW_TTL.as_secs_f64())]
    auth_cache_seconds: f64,
    /// Failed authentications one client address may make per minute;
    /// after that it gets 429 without its token being checked (0: no bound).
    #[arg(long, env = "HOS_AUTH_FAILURES_PER_MINUTE", default_value_t = proxy::limits::DEFAULT_AUTH_FAILURES_PER_MINUTE)]
    auth_failures_per_minute: u32,
    /// Seconds between sweeps deleting expired rows from SQLite backends that
    /// set `key_ttl_seconds` (other stores expire data themselves).
    #[arg(long, env = "HOS_SWEEP_SECONDS", default_value_t = 60.0)]
    sweep_seconds: f64,
    /// Seconds to let in-flight requests finish on SIGTERM/SIGINT.
    #[arg(long, env = "HOS_SHUTDOWN_GRACE_SECONDS", default_value_t = 10.0)]
    shutdown_grace_seconds: f64,
    /// Feature views named in the per-view metrics (`hos_proxy_view_*`):
    /// the first N views served get a `view` label of their own, later ones
    /// are counted as `view="_other"` (project and backend kept); 0 turns
    /// per-view metrics off.
    #[arg(long, env = "HOS_VIEW_METRICS_LIMIT", default_value_t = proxy::view_metrics::DEFAULT_VIEW_METRICS_LIMIT)]
    view_metrics_limit: usize,
    /// Access log, one line per feature request (target `hos_proxy::access`):
    /// `off`, `errors` (failed requests only) or `all` (failed requests and
    /// 1 in --access-log-sample others).
    #[arg(long, env = "HOS_ACCESS_LOG", default_value = "all")]
    access_log: proxy::access::AccessLogMode,
    /// With --access-log all, 1 in N successful requests is logged (1: every
    /// request); failed requests always are.
    #[arg(long, env = "HOS_ACCESS_LOG_SAMPLE", default_value_t = proxy::access::DEFAULT_SAMPLE)]
    access_log_sample: u64,
    /// Most access-log lines of failed requests per second (0: no bound);
    /// the next line written counts those dropped (`dropped_failures`).
    #[arg(long, env = "HOS_ACCESS_LOG_MAX_FAILURES_PER_SECOND", default_value_t = proxy::access::DEFAULT_MAX_FAILURES_PER_SECOND)]
    access_log_max_failures_per_second: u64,
    /// OTLP/gRPC endpoint traces are exported to (e.g.
    /// `http://otel-collector:4317`); unset: no traces. Each feature request
    /// is a span (continuing the client's W3C `traceparent`), with a child
    /// span per backend call.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Threads of the async runtime that serve requests (1-1024). Unset:
    /// tokio's default, `TOKIO_WORKER_THREADS` or the CPUs the process may
    /// use (a cgroup CPU limit counts). SQLite readers and the blocking
    /// pool are threads of their own beside these.
    #[arg(long, env = "HOS_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    /// `service.name` of the exported spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "hos-proxy")]
    otlp_service_name: String,
    /// Share (0 to 1) of requests traced when the client sent no sampled
    /// `traceparent`; a client's sampling decision is always followed.
    #[arg(long, env = "HOS_OTLP_SAMPLE_RATIO", default_value_t = proxy::trace::DEFAULT_SAMPLE_RATIO)]
    otlp_sample_ratio: f64,
}

impl ServeArgs {
    fn otlp(&self) -> Option<proxy::trace::TraceConfig> {
        let endpoint = self.otlp_endpoint.as_ref().filter(|e| !e.is_empty())?;
        Some(proxy::trace::TraceConfig {
            endpoint: endpoint.clone(),
            service_name: self.otlp_service_name.clone(),
            sample_ratio: self.otlp_sample_ratio,
        })
    }
}

/// Installs the log formatter and, when `otlp` is given, the exporter of
/// traces (inside the runtime: its gRPC channel runs there).
fn init_logging(
    format: &str,
    otlp: Option<&proxy::trace::TraceConfig>,
) -> Result<Option<proxy::trace::Tracing>, proxy::trace::TraceError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Trace spans are for the exporter; log lines keep their `request` span.
    let filter = match format!("{}=off", proxy::trace::TARGET).parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt = if format == "json" {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let registry = tracing_subscriber::registry().with(fmt);
    match otlp {
        None => {
            registry.init();
            Ok(None)
        }
        Some(config) => {
            let (tracing, layer) = proxy::trace::Tracing::start(config)?;
            registry.with(layer).init();
            Ok(Some(tracing))
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let guard = GuardConfig {
        timeout: Duration::from_millis(args.backend_timeout_ms.max(1)),
        max_in_flight: args.backend_max_in_flight.max(1),
        breaker_failures: args.breaker_failures,
        breaker_cooldown: Duration::from_millis(args.breaker_cooldown_ms),
        retry_ratio: args.retry_ratio.max(0.0),
        retry_floor_per_sec: if args.retry_ratio > 0.0 { 5.0 } else { 0.0 },
    };
    let shared = Arc::new(
        Shared::new(args.source.secrets_dir.clone())
            .with_guard(guard)
            .with_apply(args.apply)
            .with_view_metrics_limit(args.view_metrics_limit),
    );
    if let Some(spec) = &args.source.configmap {
        // Through the API: serve at once, ready when the first version loads.
        let source =
            ConfigMapSource::parse(spec, &args.source.configmap_key, args.source.data_dir())?;
        let client = kube::Client::try_default()
            .await
            .context("cannot reach the Kubernetes API for --configmap")?;
        proxy::configmap::spawn(Arc::clone(&shared), client, source, args.apply);
    } else {
        let source = args.source.source_with_registry(&shared.metrics).await?;
        if let Some(feed) = source.registry_feed() {
            let _ = shared.registry.set(Arc::clone(feed));
            proxy::registry::spawn_refresh(Arc::clone(feed), Arc::clone(&shared));
        }
        // A bad configuration at start is fatal; later ones are rejected and logged.
        reload(&shared, &source, args.apply)
            .await
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        spawn_reloader(
            Arc::clone(&shared),
            source,
            args.apply,
            Duration::from_secs_f64(args.poll_seconds.max(0.05)),
        );
    }
    spawn_sweeper(
        Arc::clone(&shared),
        Duration::from_secs_f64(args.sweep_seconds.max(0.05)),
    );
    let auth = match &args.auth_config {
        None => None,
        Some(path) => {
            let review = if args.auth_token_review {
                Some(proxy::auth::TokenReviewer {
                    client: kube::Client::try_default()
                        .await
                        .context("cannot reach the Kubernetes API for --auth-token-review")?,
                    audiences: args.auth_audiences.clone(),
                    cache_ttl: Duration::from_secs_f64(args.auth_cache_seconds.max(0.0)),
                })
            } else {
                None
            };
            let a = Arc::new(Authenticator::new(path.clone(), review)?);
            a.spawn_reloader(Duration::from_secs_f64(args.poll_seconds.max(0.05)));
            Some(a)
        }
    };
    let state = Arc::new(AppState {
        shared,
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_entity_rows: args.max_entity_rows,
            max_features: args.max_features,
            max_key_bytes: args.max_key_bytes,
            max_cells: args.max_cells,
            max_event_time_skew_seconds: args.max_event_time_skew_seconds,
        },
        auth,
        admission: Arc::new(proxy::limits::Admission::new(
            args.max_in_flight,
            args.max_in_flight_per_principal,
        )),
        request_timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
        auth_failures: proxy::limits::FailureLimiter::new(args.auth_failures_per_minute),
        access_log: proxy::access::AccessLog::new(args.access_log, args.access_log_sample)
            .max_failures_per_second(args.access_log_max_failures_per_second),
    });
    let conn_limits = ConnLimits {
        max_connections: args.max_connections.max(1),
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms.max(1)),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout_seconds.max(0.05)),
        http2_max_streams: args.http2_max_streams.max(1),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                check_every: Duration::from_secs_f64(args.tls_check_seconds.max(0.05)),
            };
            Some(
                tls_config(&files)
                    .await
                    .with_context(|| format!("cannot load TLS files {}", cert.display()))?,
            )
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let bind = |addr: SocketAddr| {
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))
    };
    let http = bind(args.listen)?;
    tracing::info!(addr = %args.listen, scheme, "serving Feast feature-server API");
    servers.spawn(proxy::listener::serve(
        http,
        router(Arc::clone(&state)),
        tls.clone(),
        conn_limits,
        Arc::clone(&state),
        stop_rx.clone(),
    ));
    if let Some(addr) = args.grpc_listen {
        let grpc = bind(addr)?;
        tracing::info!(addr = %addr, tls = tls.is_some(), "serving Feast gRPC ServingService");
        servers.spawn(proxy::listener::serve(
            grpc,
            proxy::grpc::router(Arc::clone(&state)),
            tls.clone(),
            conn_limits,
            Arc::clone(&state),
            stop_rx.clone(),
        ));
    }
    if let Some(addr) = args.admin_listen {
        let admin = bind(addr)?;
        tracing::info!(addr = %addr, "serving the admin endpoints (/health, /ready, /metrics)");
        servers.spawn(proxy::listener::serve(
            admin,
            admin_router(Arc::clone(&state)),
            tls,
            ConnLimits {
                max_connections: 64,
                ..conn_limits
            },
            Arc::clone(&state),
            stop_rx,
        ));
    }
    let grace = Duration::from_secs_f64(args.shutdown_grace_seconds.max(0.0));
    let finished = async {
        while let Some(res) = servers.join_next().await {
            res.context("server task failed")?
                .context("server failed")?;
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::pin!(finished);
    tokio::select! {
        res = &mut finished => return res,
        _ = shutdown_signal() => {}
    }
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(grace, finished).await {
        Ok(res) => res?,
        Err(_) => tracing::warn!("grace period over; exiting with requests in flight"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Loads the configuration for a one-shot command, every backend open (a
/// backend that cannot be opened is an error).
async fn open_all(source: &SourceArgs) -> anyhow::Result<Snapshot> {
    let metrics = proxy::metrics::Metrics::new();
    let loaded = source
        .source_with_registry(&metrics)
        .await?
        .load()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(build_snapshot(loaded, 1, None, None, &source.secrets_dir).await?)
}

/// Loads the configuration with every backend open, and the last applied
/// routes, then computes the plan.
async fn make_plan(
    args: &ApplyArgs,
) -> anyhow::Result<(Snapshot, Option<RoutingTable>, proxy::plan::Plan)> {
    let snap = open_all(&args.source).await?;
    let previous = proxy::plan::read_state(&args.state_file()?)?;
    let plan = proxy::plan::compute(&snap, previous.as_ref(), args.prune).await;
    Ok((snap, previous, plan))
}

async fn plan(args: PlanArgs) -> anyhow::Result<bool> {
    let (_, _, plan) = make_plan(&args.apply).await?;
    match args.output.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&plan)?),
        "text" => print!("{}", plan.render()),
        other => anyhow::bail!("--output must be text or json, not `{other}`"),
    }
    Ok(!plan.is_empty())
}

async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let (snap, previous, plan) = make_plan(&args).await?;
    if !plan.unreachable.is_empty() {
        anyhow::bail!(
            "backends not reachable: {}; nothing applied",
            plan.unreachable.join(", ")
        );
    }
    print!("{}", plan.render());
    for line in proxy::plan::execute_drops(&snap, previous.as_ref(), &plan).await? {
        println!("{line}");
    }
    for line in provision(&snap).await? {
        println!("created (if missing): {line}");
    }
    proxy::plan::write_state(&args.state_file()?, &snap.table_with_views())?;
    Ok(())
}

async fn teardown(args: TeardownArgs) -> anyhow::Result<()> {
    let snap = open_all(&args.source).await?;
    let project = snap.table.project.clone();
    let selected: Vec<&api::routing::RoutedView> = if args.views.is_empty() {
        snap.view_list.iter().map(AsRef::as_ref).collect()
    } else {
        args.views
            .iter()
            .map(|n| {
                snap.views
                    .get(n)
                    .map(AsRef::as_ref)
                    .ok_or_else(|| anyhow::anyhow!("no feature view `{n}` in project {project}"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    for view in &selected {
        let backend = snap.backend_of(view).ok_or_else(|| {
            anyhow::anyhow!(
                "backend `{}` of view `{}` is not open",
                view.backend,
                view.name
            )
        })?;
        let store = backend.store()?;
        // Views that stay keep storage they share with this one.
        let remaining: Vec<&api::routing::RoutedView> = snap
            .view_list
            .iter()
            .map(AsRef::as_ref)
            .filter(|o| o.backend == view.backend && !selected.iter().any(|s| s.name == o.name))
            .collect();
        store.drop_view(&project, view, &remaining).await?;
        for o in store.storage_objects(&project, view) {
            let sharing: Vec<&str> = remaining
                .iter()
                .filter(|r| {
                    store
                        .storage_objects(&project, r)
                        .iter()
                        .any(|x| x.name == o.name)
                })
                .map(|r| r.name.as_str())
                .collect();
            if sharing.is_empty() {
                println!(
                    "dropped (if present): {} {} ({}) for view {} in backend {}",
                    o.kind, o.name, o.location, view.name, backend.name
                );
            } else {
                println!(
                    "kept {} {} ({}), shared with {}; deleted the rows of view {} in backend {}",
                    o.kind,
                    o.name,
                    o.location,
                    sharing.join(", "),
                    view.name,
                    backend.name
                );
            }
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One TLS crypto provider for every client and server of the process
    // (the listener's TLS, registry reads from S3 and GCS).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Command::Serve(a) = &cli.command
        && let Some(n) = a.worker_threads
    {
        runtime.worker_threads(usize::from(n));
    }
    let runtime = match runtime.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let otlp = match &cli.command {
        Command::Serve(a) => a.otlp(),
        _ => None,
    };
    let traces = {
        let _in_runtime = runtime.enter();
        match init_logging(&cli.log_format, otlp.as_ref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve(*a).await.map(|()| 0),
            Command::Apply(a) => apply(a).await.map(|()| 0),
            Command::Plan(a) => {
                let detailed = a.exit_code;
                let changes = plan(a).await?;
                Ok(if detailed && changes { 2 } else { 0 })
            }
            Command::Teardown(a) => teardown(a).await.map(|()| 0),
            Command::RoutingTable(a) => {
                let metrics = proxy::metrics::Metrics::new();
                let loaded = a
                    .source_with_registry(&metrics)
                    .await?
                    .load()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let (table, redacted) = proxy::plan::without_secrets(&loaded.table);
                if !redacted.is_empty() {
                    eprintln!(
                        "warning: literal credentials of backend(s) {} are not printed; give them as {{file: <secret>/<key>}} references under --secrets-dir",
                        redacted.join(", ")
                    );
                }
                print!("{}", table.to_yaml());
                Ok(0)
            }
        }
    });
    if let Some(t) = traces {
        t.shutdown();
    }
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    /// Every flag of every subcommand is documented in the README.
    #[test]
    fn every_flag_is_in_the_readme() {
        use clap::CommandFactory;
        let readme = include_str!("../../README.md");
        let mut missing = Vec::new();
        let mut checked = 0;
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                checked += 1;
                // `--name` whole (not the start of a longer flag).
                let flag = format!("--{long}");
                let documented = readme.match_indices(&flag).any(|(i, _)| {
                    !readme[i + flag.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
                });
                if !documented {
                    missing.push(format!("{} --{long}", sub.get_name()));
                }
            }
        }
        assert!(checked > 30, "only {checked} flags seen");
        assert!(missing.is_empty(), "not in README.md: {missing:?}");
    }

    /// --worker-threads takes 1 to 1024; anything else is refused by name
    /// before a runtime is built (tokio panics on 0).
    #[test]
    fn worker_threads_are_bounded() {
        let threads = |args: &[&str]| -> Result<Option<u16>, String> {
            let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
            match cli.command {
                Command::Serve(a) => Ok(a.worker_threads),
                _ => Err("not serve".into()),
            }
        };
        for ok in [1u16, 2, 1024] {
            let v = ok.to_string();
            assert_eq!(
                threads(&["hos-proxy", "serve", "--repo", ".", "--worker-threads", &v]),
                Ok(Some(ok))
            );
        }
        for bad in ["0", "1025", "-1", "70000", "two", ""] {
            let arg = format!("--worker-threads={bad}");
            let e = threads(&["hos-proxy", "serve", "--repo", ".", &arg]).expect_err(bad);
            assert!(e.contains("--worker-threads"), "{bad:?}: {e}");
        }
        assert_eq!(threads(&["hos-proxy", "serve", "--repo", "."]), Ok(None));
    }
}
