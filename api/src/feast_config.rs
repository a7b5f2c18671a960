//! Feast's `feature_store.yaml`, the hybrid online store included.
//!
//! Accepted `online_store.type` spellings for the hybrid store: `hybrid`,
//! `hybrid_online_store.HybridOnlineStore` (Feast's docs; not importable in
//! Feast 0.67) and the full class path. Backend entries are `{type, conf}` as
//! in Feast, plus an optional `name` (this project's extension: two backends
//! of one type), and the hybrid block may name a `default_store`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::credential::Credential;
use crate::entity_key::SerializationVersion;
use crate::error::ConfigError;
use crate::yaml::{Mapping, Value};

/// Feast's default routing tag for the hybrid store.
pub const DEFAULT_ROUTING_TAG: &str = "tribe";

const HYBRID_TYPES: [&str; 3] = [
    "hybrid",
    "hybrid_online_store.HybridOnlineStore",
    "feast.infra.online_stores.hybrid_online_store.hybrid_online_store.HybridOnlineStore",
];

/// Feast's `os.path.expandvars`, applied to the raw file text before YAML
/// parsing: `$NAME` and `${NAME}` are replaced when the variable is set and
/// left as written when it is not.
pub fn expand_env_vars(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match (consumed, lookup(name)) {
            (c, Some(v)) if c > 0 && !name.is_empty() => {
                out.push_str(&v);
                rest = &after[consumed..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The kinds of online store this project serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum BackendType {
    Sqlite,
    Redis,
    Bigtable,
    Cassandra,
}

impl BackendType {
    pub const ALL: [BackendType; 4] = [
        BackendType::Sqlite,
        BackendType::Redis,
        BackendType::Bigtable,
        BackendType::Cassandra,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendType::Sqlite => "sqlite",
            BackendType::Redis => "redis",
            BackendType::Bigtable => "bigtable",
            BackendType::Cassandra => "cassandra",
        }
    }

    fn class_path(self) -> &'static str {
        match self {
            BackendType::Sqlite => "feast.infra.online_stores.sqlite.SqliteOnlineStore",
            BackendType::Redis => "feast.infra.online_stores.redis.RedisOnlineStore",
            BackendType::Bigtable => "feast.infra.online_stores.bigtable.BigtableOnlineStore",
            BackendType::Cassandra => {
                "feast.infra.online_stores.cassandra_online_store.cassandra_online_store.CassandraOnlineStore"
            }
        }
    }

    /// Parses a Feast `type`: the short name, Feast's class path, or the
    /// class name alone (case-insensitive), as Feast's hybrid store matches
    /// the last dotted segment.
    pub fn parse(s: &str) -> Option<BackendType> {
        let last = s.rsplit('.').next().unwrap_or(s).to_ascii_lowercase();
        Self::ALL.into_iter().find(|t| {
            s == t.class_path()
                || last == t.as_str()
                || last == format!("{}onlinestore", t.as_str())
        })
    }
}

impl std::fmt::Display for BackendType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_sqlite_path() -> String {
    "data/online.db".to_string()
}

/// Feast's `SqliteOnlineStoreConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConf {
    /// Database file, relative to the repo directory unless absolute.
    #[serde(default = "default_sqlite_path")]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_len: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_search_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_openai_compatible_store: Option<bool>,
    /// Extension (Feast's SQLite store has no such field): rows whose event
    /// time is older than this many seconds are deleted by the proxy's
    /// periodic sweep (`--sweep-seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisType {
    #[default]
    Redis,
    RedisCluster,
    RedisSentinel,
}

fn default_redis_connection() -> String {
    "localhost:6379".to_string()
}

fn default_sentinel_master() -> String {
    "mymaster".to_string()
}

/// Feast's `RedisOnlineStoreConfig`, plus `password` as a credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConf {
    #[serde(default)]
    pub redis_type: RedisType,
    #[serde(default = "default_sentinel_master")]
    pub sentinel_master: String,
    /// `host:port[,host:port...][,password=...][,ssl=true][,db=N]` as in Feast.
    #[serde(default = "default_redis_connection")]
    pub connection_string: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_scan_for_deletion: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_dedup: Option<bool>,
    /// Extension: password kept out of the connection string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Credential>,
}

