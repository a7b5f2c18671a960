//! The routing rule (which backend serves a feature view) and the routing
//! table: the self-contained document the operator writes into a ConfigMap
//! and the proxy loads.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::dtype::Dtype;
use crate::entity_key::SerializationVersion;
use crate::error::ConfigError;
use crate::feast_config::{
    BackendConf, BackendSpec, BackendType, OnlineStoreConfig, RepoConfig, parse_at,
};
use crate::feature_view::{EntityDef, FeatureViewDef, FieldDef, check_name};
use crate::yaml::Value;

/// Version of the routing table document this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a view has no backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("routing tag `{tag}`=`{value}` names no backend (backends: {known})")]
    UnknownBackend {
        tag: String,
        value: String,
        known: String,
    },
    #[error(
        "routing tag `{tag}`=`{value}` matches the type of several backends ({matches}); use a backend name"
    )]
    AmbiguousType {
        tag: String,
        value: String,
        matches: String,
    },
    #[error("no `{tag}` tag and no default store; add the tag or set a default store")]
    Untagged { tag: String },
}

/// What the routing rule needs to know about one backend.
pub trait RouteTarget {
    fn route_name(&self) -> &str;
    fn route_type(&self) -> BackendType;
}

/// The routing rule: the view's `routing_tag` value names a backend by name;
/// else by type when exactly one backend has that type (Feast's rule,
/// case-insensitive); a view without the tag goes to the default backend.
/// A tag value that matches nothing is an error even when a default exists,
/// so a typo never silently sends a team's data elsewhere.
pub fn resolve_backend<'a, B: RouteTarget>(
    routing_tag: &str,
    tags: &BTreeMap<String, String>,
    backends: &'a [B],
    default_backend: Option<&str>,
) -> Result<&'a B, RoutingError> {
    let value = tags
        .get(routing_tag)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    let Some(value) = value else {
        return default_backend
            .and_then(|d| backends.iter().find(|b| b.route_name() == d))
            .ok_or_else(|| RoutingError::Untagged {
                tag: routing_tag.to_string(),
            });
    };
    if let Some(b) = backends.iter().find(|b| b.route_name() == value) {
        return Ok(b);
    }
    let by_type: Vec<&B> = match BackendType::parse(value) {
        Some(t) => backends.iter().filter(|b| b.route_type() == t).collect(),
        None => Vec::new(),
    };
    match by_type.as_slice() {
        [one] => Ok(one),
        [] => Err(RoutingError::UnknownBackend {
            tag: routing_tag.to_string(),
            value: value.to_string(),
            known: backends
                .iter()
                .map(|b| b.route_name())
                .collect::<Vec<_>>()
                .join(", "),
        }),
        many => Err(RoutingError::AmbiguousType {
            tag: routing_tag.to_string(),
            value: value.to_string(),
            matches: many
                .iter()
                .map(|b| b.route_name())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// A backend in the routing table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backend {
    pub name: String,
    #[serde(rename = "type")]
    pub backend_type: BackendType,
    pub conf: BackendConf,
}

impl RouteTarget for Backend {
    fn route_name(&self) -> &str {
        &self.name
    }
    fn route_type(&self) -> BackendType {
        self.backend_type
    }
}

/// A join key and its value type (`None`: inferred from request values,
/// as Feast does for entities declared without a type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinKey {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<Dtype>,
}

/// An entity of a routed view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutedEntity {
    pub name: String,
    pub join_keys: Vec<JoinKey>,
}

/// A feature of a routed view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    pub name: String,
    pub dtype: Dtype,
}

/// A feature view and the backend that serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutedView {
    pub name: String,
    /// Empty for an entityless view (served under Feast's dummy entity key).
    #[serde(default)]
    pub entities: Vec<RoutedEntity>,
    pub features: Vec<Feature>,
    /// Seconds; absent means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(default = "yes")]
    pub online: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Name of the backend in `backends`.
    pub backend: String,
    /// Column holding the event time in write requests (the source's
    /// timestamp field); `event_timestamp` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_field: Option<String>,
    /// Column holding the created time in write requests, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_timestamp_column: Option<String>,
    /// Push source feeding this view (`POST /push`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_source: Option<String>,
    /// Set while the view moves from another backend to `backend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
}

