//! The `registry:` setting of `feature_store.yaml`: where Feast keeps its
//! registry and how long a reader may cache it. Both forms Feast accepts
//! parse: a path string, or a mapping with `registry_type`, `path`,
//! `cache_ttl_seconds` and the kind's own keys.
//!
//! Pure: the proxy's `registry` module does the reading.

use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::feast_config::parse_at;
use crate::yaml::Value;

/// Feast's default `cache_ttl_seconds`.
pub const DEFAULT_CACHE_TTL_SECONDS: u64 = 600;

/// Where the registry is and how it is refreshed.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfig {
    pub location: RegistryLocation,
    /// `cache_ttl_seconds`: how stale a cached registry may get; `None` is
    /// Feast's `0`, a cache that never expires (read once).
    pub cache_ttl: Option<Duration>,
}

/// The registry kinds Feast 0.67 can write that this project reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryLocation {
    /// A registry file on the local file system (relative paths are
    /// relative to the repo).
    File(String),
    /// `s3://bucket/key`.
    S3 { bucket: String, key: String },
    /// `gs://bucket/object`.
    Gcs { bucket: String, object: String },
    /// `registry_type: sql`: a SQLAlchemy URL (SQLite or PostgreSQL).
    Sql(SqlUrl),
    /// `registry_type: remote`: Feast's registry server (`host:port`).
    Remote {
        target: String,
        /// `is_tls`.
        tls: bool,
        /// `cert`: a PEM file the server's certificate is checked against
        /// (with `is_tls`); without it, the system's roots.
        cert: Option<String>,
    },
}

/// A SQLAlchemy URL of a database this project reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlUrl {
    /// `sqlite:///relative/path` or `sqlite:////absolute/path`.
    Sqlite(String),
    /// `postgresql[+driver]://user:password@host:port/db[?params]`, kept as
    /// a libpq-style URL (`postgresql://...`, the driver dropped).
    Postgres(String),
}

impl RegistryLocation {
    /// The location without credentials, for logs, `/ready` and metrics.
    pub fn redacted(&self) -> String {
        match self {
            RegistryLocation::File(p) => p.clone(),
            RegistryLocation::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
            RegistryLocation::Gcs { bucket, object } => format!("gs://{bucket}/{object}"),
            RegistryLocation::Sql(SqlUrl::Sqlite(p)) => format!("sqlite:///{p}"),
            RegistryLocation::Sql(SqlUrl::Postgres(u)) => redact_url(u),
            RegistryLocation::Remote { target, tls, .. } => {
                format!("{}://{target}", if *tls { "grpcs" } else { "grpc" })
            }
        }
    }

    /// The registry kind, as the `kind` label of the proxy's metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryLocation::File(_) => "file",
            RegistryLocation::S3 { .. } => "s3",
            RegistryLocation::Gcs { .. } => "gcs",
            RegistryLocation::Sql(SqlUrl::Sqlite(_)) => "sql-sqlite",
            RegistryLocation::Sql(SqlUrl::Postgres(_)) => "sql-postgresql",
            RegistryLocation::Remote { .. } => "remote",
        }
    }
}

/// `scheme://user:password@host/...` -> `scheme://user:***@host/...`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// The mapping form's keys (Feast 0.67's `RegistryConfig`, with those of
/// `SqlRegistryConfig` and `RemoteRegistryConfig`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    #[serde(default)]
    registry_type: Option<String>,
    #[serde(default)]
    registry_store_type: Option<String>,
    path: Option<String>,
    #[serde(default)]
    cache_ttl_seconds: Option<i64>,
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    is_tls: Option<bool>,
    // Accepted, not used by a reader.
    #[serde(default, rename = "s3_additional_kwargs")]
    _s3_additional_kwargs: Value,
    #[serde(default, rename = "purge_feast_metadata")]
    _purge_feast_metadata: Value,
    #[serde(default, rename = "sqlalchemy_config_kwargs")]
    _sqlalchemy_config_kwargs: Value,
    #[serde(default, rename = "cache_mode")]
    _cache_mode: Value,
    #[serde(default, rename = "thread_pool_executor_worker_count")]
    _thread_pool_executor_worker_count: Value,
    #[serde(default, rename = "read_path")]
    _read_path: Value,
    #[serde(default, rename = "enable_online_feature_view_versioning")]
    _enable_online_feature_view_versioning: Value,
    #[serde(default, rename = "serve_features_while_materializing")]
    _serve_features_while_materializing: Value,
    #[serde(default, rename = "mcp")]
    _mcp: Value,
    #[serde(default, rename = "schema_mode")]
    _schema_mode: Value,
    #[serde(default, rename = "client_cert")]
    _client_cert: Value,
    #[serde(default, rename = "client_key")]
    _client_key: Value,
    #[serde(default, rename = "authority")]
    _authority: Value,
}

