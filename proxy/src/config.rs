//! Configuration sources. Each produces a [`RoutingTable`] plus the
//! directory its relative paths resolve against and how far its paths and
//! credential references may reach, from files that a watcher re-reads
//! when they change.
//!
//! Trust follows authorship: a user's own repo (`feature_store.yaml`) keeps
//! Feast's semantics; a routing table (a file or a ConfigMap) is written
//! from CRs by other teams, so its SQLite files stay under the data
//! directory and its credential files under `--secrets-dir`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use api::error::ConfigError;
use api::feast_config::RepoConfig;
use api::feature_view::FeatureViewDef;
use api::registry::read_registry;
use api::registry_config::RegistryLocation;
use api::routing::RoutingTable;
use backends::Trust;

use crate::registry::RegistryFeed;

/// A loaded configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub table: RoutingTable,
    /// The table's content digest ([`RoutingTable::digest`]), computed
    /// where it is loaded (off the runtime's workers).
    pub digest: String,
    /// Where relative backend paths (SQLite files) resolve; for a routing
    /// table, the data directory they must stay in.
    pub base_dir: PathBuf,
    pub trust: Trust,
}

impl Loaded {
    pub fn new(table: RoutingTable, base_dir: PathBuf, trust: Trust) -> Loaded {
        Loaded {
            digest: table.digest(),
            table,
            base_dir,
            trust,
        }
    }
}