/// A live move of a view between backends: writes go to both, reads stay
/// on the old backend until the data has been copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// The backend the view moves away from.
    pub from: String,
    /// `false`: reads from `from` (dual write, backfill); `true`: reads from
    /// the new backend while writes still go to both.
    #[serde(default)]
    pub reads_switched: bool,
}

impl RoutedView {
    /// The backend reads go to.
    pub fn read_backend(&self) -> &str {
        match &self.migration {
            Some(m) if !m.reads_switched => &m.from,
            _ => &self.backend,
        }
    }

    /// The backends writes go to: the view's, then the one it is leaving.
    pub fn write_backends(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.backend.as_str())
            .chain(self.migration.as_ref().map(|m| m.from.as_str()))
    }
}

fn yes() -> bool {
    true
}

impl RoutedView {
    /// All join keys of the view, in entity order.
    pub fn join_keys(&self) -> impl Iterator<Item = &JoinKey> {
        self.entities.iter().flat_map(|e| e.join_keys.iter())
    }

    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.name == name)
    }
}

/// A feature service: named projections of views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureService {
    pub name: String,
    pub projections: Vec<Projection>,
}

/// Features of one view in a feature service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Projection {
    pub feature_view: String,
    /// Name used instead of the view's in full feature names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Empty: every feature of the view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// The routing table. Serializes deterministically: backends, views and
/// services sorted by name, maps ordered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingTable {
    pub schema_version: u32,
    pub project: String,
    pub entity_key_serialization_version: SerializationVersion,
    pub routing_tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<String>,
    pub backends: Vec<Backend>,
    pub feature_views: Vec<RoutedView>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feature_services: Vec<FeatureService>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    name: String,
    #[serde(rename = "type")]
    backend_type: BackendType,
    #[serde(default)]
    conf: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    schema_version: u32,
    project: String,
    #[serde(default)]
    entity_key_serialization_version: SerializationVersion,
    routing_tag: String,
    #[serde(default)]
    default_backend: Option<String>,
    backends: Vec<Value>,
    #[serde(default)]
    feature_views: Vec<RoutedView>,
    #[serde(default)]
    feature_services: Vec<FeatureService>,
}

