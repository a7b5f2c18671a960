//! Reads a Feast registry that is not a local file (issue [M]): `s3://`
//! and `gs://` registry files, SQL registries (SQLite, PostgreSQL) and
//! Feast's registry server, into the feature views and feature services of
//! one project. Shared by the proxy (which refreshes it every TTL) and the
//! operator (which routes and provisions a store's registry views).
//!
//! Hostile registries: an answer over `max_bytes` is refused before it is
//! decoded; every read has a deadline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use api::proto::feast::core;
use api::registry::{RegistryContents, registry_contents};
use api::registry_config::{RegistryLocation, SqlUrl};
use object_store::ObjectStoreExt as _;
use prost::Message;

/// Default bound on a registry's size.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Deadline of one read (connect, query and transfer).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a registry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{location}: {source}")]
    ObjectStore {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{location}: {source}")]
    Sqlite {
        location: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The driver's error says only what failed ("error performing TLS
    /// handshake"); its causes (which certificate check) follow it.
    #[error("{location}: {}", with_causes(source))]
    Postgres {
        location: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The URL's TLS settings (`sslmode`, `sslrootcert`) cannot be used.
    #[error("{location}: {message}")]
    PostgresTls { location: String, message: String },
    #[error("{location}: {message}")]
    Remote { location: String, message: String },
    #[error("{location}: the registry is {size} bytes, over --registry-max-bytes ({max})")]
    TooLarge {
        location: String,
        size: usize,
        max: usize,
    },
    #[error("{location}: no answer within {}s", FETCH_TIMEOUT.as_secs())]
    Timeout { location: String },
    #[error("{location}: {path}: {source}")]
    Io {
        location: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Decode(#[from] api::registry::RegistryError),
    #[error("{location}: reading the registry stopped: {message}")]
    Task { location: String, message: String },
}

/// How to read one project's part of a registry.
#[derive(Debug, Clone)]
pub struct RegistryReader {
    pub location: RegistryLocation,
    pub project: String,
    /// Where relative paths (a SQLite file, a CA file) resolve.
    pub base_dir: PathBuf,
    /// Bearer token for a registry server, re-read before each call.
    pub token_file: Option<PathBuf>,
    /// The same token given directly (e.g. read from a Secret).
    pub token: Option<String>,
    /// PEM CA for a registry server given directly (else `cert` is a file).
    pub ca_pem: Option<Vec<u8>>,
    pub max_bytes: usize,
}

impl RegistryReader {
    /// The location without credentials, for logs and status.
    pub fn location(&self) -> String {
        self.location.redacted()
    }

    /// Reads the project's views and services, within [`FETCH_TIMEOUT`].
    pub async fn read(&self) -> Result<RegistryContents, FetchError> {
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch()).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout {
                location: self.location(),
            }),
        }
    }

    async fn fetch(&self) -> Result<RegistryContents, FetchError> {
        let location = self.location();
        let registry = match &self.location {
            RegistryLocation::File(_) => {
                return Err(FetchError::Task {
                    location,
                    message: "local registry files are read by the configuration watch".into(),
                });
            }
            RegistryLocation::S3 { bucket, key } => {
                let store = s3_store(bucket).map_err(|source| FetchError::ObjectStore {
                    location: location.clone(),
                    source,
                })?;
                self.get_object(&store, key, &location).await?
            }
            RegistryLocation::Gcs { bucket, object } => {
                let store = gcs_store(bucket).map_err(|source| FetchError::ObjectStore {
                    location: location.clone(),
                    source,
                })?;
                self.get_object(&store, object, &location).await?
            }
            RegistryLocation::Sql(SqlUrl::Sqlite(path)) => {
                let path = self.base_dir.join(path);
                let project = self.project.clone();
                let max = self.max_bytes;
                let loc = location.clone();
                tokio::task::spawn_blocking(move || sqlite_registry(&path, &project, max, &loc))
                    .await
                    .map_err(|e| FetchError::Task {
                        location: location.clone(),
                        message: e.to_string(),
                    })??
            }
            RegistryLocation::Sql(SqlUrl::Postgres(url)) => {
                let tls = self.postgres_tls(url, &location)?;
                postgres_registry(tls, &self.project, self.max_bytes, &location).await?
            }
            RegistryLocation::Remote { target, tls, cert } => {
                self.remote_registry(target, *tls, cert.as_deref(), &location)
                    .await?
            }
        };
        let mut registry = registry;
        if matches!(
            self.location,
            RegistryLocation::Sql(_) | RegistryLocation::Remote { .. }
        ) {
            claim_project(&mut registry, &self.project);
        }
        Ok(registry_contents(&location, &registry, &self.project)?)
    }

    async fn get_object(
        &self,
        store: &impl object_store::ObjectStore,
        key: &str,
        location: &str,
    ) -> Result<core::Registry, FetchError> {
        let err = |source| FetchError::ObjectStore {
            location: location.to_string(),
            source,
        };
        let got = store
            .get(&object_store::path::Path::from(key))
            .await
            .map_err(err)?;
        let size = usize::try_from(got.meta.size).unwrap_or(usize::MAX);
        if size > self.max_bytes {
            return Err(FetchError::TooLarge {
                location: location.to_string(),
                size,
                max: self.max_bytes,
            });
        }
        let bytes = got.bytes().await.map_err(err)?;
        core::Registry::decode(bytes).map_err(|source| {
            FetchError::Decode(api::registry::RegistryError::Decode {
                file: location.to_string(),
                source,
            })
        })
    }

    /// The PEM CA a registry's server is checked against: the one given
    /// directly (`ca_pem`), else `file`'s content (relative to `base_dir`).
    fn ca(&self, file: Option<&str>, location: &str) -> Result<Option<Vec<u8>>, FetchError> {
        if let Some(pem) = &self.ca_pem {
            return Ok(Some(pem.clone()));
        }
        let Some(file) = file else { return Ok(None) };
        let path = self.base_dir.join(file);
        std::fs::read(&path)
            .map(Some)
            .map_err(|source| FetchError::Io {
                location: location.to_string(),
                path: path.display().to_string(),
                source,
            })
    }

    /// The driver's URL and TLS connector for a PostgreSQL registry
    /// (libpq's `sslmode` and `sslrootcert`; a CA given directly, as the
    /// operator's `caSecretRef`, takes the place of `sslrootcert`).
    fn postgres_tls(&self, url: &str, location: &str) -> Result<PostgresTls, FetchError> {
        use crate::pg_tls;
        let tls_err = |message: String| FetchError::PostgresTls {
            location: location.to_string(),
            message,
        };
        let target = pg_tls::parse(url).map_err(tls_err)?;
        if target.mode == pg_tls::SslMode::Disable {
            return Ok(PostgresTls {
                url: target.url,
                connector: None,
            });
        }
        let file = match &target.root_cert {
            Some(pg_tls::RootCert::File(path)) => Some(path.as_str()),
            _ => None,
        };
        let roots = match (self.ca(file, location)?, &target.root_cert) {
            (Some(pem), _) => Some(pg_tls::pem_roots(&pem).map_err(tls_err)?),
            (None, Some(pg_tls::RootCert::System)) => Some(pg_tls::system_roots()),
            (None, _) => None,
        };
        let config = pg_tls::client_config(target.mode, roots).map_err(tls_err)?;
        Ok(PostgresTls {
            url: target.url,
            connector: Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)),
        })
    }

    async fn remote_registry(
        &self,
        target: &str,
        tls: bool,
        cert: Option<&str>,
        location: &str,
    ) -> Result<core::Registry, FetchError> {
        use api::proto::feast::registry as reg;
        use api::proto::feast::registry::registry_server_client::RegistryServerClient;
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
        let remote = |message: String| FetchError::Remote {
            location: location.to_string(),
            message,
        };
        let scheme = if tls { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{target}"))
            .map_err(|e| remote(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(FETCH_TIMEOUT);
        if tls {
            let config = match self.ca(cert, location)? {
                Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                None => ClientTlsConfig::new().with_webpki_roots(),
            };
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| remote(e.to_string()))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| remote(format!("cannot connect: {e}")))?;
        let mut client =
            RegistryServerClient::new(channel).max_decoding_message_size(self.max_bytes);
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, None) => None,
            (None, Some(path)) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| FetchError::Io {
                        location: location.to_string(),
                        path: path.display().to_string(),
                        source,
                    })?,
                )
            }
        };
        let token = match token {
            None => None,
            Some(t) => Some(
                format!("Bearer {}", t.trim())
                    .parse::<Token>()
                    .map_err(|_| remote("the registry token is not a valid header value".into()))?,
            ),
        };
        let failed = |call: &str, s: tonic::Status| {
            remote(format!(
                "{call}: the registry server answered {:?}: {}",
                s.code(),
                s.message()
            ))
        };
        let project = self.project.clone();
        let entities = client
            .list_entities(authorized(
                reg::ListEntitiesRequest {
                    project: project.clone(),
                    allow_cache: false,
                },
                token.as_ref(),
            ))
            .await
            .map_err(|s| failed("ListEntities", s))?
            .into_inner()
            .entities;
        let feature_views = client
            .list_feature_views(authorized(
                reg::ListFeatureViewsRequest {
                    project: project.clone(),
                    allow_cache: false,
                },
                token.as_ref(),
            ))
            .await
            .map_err(|s| failed("ListFeatureViews", s))?
            .into_inner()
            .feature_views;
        let stream_feature_views = client
            .list_stream_feature_views(authorized(
                reg::ListStreamFeatureViewsRequest {
                    project: project.clone(),
                    allow_cache: false,
                },
                token.as_ref(),
            ))
            .await
            .map_err(|s| failed("ListStreamFeatureViews", s))?
            .into_inner()
            .stream_feature_views;
        let feature_services = client
            .list_feature_services(authorized(
                reg::ListFeatureServicesRequest {
                    project,
                    allow_cache: false,
                },
                token.as_ref(),
            ))
            .await
            .map_err(|s| failed("ListFeatureServices", s))?
            .into_inner()
            .feature_services;
        Ok(core::Registry {
            entities,
            feature_views,
            stream_feature_views,
            feature_services,
            ..Default::default()
        })
    }
}

