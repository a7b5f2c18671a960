//! Configuration from a Kubernetes ConfigMap, watched through the API (the
//! alternative to mounting it as a file): each new version of the routing
//! key is validated and installed; a bad one is rejected and counted.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use api::routing::RoutingTable;
use backends::Trust;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use crate::config::{LoadError, Loaded};
use crate::state::{SUPERVISOR_BACKOFF, Shared, install};

/// A `--configmap` value that does not name a ConfigMap. (A document
/// the ConfigMap holds is refused as a [`LoadError`], like a file's.)
#[derive(Debug, thiserror::Error)]
#[error("--configmap must be NAMESPACE/NAME, got `{0}`")]
pub struct ConfigMapSpecError(String);

/// Which ConfigMap key to serve.
#[derive(Debug, Clone)]
pub struct ConfigMapSource {
    pub namespace: String,
    pub name: String,
    pub key: String,
    /// The data directory: where relative SQLite paths resolve and every
    /// SQLite file must stay.
    pub base_dir: PathBuf,
}

impl ConfigMapSource {
    /// Parses `namespace/name`; `data_dir` defaults to the working directory.
    pub fn parse(
        spec: &str,
        key: &str,
        data_dir: Option<PathBuf>,
    ) -> Result<Self, ConfigMapSpecError> {
        let (namespace, name) = spec
            .split_once('/')
            .filter(|(n, m)| !n.is_empty() && !m.is_empty())
            .ok_or_else(|| ConfigMapSpecError(spec.to_string()))?;
        Ok(ConfigMapSource {
            namespace: namespace.to_string(),
            name: name.to_string(),
            key: key.to_string(),
            base_dir: data_dir.unwrap_or_else(|| PathBuf::from(".")),
        })
    }

    fn label(&self) -> String {
        format!(
            "ConfigMap {}/{} key {}",
            self.namespace, self.name, self.key
        )
    }

    fn load(&self, cm: &ConfigMap) -> Result<Loaded, LoadError> {
        let doc = cm
            .data
            .as_ref()
            .and_then(|d| d.get(&self.key))
            .ok_or_else(|| LoadError::KeyMissing(self.label()))?;
        let table = RoutingTable::parse(&self.label(), doc)?;
        // Written from CRs by other teams.
        Ok(Loaded::new(table, self.base_dir.clone(), Trust::Confined))
    }
}

/// Watches the ConfigMap until the process ends, installing every new
/// version. The watcher re-lists and resumes by itself after API errors; a
/// failed or panicking install is counted and logged by [`install`], and
/// should the watch itself panic it is counted the same way and started
/// again.
pub fn spawn(shared: Arc<Shared>, client: Client, source: ConfigMapSource, apply: bool) {
    tokio::spawn(async move {
        // The last document tried survives a restart of the watch, so a
        // document that broke it is not tried again.
        let last = Arc::new(Mutex::new(None));
        loop {
            let watch = tokio::spawn(watch(
                Arc::clone(&shared),
                client.clone(),
                source.clone(),
                apply,
                Arc::clone(&last),
            ));
            match watch.await {
                Err(e) if e.is_panic() => {
                    shared.metrics.reload("panic");
                    tracing::error!(configmap = %source.label(), "ConfigMap watch panicked; restarting it");
                    tokio::time::sleep(SUPERVISOR_BACKOFF).await;
                }
                Ok(()) | Err(_) => break,
            }
        }
    });
}

async fn watch(
    shared: Arc<Shared>,
    client: Client,
    source: ConfigMapSource,
    apply: bool,
    last: Arc<Mutex<Option<String>>>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &source.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", source.name));
    let mut events = watcher::watcher(api, config).boxed();
    while let Some(event) = events.next().await {
        let cm = match event {
            Ok(Event::Apply(cm) | Event::InitApply(cm)) => cm,
            Ok(Event::Delete(_)) => {
                tracing::warn!(configmap = %source.label(), "ConfigMap deleted; keeping the last routes");
                continue;
            }
            Ok(Event::Init | Event::InitDone) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "ConfigMap watch interrupted; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let doc = cm.data.as_ref().and_then(|d| d.get(&source.key)).cloned();
        {
            // A poisoned lock only means an earlier watch panicked holding it.
            let mut last = last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if doc.is_some() && doc == *last {
                continue;
            }
            last.clone_from(&doc);
        }
        // Parsing a large table runs on the blocking pool, off the
        // runtime's workers that serve requests.
        let parse = {
            let source = source.clone();
            move || source.load(&cm)
        };
        let loaded = match tokio::task::spawn_blocking(parse).await {
            Ok(loaded) => loaded.map_err(crate::state::ReloadError::from),
            Err(e) if e.is_panic() => Err(crate::state::ReloadError::Panicked),
            Err(_) => Err(crate::state::ReloadError::Cancelled),
        };
        let _ = install(&shared, loaded, apply).await;
    }
}
