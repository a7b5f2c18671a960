//! Feast registries the proxy reads over the network or from a database
//! (issue [M]): `s3://` and `gs://` registry files, SQL registries (SQLite,
//! PostgreSQL) and Feast's registry server. Local registry files are read
//! by [`crate::config`] and followed by the file watch instead.
//!
//! A [`RegistryFeed`] holds the last registry read. It is fetched once
//! before the first routing table is built, then every `cache_ttl_seconds`
//! (Feast's setting, or `--registry-ttl-seconds`). A changed registry wakes
//! the configuration watch, which rebuilds the routing table; a registry
//! that cannot be read keeps the last good one serving, is reported by
//! `/ready` and `hos_proxy_registry_fetch_total{result="error"}`, and is
//! retried with backoff (2 s doubling to 60 s, never longer than the TTL).
//!
//! The reading itself ([`backends::registry`]) is shared with the
//! operator; an answer over `--registry-max-bytes` is refused before it is
//! decoded, and every read has a deadline.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use api::registry::RegistryContents;
use api::registry_config::{RegistryConfig, RegistryLocation};
use arc_swap::ArcSwapOption;
pub use backends::registry::{DEFAULT_MAX_BYTES, FetchError, RegistryReader};

use crate::metrics::Metrics;

/// Longest pause between retries of a registry that cannot be read.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One registry read.
#[derive(Debug)]
pub struct Fetched {
    pub contents: RegistryContents,
    /// Incremented each time the contents change.
    pub generation: u64,
    pub fetched_at: SystemTime,
}

/// What `/ready` says about the registry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegistryStatus {
    pub location: String,
    pub kind: &'static str,
    /// The last fetch succeeded.
    pub ok: bool,
    /// Seconds since the registry was last read successfully.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<f64>,
    /// The last failure, while the registry cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub feature_views: usize,
}

/// The registry of a repo, kept fresh by [`spawn_refresh`].
pub struct RegistryFeed {
    reader: RegistryReader,
    /// `cache_ttl_seconds` or `--registry-ttl-seconds`; `None`: read once.
    ttl: Option<Duration>,
    current: ArcSwapOption<Fetched>,
    last_error: Mutex<Option<String>>,
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for RegistryFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryFeed")
            .field("location", &self.reader.location())
            .field("project", &self.reader.project)
            .finish()
    }
}

/// Options of the registry readers (flags of `hos-proxy`).
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// Overrides `cache_ttl_seconds` (0: read once).
    pub ttl: Option<Duration>,
    /// Bearer token sent to a registry server, read before each call.
    pub token_file: Option<PathBuf>,
    pub max_bytes: usize,
}

impl RegistryFeed {
    /// A feed for a registry that is not a local file; `None` for local
    /// files (read by the configuration source itself).
    pub fn new(
        config: &RegistryConfig,
        project: &str,
        base_dir: &Path,
        options: &FeedOptions,
    ) -> Option<Arc<Self>> {
        if matches!(config.location, RegistryLocation::File(_)) {
            return None;
        }
        let ttl = match options.ttl {
            Some(ttl) => (!ttl.is_zero()).then_some(ttl),
            None => config.cache_ttl,
        };
        Some(Arc::new(Self {
            reader: RegistryReader {
                location: config.location.clone(),
                project: project.to_string(),
                base_dir: base_dir.to_path_buf(),
                token_file: options.token_file.clone(),
                token: None,
                ca_pem: None,
                max_bytes: options.max_bytes,
            },
            ttl,
            current: ArcSwapOption::empty(),
            last_error: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
        }))
    }

    pub fn location(&self) -> String {
        self.reader.location()
    }

    /// The last registry read, if any.
    pub fn current(&self) -> Option<Arc<Fetched>> {
        self.current.load_full()
    }

    /// Completes when a fetch changed the registry.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    pub fn status(&self) -> RegistryStatus {
        let current = self.current();
        let error = self.last_error.lock().ok().and_then(|e| e.clone());
        RegistryStatus {
            location: self.location(),
            kind: self.reader.location.kind(),
            ok: error.is_none() && current.is_some(),
            age_seconds: current.as_ref().and_then(|c| {
                SystemTime::now()
                    .duration_since(c.fetched_at)
                    .ok()
                    .map(|d| d.as_secs_f64())
            }),
            error,
            feature_views: current.map_or(0, |c| c.contents.feature_views.len()),
        }
    }

    /// Reads the registry; `Ok(true)` when its contents changed (the
    /// watch is then woken). A failure keeps the last registry.
    pub async fn refresh(&self, metrics: &Metrics) -> Result<bool, FetchError> {
        let kind = self.reader.location.kind();
        let contents = match self.reader.read().await {
            Ok(c) => c,
            Err(e) => {
                metrics.registry_fetch(kind, "error");
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(e.to_string());
                }
                return Err(e);
            }
        };
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
        let previous = self.current();
        let unchanged = previous.as_ref().is_some_and(|p| p.contents == contents);
        let generation = previous
            .as_ref()
            .map_or(1, |p| p.generation + u64::from(!unchanged));
        self.current.store(Some(Arc::new(Fetched {
            contents,
            generation,
            fetched_at: SystemTime::now(),
        })));
        metrics.registry_fetch(kind, if unchanged { "unchanged" } else { "changed" });
        if !unchanged {
            self.changed.notify_one();
        }
        Ok(!unchanged)
    }
}

/// Keeps the feed fresh: every TTL after a success, with backoff after a
/// failure (a registry without TTL is retried until read once).
pub fn spawn_refresh<M>(feed: Arc<RegistryFeed>, metrics: Arc<M>)
where
    M: AsRef<Metrics> + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            let ttl = feed.ttl;
            let wait = match ttl {
                None if failures == 0 && feed.current().is_some() => break,
                Some(ttl) if failures == 0 => ttl,
                _ => {
                    let backoff = Duration::from_secs(1u64 << failures.min(6)).min(MAX_BACKOFF);
                    ttl.map_or(backoff, |t| backoff.min(t))
                }
            };
            tokio::time::sleep(wait).await;
            match feed.refresh((*metrics).as_ref()).await {
                Ok(changed) => {
                    if failures > 0 {
                        tracing::info!(registry = %feed.location(), "registry readable again");
                    }
                    failures = 0;
                    if changed {
                        tracing::info!(registry = %feed.location(), "registry changed");
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(registry = %feed.location(), error = %e, failures, "cannot read the registry; the last one read keeps serving");
                }
            }
        }
    });
}