type Token = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

/// A registry-server request carrying the bearer token, if any.
fn authorized<T>(msg: T, token: Option<&Token>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", t.clone());
    }
    r
}

fn s3_store(bucket: &str) -> Result<object_store::aws::AmazonS3, object_store::Error> {
    let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    // Feast's S3 registry store honours FEAST_S3_ENDPOINT_URL; the AWS
    // SDKs' AWS_ENDPOINT_URL is read by from_env.
    let endpoint = std::env::var("FEAST_S3_ENDPOINT_URL")
        .ok()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|e| !e.is_empty());
    if let Some(e) = endpoint {
        b = b
            .with_allow_http(e.starts_with("http://"))
            .with_virtual_hosted_style_request(false)
            .with_endpoint(e);
    }
    b.build()
}

fn gcs_store(bucket: &str) -> Result<object_store::gcp::GoogleCloudStorage, object_store::Error> {
    let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
    // Google's client libraries talk to an emulator named by
    // STORAGE_EMULATOR_HOST, without credentials.
    if let Ok(host) = std::env::var("STORAGE_EMULATOR_HOST")
        && !host.is_empty()
    {
        let url = if host.contains("://") {
            host
        } else {
            format!("http://{host}")
        };
        b = b
            .with_base_url(url.trim_end_matches('/'))
            .with_skip_signature(true)
            .with_client_options(object_store::ClientOptions::new().with_allow_http(true));
    }
    b.build()
}

