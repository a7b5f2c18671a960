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

mod proxy;
mod registry;
pub use proxy::{
    AUTH_DIR, AUTH_FILE, ProxyObjects, TLS_DIR, limit_args, operator_peer, parse_labels,
    proxy_auth, proxy_desired_replicas, proxy_name, proxy_objects, proxy_pod_selector,
    proxy_status,
};
pub use registry::{
    REGISTRY_VIEWS_ANNOTATION, RegistryRoutes, RegistrySource, published_registry_views,
    published_table, registry_routes, registry_secret_refs, registry_source, registry_view_names,
    routable_services,
};

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

/// The credential fields of a backend's conf, by field name.
pub fn conf_credentials(conf: &BackendConf) -> Vec<(&'static str, &Credential)> {
    let mut out = Vec::new();
    match conf {
        BackendConf::Redis(r) => out.extend(r.password.as_ref().map(|c| ("password", c))),
        BackendConf::Cassandra(c) => {
            out.extend(c.username.as_ref().map(|v| ("username", v)));
            out.extend(c.password.as_ref().map(|v| ("password", v)));
        }
        BackendConf::Sqlite(_) | BackendConf::Bigtable(_) => {}
    }
    out
}

/// Why the operator must not open `backend`: a credential that is not a
/// literal resolved from the store's Secrets (a `file`/`env` reference would
/// be read from the operator's own filesystem or environment).
pub fn unresolved_reference(backend: &Backend) -> Option<String> {
    conf_credentials(&backend.conf)
        .into_iter()
        .find(|(_, c)| !c.is_literal())
        .map(|(field, _)| {
            format!(
                "backend {}: conf.{field} is a reference; the operator resolves only Secret keys named in credentials.*SecretRef",
                backend.name
            )
        })
}

fn reference_kind(r: &CredentialRef) -> &'static str {
    match r {
        CredentialRef::Env(_) => "env",
        CredentialRef::File(_) => "file",
        CredentialRef::SecretKeyRef(_) => "secret_key_ref",
    }
}

/// Refuses whatever in a store's backend `conf` would make the operator (or
/// the proxy it configures) read its own files or environment, or carry a
/// secret in the routing ConfigMap. A `HybridOnlineStore` is written by a
/// tenant, who may name Secret keys of their own namespace
/// (`credentials.*SecretRef`) and nothing else: a `{file: ...}` or
/// `{env: ...}` reference would hand the tenant the operator's own files
/// (its ServiceAccount token) or environment, sent to a host they choose.
/// Messages name the field and the problem, never the value.
pub fn confine(conf: &BackendConf, file: &str, path: &str) -> Result<(), ConfigError> {
    // Any credential in conf is refused: the first one names the problem.
    if let Some((field, c)) = conf_credentials(conf).into_iter().next() {
        let use_ref = if field == "username" {
            "credentials.usernameSecretRef"
        } else {
            "credentials.passwordSecretRef"
        };
        let message = match c {
            Credential::Literal(_) => format!(
                "a literal credential is not accepted in a HybridOnlineStore; put it in a Secret of the store's namespace and name it in {use_ref}"
            ),
            Credential::Reference(r) => format!(
                "a `{}` credential reference is not accepted in a HybridOnlineStore: the operator reads only the Secret keys named in credentials.*SecretRef, in the store's namespace; use {use_ref}",
                reference_kind(r)
            ),
        };
        return Err(ConfigError::new(file, format!("{path}.{field}"), message));
    }
    match conf {
        BackendConf::Redis(r) => {
            for part in r.connection_string.split(',').map(str::trim) {
                let at = format!("{path}.connection_string");
                if let Some((k, _)) = part.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("password") {
                        return Err(ConfigError::new(
                            file,
                            at,
                            "a `password=` option is not accepted in a HybridOnlineStore; put the password in a Secret and name it in credentials.passwordSecretRef",
                        ));
                    }
                } else if part.contains('@') || part.contains('/') {
                    return Err(ConfigError::new(
                        file,
                        at,
                        "hosts are `host:port`, without a scheme, user or password (the password comes from credentials.passwordSecretRef)",
                    ));
                }
            }
        }
        BackendConf::Cassandra(c) => {
            if c.secure_bundle_path.is_some() {
                return Err(ConfigError::new(
                    file,
                    format!("{path}.secure_bundle_path"),
                    "a file path is not accepted in a HybridOnlineStore (it would be read from the operator's and the proxy's filesystem); give `hosts`",
                ));
            }
        }
        BackendConf::Sqlite(s) => {
            if let Err(problem) = check_data_path(&s.path) {
                return Err(ConfigError::new(file, format!("{path}.path"), problem));
            }
        }
        BackendConf::Bigtable(b) => {
            if let Some(h) = &b.emulator_host
                && let Err(problem) = check_host_port(h)
            {
                return Err(ConfigError::new(
                    file,
                    format!("{path}.emulator_host"),
                    problem,
                ));
            }
        }
    }
    Ok(())
}