fn default_max_versions() -> u32 {
    2
}

/// Feast's `BigtableOnlineStoreConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigtableConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    pub instance: String,
    #[serde(default = "default_max_versions")]
    pub max_versions: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_column_family: Option<String>,
    /// Extension: emulator address; `BIGTABLE_EMULATOR_HOST` also works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator_host: Option<String>,
    /// Extension (Feast's Bigtable store has no such field): the feature
    /// column family's GC rule also deletes cells older than this many
    /// seconds (max age), set when tables are created or applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ttl_seconds: Option<u64>,
    /// Extension: the Bigtable app profile every data request names
    /// (`app_profile_id`); the profile decides single- or multi-cluster
    /// routing. Unset: the instance's default profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_profile_id: Option<String>,
}

fn default_keyspace() -> String {
    "feast_keyspace".to_string()
}

fn default_concurrency() -> u32 {
    100
}

fn default_local_dc() -> String {
    "datacenter1".to_string()
}

fn default_table_name_format_version() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassandraLoadBalancing {
    pub load_balancing_policy: String,
    #[serde(default = "default_local_dc")]
    pub local_dc: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassandraDatacenter {
    pub name: String,
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_strategy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassandraRouting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_dc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_dc: Option<String>,
}

/// Feast's `CassandraOnlineStoreConfig`, plus `table_name_format_version`,
/// `key_ttl_seconds` and consistency levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassandraConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_bundle_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default = "default_keyspace")]
    pub keyspace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<Credential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Credential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u8>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<CassandraLoadBalancing>,
    #[serde(default = "default_concurrency")]
    pub read_concurrency: u32,
    #[serde(default = "default_concurrency")]
    pub write_concurrency: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenters: Option<Vec<CassandraDatacenter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<CassandraRouting>,
    /// 1: `<project>_<view>` (Feast); 2: hashed names that fit 48 characters.
    #[serde(default = "default_table_name_format_version")]
    pub table_name_format_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ttl_seconds: Option<u64>,
    /// e.g. `LOCAL_QUORUM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_consistency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_consistency: Option<String>,
}

/// One backend's configuration, by type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BackendConf {
    Sqlite(SqliteConf),
    Redis(RedisConf),
    Bigtable(BigtableConf),
    Cassandra(Box<CassandraConf>),
}

impl BackendConf {
    pub fn backend_type(&self) -> BackendType {
        match self {
            BackendConf::Sqlite(_) => BackendType::Sqlite,
            BackendConf::Redis(_) => BackendType::Redis,
            BackendConf::Bigtable(_) => BackendType::Bigtable,
            BackendConf::Cassandra(_) => BackendType::Cassandra,
        }
    }

    /// Parses a `conf` block for a backend type; errors name `file` and
    /// the field path under `path`.
    pub fn parse(
        ty: BackendType,
        conf: Value,
        file: &str,
        path: &str,
    ) -> Result<BackendConf, ConfigError> {
        let conf = match conf {
            Value::Null => Value::Mapping(Mapping::new()),
            other => other,
        };
        Ok(match ty {
            BackendType::Sqlite => BackendConf::Sqlite(parse_at(conf, file, path)?),
            BackendType::Redis => BackendConf::Redis(parse_at(conf, file, path)?),
            BackendType::Bigtable => BackendConf::Bigtable(parse_at(conf, file, path)?),
            BackendType::Cassandra => BackendConf::Cassandra(Box::new(parse_at(conf, file, path)?)),
        })
    }

