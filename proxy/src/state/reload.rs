//! Installing a new routing table: load off the runtime, build a snapshot
//! (reusing what did not change), provision under `--apply`, publish; on
//! any failure the previous snapshot keeps serving.

use std::sync::Arc;

use super::monitor::spawn_monitor;
use super::provision::{ProvisionError, provision};
use super::shared::Shared;
use super::snapshot::{BuildError, build_snapshot};
use crate::config::{ConfigSource, Loaded};

/// Why a new configuration was not installed (the previous snapshot
/// keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Load(#[from] crate::config::LoadError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("provisioning the new routes' tables: {0}")]
    Provision(#[from] ProvisionError),
    #[error("building the new routes panicked; the table is rejected")]
    Panicked,
    #[error("building the new routes was cancelled")]
    Cancelled,
}

impl ReloadError {
    /// The `hos_proxy_reload_total` result label.
    fn label(&self) -> &'static str {
        match self {
            ReloadError::Panicked => "panic",
            _ => "error",
        }
    }
}

/// Loads the source, builds a snapshot and publishes it. On failure the
/// previous snapshot keeps serving and the error is returned. Reading and
/// parsing (YAML, a registry.db) run on the blocking pool, off the
/// runtime's workers that serve requests.
pub async fn reload(
    shared: &Arc<Shared>,
    source: &ConfigSource,
    apply: bool,
) -> Result<u64, ReloadError> {
    let source = source.clone();
    let loaded = match tokio::task::spawn_blocking(move || source.load()).await {
        Ok(loaded) => loaded.map_err(ReloadError::from),
        Err(e) if e.is_panic() => Err(ReloadError::Panicked),
        Err(_) => Err(ReloadError::Cancelled),
    };
    install(shared, loaded, apply).await
}

/// Builds a snapshot from a loaded configuration and publishes it; on
/// failure the previous snapshot keeps serving and the error is returned.
/// The build runs in a task of its own: a panic anywhere in it (a client
/// library, a bug) rejects this table like an error, counted apart
/// (`hos_proxy_reload_total{result="panic"}`), and the caller lives on.
pub async fn install(
    shared: &Arc<Shared>,
    loaded: Result<Loaded, ReloadError>,
    apply: bool,
) -> Result<u64, ReloadError> {
    let result = match loaded {
        Err(e) => Err(e),
        Ok(loaded) => {
            match tokio::spawn(build_and_publish(Arc::clone(shared), loaded, apply)).await {
                Ok(r) => r,
                Err(e) if e.is_panic() => Err(ReloadError::Panicked),
                Err(_) => Err(ReloadError::Cancelled),
            }
        }
    };
    if let Err(e) = &result {
        let label = e.label();
        shared.metrics.reload(label);
        tracing::error!(error = %e, result = label, "configuration rejected; previous routes keep serving");
    }
    result
}

async fn build_and_publish(
    shared: Arc<Shared>,
    loaded: Loaded,
    apply: bool,
) -> Result<u64, ReloadError> {
    let previous = shared.current.load_full();
    let version = previous.as_ref().map(|p| p.version + 1).unwrap_or(1);
    let snap = build_snapshot(
        loaded,
        version,
        previous.as_deref(),
        Some(shared.serving()),
        &shared.secrets_dir,
    )
    .await?;
    // Each backend opened for this table gets its monitor (it ends when
    // the handle is dropped, this table rejected or replaced).
    for h in snap.new_backends(previous.as_deref()) {
        spawn_monitor(h, Arc::clone(&shared));
    }
    // The previous snapshot is released here (or when its last request
    // ends), not kept alive by this task.
    drop(previous);
    if apply {
        for line in provision(&snap).await? {
            tracing::info!(object = %line, "provisioned");
        }
    }
    let views = snap.views.len();
    let mut counts: std::collections::BTreeMap<&str, i64> =
        snap.backends.keys().map(|b| (b.as_str(), 0)).collect();
    for v in snap.views.values() {
        *counts.entry(v.backend.as_str()).or_default() += 1;
    }
    shared
        .metrics
        .set_routing(version, &snap.digest, views, &counts);
    // Views that left the table free their place in per-view metrics.
    shared
        .metrics
        .views
        .retain(&snap.table.project, &snap.views, |b| {
            snap.backends.contains_key(b)
        });
    let digest = snap.digest.clone();
    shared.current.store(Some(Arc::new(snap)));
    shared.metrics.reload("success");
    tracing::info!(version, digest, views, "routing table loaded");
    Ok(version)
}