/// A SQLite path from a CR is relative to the data directory and stays in
/// it: no absolute path, no `..`.
fn check_data_path(p: &str) -> Result<(), String> {
    use std::path::{Component, Path};
    if p.is_empty() || p.contains('\0') {
        return Err("the path is empty or holds a NUL byte".into());
    }
    for c in Path::new(p).components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err("an absolute path is not accepted in a HybridOnlineStore; give a path relative to the data directory (`--data-dir`)".into());
            }
            Component::ParentDir => {
                return Err("`..` is not accepted in a HybridOnlineStore path; give a path inside the data directory (`--data-dir`)".into());
            }
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    Ok(())
}

/// An emulator address is `host:port` (or `[v6]:port`): no scheme, no
/// `unix://` socket path, no spaces. Checked before a client library sees
/// it (bigtable_rs panics on an address it cannot turn into a URI).
fn check_host_port(h: &str) -> Result<(), String> {
    let bad = || {
        "expected `host:port` (e.g. `127.0.0.1:8086`): no scheme, socket path, user or spaces"
            .to_string()
    };
    let (host, port) = h.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = match host.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        }
    };
    if !host_ok || !port.parse::<u16>().is_ok_and(|p| p != 0) {
        return Err(bad());
    }
    Ok(())
}

/// Kubernetes' rules for a Secret name (a DNS-1123 subdomain) and a data
/// key: the routing table names the mounted file `<name>/<key>` under the
/// proxy's secrets directory, so neither may climb out of it (`..`, `/`).
fn check_secret_refs(
    c: &api::crd::CredentialsSpec,
    file: &str,
    path: &str,
) -> Result<(), ConfigError> {
    for (field, r) in [
        ("usernameSecretRef", &c.username_secret_ref),
        ("passwordSecretRef", &c.password_secret_ref),
    ] {
        let Some(r) = r else { continue };
        if !is_secret_name(&r.name) {
            return Err(ConfigError::new(
                file,
                format!("{path}.{field}.name"),
                "not a Secret name (lowercase letters, digits, `-` and `.`, at most 253 characters, starting and ending with a letter or digit)",
            ));
        }
        if !is_secret_key(&r.key) {
            return Err(ConfigError::new(
                file,
                format!("{path}.{field}.key"),
                "not a Secret key (letters, digits, `-`, `_` and `.`, at most 253 characters, not starting with `..`)",
            ));
        }
    }
    Ok(())
}

/// A DNS-1123 subdomain, as Kubernetes requires of a Secret's name.
pub fn is_secret_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A Secret (ConfigMap) data key as Kubernetes validates it.
pub fn is_secret_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && k != "."
        && !k.starts_with("..")
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
    // Before anything reads a Secret or opens a connection: a CR names
    // Secret keys in its own namespace and nothing else of the operator's.
    confine(&conf, &file, &path)?;
    if let Some(c) = &spec.credentials {
        check_secret_refs(c, &file, &format!("spec.onlineStores[{index}].credentials"))?;
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
/// files), the views whose tables are provisioned, each on the backend
/// its status records (or the registry's views where they were
/// provisioned), so the ConfigMap switches only after provisioning, and
/// the registry's feature services over them.
pub fn routing_table(
    store: &HybridOnlineStore,
    views: &[RoutedView],
    services: &[api::routing::FeatureService],
) -> Result<RoutingTable, ConfigError> {
    let mut table = RoutingTable {
        schema_version: SCHEMA_VERSION,
        project: store.spec.project.clone(),
        entity_key_serialization_version: version(store),
        routing_tag: store.spec.routing_tag.clone(),
        default_backend: store.spec.default_store.clone(),
        backends: backends(store, Credentials::Mounted)?,
        feature_views: views.to_vec(),
        feature_services: services.to_vec(),
    };
    table.normalize();
    table.validate_for_configmap(&format!("HybridOnlineStore {}", store.name_any()))?;
    Ok(table)
}

/// Content hash of a routing document, for the ConfigMap annotation.
pub fn content_hash(doc: &str) -> String {
    hex::encode(Md5::digest(doc.as_bytes()))
}

/// The routing ConfigMap, owned by the store; `registry_views` are the
/// routed views that come from the store's registry
/// ([`REGISTRY_VIEWS_ANNOTATION`]).
pub fn configmap(
    store: &HybridOnlineStore,
    doc: &str,
    registry_views: &BTreeSet<String>,
) -> ConfigMap {
    let name = store.name_any();
    let mut annotations = BTreeMap::from([
        (HASH_ANNOTATION.to_string(), content_hash(doc)),
        (
            GENERATION_ANNOTATION.to_string(),
            store.metadata.generation.unwrap_or_default().to_string(),
        ),
    ]);
    if !registry_views.is_empty() {
        // A set of strings always serializes.
        let list = serde_json::to_string(registry_views).unwrap_or_default();
        annotations.insert(REGISTRY_VIEWS_ANNOTATION.to_string(), list);
    }
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
            annotations: Some(annotations),
            owner_references: Some(vec![owner(store)]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(ROUTING_KEY.to_string(), doc.to_string())])),
        ..Default::default()
    }
}