impl RegistryConfig {
    /// Parses the value of `registry:` (`None` for an absent or null key).
    pub fn parse(value: Option<Value>, file: &str) -> Result<Option<Self>, ConfigError> {
        let err = |path: &str, msg: String| ConfigError::new(file, path, msg);
        let raw = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(path)) => RawRegistry {
                registry_type: None,
                registry_store_type: None,
                path: Some(path),
                cache_ttl_seconds: None,
                cert: None,
                is_tls: None,
                _s3_additional_kwargs: Value::Null,
                _purge_feast_metadata: Value::Null,
                _sqlalchemy_config_kwargs: Value::Null,
                _cache_mode: Value::Null,
                _thread_pool_executor_worker_count: Value::Null,
                _read_path: Value::Null,
                _enable_online_feature_view_versioning: Value::Null,
                _serve_features_while_materializing: Value::Null,
                _mcp: Value::Null,
                _schema_mode: Value::Null,
                _client_cert: Value::Null,
                _client_key: Value::Null,
                _authority: Value::Null,
            },
            Some(v @ Value::Mapping(_)) => parse_at(v, file, "registry")?,
            Some(other) => {
                return Err(err(
                    "registry",
                    format!("expected a path or a mapping, found {}", other.kind()),
                ));
            }
        };
        let path = raw
            .path
            .filter(|p| !p.is_empty())
            .ok_or_else(|| err("registry.path", "the registry needs a path".to_string()))?;
        let cache_ttl = match raw.cache_ttl_seconds {
            None => Some(Duration::from_secs(DEFAULT_CACHE_TTL_SECONDS)),
            Some(0) => None,
            Some(s) if s < 0 => {
                return Err(err(
                    "registry.cache_ttl_seconds",
                    format!("must be 0 or more, got {s}"),
                ));
            }
            Some(s) => Some(Duration::from_secs(s.unsigned_abs())),
        };
        let kind = raw.registry_type.as_deref().unwrap_or("file");
        let location = match kind {
            "file" => file_location(&path).map_err(|m| err("registry.path", m))?,
            "sql" => RegistryLocation::Sql(sql_url(&path).map_err(|m| err("registry.path", m))?),
            "remote" => RegistryLocation::Remote {
                target: remote_target(&path).map_err(|m| err("registry.path", m))?,
                tls: raw.is_tls.unwrap_or(false),
                cert: raw.cert.filter(|c| !c.is_empty()),
            },
            other => {
                return Err(err(
                    "registry.registry_type",
                    format!(
                        "registry type `{other}` is not read by this project (expected file, sql or remote)"
                    ),
                ));
            }
        };
        if let Some(store) = raw.registry_store_type.as_deref()
            && kind == "file"
            && !matches!(
                (store, &location),
                ("LocalRegistryStore", RegistryLocation::File(_))
                    | ("S3RegistryStore", RegistryLocation::S3 { .. })
                    | ("GCSRegistryStore", RegistryLocation::Gcs { .. })
            )
        {
            return Err(err(
                "registry.registry_store_type",
                format!(
                    "registry store `{store}` does not match the path `{path}` (or is not read by this project)"
                ),
            ));
        }
        Ok(Some(RegistryConfig {
            location,
            cache_ttl,
        }))
    }
}

fn bucket_and_key(rest: &str, scheme: &str) -> Result<(String, String), String> {
    match rest.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok((b.to_string(), k.to_string())),
        _ => Err(format!(
            "`{scheme}://{rest}` needs a bucket and an object name ({scheme}://bucket/path/registry.pb)"
        )),
    }
}

fn file_location(path: &str) -> Result<RegistryLocation, String> {
    if let Some(rest) = path.strip_prefix("s3://") {
        let (bucket, key) = bucket_and_key(rest, "s3")?;
        return Ok(RegistryLocation::S3 { bucket, key });
    }
    if let Some(rest) = path.strip_prefix("gs://") {
        let (bucket, object) = bucket_and_key(rest, "gs")?;
        return Ok(RegistryLocation::Gcs { bucket, object });
    }
    if let Some(rest) = path.strip_prefix("file://") {
        return Ok(RegistryLocation::File(rest.to_string()));
    }
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(format!(
            "registry scheme `{scheme}://` is not read by this project (expected a local path, s3:// or gs://)"
        ));
    }
    Ok(RegistryLocation::File(path.to_string()))
}

