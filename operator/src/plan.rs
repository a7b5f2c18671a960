//! Pure planning: desired state from specs (and observed state), no I/O.
//! Reconcilers fetch objects, call these, and apply the result.

use std::collections::{BTreeMap, BTreeSet};

use api::crd::{FeatureView, FeatureViewSpec, HybridOnlineStore, OnlineStoreSpec};
use api::credential::{Credential, CredentialRef};
use api::entity_key::SerializationVersion;
use api::error::ConfigError;
use api::feast_config::BackendConf;
use api::feature_view::{EntityDef, FeatureViewDef, FieldDef, parse_duration};
use api::routing::{Backend, RoutedView, RoutingTable, SCHEMA_VERSION, resolve_backend};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::{Resource, ResourceExt};
use md5::{Digest, Md5};

/// Where the proxy Deployment mounts a store's Secrets (its
/// `--secrets-dir`); the routing table names files relative to it as
/// `<secret>/<key>`.
pub const SECRETS_DIR: &str = "/etc/hos/secrets";
/// ConfigMap key holding the routing table.
pub const ROUTING_KEY: &str = "routing.yaml";
pub const HASH_ANNOTATION: &str = "hybrid-online-store.io/routing-hash";
pub const GENERATION_ANNOTATION: &str = "hybrid-online-store.io/store-generation";
pub const STORE_LABEL: &str = "hybrid-online-store.io/store";

/// The routing ConfigMap's name for a store.
pub fn configmap_name(store: &str) -> String {
    format!("{store}-routing")
}

/// The Feast name of a FeatureView resource.
pub fn feast_name(fv: &FeatureView) -> String {
    fv.spec.name.clone().unwrap_or_else(|| fv.name_any())
}

/// The FeatureView definition a resource describes.
pub fn view_def(fv: &FeatureView) -> Result<FeatureViewDef, String> {
    let spec: &FeatureViewSpec = &fv.spec;
    let ttl = match &spec.ttl {
        None => None,
        Some(t) => parse_duration(t)?,
    };
    let def = FeatureViewDef {
        name: feast_name(fv),
        entities: spec
            .entities
            .iter()
            .map(|e| EntityDef {
                name: e.name.clone(),
                join_keys: if e.join_keys.is_empty() {
                    vec![e.name.clone()]
                } else {
                    e.join_keys.clone()
                },
                dtype: e.dtype,
                description: None,
            })
            .collect(),
        ttl,
        schema: spec
            .schema
            .iter()
            .map(|f| FieldDef {
                name: f.name.clone(),
                dtype: f.dtype,
                description: None,
                tags: BTreeMap::new(),
            })
            .collect(),
        online: spec.online,
        source: spec.source.clone(),
        tags: spec.tags.clone(),
        description: None,
        owner: None,
    };
    def.validate(&format!("FeatureView {}", fv.name_any()))
        .map_err(|e| format!("{}: {}", e.path, e.message))?;
    Ok(def)
}

/// Secret values a store's backends need: (secret name, key) -> value.
pub type SecretValues = BTreeMap<(String, String), String>;

/// The Secret keys a store references, for fetching and for error messages.
pub fn secret_refs(store: &HybridOnlineStore) -> BTreeSet<(String, String)> {
    store
        .spec
        .online_stores
        .iter()
        .filter_map(|s| s.credentials.as_ref())
        .flat_map(|c| [&c.username_secret_ref, &c.password_secret_ref])
        .flatten()
        .map(|r| (r.name.clone(), r.key.clone()))
        .collect()
}

/// How credentials appear in a backend's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// As file references relative to the proxy's secrets directory
    /// ([`SECRETS_DIR`] in the Deployment; no secret in the ConfigMap).
    Mounted,
    /// As literal values (for the operator's own connections).
    Resolved(&'a SecretValues),
}

