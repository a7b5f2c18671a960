//! What reconcilers share: the client, the event recorder, metrics and
//! open backend connections (reused while their configuration holds).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::registry::RegistryContents;
use api::routing::Backend;
use backends::registry::RegistryReader;
use backends::{BackendError, OnlineStore, OpenContext};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};
use tokio::sync::Mutex;

use crate::metrics::Metrics;
use crate::plan::SecretValues;

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Bound on connecting to and checking a backend.
    pub backend_timeout: Duration,
    /// Proxy image for stores that ask for a proxy without naming one.
    pub proxy_image: String,
    /// How long a live move waits after each routing change before the next
    /// phase, so every proxy has picked the change up.
    pub migration_settle: Duration,
    /// Where the operator opens SQLite backends: a store's relative `path`
    /// under `<data_dir>/<namespace>/`, so namespaces never share a file.
    pub data_dir: PathBuf,
    /// The operator's own Pods, admitted by proxy NetworkPolicies to the
    /// HTTP port (see [`crate::plan::operator_peer`]).
    pub operator_peer: Option<NetworkPolicyPeer>,
    connections: Mutex<HashMap<String, Arc<dyn OnlineStore>>>,
    /// The last read of each store's registry, by `<namespace>/<store>`.
    registry_reads: Mutex<HashMap<String, RegistryRead>>,
}

/// One read of a store's Feast registry. It is reused until it is
/// `refreshSeconds` old (or the registry's settings change), so the
/// reconciles in between (a status write, a FeatureView change) do not
/// read the registry again.
#[derive(Clone)]
pub struct RegistryRead {
    /// Hash of the location, project and credentials it was read with.
    fingerprint: String,
    at: Instant,
    /// When it was read.
    pub time: Time,
    /// The project's views and services, or why they could not be read.
    pub outcome: Result<Arc<RegistryContents>, String>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        backend_timeout: Duration,
        proxy_image: String,
        migration_settle: Duration,
        data_dir: PathBuf,
    ) -> Context {
        Context {
            client,
            recorder,
            metrics,
            backend_timeout,
            proxy_image,
            migration_settle,
            data_dir,
            operator_peer: None,
            connections: Mutex::new(HashMap::new()),
            registry_reads: Mutex::new(HashMap::new()),
        }
    }

    /// The registry as `reader` reads it, at most `max_age` old: the last
    /// read of store `key` (`<namespace>/<store>`) when it is recent and
    /// was made with the same `fingerprint`, else a new read (bounded by
    /// the reader's deadline).
    pub async fn read_registry(
        &self,
        key: &str,
        fingerprint: &str,
        max_age: Duration,
        reader: &RegistryReader,
    ) -> RegistryRead {
        let cached = self.registry_reads.lock().await.get(key).cloned();
        if let Some(r) = cached
            && r.fingerprint == fingerprint
            && r.at.elapsed() < max_age
        {
            return r;
        }
        let outcome = reader.read().await.map(Arc::new).map_err(|e| e.to_string());
        let read = RegistryRead {
            fingerprint: fingerprint.to_string(),
            at: Instant::now(),
            time: Time(k8s_openapi::jiff::Timestamp::now()),
            outcome,
        };
        self.registry_reads
            .lock()
            .await
            .insert(key.to_string(), read.clone());
        read
    }

    /// Drops the kept read of store `key` (its registry was unset).
    pub async fn forget_registry(&self, key: &str) {
        self.registry_reads.lock().await.remove(key);
    }

    /// Sets [`Context::operator_peer`].
    pub fn with_operator_peer(mut self, peer: Option<NetworkPolicyPeer>) -> Context {
        self.operator_peer = peer;
        self
    }

    /// An open, checked connection to `backend` of store `store` in
    /// namespace `ns`, its credentials already resolved from the store's
    /// Secrets. Connections are kept per store.
    pub async fn connect(
        &self,
        ns: &str,
        store: &str,
        backend: &Backend,
    ) -> Result<Arc<dyn OnlineStore>, BackendError> {
        // The reconcilers validated the spec already; this is the last line
        // before a backend library resolves anything: the operator resolves
        // no `file`/`env` reference of a CR, whoever built `backend`.
        if let Some(problem) = crate::plan::unresolved_reference(backend) {
            return Err(BackendError::Config(problem));
        }
        let conf = serde_json::to_string(&backend.conf).unwrap_or_default();
        let key = format!(
            "{ns}/{store}/{}/{}",
            backend.name,
            crate::plan::content_hash(&conf)
        );
        let cached = self.connections.lock().await.get(&key).cloned();
        let store = match cached {
            Some(s) => s,
            None => {
                let octx = OpenContext {
                    base_dir: self.data_dir.join(ns),
                    // Never read: only literal credentials get here.
                    secrets_dir: PathBuf::from("/nonexistent"),
                    // A CR's backend: paths stay under the namespace's
                    // data directory, no file or env reference resolves.
                    trust: backends::Trust::Confined,
                };
                let open = backends::open(backend, &octx);
                let s = tokio::time::timeout(self.backend_timeout, open)
                    .await
                    .map_err(|_| {
                        BackendError::Unavailable(format!(
                            "no answer within {:?}",
                            self.backend_timeout
                        ))
                    })??;
                self.connections
                    .lock()
                    .await
                    .insert(key.clone(), Arc::clone(&s));
                s
            }
        };
        let checked = tokio::time::timeout(self.backend_timeout, store.check())
            .await
            .map_err(|_| {
                BackendError::Unavailable(format!("no answer within {:?}", self.backend_timeout))
            })
            .and_then(|r| r);
        if let Err(e) = checked {
            // Reconnect next time rather than reuse a broken session.
            self.connections.lock().await.remove(&key);
            return Err(e);
        }
        Ok(store)
    }

    /// Values of the referenced Secret keys; missing ones are reported as
    /// `Secret <name> (key <key>)` strings.
    pub async fn secret_values(
        &self,
        namespace: &str,
        refs: &std::collections::BTreeSet<(String, String)>,
    ) -> Result<(SecretValues, Vec<String>), kube::Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let mut values = SecretValues::new();
        let mut missing = Vec::new();
        let mut cache: HashMap<String, Option<Secret>> = HashMap::new();
        for (name, key) in refs {
            // Only a valid Secret name becomes part of an API path.
            if !crate::plan::is_secret_name(name) {
                missing.push(format!(
                    "Secret {name} (key {key}): not a valid Secret name"
                ));
                continue;
            }
            if !cache.contains_key(name) {
                cache.insert(name.clone(), api.get_opt(name).await?);
            }
            let value = cache
                .get(name)
                .and_then(Option::as_ref)
                .and_then(|s| s.data.as_ref())
                .and_then(|d| d.get(key))
                .and_then(|b| String::from_utf8(b.0.clone()).ok());
            match value {
                Some(v) => {
                    values.insert((name.clone(), key.clone()), v);
                }
                None => missing.push(format!("Secret {name} (key {key})")),
            }
        }
        Ok((values, missing))
    }

    /// Publishes an event about `obj`; failures are logged, not fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }
}