/// The parts of a SQL registry a reader needs, each table's proto column
/// for one project (Feast's `feast/infra/registry/sql.py` schema).
const SQL_TABLES: [(&str, &str); 4] = [
    ("entities", "entity_proto"),
    ("feature_views", "feature_view_proto"),
    ("stream_feature_views", "feature_view_proto"),
    ("feature_services", "feature_service_proto"),
];

/// Adds one row's proto to the registry being assembled.
fn add_row(
    reg: &mut core::Registry,
    table: &str,
    bytes: &[u8],
    location: &str,
) -> Result<(), FetchError> {
    let decode_err = |source| {
        FetchError::Decode(api::registry::RegistryError::Decode {
            file: format!("{location} ({table})"),
            source,
        })
    };
    match table {
        "entities" => reg
            .entities
            .push(core::Entity::decode(bytes).map_err(decode_err)?),
        "feature_views" => reg
            .feature_views
            .push(core::FeatureView::decode(bytes).map_err(decode_err)?),
        "stream_feature_views" => reg
            .stream_feature_views
            .push(core::StreamFeatureView::decode(bytes).map_err(decode_err)?),
        _ => reg
            .feature_services
            .push(core::FeatureService::decode(bytes).map_err(decode_err)?),
    }
    Ok(())
}

