//! Prometheus metrics (`hos_proxy_` prefix, bounded labels: endpoints are a
//! fixed set, backends come from the routing table, and views named in
//! per-view series are bounded by `--view-metrics-limit`, see
//! [`crate::view_metrics`]).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::view_metrics::{DEFAULT_VIEW_METRICS_LIMIT, ViewMetrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendErrorLabels {
    pub backend: String,
    pub op: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryFetchLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DigestLabels {
    pub digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendNameLabels {
    pub backend: String,
}

fn latency() -> Histogram {
    // 50 µs .. ~13 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 19))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    backend_seconds: Family<BackendLabels, Histogram, fn() -> Histogram>,
    backend_errors: Family<BackendErrorLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    config_reads: Counter,
    registry_fetches: Family<RegistryFetchLabels, Counter>,
    routing_version: Gauge<i64, std::sync::atomic::AtomicI64>,
    routing_info: Family<DigestLabels, Gauge>,
    serving_digest: Mutex<Option<String>>,
    feature_views: Gauge<i64, std::sync::atomic::AtomicI64>,
    views_per_backend: Family<BackendNameLabels, Gauge>,
    backend_up: Family<BackendNameLabels, Gauge>,
    backend_retries: Family<BackendLabels, Counter>,
    backend_rejected: Family<BackendErrorLabels, Counter>,
    circuit_open: Family<BackendNameLabels, Gauge>,
    auth_failures: Family<StatusLabels, Counter>,
    expired_rows: Family<BackendNameLabels, Counter>,
    shed: Family<ReasonLabels, Counter>,
    open_connections: Gauge,
    connections_refused: Counter,
    known_backends: Mutex<Vec<String>>,
    /// Per-view series (`hos_proxy_view_*`), bounded by `--view-metrics-limit`.
    pub views: ViewMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics naming up to [`DEFAULT_VIEW_METRICS_LIMIT`] views.
    pub fn new() -> Metrics {
        Self::with_view_limit(DEFAULT_VIEW_METRICS_LIMIT)
    }

    /// Metrics naming up to `view_limit` views in per-view series (0: no
    /// per-view series).
    pub fn with_view_limit(view_limit: usize) -> Metrics {
        let mut registry = Registry::with_prefix("hos_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by endpoint and status",
            requests.clone(),
        );
        let request_seconds =
            Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register(
            "request_duration_seconds",
            "HTTP request latency",
            request_seconds.clone(),
        );
        let backend_seconds =
            Family::<BackendLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register(
            "backend_call_duration_seconds",
            "Latency of calls to a backend, by operation",
            backend_seconds.clone(),
        );
        let backend_errors = Family::<BackendErrorLabels, Counter>::default();
        registry.register(
            "backend_errors",
            "Failed backend calls by reason",
            backend_errors.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reload",
            "Configuration reloads by result (success, error, panic: the build of the new routes or the watch itself panicked)",
            reloads.clone(),
        );
        let config_reads = Counter::default();
        registry.register(
            "config_reads",
            "Times the watch read the configuration files to look for a change (on a file-change event, or a periodic check that found new file metadata)",
            config_reads.clone(),
        );
        let registry_fetches = Family::<RegistryFetchLabels, Counter>::default();
        registry.register(
            "registry_fetch",
            "Reads of a Feast registry that is not a local file (kind: s3, gcs, sql-sqlite, sql-postgresql, remote), by result: changed, unchanged or error",
            registry_fetches.clone(),
        );
        let routing_version = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "routing_version",
            "Version of the routing snapshot serving requests",
            routing_version.clone(),
        );
        let routing_info = Family::<DigestLabels, Gauge>::default();
        registry.register(
            "routing_info",
            "1 for the content digest of the routing table serving requests (the same routes give the same digest in every proxy)",
            routing_info.clone(),
        );
        let feature_views = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "feature_views",
            "Feature views routed",
            feature_views.clone(),
        );
        let views_per_backend = Family::<BackendNameLabels, Gauge>::default();
        registry.register(
            "backend_feature_views",
            "Feature views routed to each backend",
            views_per_backend.clone(),
        );
        let backend_up = Family::<BackendNameLabels, Gauge>::default();
        registry.register(
            "backend_up",
            "1 when the backend is connected and healthy, else 0",
            backend_up.clone(),
        );
        let backend_retries = Family::<BackendLabels, Counter>::default();
        registry.register(
            "backend_retries",
            "Backend calls retried (idempotent reads only, within the retry budget)",
            backend_retries.clone(),
        );
        let backend_rejected = Family::<BackendErrorLabels, Counter>::default();
        registry.register(
            "backend_rejected",
            "Backend calls refused without reaching the backend (circuit_open, saturated)",
            backend_rejected.clone(),
        );
        let circuit_open = Family::<BackendNameLabels, Gauge>::default();
        registry.register(
            "backend_circuit_open",
            "1 while the backend's circuit breaker refuses calls, else 0",
            circuit_open.clone(),
        );
        let auth_failures = Family::<StatusLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests refused by authentication (401) or authorization at the door (403)",
            auth_failures.clone(),
        );
        let expired_rows = Family::<BackendNameLabels, Counter>::default();
        registry.register(
            "expired_rows",
            "Rows deleted by the expiry sweep (stores with key_ttl_seconds that do not expire by themselves)",
            expired_rows.clone(),
        );
        let shed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "requests_shed",
            "Feature requests refused by a bound: global (--max-in-flight, 503), principal (--max-in-flight-per-principal, 429), timeout (--request-timeout-ms, 504)",
            shed.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now (HTTP and gRPC listeners)",
            open_connections.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed at accept because --max-connections were open",
            connections_refused.clone(),
        );
        let views = ViewMetrics::new(&mut registry, view_limit);
        Metrics {
            views,
            shed,
            open_connections,
            connections_refused,
            expired_rows,
            auth_failures,
            backend_up,
            backend_retries,
            backend_rejected,
            circuit_open,
            registry,
            requests,
            request_seconds,
            backend_seconds,
            backend_errors,
            reloads,
            config_reads,
            registry_fetches,
            routing_version,
            routing_info,
            serving_digest: Mutex::new(None),
            feature_views,
            views_per_backend,
            known_backends: Mutex::new(Vec::new()),
        }
    }

    pub fn request(&self, endpoint: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, status })
            .inc();
        self.request_seconds
            .get_or_create(&EndpointLabels { endpoint })
            .observe(seconds);
    }

    pub fn backend_call(
        &self,
        backend: &str,
        op: &'static str,
        seconds: f64,
        error: Option<&'static str>,
    ) {
        self.backend_seconds
            .get_or_create(&BackendLabels {
                backend: backend.to_string(),
                op,
            })
            .observe(seconds);
        if let Some(reason) = error {
            self.backend_errors
                .get_or_create(&BackendErrorLabels {
                    backend: backend.to_string(),
                    op,
                    reason,
                })
                .inc();
        }
    }

    pub fn expired(&self, backend: &str, rows: u64) {
        self.expired_rows
            .get_or_create(&BackendNameLabels {
                backend: backend.to_string(),
            })
            .inc_by(rows);
    }

    pub fn shed(&self, reason: &'static str) {
        self.shed.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub fn auth_failure(&self, status: u16) {
        self.auth_failures
            .get_or_create(&StatusLabels { status })
            .inc();
    }

    /// What the backend's guard did with one call.
    pub fn backend_guarded(
        &self,
        backend: &str,
        op: &'static str,
        retries: u32,
        rejected: Option<&'static str>,
        circuit_open: bool,
    ) {
        if retries > 0 {
            self.backend_retries
                .get_or_create(&BackendLabels {
                    backend: backend.to_string(),
                    op,
                })
                .inc_by(u64::from(retries));
        }
        if let Some(reason) = rejected {
            self.backend_rejected
                .get_or_create(&BackendErrorLabels {
                    backend: backend.to_string(),
                    op,
                    reason,
                })
                .inc();
        }
        self.circuit_open
            .get_or_create(&BackendNameLabels {
                backend: backend.to_string(),
            })
            .set(i64::from(circuit_open));
    }

    pub fn backend_up(&self, backend: &str, up: bool) {
        self.backend_up
            .get_or_create(&BackendNameLabels {
                backend: backend.to_string(),
            })
            .set(i64::from(up));
    }

    pub fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn config_read(&self) {
        self.config_reads.inc();
    }

    /// One read of a Feast registry (see [`crate::registry`]).
    pub fn registry_fetch(&self, kind: &'static str, result: &'static str) {
        self.registry_fetches
            .get_or_create(&RegistryFetchLabels { kind, result })
            .inc();
    }

    /// The routing table's version, view count and views per backend
    /// (every open backend, zero included).
    pub fn set_routing(
        &self,
        version: u64,
        digest: &str,
        views: usize,
        counts: &std::collections::BTreeMap<&str, i64>,
    ) {
        self.routing_version.set(version as i64);
        // One series: the digest serving now.
        if let Ok(mut serving) = self.serving_digest.lock() {
            if let Some(old) = serving.take() {
                self.routing_info.remove(&DigestLabels { digest: old });
            }
            self.routing_info
                .get_or_create(&DigestLabels {
                    digest: digest.to_string(),
                })
                .set(1);
            *serving = Some(digest.to_string());
        }
        self.feature_views.set(views as i64);
        // Backends that left the table drop out of the metric.
        if let Ok(mut known) = self.known_backends.lock() {
            for gone in known.iter().filter(|b| !counts.contains_key(b.as_str())) {
                self.views_per_backend.remove(&BackendNameLabels {
                    backend: gone.clone(),
                });
            }
            *known = counts.keys().map(|s| s.to_string()).collect();
        }
        for (b, n) in counts {
            let n = *n;
            self.views_per_backend
                .get_or_create(&BackendNameLabels {
                    backend: b.to_string(),
                })
                .set(n);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