/// A backend of the store, its `conf` checked with Feast's parser.
pub fn backend(
    store: &HybridOnlineStore,
    spec: &OnlineStoreSpec,
    index: usize,
    credentials: Credentials<'_>,
) -> Result<Backend, ConfigError> {
    let file = format!("HybridOnlineStore {}", store.name_any());
    let path = format!("spec.onlineStores[{index}].conf");
    let conf = <api::yaml::Value as serde::Deserialize>::deserialize(&spec.conf)
        .map_err(|e| ConfigError::new(&file, &path, e.to_string()))?;
    let mut conf = BackendConf::parse(spec.backend_type, conf, &file, &path)?;
    if conf.has_literal_credentials() {
        return Err(ConfigError::new(
            &file,
            &path,
            "credentials must come from `credentials` Secret references, not from conf",
        ));
    }
    let cred =
        |r: &Option<api::credential::SecretKeyRef>| -> Result<Option<Credential>, ConfigError> {
            let Some(r) = r else { return Ok(None) };
            Ok(Some(match credentials {
                Credentials::Mounted => {
                    Credential::Reference(CredentialRef::File(format!("{}/{}", r.name, r.key)))
                }
                Credentials::Resolved(values) => Credential::Literal(
                    values
                        .get(&(r.name.clone(), r.key.clone()))
                        .cloned()
                        .ok_or_else(|| {
                            ConfigError::new(
                                &file,
                                format!("spec.onlineStores[{index}].credentials"),
                                format!("Secret {} has no key {}", r.name, r.key),
                            )
                        })?,
                ),
            }))
        };
    if let Some(c) = &spec.credentials {
        let user = cred(&c.username_secret_ref)?;
        let pass = cred(&c.password_secret_ref)?;
        match &mut conf {
            BackendConf::Cassandra(cc) => {
                cc.username = user.or(cc.username.take());
                cc.password = pass.or(cc.password.take());
            }
            BackendConf::Redis(rc) => rc.password = pass.or(rc.password.take()),
            BackendConf::Sqlite(_) | BackendConf::Bigtable(_) => {}
        }
    }
    Ok(Backend {
        name: spec.name.clone(),
        backend_type: spec.backend_type,
        conf,
    })
}

/// All backends of a store.
pub fn backends(
    store: &HybridOnlineStore,
    credentials: Credentials<'_>,
) -> Result<Vec<Backend>, ConfigError> {
    store
        .spec
        .online_stores
        .iter()
        .enumerate()
        .map(|(i, s)| backend(store, s, i, credentials))
        .collect()
}

/// The backend a view routes to under the store's rule.
pub fn route<'a>(
    store: &HybridOnlineStore,
    backends: &'a [Backend],
    def: &FeatureViewDef,
) -> Result<&'a Backend, String> {
    resolve_backend(
        &store.spec.routing_tag,
        &def.tags,
        backends,
        store.spec.default_store.as_deref(),
    )
    .map_err(|e| e.to_string())
}

fn version(store: &HybridOnlineStore) -> SerializationVersion {
    SerializationVersion::try_from(store.spec.entity_key_serialization_version as u32)
        .unwrap_or_default()
}

/// A view as the routing table holds it, routed to `backend`.
pub fn routed_view(def: &FeatureViewDef, backend: &str) -> RoutedView {
    api::routing::routed_view(def, backend.to_string())
}

/// The routing table for a store: its backends (credentials as mounted
/// files) and the views whose tables are provisioned, each on the backend
/// its status records, so the ConfigMap switches only after provisioning.
pub fn routing_table(
    store: &HybridOnlineStore,
    views: &[RoutedView],
) -> Result<RoutingTable, ConfigError> {
    let mut table = RoutingTable {
        schema_version: SCHEMA_VERSION,
        project: store.spec.project.clone(),
        entity_key_serialization_version: version(store),
        routing_tag: store.spec.routing_tag.clone(),
        default_backend: store.spec.default_store.clone(),
        backends: backends(store, Credentials::Mounted)?,
        feature_views: views.to_vec(),
        feature_services: Vec::new(),
    };
    table.normalize();
    table.validate_for_configmap(&format!("HybridOnlineStore {}", store.name_any()))?;
    Ok(table)
}

/// Content hash of a routing document, for the ConfigMap annotation.
pub fn content_hash(doc: &str) -> String {
    hex::encode(Md5::digest(doc.as_bytes()))
}