    /// Whether any credential is written literally in this configuration.
    pub fn has_literal_credentials(&self) -> bool {
        let lit = |c: &Option<Credential>| c.as_ref().is_some_and(Credential::is_literal);
        match self {
            BackendConf::Redis(r) => lit(&r.password) || r.connection_string.contains("password="),
            BackendConf::Cassandra(c) => lit(&c.username) || lit(&c.password),
            BackendConf::Sqlite(_) | BackendConf::Bigtable(_) => false,
        }
    }
}

/// Deserializes a YAML block as `T`, prefixing error paths with `path`.
pub fn parse_at<T: DeserializeOwned>(
    value: Value,
    file: &str,
    path: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let full = match (path, inner.as_str()) {
            ("" | ".", p) => p.to_string(),
            (base, ".") => base.to_string(),
            (base, p) if p.starts_with('[') => format!("{base}{p}"),
            (base, p) => format!("{base}.{p}"),
        };
        ConfigError::new(file, full, e.into_inner().to_string())
    })
}

/// One online store of the hybrid store (or the only one).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSpec {
    /// Extension: a name views can route to. Defaults to the type name.
    pub name: Option<String>,
    pub conf: BackendConf,
}

/// The `online_store` block.
#[derive(Debug, Clone, PartialEq)]
pub enum OnlineStoreConfig {
    Hybrid {
        routing_tag: String,
        online_stores: Vec<BackendSpec>,
        /// Extension: the backend for views that carry no routing tag.
        default_store: Option<String>,
        /// Extension: route every view of a feature service to one backend
        /// (that of the service's first view), so a feature-service read
        /// touches a single store.
        collocate_feature_services: bool,
    },
    /// A plain single store, served as the only backend.
    Single(Box<BackendSpec>),
}

/// The parts of `feature_store.yaml` this project uses. Other Feast keys
/// are accepted and kept unparsed; unknown keys are errors.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoConfig {
    pub project: String,
    pub provider: String,
    /// `registry:` (both forms), if set.
    pub registry: Option<crate::registry_config::RegistryConfig>,
    pub online_store: OnlineStoreConfig,
    pub entity_key_serialization_version: SerializationVersion,
    /// Keys of [`IGNORED_KEYS`] the file sets (Feast's, not about serving).
    pub ignored_keys: Vec<&'static str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepoConfig {
    project: String,
    #[serde(default)]
    project_description: Option<String>,
    #[serde(default = "default_provider")]
    provider: String,
    #[serde(default)]
    registry: Option<Value>,
    #[serde(default)]
    online_store: Option<Value>,
    /// Read as a [`Value`] first: the document is read straight into this
    /// struct, where serde-saphyr would also take a quoted `"3"` as a number.
    /// `Some(Null)` is an explicit null, which is an error.
    #[serde(default, deserialize_with = "present")]
    entity_key_serialization_version: Option<Value>,
    // Feast keys accepted and ignored: they are not about online serving.
    #[serde(default, rename = "offline_store")]
    _offline_store: Value,
    #[serde(default, rename = "batch_engine")]
    _batch_engine: Value,
    #[serde(default, rename = "auth")]
    _auth: Value,
    #[serde(default, rename = "feature_server")]
    _feature_server: Value,
    #[serde(default, rename = "embedding_model")]
    _embedding_model: Value,
    #[serde(default, rename = "flags")]
    _flags: Value,
    #[serde(default, rename = "repo_path")]
    _repo_path: Value,
    #[serde(default, rename = "coerce_tz_aware")]
    _coerce_tz_aware: Value,
    #[serde(default, rename = "materialization")]
    _materialization: Value,
    #[serde(default, rename = "openlineage")]
    _openlineage: Value,
    #[serde(default, rename = "mlflow")]
    _mlflow: Value,
    #[serde(default, rename = "data_quality_monitoring")]
    _data_quality_monitoring: Value,
    #[serde(default, rename = "batch_engine_config")]
    _batch_engine_config: Value,
    /// This project's settings of a hybrid store, kept apart from
    /// `online_store` so that Feast (which refuses unknown keys there, and
    /// ignores unknown top-level keys) still reads the file.
    #[serde(default)]
    hybrid_online_store: Option<Value>,
}

