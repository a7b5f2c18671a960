//! Configuration from a Kubernetes ConfigMap, watched through the API (the
//! alternative to mounting it as a file): each new version of the routing
//! key is validated and installed; a bad one is rejected and counted.

use std::path::PathBuf;
use std::sync::Arc;

use api::routing::RoutingTable;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use crate::config::Loaded;
use crate::state::{Shared, install};

/// Which ConfigMap key to serve.
#[derive(Debug, Clone)]
pub struct ConfigMapSource {
    pub namespace: String,
    pub name: String,
    pub key: String,
    /// Where relative SQLite paths resolve.
    pub base_dir: PathBuf,
}

impl ConfigMapSource {
    /// Parses `namespace/name`.
    pub fn parse(spec: &str, key: &str, base_dir: PathBuf) -> Result<Self, String> {
        let (namespace, name) = spec
            .split_once('/')
            .filter(|(n, m)| !n.is_empty() && !m.is_empty())
            .ok_or_else(|| format!("--configmap must be NAMESPACE/NAME, got `{spec}`"))?;
        Ok(ConfigMapSource {
            namespace: namespace.to_string(),
            name: name.to_string(),
            key: key.to_string(),
            base_dir,
        })
    }

    fn label(&self) -> String {
        format!(
            "ConfigMap {}/{} key {}",
            self.namespace, self.name, self.key
        )
    }

    fn load(&self, cm: &ConfigMap) -> Result<Loaded, String> {
        let doc = cm
            .data
            .as_ref()
            .and_then(|d| d.get(&self.key))
            .ok_or_else(|| format!("{}: key missing", self.label()))?;
        let table = RoutingTable::parse(&self.label(), doc).map_err(|e| e.to_string())?;
        Ok(Loaded {
            table,
            base_dir: self.base_dir.clone(),
        })
    }
}

/// Watches the ConfigMap until the process ends, installing every new
/// version. The watcher re-lists and resumes by itself after API errors.
pub fn spawn(shared: Arc<Shared>, client: Client, source: ConfigMapSource, apply: bool) {
    tokio::spawn(async move {
        let api: Api<ConfigMap> = Api::namespaced(client, &source.namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={}", source.name));
        let mut last: Option<String> = None;
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
            if doc.is_some() && doc == last {
                continue;
            }
            last = doc;
            let _ = install(&shared, source.load(&cm), apply).await;
        }
    });
}
