//! Online store backends behind one trait. Each keeps Feast's own byte
//! layout for its store type, so Feast and the proxy read each other's data.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::PathBuf;
use std::sync::Arc;

use api::feast_config::BackendConf;
use api::proto::Value;
use api::routing::{Backend, RoutedView};

pub mod bigtable;
pub mod cassandra;
pub mod confine;
pub mod credentials;
pub mod pg_tls;
pub mod redis;
pub mod registry;
pub mod sqlite;

/// An event or created time: epoch seconds and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub const fn from_seconds(seconds: i64) -> Self {
        Timestamp { seconds, nanos: 0 }
    }
}

/// One entity's stored features, aligned with the requested feature names
/// (`None`: that feature has no stored cell).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRow {
    pub values: Vec<Option<Value>>,
    pub event_ts: Timestamp,
}

/// One entity's features to write.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRow {
    /// Serialized entity key (Feast's `serialize_entity_key`).
    pub entity_key: Vec<u8>,
    /// (feature name, value) pairs.
    pub values: Vec<(String, Value)>,
    pub event_ts: Timestamp,
    pub created_ts: Option<Timestamp>,
}

/// One page of a view's stored entity keys (for backfills).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    pub keys: Vec<Vec<u8>>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<Vec<u8>>,
}

/// A storage object a backend would create or drop for a view.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StorageObject {
    /// e.g. `sqlite table`, `cassandra table`.
    pub kind: &'static str,
    pub name: String,
    /// Where it lives (file, keyspace, instance).
    pub location: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("backend configuration: {0}")]
    Config(String),
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Query(String),
    #[error(
        "table `{table}` does not exist in {location}; provision it with `hos-proxy apply` or the operator"
    )]
    MissingTable { table: String, location: String },
    #[error("stored value of feature `{feature}` is not a Feast Value: {message}")]
    Corrupt { feature: String, message: String },
}

impl BackendError {
    /// Short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            BackendError::Config(_) => "config",
            BackendError::Unavailable(_) => "unavailable",
            BackendError::Query(_) => "query",
            BackendError::MissingTable { .. } => "missing_table",
            BackendError::Corrupt { .. } => "corrupt",
        }
    }
}

/// An online store. Reads and writes address a view's rows by serialized
/// entity key; each implementation derives its own keys from it.
#[async_trait::async_trait]
pub trait OnlineStore: Send + Sync {
    /// Reads `features` of `view` for each key; `None` where the entity has
    /// no row. Output is aligned with `keys`.
    async fn read(
        &self,
        project: &str,
        view: &RoutedView,
        keys: &[Vec<u8>],
        features: &[String],
    ) -> Result<Vec<Option<ReadRow>>, BackendError>;

    /// Writes rows so that, for each entity key, the stored row is the one
    /// with the greatest event time, whatever the arrival order (README,
    /// "Write semantics"): a row older than the stored one (at the
    /// backend's precision) is skipped, an equal or newer one replaces the
    /// stored row as a whole. Conditional in the backend itself (a
    /// transaction, a server-side script, a write timestamp), so
    /// concurrent writers, retries and backfills converge.
    async fn write(
        &self,
        project: &str,
        view: &RoutedView,
        rows: Vec<WriteRow>,
    ) -> Result<(), BackendError>;

    /// Creates the view's storage if missing (idempotent).
    async fn create(&self, project: &str, view: &RoutedView) -> Result<(), BackendError>;

    /// Drops the view's storage if present (idempotent). `remaining` are the
    /// views that stay on this backend: storage they share (a Bigtable table
    /// per entity set) keeps theirs and loses only this view's data.
    async fn drop_view(
        &self,
        project: &str,
        view: &RoutedView,
        remaining: &[&RoutedView],
    ) -> Result<(), BackendError>;

    /// The objects `create`/`drop_view` manage for the view, without I/O.
    fn storage_objects(&self, project: &str, view: &RoutedView) -> Vec<StorageObject>;