/// Top-level keys Feast 0.67 accepts that serving does not use: accepted
/// and reported once by the proxy.
pub const IGNORED_KEYS: &[&str] = &[
    "project_description",
    "offline_store",
    "batch_engine",
    "batch_engine_config",
    "auth",
    "feature_server",
    "embedding_model",
    "flags",
    "repo_path",
    "coerce_tz_aware",
    "materialization",
    "openlineage",
    "mlflow",
    "data_quality_monitoring",
];

/// `hybrid_online_store:` (top level): backend names, the default backend,
/// feature-service collocation and backend settings Feast's own configs
/// do not have, for the `online_store.online_stores` entries by position.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExtension {
    #[serde(default)]
    default_store: Option<String>,
    #[serde(default)]
    collocate_feature_services: Option<bool>,
    #[serde(default)]
    online_stores: Vec<RawExtensionEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtensionEntry {
    #[serde(default)]
    name: Option<String>,
    /// Keys merged into the entry's `conf` (`key_ttl_seconds`,
    /// `app_profile_id`, ...).
    #[serde(default)]
    conf: Option<Value>,
}

/// A field that is there, even as null.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn default_provider() -> String {
    "local".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHybrid {
    #[serde(rename = "type")]
    _type: String,
    #[serde(default = "default_routing_tag")]
    routing_tag: String,
    #[serde(default)]
    online_stores: Option<Vec<Value>>,
    #[serde(default)]
    default_store: Option<String>,
    #[serde(default)]
    collocate_feature_services: bool,
}

fn default_routing_tag() -> String {
    DEFAULT_ROUTING_TAG.to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    conf: Value,
    #[serde(default)]
    name: Option<String>,
}

fn unknown_type(file: &str, path: &str, ty: &str) -> ConfigError {
    ConfigError::new(
        file,
        path,
        format!(
            "unsupported online store type `{ty}` (expected sqlite, redis, bigtable, cassandra, or hybrid)"
        ),
    )
}

fn parse_entry(v: Value, file: &str, path: &str) -> Result<BackendSpec, ConfigError> {
    let raw: RawEntry = parse_at(v, file, path)?;
    let ty = BackendType::parse(&raw.ty)
        .ok_or_else(|| unknown_type(file, &format!("{path}.type"), &raw.ty))?;
    let conf = BackendConf::parse(ty, raw.conf, file, &format!("{path}.conf"))?;
    Ok(BackendSpec {
        name: raw.name,
        conf,
    })
}

