//! OpenTelemetry traces (issue [K]): a span per request, continued from the
//! client's W3C `traceparent`, and a child span per backend call, exported
//! over OTLP/gRPC when `--otlp-endpoint` is set.
//!
//! Off by default, and then free: the spans below are only created while an
//! exporter is installed ([`enabled`]), so the request path pays nothing for
//! them otherwise. Spans go to the OpenTelemetry layer only (target
//! [`TARGET`]); the log formatter keeps its own `request` span.
//!
//! Hostile clients: a `traceparent` that is not exactly a version-00 header
//! (55 characters) is ignored and the request starts a new trace; a
//! `tracestate` longer than [`MAX_TRACESTATE`] is dropped. A client may mark
//! every request sampled; the exporter's queue is bounded (2,048 spans,
//! later spans are dropped, not buffered), so that costs CPU, never memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Target of the spans exported as traces.
pub const TARGET: &str = "hos_proxy::trace";

/// Longest `tracestate` header carried into a trace, in bytes (the W3C
/// limit is 32 members of at most 256 bytes; 512 is what the
/// specification asks propagators to keep at least).
pub const MAX_TRACESTATE: usize = 512;

/// Length of a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
const TRACEPARENT_LEN: usize = 55;

/// Default share of requests without a sampled parent that are traced.
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.01;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported (an OTLP endpoint is configured).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Where and how traces are exported.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share (0 to 1) of requests without a sampled `traceparent` that are
    /// traced; a parent's sampling decision is always followed.
    pub sample_ratio: f64,
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("--otlp-sample-ratio must be between 0 and 1, got {0}")]
    Ratio(f64),
    #[error("--otlp-endpoint `{0}` must be an http:// URL (OTLP over gRPC, plain text)")]
    Endpoint(String),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The installed exporter; [`Tracing::shutdown`] flushes what is queued.
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracing")
    }
}

impl Tracing {
    /// Builds the exporter (inside the Tokio runtime: the gRPC channel
    /// lives on it) and the layer that turns [`TARGET`] spans into traces.
    pub fn start<S>(
        config: &TraceConfig,
    ) -> Result<(Self, impl tracing_subscriber::Layer<S>), TraceError>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        if !(0.0..=1.0).contains(&config.sample_ratio) {
            return Err(TraceError::Ratio(config.sample_ratio));
        }
        if !config.endpoint.starts_with("http://") {
            return Err(TraceError::Endpoint(config.endpoint.clone()));
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("hos-proxy");
        // Spans carry what the proxy records, not source locations,
        // threads or busy/idle times (cost on every span).
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.target() == TARGET
            }));
        ENABLED.store(true, Ordering::Relaxed);
        Ok((Self { provider }, layer))
    }

    /// Stops exporting after sending the queued spans (at most 5 s).
    pub fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "flushing traces at shutdown failed");
        }
    }
}

/// The headers a trace context is read from, with the bounds above.
struct Carrier<'a>(&'a HeaderMap);

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let v = self.0.get(key)?.to_str().ok()?;
        match key {
            "traceparent" if v.len() != TRACEPARENT_LEN => None,
            "tracestate" if v.len() > MAX_TRACESTATE => None,
            _ => Some(v),
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// The span of one feature request (HTTP or gRPC), child of the client's
/// `traceparent` when it sent a valid one; disabled without an exporter.
pub fn request_span(headers: &HeaderMap, method: &str, path: &str, request_id: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %format_args!("{method} {path}"),
        otel.kind = "server",
        http.request.method = %method,
        url.path = %path,
        request_id = %request_id,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&Carrier(headers));
    // Fails only when the span is disabled, in which case nothing is exported.
    let _ = span.set_parent(parent);
    span
}

/// Records the answer's status on a request span (5xx marks it failed).
pub fn record_status(span: &Span, status: u16) {
    if span.is_none() {
        return;
    }
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of one call to a backend, a child of the current request span.
pub fn backend_span(backend: &str, op: &'static str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "backend",
        otel.name = %format_args!("{op} {backend}"),
        otel.kind = "client",
        backend = %backend,
        op = op,
        otel.status_code = tracing::field::Empty,
        error.message = tracing::field::Empty,
    )
}

/// Marks a backend span failed with the error's message.
pub fn record_error(span: &Span, error: &dyn std::fmt::Display) {
    if span.is_none() {
        return;
    }
    span.record("otel.status_code", "ERROR");
    span.record("error.message", tracing::field::display(error));
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(traceparent: &str, tracestate: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_str(traceparent).unwrap());
        h.insert("tracestate", HeaderValue::from_str(tracestate).unwrap());
        h
    }

    #[test]
    fn only_version_00_parents_and_short_states_are_read() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let h = headers(good, "a=b");
        assert_eq!(Carrier(&h).get("traceparent"), Some(good));
        assert_eq!(Carrier(&h).get("tracestate"), Some("a=b"));
        let long = format!("{good}-{}", "0".repeat(4000));
        let h = headers(&long, &"a=b,".repeat(200));
        assert_eq!(Carrier(&h).get("traceparent"), None);
        assert_eq!(Carrier(&h).get("tracestate"), None);
        assert_eq!(Carrier(&HeaderMap::new()).get("traceparent"), None);
    }

    #[test]
    fn malformed_parents_start_a_new_trace() {
        use opentelemetry::trace::TraceContextExt;
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        ] {
            let h = headers(bad, "");
            let cx = TraceContextPropagator::new().extract(&Carrier(&h));
            assert!(!cx.span().span_context().is_valid(), "{bad} was accepted");
        }
        let h = headers(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
        );
        let cx = TraceContextPropagator::new().extract(&Carrier(&h));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_sampled() && sc.is_remote());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn bad_flags_are_refused_before_anything_starts() {
        let config = |endpoint: &str, sample_ratio: f64| TraceConfig {
            endpoint: endpoint.to_string(),
            service_name: "t".to_string(),
            sample_ratio,
        };
        for (c, needle) in [
            (config("http://127.0.0.1:4317", 1.5), "between 0 and 1"),
            (config("http://127.0.0.1:4317", -0.1), "between 0 and 1"),
            (config("http://127.0.0.1:4317", f64::NAN), "between 0 and 1"),
            (config("https://collector:4317", 0.5), "http://"),
            (config("file:///etc/passwd", 0.5), "http://"),
            (config("collector:4317", 0.5), "http://"),
        ] {
            let Err(e) = Tracing::start::<tracing_subscriber::Registry>(&c) else {
                panic!("{c:?} was accepted");
            };
            assert!(e.to_string().contains(needle), "{c:?}: {e}");
        }
        assert!(!enabled(), "a refused configuration enabled tracing");
    }

    #[test]
    fn spans_cost_nothing_without_an_exporter() {
        assert!(!enabled());
        assert!(backend_span("b", "read").is_none());
        assert!(request_span(&HeaderMap::new(), "POST", "/x", "id").is_none());
    }
}