    /// Whether the view's storage exists. The default probes with a read of
    /// one key: a missing table says no. Stores without per-view tables
    /// (Redis) answer yes.
    async fn storage_exists(&self, project: &str, view: &RoutedView) -> Result<bool, BackendError> {
        let features: Vec<String> = view
            .features
            .iter()
            .take(1)
            .map(|f| f.name.clone())
            .collect();
        let empty = Value {
            val: Some(api::proto::Val::StringVal(String::new())),
        };
        let mut probe = Vec::new();
        api::entity_key::serialize_into(
            &[api::keys::DUMMY_ENTITY_JOIN_KEY],
            &[&empty],
            api::entity_key::SerializationVersion::V3,
            &mut probe,
        )
        .map_err(|e| BackendError::Query(e.to_string()))?;
        let probe = vec![probe];
        match self.read(project, view, &probe, &features).await {
            Ok(_) => Ok(true),
            Err(BackendError::MissingTable { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the backend answers.
    async fn check(&self) -> Result<(), BackendError>;

    /// Lists the view's stored entity keys, a page of at most `limit` after
    /// `cursor` (`None`: from the start). Resumable: a cursor stays valid
    /// across calls and processes. Backends whose keys are not recoverable
    /// from storage (Bigtable rows are keyed by a hash) refuse.
    async fn scan_keys(
        &self,
        _project: &str,
        view: &RoutedView,
        _cursor: Option<Vec<u8>>,
        _limit: usize,
    ) -> Result<KeyPage, BackendError> {
        Err(BackendError::Config(format!(
            "cannot list the entity keys of view `{}` in this backend (needed to copy it elsewhere)",
            view.name
        )))
    }

    /// Deletes the view's rows that expired under the store's
    /// `key_ttl_seconds`, for stores whose server does not expire data by
    /// itself (SQLite); returns how many rows went. Others: nothing to do.
    async fn sweep_expired(&self, _project: &str, _view: &RoutedView) -> Result<u64, BackendError> {
        Ok(0)
    }
}

/// Who wrote a backend's configuration, which decides how far its paths
/// and credential references may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trust {
    /// A routing table (a `--routing-table` file or a routing ConfigMap,
    /// written from CRs by other teams): credential files only under
    /// `secrets_dir`, no environment variables, SQLite files only under
    /// `base_dir` (the data directory), no emulator on a Unix socket.
    #[default]
    Confined,
    /// The user's own standalone repo (`feature_store.yaml`), whose author
    /// owns the process: Feast's semantics.
    Owner,
}

/// Context for opening backends: where relative paths resolve, and how far
/// they may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenContext {
    /// Relative SQLite paths resolve here (the repo directory, or the data
    /// directory of a routing table, which confined paths must stay in).
    /// Empty: the working directory.
    pub base_dir: PathBuf,
    /// Relative credential files (`{file: <secret>/<key>}`, as the operator
    /// writes them) resolve here: where the Secrets are mounted.
    pub secrets_dir: PathBuf,
    pub trust: Trust,
}

/// Checks a backend's configuration against its context without opening
/// anything: credential references and paths it may use, addresses a client
/// library would choke on. A failure is a configuration to reject, as
/// opposed to a backend that is down.
pub fn validate(backend: &Backend, ctx: &OpenContext) -> Result<(), BackendError> {
    let cred = |c: &Option<api::credential::Credential>, field: &str| match c {
        Some(c) => credentials::check(c, field, ctx).map(|_| ()),
        None => Ok(()),
    };
    match &backend.conf {
        BackendConf::Sqlite(conf) => sqlite::database_path(conf, ctx).map(|_| ()),
        BackendConf::Redis(conf) => {
            redis::ConnectionString::parse(&conf.connection_string)?;
            cred(&conf.password, "conf.password")
        }
        BackendConf::Bigtable(conf) => {
            if let Some(id) = &conf.app_profile_id {
                bigtable::validate_app_profile_id(id)?;
            }
            match &conf.emulator_host {
                Some(host) => bigtable::validate_emulator_host(host, ctx.trust),
                None => Ok(()),
            }
        }
        BackendConf::Cassandra(conf) => {
            cred(&conf.username, "conf.username")?;
            cred(&conf.password, "conf.password")
        }
    }
}

/// Opens a backend from its routing-table entry, after [`validate`]. The
/// client constructor runs in a task of its own: a client library that
/// panics on input it does not like fails this backend with a
/// configuration error instead of taking the caller down.
pub async fn open(
    backend: &Backend,
    ctx: &OpenContext,
) -> Result<Arc<dyn OnlineStore>, BackendError> {
    validate(backend, ctx)?;
    let (b, c) = (backend.clone(), ctx.clone());
    isolated(backend, async move { open_validated(&b, &c).await }).await
}

/// Runs a backend's constructor in a task of its own; a panic becomes a
/// configuration error naming the backend.
async fn isolated<T: Send + 'static>(
    backend: &Backend,
    constructor: impl Future<Output = Result<T, BackendError>> + Send + 'static,
) -> Result<T, BackendError> {
    match tokio::spawn(constructor).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            // The panic's text stays out of the error: it may quote any part
            // of the configuration.
            tracing::error!(backend = %backend.name, backend_type = backend.backend_type.as_str(), "backend client constructor panicked; configuration rejected");
            Err(BackendError::Config(format!(
                "backend `{}`: the {} client refused this configuration (its constructor panicked); check the addresses and options",
                backend.name,
                backend.backend_type.as_str()
            )))
        }
        Err(_) => Err(BackendError::Unavailable(format!(
            "backend `{}`: opening was cancelled",
            backend.name
        ))),
    }
}

async fn open_validated(
    backend: &Backend,
    ctx: &OpenContext,
) -> Result<Arc<dyn OnlineStore>, BackendError> {
    match &backend.conf {
        BackendConf::Sqlite(conf) => Ok(Arc::new(sqlite::SqliteStore::open(conf, ctx)?)),
        BackendConf::Redis(conf) => Ok(Arc::new(redis::RedisStore::open(conf, ctx).await?)),
        BackendConf::Bigtable(conf) => Ok(Arc::new(
            bigtable::BigtableStore::open(conf, ctx.trust).await?,
        )),
        BackendConf::Cassandra(conf) => {
            Ok(Arc::new(cassandra::CassandraStore::open(conf, ctx).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bigtable(host: &str) -> Backend {
        Backend {
            name: "team_bt".into(),
            backend_type: api::feast_config::BackendType::Bigtable,
            conf: BackendConf::Bigtable(api::feast_config::BigtableConf {
                project_id: None,
                instance: "i".into(),
                max_versions: 1,
                feature_column_family: None,
                emulator_host: Some(host.into()),
                key_ttl_seconds: None,
                app_profile_id: None,
            }),
        }
    }

    #[tokio::test]
    async fn a_panicking_constructor_is_a_config_error_naming_the_backend() {
        let b = bigtable("localhost:1");
        let e = isolated::<()>(&b, async { panic!("secret-ish detail") })
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::Config(_)), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("team_bt") && msg.contains("bigtable"), "{msg}");
        assert!(!msg.contains("secret-ish"), "{msg}");
        // And the caller is still here to see it.
        assert_eq!(isolated(&b, async { Ok(7) }).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn open_refuses_before_constructing() {
        let e = open(&bigtable("::::"), &OpenContext::default())
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("conf.emulator_host"), "{e}");
    }
}
