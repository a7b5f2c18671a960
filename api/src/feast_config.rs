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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepoConfig {
    project: String,
    #[serde(default)]
    #[allow(dead_code)]
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

fn parse_online_store(v: Option<Value>, file: &str) -> Result<OnlineStoreConfig, ConfigError> {
    let path = "online_store";
    let v = match v {
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
        let entries = raw.online_stores.unwrap_or_default();
        if entries.is_empty() {
            return Err(ConfigError::new(
                file,
                format!("{path}.online_stores"),
                "the hybrid online store needs at least one entry",
            ));
        }
        let online_stores = entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| parse_entry(e, file, &format!("{path}.online_stores[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(OnlineStoreConfig::Hybrid {
            routing_tag: raw.routing_tag,
            online_stores,
            default_store: raw.default_store,
            collocate_feature_services: raw.collocate_feature_services,
        });
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
        Ok(RepoConfig {
            project: raw.project,
            provider: raw.provider,
            registry,
            online_store: parse_online_store(raw.online_store, file)?,
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
}