/// Marks every object of a registry read for one project as that
/// project's: Feast leaves `spec.project` empty in some protos of a SQL
/// registry (an entityless view's) and in every object its registry server
/// answers (seen with 0.67), while the rows and calls are per project.
fn claim_project(reg: &mut core::Registry, project: &str) {
    let set = |p: &mut String| project.clone_into(p);
    reg.entities
        .iter_mut()
        .filter_map(|e| e.spec.as_mut())
        .for_each(|s| set(&mut s.project));
    reg.feature_views
        .iter_mut()
        .filter_map(|v| v.spec.as_mut())
        .for_each(|s| set(&mut s.project));
    reg.stream_feature_views
        .iter_mut()
        .filter_map(|v| v.spec.as_mut())
        .for_each(|s| set(&mut s.project));
    reg.feature_services
        .iter_mut()
        .filter_map(|v| v.spec.as_mut())
        .for_each(|s| set(&mut s.project));
}

fn sqlite_registry(
    path: &Path,
    project: &str,
    max_bytes: usize,
    location: &str,
) -> Result<core::Registry, FetchError> {
    let err = |source| FetchError::Sqlite {
        location: location.to_string(),
        source,
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    let mut reg = core::Registry::default();
    let mut total = 0usize;
    for (table, column) in SQL_TABLES {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {column} FROM {table} WHERE project_id = ?1"
            ))
            .map_err(err)?;
        let mut rows = stmt.query([project]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let bytes: Vec<u8> = row.get(0).map_err(err)?;
            total += bytes.len();
            if total > max_bytes {
                return Err(FetchError::TooLarge {
                    location: location.to_string(),
                    size: total,
                    max: max_bytes,
                });
            }
            add_row(&mut reg, table, &bytes, location)?;
        }
    }
    Ok(reg)
}

/// How to connect to a PostgreSQL registry.
struct PostgresTls {
    /// The URL the driver reads.
    url: String,
    /// `None` with `sslmode=disable`.
    connector: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

async fn postgres_registry(
    tls: PostgresTls,
    project: &str,
    max_bytes: usize,
    location: &str,
) -> Result<core::Registry, FetchError> {
    let err = |source| FetchError::Postgres {
        location: location.to_string(),
        source,
    };
    // The connection runs until the client is dropped at the end.
    let (client, conn) = match tls.connector {
        None => {
            let (client, connection) = tokio_postgres::connect(&tls.url, tokio_postgres::NoTls)
                .await
                .map_err(err)?;
            (client, tokio::spawn(drive(connection)))
        }
        Some(connector) => {
            let (client, connection) = tokio_postgres::connect(&tls.url, connector)
                .await
                .map_err(err)?;
            (client, tokio::spawn(drive(connection)))
        }
    };
    let mut reg = core::Registry::default();
    let mut total = 0usize;
    let result = async {
        for (table, column) in SQL_TABLES {
            let rows = client
                .query(
                    &format!("SELECT {column} FROM {table} WHERE project_id = $1"),
                    &[&project],
                )
                .await
                .map_err(err)?;
            for row in rows {
                let bytes: &[u8] = row.try_get(0).map_err(err)?;
                total += bytes.len();
                if total > max_bytes {
                    return Err(FetchError::TooLarge {
                        location: location.to_string(),
                        size: total,
                        max: max_bytes,
                    });
                }
                add_row(&mut reg, table, bytes, location)?;
            }
        }
        Ok(())
    }
    .await;
    drop(client);
    let _ = conn.await;
    result.map(|()| reg)
}

/// An error and its causes, `: `-separated (each cause once: a message
/// that already ends with its cause's text is not repeated).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Runs a registry database connection until its client is dropped.
async fn drive<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "registry database connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SQL registry whose rows pass `max_bytes` is refused, not decoded.
    #[test]
    fn an_oversized_sql_registry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        for (table, column) in SQL_TABLES {
            conn.execute(
                &format!("CREATE TABLE {table} (project_id TEXT, {column} BLOB)"),
                [],
            )
            .unwrap();
        }
        let view = core::FeatureView {
            spec: Some(core::FeatureViewSpec {
                name: "v".repeat(2_000),
                project: "p".into(),
                ..Default::default()
            }),
        };
        conn.execute(
            "INSERT INTO feature_views VALUES ('p', ?1)",
            [view.encode_to_vec()],
        )
        .unwrap();
        drop(conn);
        let err = sqlite_registry(&path, "p", 1_000, "sqlite:///reg.db").unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { max: 1_000, .. }),
            "{err}"
        );
        let reg = sqlite_registry(&path, "p", 10_000, "sqlite:///reg.db").unwrap();
        assert_eq!(reg.feature_views.len(), 1);
        // Another project's rows are not read.
        let reg = sqlite_registry(&path, "other", 1_000, "sqlite:///reg.db").unwrap();
        assert!(reg.feature_views.is_empty());
    }
}