/// The routing ConfigMap, owned by the store.
pub fn configmap(store: &HybridOnlineStore, doc: &str) -> ConfigMap {
    let name = store.name_any();
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(configmap_name(&name)),
            namespace: store.namespace(),
            labels: Some(BTreeMap::from([
                (STORE_LABEL.to_string(), name.clone()),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "hos-operator".to_string(),
                ),
            ])),
            annotations: Some(BTreeMap::from([
                (HASH_ANNOTATION.to_string(), content_hash(doc)),
                (
                    GENERATION_ANNOTATION.to_string(),
                    store.metadata.generation.unwrap_or_default().to_string(),
                ),
            ])),
            owner_references: Some(vec![owner(store)]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(ROUTING_KEY.to_string(), doc.to_string())])),
        ..Default::default()
    }
}

/// Whether an existing ConfigMap already holds `doc` (then nothing is written).
pub fn configmap_current(existing: Option<&ConfigMap>, doc: &str) -> bool {
    existing
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get(ROUTING_KEY))
        .is_some_and(|d| d == doc)
}

/// Sets a condition, keeping `lastTransitionTime` when the status is unchanged.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) {
    let status = if ok { "True" } else { "False" }.to_string();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

/// Whether a condition's message differs from `message` (or it is absent):
/// events are published on changes, not on every reconcile.
pub fn condition_changed(conditions: &[Condition], type_: &str, message: &str) -> bool {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .is_none_or(|c| c.message != message)
}

/// Whether a condition is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Views per backend, for the store status.
pub fn views_per_backend(backends: &[Backend], views: &[RoutedView]) -> BTreeMap<String, i32> {
    let mut m: BTreeMap<String, i32> = backends.iter().map(|b| (b.name.clone(), 0)).collect();
    for v in views {
        *m.entry(v.backend.clone()).or_default() += 1;
    }
    m
}

/// Name of a store's proxy Deployment and Service.
pub fn proxy_name(store: &str) -> String {
    format!("{store}-proxy")
}