fn parse_online_store(
    v: Option<Value>,
    ext: Option<RawExtension>,
    file: &str,
) -> Result<OnlineStoreConfig, ConfigError> {
    let path = "online_store";
    let ext_path = "hybrid_online_store";
    let not_hybrid = || {
        ConfigError::new(
            file,
            ext_path,
            "applies to a hybrid online store (online_store.type: hybrid)",
        )
    };
    let v = match v {
        None | Some(Value::Null) | Some(Value::String(_)) if ext.is_some() => {
            return Err(not_hybrid());
        }
        None | Some(Value::Null) => {
            return Ok(OnlineStoreConfig::Single(Box::new(BackendSpec {
                name: None,
                conf: BackendConf::parse(BackendType::Sqlite, Value::Null, file, path)?,
            })));
        }
        // `online_store: sqlite` (a bare type name).
        Some(Value::String(ty)) => {
            let t = BackendType::parse(&ty).ok_or_else(|| unknown_type(file, path, &ty))?;
            return Ok(OnlineStoreConfig::Single(Box::new(BackendSpec {
                name: None,
                conf: BackendConf::parse(t, Value::Null, file, path)?,
            })));
        }
        Some(v) => v,
    };
    let mut map = match v {
        Value::Mapping(m) => m,
        other => {
            return Err(ConfigError::new(
                file,
                path,
                format!("expected a mapping or a type name, found {}", other.kind()),
            ));
        }
    };
    let ty = match map.get("type") {
        None => "sqlite".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(ConfigError::new(
                file,
                format!("{path}.type"),
                format!("expected a string, found {}", other.kind()),
            ));
        }
    };
    if HYBRID_TYPES.contains(&ty.as_str()) {
        let raw: RawHybrid = parse_at(Value::Mapping(map), file, path)?;
        let mut entries = raw.online_stores.unwrap_or_default();
        if entries.is_empty() {
            return Err(ConfigError::new(
                file,
                format!("{path}.online_stores"),
                "the hybrid online store needs at least one entry",
            ));
        }
        let ext = ext.unwrap_or_default();
        if ext.online_stores.len() > entries.len() {
            return Err(ConfigError::new(
                file,
                format!("{ext_path}.online_stores"),
                format!(
                    "has {} entries for the {} of online_store.online_stores (matched by position)",
                    ext.online_stores.len(),
                    entries.len()
                ),
            ));
        }
        let mut names = Vec::with_capacity(entries.len());
        for (i, (entry, more)) in entries
            .iter_mut()
            .zip(
                ext.online_stores
                    .into_iter()
                    .map(Some)
                    .chain(std::iter::repeat_with(|| None)),
            )
            .enumerate()
        {
            let Some(more) = more else {
                names.push(None);
                continue;
            };
            if let Some(extra) = more.conf.filter(|c| !matches!(c, Value::Null)) {
                let at = |what: &str| format!("{ext_path}.online_stores[{i}].conf{what}");
                let Value::Mapping(extra) = extra else {
                    return Err(ConfigError::new(file, at(""), "expected a mapping"));
                };
                let Value::Mapping(e) = entry else {
                    return Err(ConfigError::new(
                        file,
                        format!("{path}.online_stores[{i}]"),
                        "expected a mapping",
                    ));
                };
                let mut conf = match e.remove("conf") {
                    None | Some(Value::Null) => crate::yaml::Mapping::new(),
                    Some(Value::Mapping(m)) => m,
                    Some(_) => {
                        return Err(ConfigError::new(
                            file,
                            format!("{path}.online_stores[{i}].conf"),
                            "expected a mapping",
                        ));
                    }
                };
                for (k, v) in extra.into_entries() {
                    let key = k.as_str().unwrap_or("?").to_string();
                    if conf.get(&key).is_some() {
                        return Err(ConfigError::new(
                            file,
                            at(&format!(".{key}")),
                            format!("is also set in online_store.online_stores[{i}].conf"),
                        ));
                    }
                    conf.insert(k, v);
                }
                e.insert(Value::String("conf".into()), Value::Mapping(conf));
            }
            names.push(more.name);
        }
        let mut online_stores = Vec::with_capacity(entries.len());
        for (i, (e, name)) in entries.into_iter().zip(names).enumerate() {
            let mut spec = parse_entry(e, file, &format!("{path}.online_stores[{i}]"))?;
            if let Some(name) = name {
                if spec.name.as_ref().is_some_and(|n| *n != name) {
                    return Err(ConfigError::new(
                        file,
                        format!("{ext_path}.online_stores[{i}].name"),
                        "differs from the entry's own name",
                    ));
                }
                spec.name = Some(name);
            }
            online_stores.push(spec);
        }
        let default_store = match (raw.default_store, ext.default_store) {
            (Some(a), Some(b)) if a != b => {
                return Err(ConfigError::new(
                    file,
                    format!("{ext_path}.default_store"),
                    format!("`{b}` differs from online_store.default_store `{a}`"),
                ));
            }
            (a, b) => b.or(a),
        };
        return Ok(OnlineStoreConfig::Hybrid {
            routing_tag: raw.routing_tag,
            online_stores,
            default_store,
            collocate_feature_services: raw.collocate_feature_services
                || ext.collocate_feature_services.unwrap_or(false),
        });
    }
    if ext.is_some() {
        return Err(not_hybrid());
    }
    let t =
        BackendType::parse(&ty).ok_or_else(|| unknown_type(file, &format!("{path}.type"), &ty))?;
    map.remove("type");
    let name = match map.remove("name") {
        Some(Value::String(s)) => Some(s),
        None => None,
        Some(other) => {
            return Err(ConfigError::new(
                file,
                format!("{path}.name"),
                format!("expected a string, found {}", other.kind()),
            ));
        }
    };
    let conf = BackendConf::parse(t, Value::Mapping(map), file, path)?;
    Ok(OnlineStoreConfig::Single(Box::new(BackendSpec {
        name,
        conf,
    })))
}