/// Parses a SQLAlchemy URL of a registry this project reads (SQLite or
/// PostgreSQL); the message never holds the URL's password.
pub fn sql_url(url: &str) -> Result<SqlUrl, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{}` is not a SQLAlchemy URL", redact_url(url)))?;
    let dialect = scheme.split('+').next().unwrap_or(scheme);
    match dialect {
        // sqlite:///relative.db, sqlite:////absolute.db
        "sqlite" => match rest.strip_prefix('/') {
            Some(p) if !p.is_empty() && p != ":memory:" => Ok(SqlUrl::Sqlite(p.to_string())),
            _ => Err("a SQLite registry needs a file: sqlite:///path/registry.db".to_string()),
        },
        "postgresql" | "postgres" => Ok(SqlUrl::Postgres(format!("postgresql://{rest}"))),
        other => Err(format!(
            "SQL dialect `{other}` is not read by this project (expected sqlite or postgresql)"
        )),
    }
}

/// The `host:port` of a registry server, from Feast's remote registry
/// `path` (a scheme such as `grpc://` is dropped).
pub fn remote_target(path: &str) -> Result<String, String> {
    let target = path
        .strip_prefix("grpc://")
        .or_else(|| path.strip_prefix("grpcs://"))
        .or_else(|| path.strip_prefix("http://"))
        .or_else(|| path.strip_prefix("https://"))
        .unwrap_or(path)
        .trim_end_matches('/');
    match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(target.to_string())
        }
        _ => Err(format!(
            "a remote registry path is the registry server's host:port, got `{path}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Option<RegistryConfig>, ConfigError> {
        let v: Value = crate::error::from_yaml("t.yaml", yaml).unwrap();
        RegistryConfig::parse(Some(v), "t.yaml")
    }

    #[test]
    fn both_forms_and_every_kind() {
        let c = parse("data/registry.db").unwrap().unwrap();
        assert_eq!(
            c.location,
            RegistryLocation::File("data/registry.db".into())
        );
        assert_eq!(c.cache_ttl, Some(Duration::from_secs(600)));
        let c = parse("{path: s3://b/feast/registry.pb, cache_ttl_seconds: 5}")
            .unwrap()
            .unwrap();
        assert_eq!(
            c.location,
            RegistryLocation::S3 {
                bucket: "b".into(),
                key: "feast/registry.pb".into()
            }
        );
        assert_eq!(c.cache_ttl, Some(Duration::from_secs(5)));
        let c = parse("gs://b/registry.pb").unwrap().unwrap();
        assert_eq!(c.location.redacted(), "gs://b/registry.pb");
        let c = parse("{registry_type: sql, path: 'postgresql+psycopg://u:secret@h:5432/feast', cache_ttl_seconds: 0, sqlalchemy_config_kwargs: {echo: false}}")
            .unwrap()
            .unwrap();
        assert_eq!(
            c.location,
            RegistryLocation::Sql(SqlUrl::Postgres(
                "postgresql://u:secret@h:5432/feast".into()
            ))
        );
        assert_eq!(c.location.redacted(), "postgresql://u:***@h:5432/feast");
        assert_eq!(c.cache_ttl, None);
        let c = parse("{registry_type: sql, path: 'sqlite:///data/reg.db'}")
            .unwrap()
            .unwrap();
        assert_eq!(
            c.location,
            RegistryLocation::Sql(SqlUrl::Sqlite("data/reg.db".into()))
        );
        let c = parse("{registry_type: sql, path: 'sqlite:////abs/reg.db'}")
            .unwrap()
            .unwrap();
        assert_eq!(
            c.location,
            RegistryLocation::Sql(SqlUrl::Sqlite("/abs/reg.db".into()))
        );
        let c = parse(
            "{registry_type: remote, path: 'registry.feast.svc:6570', is_tls: true, cert: /ca.pem}",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            c.location,
            RegistryLocation::Remote {
                target: "registry.feast.svc:6570".into(),
                tls: true,
                cert: Some("/ca.pem".into())
            }
        );
        assert_eq!(parse("null").unwrap(), None);
    }

    #[test]
    fn refusals_name_the_key() {
        for (yaml, path, needle) in [
            (
                "{path: r.db, cache_ttl_secnds: 5}",
                "registry",
                "cache_ttl_secnds",
            ),
            (
                "{registry_type: snowflake.registry, path: x}",
                "registry.registry_type",
                "snowflake",
            ),
            (
                "{registry_type: sql, path: 'mysql://u:p@h/db'}",
                "registry.path",
                "mysql",
            ),
            (
                "{registry_type: sql, path: 'sqlite://'}",
                "registry.path",
                "SQLite",
            ),
            (
                "{registry_type: remote, path: 'nohost'}",
                "registry.path",
                "host:port",
            ),
            ("az://c/registry.pb", "registry.path", "az://"),
            ("s3://bucket-only", "registry.path", "bucket"),
            (
                "{path: r.db, cache_ttl_seconds: -1}",
                "registry.cache_ttl_seconds",
                "0 or more",
            ),
            ("{cache_ttl_seconds: 5}", "registry.path", "path"),
            ("[a]", "registry", "mapping"),
            (
                "{path: s3://b/k, registry_store_type: GCSRegistryStore}",
                "registry.registry_store_type",
                "GCSRegistryStore",
            ),
        ] {
            let e = parse(yaml).unwrap_err().to_string();
            assert!(e.contains(path) && e.contains(needle), "{yaml}: {e}");
        }
    }

    #[test]
    fn redaction_hides_passwords_only() {
        assert_eq!(
            redact_url("postgresql://u:pw@h/db?x=1"),
            "postgresql://u:***@h/db?x=1"
        );
        assert_eq!(redact_url("postgresql://h/db"), "postgresql://h/db");
    }
}