/// Whether an existing ConfigMap already holds `doc` and names the same
/// registry views (then nothing is written).
pub fn configmap_current(
    existing: Option<&ConfigMap>,
    doc: &str,
    registry_views: &BTreeSet<String>,
) -> bool {
    existing
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get(ROUTING_KEY))
        .is_some_and(|d| d == doc)
        && registry_view_names(existing) == *registry_views
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

/// Drops a condition (one that no longer applies, e.g. the proxy's once
/// the store stops asking for a proxy).
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
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
    - {name: a, type: sqlite, conf: {path: a/online.db}}
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
        let table = routing_table(&s, &[view], &[]).unwrap();
        let doc = table.to_yaml();
        assert!(doc.contains("file: cass/pass"), "{doc}");
        let none = BTreeSet::new();
        let cm = configmap(&s, &doc, &none);
        assert_eq!(cm.metadata.name.as_deref(), Some("s-routing"));
        assert_eq!(cm.metadata.owner_references.unwrap()[0].uid, "u1");
        assert!(configmap_current(
            Some(&configmap(&s, &doc, &none)),
            &doc,
            &none
        ));
        assert!(!configmap_current(
            Some(&configmap(&s, "other", &none)),
            &doc,
            &none
        ));

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

    /// One backend spec, parsed and checked as `backend` does.
    fn check(ty: &str, conf: &str, credentials: &str) -> Result<Backend, ConfigError> {
        let s: HybridOnlineStore = api::yaml::from_str(&format!(
            r#"
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {{name: s, namespace: ns}}
spec:
  project: demo
  routingTag: team
  onlineStores:
    - name: b
      type: {ty}
      conf: {conf}
      {credentials}
"#
        ))
        .unwrap();
        backends(&s, Credentials::Mounted)
            .and_then(|_| backends(&s, Credentials::Resolved(&SecretValues::new())))
            .map(|mut b| b.remove(0))
    }

    /// File and env references in a CR's conf are refused (whatever the
    /// path: `..`, absolute, the ServiceAccount token), with the field
    /// named and the value not echoed; nothing is resolved.
    #[test]
    fn references_in_a_cr_conf_are_refused_before_anything_is_read() {
        let token = "/var/run/secrets/kubernetes.io/serviceaccount/token";
        // Set, so a resolution would succeed if one happened.
        let cases = [
            (
                "redis",
                format!("{{connection_string: '127.0.0.1:1', password: {{file: {token}}}}}"),
                "password",
                "`file`",
            ),
            (
                "redis",
                "{connection_string: '127.0.0.1:1', password: {file: ../../etc/passwd}}"
                    .to_string(),
                "password",
                "`file`",
            ),
            (
                "redis",
                "{connection_string: '127.0.0.1:1', password: {env: HOME}}".to_string(),
                "password",
                "`env`",
            ),
            (
                "redis",
                "{connection_string: '127.0.0.1:1', password: {secret_key_ref: {name: x, key: y}}}"
                    .to_string(),
                "password",
                "`secret_key_ref`",
            ),
            (
                "cassandra",
                "{hosts: [127.0.0.1], username: {env: HOME}}".to_string(),
                "username",
                "`env`",
            ),
            (
                "cassandra",
                format!("{{hosts: [127.0.0.1], password: {{file: {token}}}}}"),
                "password",
                "`file`",
            ),
        ];
        for (ty, conf, field, kind) in cases {
            let err = check(ty, &conf, "").unwrap_err();
            assert_eq!(
                err.path,
                format!("spec.onlineStores[0].conf.{field}"),
                "{err}"
            );
            assert!(err.message.contains(kind), "{err}");
            assert!(err.message.contains("credentials."), "{err}");
            for leaked in [token, "../../etc", "HOME"] {
                assert!(!err.to_string().contains(leaked), "{err}");
            }
        }
    }

    #[test]
    fn literal_secrets_and_paths_in_a_cr_conf_are_refused() {
        let cases = [
            (
                "redis",
                "{connection_string: '127.0.0.1:1,password=hunter2'}",
                "connection_string",
                "password=",
            ),
            (
                "redis",
                "{connection_string: '127.0.0.1:1, Password =hunter2'}",
                "connection_string",
                "password=",
            ),
            (
                "redis",
                "{connection_string: 'redis://:hunter2@127.0.0.1:1'}",
                "connection_string",
                "host:port",
            ),
            ("redis", "{password: hunter2}", "password", "literal"),
            (
                "cassandra",
                "{secure_bundle_path: /var/run/secrets/kubernetes.io/serviceaccount/token}",
                "secure_bundle_path",
                "file path",
            ),
            (
                "sqlite",
                "{path: /var/lib/other-team/online.db}",
                "path",
                "absolute",
            ),
            (
                "sqlite",
                "{path: ../other-namespace/online.db}",
                "path",
                "`..`",
            ),
            ("sqlite", "{path: a/../../b.db}", "path", "`..`"),
            (
                "bigtable",
                "{instance: i, emulator_host: 'unix:///var/run/docker.sock'}",
                "emulator_host",
                "host:port",
            ),
            (
                "bigtable",
                "{instance: i, emulator_host: 'a b:8086'}",
                "emulator_host",
                "host:port",
            ),
            (
                "bigtable",
                "{instance: i, emulator_host: '::::'}",
                "emulator_host",
                "host:port",
            ),
            (
                "bigtable",
                "{instance: i, emulator_host: 'localhost'}",
                "emulator_host",
                "host:port",
            ),
        ];
        for (ty, conf, field, problem) in cases {
            let err = check(ty, conf, "").unwrap_err();
            assert_eq!(
                err.path,
                format!("spec.onlineStores[0].conf.{field}"),
                "{conf}: {err}"
            );
            assert!(err.message.contains(problem), "{conf}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        // What stays accepted.
        for (ty, conf) in [
            ("sqlite", "{path: team/online.db}"),
            ("sqlite", "{}"),
            (
                "redis",
                "{connection_string: 'r1:6379,r2:6380,ssl=true,db=2'}",
            ),
            ("bigtable", "{instance: i, emulator_host: '127.0.0.1:8086'}"),
            ("bigtable", "{instance: i, emulator_host: '[::1]:8086'}"),
            (
                "bigtable",
                "{instance: i, emulator_host: 'bigtable-emulator.ns.svc:8086'}",
            ),
            ("cassandra", "{hosts: ['10.0.0.1', 'c2:9042']}"),
        ] {
            check(ty, conf, "").unwrap_or_else(|e| panic!("{conf}: {e}"));
        }
    }

    /// The last check before a connection: only literals (resolved from
    /// the store's Secrets) pass, whoever built the backend.
    #[test]
    fn connect_refuses_unresolved_references() {
        let s = store();
        let mounted = backends(&s, Credentials::Mounted).unwrap();
        let msg = unresolved_reference(&mounted[1]).unwrap();
        assert!(msg.contains("conf.username"), "{msg}");
        let values = SecretValues::from([
            (("cass".into(), "user".into()), "u".into()),
            (("cass".into(), "pass".into()), "p".into()),
        ]);
        let resolved = backends(&s, Credentials::Resolved(&values)).unwrap();
        assert_eq!(unresolved_reference(&resolved[1]), None);
        assert_eq!(unresolved_reference(&resolved[0]), None);
        let mut env = resolved[1].clone();
        if let BackendConf::Cassandra(c) = &mut env.conf {
            c.password = Some(Credential::Reference(CredentialRef::Env("HOME".into())));
        }
        assert!(
            unresolved_reference(&env)
                .unwrap()
                .contains("conf.password")
        );
    }

    /// Secret names and keys become `<name>/<key>` under the proxy's secrets
    /// directory and an API path: nothing that climbs out of either.
    #[test]
    fn secret_references_must_be_valid_secret_names_and_keys() {
        for (creds, field) in [
            (
                "credentials: {passwordSecretRef: {name: '..', key: token}}",
                "passwordSecretRef.name",
            ),
            (
                "credentials: {passwordSecretRef: {name: 'a/b', key: token}}",
                "passwordSecretRef.name",
            ),
            (
                "credentials: {passwordSecretRef: {name: 'Upper', key: token}}",
                "passwordSecretRef.name",
            ),
            (
                "credentials: {passwordSecretRef: {name: s, key: '../../token'}}",
                "passwordSecretRef.key",
            ),
            (
                "credentials: {passwordSecretRef: {name: s, key: '..data'}}",
                "passwordSecretRef.key",
            ),
            (
                "credentials: {usernameSecretRef: {name: s, key: '/etc/passwd'}}",
                "usernameSecretRef.key",
            ),
        ] {
            let err = check("cassandra", "{hosts: [h]}", creds).unwrap_err();
            assert_eq!(
                err.path,
                format!("spec.onlineStores[0].credentials.{field}"),
                "{err}"
            );
        }
        assert!(
            is_secret_name("cass-creds.v2")
                && is_secret_key("tls.crt")
                && is_secret_key("pass_word")
        );
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