fn owner(store: &HybridOnlineStore) -> OwnerReference {
    OwnerReference {
        api_version: HybridOnlineStore::api_version(&()).to_string(),
        kind: HybridOnlineStore::kind(&()).to_string(),
        name: store.name_any(),
        uid: store.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The proxy Deployment and Service a store asks for (`spec.proxy.enabled`):
/// the routing ConfigMap mounted (the proxy hot-reloads it, so route changes
/// need no rollout) and each referenced Secret mounted under [`SECRETS_DIR`].
pub fn proxy_objects(
    store: &HybridOnlineStore,
    default_image: &str,
) -> Option<(
    k8s_openapi::api::apps::v1::Deployment,
    k8s_openapi::api::core::v1::Service,
)> {
    use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
    use k8s_openapi::api::core::v1::{
        Capabilities, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction,
        PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource,
        SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    let spec = store.spec.proxy.as_ref().filter(|p| p.enabled)?;
    let name = store.name_any();
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "hos-proxy".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "hos-operator".to_string(),
        ),
        (STORE_LABEL.to_string(), name.clone()),
    ]);
    let meta = kube::api::ObjectMeta {
        name: Some(proxy_name(&name)),
        namespace: store.namespace(),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner(store)]),
        ..Default::default()
    };
    let secrets: BTreeSet<String> = secret_refs(store).into_iter().map(|(n, _)| n).collect();
    let mut volumes = vec![Volume {
        name: "routing".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: configmap_name(&name),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "routing".into(),
        mount_path: "/etc/hos/routing".into(),
        read_only: Some(true),
        ..Default::default()
    }];
    for (i, s) in secrets.iter().enumerate() {
        volumes.push(Volume {
            name: format!("secret-{i}"),
            secret: Some(SecretVolumeSource {
                secret_name: Some(s.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: format!("secret-{i}"),
            mount_path: format!("{SECRETS_DIR}/{s}"),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    };
    let container = Container {
        name: "hos-proxy".into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| default_image.to_string()),
        ),
        args: Some(vec![
            "serve".into(),
            "--routing-table".into(),
            format!("/etc/hos/routing/{ROUTING_KEY}"),
            "--listen".into(),
            format!("0.0.0.0:{}", spec.port),
            "--secrets-dir".into(),
            SECRETS_DIR.into(),
            "--log-format".into(),
            "json".into(),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: spec.port,
            ..Default::default()
        }]),
        resources: spec.resources.clone(),
        readiness_probe: Some(probe("/ready")),
        liveness_probe: Some(probe("/health")),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: meta.clone(),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(kube::api::ObjectMeta {
                    labels: Some(labels.clone()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let service = Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            selector: Some(labels),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: spec.port,
                target_port: Some(IntOrString::String("http".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Some((deployment, service))
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::crd::{FeatureView, HybridOnlineStore};

    fn store() -> HybridOnlineStore {
        let mut s: HybridOnlineStore = api::yaml::from_str(
            r#"
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: s, namespace: ns, uid: u1, generation: 3}
spec:
  project: demo
  routingTag: team
  onlineStores:
    - {name: a, type: sqlite, conf: {path: /data/a.db}}
    - name: c
      type: cassandra
      conf: {hosts: [c1], keyspace: ks}
      credentials:
        usernameSecretRef: {name: cass, key: user}
        passwordSecretRef: {name: cass, key: pass}
"#,
        )
        .unwrap();
        s.metadata.generation = Some(3);
        s
    }

    fn fv(tag: &str) -> FeatureView {
        api::yaml::from_str(&format!(
            r#"
apiVersion: hybrid-online-store.io/v1alpha1
kind: FeatureView
metadata: {{name: user-features, namespace: ns}}
spec:
  storeRef: s
  name: user_features
  entities: [{{name: user, joinKeys: [user_id], dtype: int64}}]
  ttl: 1d
  schema: [{{name: age, dtype: int64}}]
  tags: {{team: {tag}}}
"#
        ))
        .unwrap()
    }

    #[test]
    fn secrets_never_reach_the_configmap() {
        let s = store();
        let def = view_def(&fv("c")).unwrap();
        assert_eq!(def.name, "user_features");
        assert_eq!(def.ttl, Some(86400));
        let mounted = backends(&s, Credentials::Mounted).unwrap();
        let b = route(&s, &mounted, &def).unwrap();
        assert_eq!(b.name, "c");
        let view = routed_view(&def, &b.name);
        assert_eq!(view.backend, "c");
        let table = routing_table(&s, &[view]).unwrap();
        let doc = table.to_yaml();
        assert!(doc.contains("file: cass/pass"), "{doc}");
        let cm = configmap(&s, &doc);
        assert_eq!(cm.metadata.name.as_deref(), Some("s-routing"));
        assert_eq!(cm.metadata.owner_references.unwrap()[0].uid, "u1");
        assert!(configmap_current(Some(&configmap(&s, &doc)), &doc));
        assert!(!configmap_current(Some(&configmap(&s, "other")), &doc));

        let values = SecretValues::from([
            (("cass".into(), "user".into()), "u".into()),
            (("cass".into(), "pass".into()), "p".into()),
        ]);
        let resolved = backends(&s, Credentials::Resolved(&values)).unwrap();
        assert!(resolved[1].conf.has_literal_credentials());
        let missing = SecretValues::new();
        let err = backends(&s, Credentials::Resolved(&missing)).unwrap_err();
        assert!(err.message.contains("Secret cass has no key user"), "{err}");
    }

    #[test]
    fn unroutable_views_are_reported() {
        let s = store();
        let mounted = backends(&s, Credentials::Mounted).unwrap();
        let err = route(&s, &mounted, &view_def(&fv("nope")).unwrap()).unwrap_err();
        assert!(err.contains("names no backend"), "{err}");
    }

    #[test]
    fn conditions_keep_transition_time() {
        let t0 = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(200).unwrap());
        let mut c = Vec::new();
        set_condition(&mut c, "Ready", true, "Ok", "fine", Some(1), t0.clone());
        set_condition(&mut c, "Ready", true, "Ok", "fine", Some(2), t1.clone());
        assert_eq!(c[0].last_transition_time, t0);
        set_condition(&mut c, "Ready", false, "Broken", "no", Some(2), t1.clone());
        assert_eq!(c[0].last_transition_time, t1);
        assert!(!is_true(&c, "Ready"));
    }
}