impl RepoConfig {
    /// Parses `feature_store.yaml` text, after Feast's environment variable
    /// expansion with `env` (pass `|k| std::env::var(k).ok()` in binaries).
    pub fn parse(
        file: &str,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<RepoConfig, ConfigError> {
        let expanded = expand_env_vars(text, env);
        let raw: RawRepoConfig = crate::error::from_yaml(file, &expanded)?;
        if raw.project.is_empty()
            || !raw
                .project
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::new(
                file,
                "project",
                format!(
                    "project name `{}` must be non-empty and hold only letters, digits and underscores",
                    raw.project
                ),
            ));
        }
        let registry = crate::registry_config::RegistryConfig::parse(raw.registry, file)?;
        let extension: Option<RawExtension> = match raw.hybrid_online_store {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_at(v, file, "hybrid_online_store")?),
        };
        let set = |v: &Value| !matches!(v, Value::Null);
        let ignored_keys = [
            ("project_description", raw.project_description.is_some()),
            ("offline_store", set(&raw._offline_store)),
            ("batch_engine", set(&raw._batch_engine)),
            ("batch_engine_config", set(&raw._batch_engine_config)),
            ("auth", set(&raw._auth)),
            ("feature_server", set(&raw._feature_server)),
            ("embedding_model", set(&raw._embedding_model)),
            ("flags", set(&raw._flags)),
            ("repo_path", set(&raw._repo_path)),
            ("coerce_tz_aware", set(&raw._coerce_tz_aware)),
            ("materialization", set(&raw._materialization)),
            ("openlineage", set(&raw._openlineage)),
            ("mlflow", set(&raw._mlflow)),
            (
                "data_quality_monitoring",
                set(&raw._data_quality_monitoring),
            ),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        Ok(RepoConfig {
            ignored_keys,
            project: raw.project,
            provider: raw.provider,
            registry,
            online_store: parse_online_store(raw.online_store, extension, file)?,
            entity_key_serialization_version: match raw.entity_key_serialization_version {
                None => SerializationVersion::default(),
                Some(v) => parse_at(v, file, "entity_key_serialization_version")?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn expands_like_python_expandvars() {
        let e = env(&[("HOST", "db1"), ("P", "9042")]);
        assert_eq!(expand_env_vars("h: ${HOST}:$P", &e), "h: db1:9042");
        assert_eq!(
            expand_env_vars("x: ${MISSING} $MISSING $ ${", &e),
            "x: ${MISSING} $MISSING $ ${"
        );
        assert_eq!(expand_env_vars("$HOST-x ${HOST}y", &e), "db1-x db1y");
        assert_eq!(expand_env_vars("ünï $HOST", &e), "ünï db1");
    }

    #[test]
    fn backend_type_spellings() {
        assert_eq!(BackendType::parse("sqlite"), Some(BackendType::Sqlite));
        assert_eq!(
            BackendType::parse("feast.infra.online_stores.bigtable.BigtableOnlineStore"),
            Some(BackendType::Bigtable)
        );
        assert_eq!(
            BackendType::parse("CassandraOnlineStore"),
            Some(BackendType::Cassandra)
        );
        assert_eq!(BackendType::parse("dynamodb"), None);
    }

    #[test]
    fn all_hybrid_spellings() {
        for ty in HYBRID_TYPES {
            let text = format!(
                "project: p\nonline_store:\n  type: {ty}\n  routing_tag: team\n  online_stores:\n    - type: sqlite\n      conf: {{path: a.db}}\n"
            );
            let c = RepoConfig::parse("feature_store.yaml", &text, |_| None).unwrap();
            assert!(
                matches!(c.online_store, OnlineStoreConfig::Hybrid { ref routing_tag, .. } if routing_tag == "team")
            );
        }
    }

    #[test]
    fn plain_store_and_default() {
        let c = RepoConfig::parse("f", "project: p\n", |_| None).unwrap();
        assert!(
            matches!(c.online_store, OnlineStoreConfig::Single(ref b) if matches!(&b.conf, BackendConf::Sqlite(s) if s.path == "data/online.db"))
        );
        let c = RepoConfig::parse(
            "f",
            "project: p\nonline_store:\n  type: redis\n  connection_string: r:6379\n",
            |_| None,
        )
        .unwrap();
        assert!(
            matches!(c.online_store, OnlineStoreConfig::Single(ref b) if matches!(&b.conf, BackendConf::Redis(r) if r.connection_string == "r:6379"))
        );
    }

    #[test]
    fn errors_name_file_and_path() {
        let text = "project: p\nonline_store:\n  type: hybrid\n  online_stores:\n    - type: cassandra\n      conf:\n        hosts: [a]\n        keyspac: k\n";
        let err = RepoConfig::parse("repo/feature_store.yaml", text, |_| None).unwrap_err();
        assert_eq!(err.file, "repo/feature_store.yaml");
        assert_eq!(err.path, "online_store.online_stores[0].conf.keyspac");
        assert!(err.message.contains("unknown field `keyspac`"), "{err}");

        let text = "project: p\nonline_store:\n  type: hybrid\n  online_stores:\n    - type: cassandra\n      conf:\n        port: many\n";
        let err = RepoConfig::parse("f", text, |_| None).unwrap_err();
        assert_eq!(err.path, "online_store.online_stores[0].conf.port");

        let err = RepoConfig::parse("f", "project: p\nonline_stor: {}\n", |_| None).unwrap_err();
        assert!(err.message.contains("online_stor"), "{err}");

        let text = "project: p\nonline_store:\n  type: hybrid\n  online_stores:\n    - type: mongo\n      conf: {}\n";
        let err = RepoConfig::parse("f", text, |_| None).unwrap_err();
        assert_eq!(err.path, "online_store.online_stores[0].type");
    }

    /// Every key Feast 0.67 documents for feature_store.yaml (top level and
    /// registry), with the project's settings under `hybrid_online_store`.
    const EVERY_KEY: &str = r#"
project: full
project_description: every key
provider: local
registry:
  registry_type: sql
  path: postgresql+psycopg://u:p@h:5432/feast
  read_path: postgresql+psycopg://u:p@replica:5432/feast
  cache_ttl_seconds: 60
  cache_mode: thread
  s3_additional_kwargs: {ServerSideEncryption: AES256}
  purge_feast_metadata: false
  enable_online_feature_view_versioning: false
  serve_features_while_materializing: false
  mcp: {enabled: false}
  sqlalchemy_config_kwargs: {echo: false, pool_pre_ping: true}
  thread_pool_executor_worker_count: 0
  schema_mode: auto
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - type: sqlite
      conf: {path: a.db}
    - type: redis
      conf: {connection_string: "localhost:6379"}
hybrid_online_store:
  default_store: team_a
  collocate_feature_services: true
  online_stores:
    - name: team_a
      conf: {key_ttl_seconds: 3600}
    - name: team_b
offline_store: {type: file}
batch_engine: {type: local}
auth: {type: no_auth}
feature_server: {type: local, enabled: true}
embedding_model: {model: all-MiniLM-L6-v2}
flags: {alpha_features: true}
repo_path: /repo
coerce_tz_aware: true
entity_key_serialization_version: 3
materialization: {pull_latest_features: false, online_write_batch_size: 1000}
openlineage: {enabled: false}
mlflow: {enabled: false}
data_quality_monitoring: {enabled: false}
"#;

    #[test]
    fn every_key_feast_documents_is_accepted() {
        let c = RepoConfig::parse("f", EVERY_KEY, |_| None).unwrap();
        let OnlineStoreConfig::Hybrid {
            online_stores,
            default_store,
            collocate_feature_services,
            routing_tag,
        } = &c.online_store
        else {
            panic!("not hybrid: {:?}", c.online_store)
        };
        assert_eq!(routing_tag, "team");
        assert_eq!(default_store.as_deref(), Some("team_a"));
        assert!(collocate_feature_services);
        let names: Vec<_> = online_stores.iter().map(|b| b.name.as_deref()).collect();
        assert_eq!(names, [Some("team_a"), Some("team_b")]);
        assert!(
            format!("{:?}", online_stores[0].conf).contains("3600"),
            "{:?}",
            online_stores[0].conf
        );
        assert_eq!(
            c.ignored_keys.len(),
            IGNORED_KEYS.len() - 1,
            "{:?}",
            c.ignored_keys
        );
        assert!(
            c.ignored_keys.contains(&"mlflow") && !c.ignored_keys.contains(&"batch_engine_config")
        );
    }

    #[test]
    fn misspelled_keys_are_refused_by_name() {
        for (from, to, path) in [
            ("online_store:", "onlin_store:", "onlin_store"),
            ("offline_store:", "offline_stor:", "offline_stor"),
            ("cache_ttl_seconds:", "cache_ttl_secondz:", "registry"),
            (
                "  default_store: team_a",
                "  default_stor: team_a",
                "hybrid_online_store",
            ),
            (
                "    - name: team_b",
                "    - nam: team_b",
                "hybrid_online_store.online_stores[1]",
            ),
        ] {
            let text = EVERY_KEY.replacen(from, to, 1);
            let e = RepoConfig::parse("f", &text, |_| None).unwrap_err();
            let wrong = to
                .trim()
                .trim_start_matches("- ")
                .trim_end_matches(" team_a")
                .trim_end_matches(" team_b")
                .trim_end_matches(':');
            assert!(
                e.path.starts_with(path) && e.to_string().contains(wrong),
                "{to}: {e} (path {})",
                e.path
            );
        }
    }

    #[test]
    fn the_extension_block_is_checked_against_online_store() {
        let base = "project: p\nonline_store:\n  type: hybrid\n  online_stores:\n    - type: sqlite\n      conf: {path: a.db, key_ttl_seconds: 5}\n";
        for (ext, path) in [
            (
                "hybrid_online_store:\n  online_stores: [{name: a}, {name: b}]\n",
                "hybrid_online_store.online_stores",
            ),
            (
                "hybrid_online_store:\n  online_stores: [{conf: {key_ttl_seconds: 9}}]\n",
                "hybrid_online_store.online_stores[0].conf.key_ttl_seconds",
            ),
            (
                "hybrid_online_store:\n  online_stores: [{conf: [1]}]\n",
                "hybrid_online_store.online_stores[0].conf",
            ),
        ] {
            let e = RepoConfig::parse("f", &format!("{base}{ext}"), |_| None).unwrap_err();
            assert_eq!(e.path, path, "{ext}: {e}");
        }
        let single =
            "project: p\nonline_store: {type: sqlite}\nhybrid_online_store: {default_store: x}\n";
        let e = RepoConfig::parse("f", single, |_| None).unwrap_err();
        assert_eq!(e.path, "hybrid_online_store");
    }
}