/// Where configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A Feast repo: `feature_store.yaml`, the file registry it names (if
    /// present) and FeatureView YAML files or directories.
    Repo {
        dir: PathBuf,
        feature_store_yaml: PathBuf,
        feature_views: Vec<PathBuf>,
        /// The registry when it is not a local file (s3://, gs://, SQL, a
        /// registry server): read and refreshed by [`crate::registry`].
        registry: Option<Arc<RegistryFeed>>,
    },
    /// A routing-table document, e.g. a mounted ConfigMap key.
    RoutingTableFile {
        path: PathBuf,
        /// `--data-dir`; without it, the document's own directory.
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Registry(#[from] api::registry::RegistryError),
    #[error("the registry {location} has not been read yet: {reason}")]
    RegistryNotRead { location: String, reason: String },
    /// A ConfigMap without the key the proxy serves.
    #[error("{0}: key missing")]
    KeyMissing(String),
}

/// Logs, once per process, each Feast key of feature_store.yaml that
/// serving does not use (accepted, so `feast` and the proxy share a file).
fn note_ignored_keys(file: &str, keys: &[&'static str]) {
    static SEEN: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let Ok(mut seen) = SEEN.lock() else { return };
    for key in keys {
        if seen.insert(key) {
            tracing::info!(
                file,
                key,
                "feature_store.yaml key not used for online serving; ignored"
            );
        }
    }
}

/// `feature_store.yaml` read and parsed with the process' environment.
fn parse_feature_store(path: &Path) -> Result<RepoConfig, LoadError> {
    let file = path.display().to_string();
    Ok(RepoConfig::parse(&file, &read(path)?, |k| {
        std::env::var(k).ok()
    })?)
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// YAML files named directly, or found (sorted) in named directories.
fn yaml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| LoadError::Io {
                    path: p.display().to_string(),
                    source,
                })?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

impl ConfigSource {
    /// A repo source with the usual file names.
    pub fn repo(
        dir: PathBuf,
        feature_store_yaml: Option<PathBuf>,
        feature_views: Vec<PathBuf>,
    ) -> Self {
        let feature_store_yaml =
            feature_store_yaml.unwrap_or_else(|| dir.join("feature_store.yaml"));
        ConfigSource::Repo {
            dir,
            feature_store_yaml,
            feature_views,
            registry: None,
        }
    }

    /// The repo's `feature_store.yaml`, parsed (with the environment).
    pub fn repo_config(&self) -> Result<Option<RepoConfig>, LoadError> {
        let ConfigSource::Repo {
            feature_store_yaml, ..
        } = self
        else {
            return Ok(None);
        };
        parse_feature_store(feature_store_yaml).map(Some)
    }

    /// This source reading its registry from `feed`.
    pub fn with_registry_feed(mut self, feed: Arc<RegistryFeed>) -> Self {
        if let ConfigSource::Repo { registry, .. } = &mut self {
            *registry = Some(feed);
        }
        self
    }

    /// The registry feed, for a repo whose registry is not a local file.
    pub fn registry_feed(&self) -> Option<&Arc<RegistryFeed>> {
        match self {
            ConfigSource::Repo { registry, .. } => registry.as_ref(),
            ConfigSource::RoutingTableFile { .. } => None,
        }
    }

    /// Reads and validates the whole configuration.
    pub fn load(&self) -> Result<Loaded, LoadError> {
        match self {
            ConfigSource::RoutingTableFile { path, data_dir } => {
                let text = read(path)?;
                let table = RoutingTable::parse(&path.display().to_string(), &text)?;
                let base_dir = data_dir
                    .clone()
                    .unwrap_or_else(|| path.parent().map(Path::to_path_buf).unwrap_or_default());
                Ok(Loaded::new(table, base_dir, Trust::Confined))
            }
            ConfigSource::Repo {
                dir,
                feature_store_yaml,
                feature_views,
                registry,
            } => {
                let file = feature_store_yaml.display().to_string();
                let config = parse_feature_store(feature_store_yaml)?;
                note_ignored_keys(&file, &config.ignored_keys);
                let mut views = Vec::new();
                let mut services = Vec::new();
                if let Some(feed) = registry {
                    let Some(fetched) = feed.current() else {
                        return Err(LoadError::RegistryNotRead {
                            location: feed.location(),
                            reason: feed
                                .status()
                                .error
                                .unwrap_or_else(|| "no read finished".into()),
                        });
                    };
                    views.extend(fetched.contents.feature_views.iter().cloned());
                    services.extend(fetched.contents.feature_services.iter().cloned());
                } else if let Some(reg) = self.registry_path(&config) {
                    if reg.exists() {
                        let bytes = std::fs::read(&reg).map_err(|source| LoadError::Io {
                            path: reg.display().to_string(),
                            source,
                        })?;
                        let contents =
                            read_registry(&reg.display().to_string(), &bytes, &config.project)?;
                        views.extend(contents.feature_views);
                        services.extend(contents.feature_services);
                    } else {
                        tracing::info!(registry = %reg.display(), "registry file not found; using FeatureView YAML only");
                    }
                }
                for f in yaml_files(feature_views)? {
                    let parsed = FeatureViewDef::parse_all(&f.display().to_string(), &read(&f)?)?;
                    for v in parsed {
                        // A YAML definition overrides the registry's view of the same name.
                        views.retain(|x| x.name != v.name);
                        views.push(v);
                    }
                }
                let table = RoutingTable::from_feast(&config, &views, services, &file)?;
                Ok(Loaded::new(table, dir.clone(), Trust::Owner))
            }
        }
    }

    fn registry_path(&self, config: &RepoConfig) -> Option<PathBuf> {
        let ConfigSource::Repo { dir, .. } = self else {
            return None;
        };
        // Other registries (s3://, gs://, SQL, a server) are read by a feed.
        let RegistryLocation::File(reg) = &config.registry.as_ref()?.location else {
            return None;
        };
        let p = PathBuf::from(reg);
        Some(if p.is_absolute() { p } else { dir.join(p) })
    }

    /// Files whose change means a reload. Their directories are watched, so
    /// files replaced by rename or a Kubernetes `..data` symlink swap count.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        match self {
            ConfigSource::RoutingTableFile { path, .. } => vec![path.clone()],
            ConfigSource::Repo {
                feature_store_yaml,
                feature_views,
                ..
            } => {
                let mut v = vec![feature_store_yaml.clone()];
                if let Ok(config) = parse_feature_store(feature_store_yaml)
                    && let Some(r) = self.registry_path(&config)
                {
                    v.push(r);
                }
                v.extend(feature_views.iter().cloned());
                v
            }
        }
    }

    /// Every file `load` reads.
    fn read_files(&self) -> Vec<PathBuf> {
        self.with_view_files(self.watched_files())
    }

    /// `watched` (this source's `watched_files`) and the FeatureView YAML
    /// files found in its directories: every file `load` reads.
    pub fn with_view_files(&self, mut watched: Vec<PathBuf>) -> Vec<PathBuf> {
        if let ConfigSource::Repo { feature_views, .. } = self
            && let Ok(found) = yaml_files(feature_views)
        {
            watched.extend(found);
        }
        watched
    }

    /// Content fingerprint of everything `load` reads; unchanged means no
    /// reload. Reads every file: call it off the async runtime.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for f in self.read_files() {
            f.hash(&mut h);
            std::fs::read(&f).ok().hash(&mut h);
        }
        self.registry_generation().hash(&mut h);
        h.finish()
    }

    /// The generation of the registry a feed read (0: none, or no feed).
    pub fn registry_generation(&self) -> u64 {
        self.registry_feed()
            .and_then(|f| f.current())
            .map_or(0, |f| f.generation)
    }

    /// Metadata of `files` (every file `load` reads: `with_view_files`):
    /// size, modification and change times, inode; symlinks followed, so a
    /// Kubernetes `..data` swap shows as a new inode. A few `stat` calls,
    /// cheap enough for every check, whereas `fingerprint` reads the files.
    /// Unchanged stamps of files not modified recently mean the files are
    /// unchanged.
    pub fn stamp(files: Vec<PathBuf>) -> Vec<(PathBuf, Option<FileStamp>)> {
        files
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(&f).ok().map(|m| FileStamp::of(&m));
                (f, meta)
            })
            .collect()
    }
}

/// What `ConfigSource::stamp` records of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    dev: u64,
    ino: u64,
}

impl FileStamp {
    /// Modified less than `window` ago (or in the future): a second write
    /// within the file system's timestamp granularity could leave the same
    /// size and times, so such a file is compared by content (Git's "racily
    /// clean" rule).
    pub fn is_recent(&self, now: std::time::SystemTime, window: std::time::Duration) -> bool {
        let Ok(now) = now.duration_since(std::time::UNIX_EPOCH) else {
            return true;
        };
        let limit = now.saturating_sub(window);
        let mtime = i128::from(self.mtime.0) * 1_000_000_000 + i128::from(self.mtime.1);
        mtime >= limit.as_nanos() as i128
    }

    fn of(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}