impl RoutingTable {
    /// The table's content digest: the first 16 hex digits of the SHA-256
    /// of its canonical JSON (backends, views and services sorted, maps
    /// ordered). The same routes give the same digest in every process and
    /// every build, whatever the document's formatting or source, so a
    /// fleet of proxies can be checked to serve one version.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        // Writing into a hasher cannot fail, and every map key here is a
        // string: a failure would only leave a shorter input.
        let _ = serde_json::to_writer(HashWriter(&mut hasher), self);
        hex::encode(&hasher.finalize()[..8])
    }

    /// Parses and validates a routing table document (YAML or JSON).
    pub fn parse(file: &str, text: &str) -> Result<RoutingTable, ConfigError> {
        // One typed pass over the document (no intermediate tree: a table
        // of thousands of views is megabytes). The version is still judged
        // first, so a newer document fails with that reason.
        let raw = if crate::error::is_json_object(text) {
            crate::error::from_json::<RawTable>(file, text)
        } else {
            crate::error::from_yaml::<RawTable>(file, text)
        };
        let version = match &raw {
            Ok(r) => Some(u64::from(r.schema_version)),
            // A refused document is read again as a tree, only to find its
            // version.
            Err(_) => match crate::error::from_yaml::<Value>(file, text) {
                Ok(probe) => probe.get("schema_version").and_then(Value::as_u64),
                // Not YAML at all: the typed pass's error says why.
                Err(_) => Some(u64::from(SCHEMA_VERSION)),
            },
        };
        match version {
            Some(v) if v == u64::from(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(ConfigError::new(
                    file,
                    "schema_version",
                    format!(
                        "routing table schema version {v} is not supported by this build (supports {SCHEMA_VERSION})"
                    ),
                ));
            }
            None => {
                return Err(ConfigError::new(
                    file,
                    "schema_version",
                    "missing or not a number",
                ));
            }
        }
        let raw = raw?;
        let mut backends = Vec::with_capacity(raw.backends.len());
        for (i, b) in raw.backends.into_iter().enumerate() {
            let path = format!("backends[{i}]");
            let rb: RawBackend = parse_at(b, file, &path)?;
            let conf = BackendConf::parse(rb.backend_type, rb.conf, file, &format!("{path}.conf"))?;
            backends.push(Backend {
                name: rb.name,
                backend_type: rb.backend_type,
                conf,
            });
        }
        let table = RoutingTable {
            schema_version: raw.schema_version,
            project: raw.project,
            entity_key_serialization_version: raw.entity_key_serialization_version,
            routing_tag: raw.routing_tag,
            default_backend: raw.default_backend,
            backends,
            feature_views: raw.feature_views,
            feature_services: raw.feature_services,
        };
        table.validate(file)?;
        Ok(table)
    }

    /// Deterministic compact JSON: the same table always gives the same
    /// bytes. What the operator publishes: JSON is YAML, so every reader of
    /// the YAML form reads it; a proxy parses it many times faster, and it
    /// is about a fifth smaller than the YAML (a ConfigMap holds 1 MiB).
    pub fn to_json(&self) -> String {
        // Serializing plain structs, strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Deterministic YAML: the same table always gives the same bytes.
    pub fn to_yaml(&self) -> String {
        // Serializing plain structs, strings and numbers cannot fail.
        crate::yaml::to_string(self).unwrap_or_default()
    }

    /// Sorts everything that has no meaningful order.
    pub fn normalize(&mut self) {
        self.backends.sort_by(|a, b| a.name.cmp(&b.name));
        self.feature_views.sort_by(|a, b| a.name.cmp(&b.name));
        self.feature_services.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }

    pub fn view(&self, name: &str) -> Option<&RoutedView> {
        self.feature_views.iter().find(|v| v.name == name)
    }

    /// Checks that names are unique, every reference resolves and every
    /// type is one Feast can key or store.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |path: String, msg: String| ConfigError::new(file, path, msg);
        check_name(&self.project).map_err(|m| err("project".into(), m))?;
        if self.backends.is_empty() {
            return Err(err(
                "backends".into(),
                "at least one backend is required".into(),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            check_name(&b.name).map_err(|m| err(format!("backends[{i}].name"), m))?;
            if !names.insert(b.name.as_str()) {
                return Err(err(
                    format!("backends[{i}].name"),
                    format!("duplicate backend `{}`", b.name),
                ));
            }
            if b.conf.backend_type() != b.backend_type {
                return Err(err(
                    format!("backends[{i}].conf"),
                    format!(
                        "conf is for {} but type is {}",
                        b.conf.backend_type(),
                        b.backend_type
                    ),
                ));
            }
        }
        if let Some(d) = &self.default_backend
            && !names.contains(d.as_str())
        {
            return Err(err(
                "default_backend".into(),
                format!("default backend `{d}` is not in backends"),
            ));
        }
        let mut views = BTreeSet::new();
        for (i, v) in self.feature_views.iter().enumerate() {
            let p = format!("feature_views[{i}]");
            check_name(&v.name).map_err(|m| err(format!("{p}.name"), m))?;
            if !views.insert(v.name.as_str()) {
                return Err(err(
                    format!("{p}.name"),
                    format!("duplicate feature view `{}`", v.name),
                ));
            }
            if !names.contains(v.backend.as_str()) {
                return Err(err(
                    format!("{p}.backend"),
                    format!(
                        "feature view `{}` routes to unknown backend `{}`",
                        v.name, v.backend
                    ),
                ));
            }
            if let Some(m) = &v.migration
                && (!names.contains(m.from.as_str()) || m.from == v.backend)
            {
                return Err(err(
                    format!("{p}.migration.from"),
                    format!(
                        "feature view `{}` migrates from `{}`, which is not another backend of the table",
                        v.name, m.from
                    ),
                ));
            }
            let mut cols = BTreeSet::new();
            for (j, k) in v.join_keys().enumerate() {
                check_name(&k.name).map_err(|m| err(format!("{p}.entities"), m))?;
                if let Some(d) = k.dtype
                    && !d.allowed_in_entity_key()
                {
                    return Err(err(
                        format!("{p}.entities"),
                        format!(
                            "join key `{}` has dtype {d}, which cannot be part of an entity key",
                            k.name
                        ),
                    ));
                }
                if !cols.insert(k.name.as_str()) {
                    return Err(err(
                        format!("{p}.entities"),
                        format!("join key #{j} `{}` is repeated", k.name),
                    ));
                }
            }
            for (j, f) in v.features.iter().enumerate() {
                check_name(&f.name).map_err(|m| err(format!("{p}.features[{j}].name"), m))?;
                if !cols.insert(f.name.as_str()) {
                    return Err(err(
                        format!("{p}.features[{j}].name"),
                        format!(
                            "`{}` appears twice among the view's join keys and features",
                            f.name
                        ),
                    ));
                }
            }
        }
        let mut services = BTreeSet::new();
        for (i, s) in self.feature_services.iter().enumerate() {
            let p = format!("feature_services[{i}]");
            if !services.insert(s.name.as_str()) {
                return Err(err(
                    format!("{p}.name"),
                    format!("duplicate feature service `{}`", s.name),
                ));
            }
            for (j, pr) in s.projections.iter().enumerate() {
                let Some(view) = self.view(&pr.feature_view) else {
                    return Err(err(
                        format!("{p}.projections[{j}].feature_view"),
                        format!("unknown feature view `{}`", pr.feature_view),
                    ));
                };
                if let Some(f) = pr.features.iter().find(|f| view.feature(f).is_none()) {
                    return Err(err(
                        format!("{p}.projections[{j}].features"),
                        format!("feature view `{}` has no feature `{f}`", view.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// For a ConfigMap: also refuses literal credentials.
    pub fn validate_for_configmap(&self, file: &str) -> Result<(), ConfigError> {
        self.validate(file)?;
        for (i, b) in self.backends.iter().enumerate() {
            if b.conf.has_literal_credentials() {
                return Err(ConfigError::new(
                    file,
                    format!("backends[{i}].conf"),
                    format!(
                        "backend `{}` holds a literal credential; use a secret reference",
                        b.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Builds the table from a Feast repo config and feature view
    /// definitions. Every view must be routable.
    pub fn from_feast(
        config: &RepoConfig,
        views: &[FeatureViewDef],
        feature_services: Vec<FeatureService>,
        file: &str,
    ) -> Result<RoutingTable, ConfigError> {
        let (routing_tag, specs, default_store, collocate) = match &config.online_store {
            OnlineStoreConfig::Hybrid {
                routing_tag,
                online_stores,
                default_store,
                collocate_feature_services,
            } => (
                routing_tag.clone(),
                online_stores.clone(),
                default_store.clone(),
                *collocate_feature_services,
            ),
            // A single store serves every view.
            OnlineStoreConfig::Single(spec) => {
                let name = backend_name(spec);
                (
                    crate::feast_config::DEFAULT_ROUTING_TAG.to_string(),
                    vec![(**spec).clone()],
                    Some(name),
                    false,
                )
            }
        };
        let mut backends: Vec<Backend> = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            let name = backend_name(s);
            if backends.iter().any(|b| b.name == name) {
                return Err(ConfigError::new(
                    file,
                    format!("online_store.online_stores[{i}]"),
                    format!("two backends are named `{name}`; give each a distinct `name`"),
                ));
            }
            backends.push(Backend {
                name,
                backend_type: s.conf.backend_type(),
                conf: s.conf.clone(),
            });
        }
        let mut feature_views = Vec::with_capacity(views.len());
        for (i, v) in views.iter().enumerate() {
            let backend =
                resolve_backend(&routing_tag, &v.tags, &backends, default_store.as_deref())
                    .map_err(|e| {
                        ConfigError::new(
                            file,
                            format!("feature_views[{i}] `{}`.tags", v.name),
                            e.to_string(),
                        )
                    })?;
            feature_views.push(routed_view(v, backend.name.clone()));
        }
        if collocate {
            collocate_services(&mut feature_views, &feature_services, file)?;
        }
        let mut table = RoutingTable {
            schema_version: SCHEMA_VERSION,
            project: config.project.clone(),
            entity_key_serialization_version: config.entity_key_serialization_version,
            routing_tag,
            default_backend: default_store,
            backends,
            feature_views,
            feature_services,
        };
        table.normalize();
        table.validate(file)?;
        Ok(table)
    }
}

/// Moves every view of a feature service onto the backend of the service's
/// first view. A view two services would move to different backends is an
/// error naming both.
fn collocate_services(
    views: &mut [RoutedView],
    services: &[FeatureService],
    file: &str,
) -> Result<(), ConfigError> {
    let mut sorted: Vec<&FeatureService> = services.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut placed: BTreeMap<String, (String, String)> = BTreeMap::new();
    for svc in sorted {
        let Some(first) = svc.projections.first() else {
            continue;
        };
        let Some(target) = views
            .iter()
            .find(|v| v.name == first.feature_view)
            .map(|v| v.backend.clone())
        else {
            continue;
        };
        for p in &svc.projections {
            if let Some((other, backend)) = placed.get(&p.feature_view)
                && *backend != target
            {
                return Err(ConfigError::new(
                    file,
                    "online_store.collocate_feature_services",
                    format!(
                        "feature view `{}` is in feature services `{other}` (backend `{backend}`) and `{}` (backend `{target}`); it cannot be collocated with both",
                        p.feature_view, svc.name
                    ),
                ));
            }
            placed.insert(p.feature_view.clone(), (svc.name.clone(), target.clone()));
        }
    }
    for v in views.iter_mut() {
        if let Some((_, backend)) = placed.get(&v.name) {
            v.backend = backend.clone();
        }
    }
    Ok(())
}

/// A backend's name: its `name`, else its type name.
pub fn backend_name(spec: &BackendSpec) -> String {
    spec.name
        .clone()
        .unwrap_or_else(|| spec.conf.backend_type().as_str().to_string())
}

/// Converts a definition; join key types come from the entity, else from a
/// schema column of the same name (which is then not a feature, as in Feast).
pub fn routed_view(v: &FeatureViewDef, backend: String) -> RoutedView {
    let schema_type = |k: &str| v.schema.iter().find(|f| f.name == k).map(|f| f.dtype);
    let entities: Vec<RoutedEntity> = v
        .entities
        .iter()
        .map(|e: &EntityDef| RoutedEntity {
            name: e.name.clone(),
            join_keys: e
                .join_keys
                .iter()
                .map(|k| JoinKey {
                    name: k.clone(),
                    dtype: e.dtype.or_else(|| schema_type(k)),
                })
                .collect(),
        })
        .collect();
    let key_names: BTreeSet<&str> = v
        .entities
        .iter()
        .flat_map(|e| e.join_keys.iter().map(String::as_str))
        .collect();
    let features = v
        .schema
        .iter()
        .filter(|f: &&FieldDef| !key_names.contains(f.name.as_str()))
        .map(|f| Feature {
            name: f.name.clone(),
            dtype: f.dtype,
        })
        .collect();
    let source = v.source.as_ref();
    RoutedView {
        name: v.name.clone(),
        entities,
        features,
        ttl_seconds: v.ttl,
        online: v.online,
        tags: v.tags.clone(),
        backend,
        timestamp_field: source.and_then(|s| s.event_timestamp_column.clone()),
        created_timestamp_column: source.and_then(|s| s.created_timestamp_column.clone()),
        push_source: source
            .filter(|s| s.kind.as_deref() == Some("push"))
            .and_then(|s| s.name.clone()),
        migration: None,
    }
}

/// Feeds `serde_json`'s output straight into a hasher (no buffer of the
/// whole document).
struct HashWriter<'a>(&'a mut sha2::Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug)]
    struct B(&'static str, BackendType);
    impl RouteTarget for B {
        fn route_name(&self) -> &str {
            self.0
        }
        fn route_type(&self) -> BackendType {
            self.1
        }
    }

    fn tags(v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("team".to_string(), v.to_string())])
    }

    const BACKENDS: [B; 4] = [
        B("bt", BackendType::Bigtable),
        B("team_a", BackendType::Cassandra),
        B("team_b", BackendType::Cassandra),
        B("cache", BackendType::Redis),
    ];

    #[test]
    fn name_then_unique_type_then_default() {
        assert_eq!(
            resolve_backend("team", &tags("team_a"), &BACKENDS, None)
                .unwrap()
                .0,
            "team_a"
        );
        assert_eq!(
            resolve_backend("team", &tags("bigtable"), &BACKENDS, None)
                .unwrap()
                .0,
            "bt"
        );
        assert_eq!(
            resolve_backend("team", &tags("Redis"), &BACKENDS, None)
                .unwrap()
                .0,
            "cache"
        );
        assert_eq!(
            resolve_backend("team", &BTreeMap::new(), &BACKENDS, Some("cache"))
                .unwrap()
                .0,
            "cache"
        );
    }

    #[test]
    fn unroutable_reasons() {
        let e = resolve_backend("team", &tags("cassandra"), &BACKENDS, Some("bt")).unwrap_err();
        assert!(matches!(e, RoutingError::AmbiguousType { .. }), "{e}");
        assert!(e.to_string().contains("team_a, team_b"));
        let e = resolve_backend("team", &tags("mongo"), &BACKENDS, Some("bt")).unwrap_err();
        assert!(matches!(e, RoutingError::UnknownBackend { .. }), "{e}");
        let e = resolve_backend("team", &BTreeMap::new(), &BACKENDS, None).unwrap_err();
        assert_eq!(e, RoutingError::Untagged { tag: "team".into() });
    }

    proptest! {
        /// Whatever the tag, a resolved backend is one the tag names (by
        /// name or unique type) or, for an untagged view, the default.
        #[test]
        fn resolution_is_justified(value in prop_oneof![
            Just(String::new()), Just("bt".to_string()), Just("team_a".to_string()),
            Just("cassandra".to_string()), Just("REDIS".to_string()), "[a-z]{1,6}"
        ], default in prop_oneof![Just(None), Just(Some("cache")), Just(Some("bt"))]) {
            let t = if value.is_empty() { BTreeMap::new() } else { tags(&value) };
            match resolve_backend("team", &t, &BACKENDS, default) {
                Ok(b) => {
                    if value.is_empty() {
                        prop_assert_eq!(Some(b.0), default);
                    } else {
                        let by_type = BackendType::parse(&value) == Some(b.1)
                            && BACKENDS.iter().filter(|x| x.1 == b.1).count() == 1;
                        prop_assert!(b.0 == value || by_type);
                    }
                }
                Err(RoutingError::Untagged { .. }) => prop_assert!(value.is_empty() && default.is_none()),
                Err(_) => prop_assert!(!value.is_empty()),
            }
        }
    }
}
