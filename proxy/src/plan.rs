//! `plan`: what `apply` would change, computed without changing anything.
//!
//! The desired state is the configuration (a repo or a routing table); the
//! current state is the backends themselves (which tables exist) and the
//! routing table the last `apply` recorded (its state file). A plan lists
//! - the storage objects to create (views whose tables are missing);
//! - with `--prune`, the storage objects to drop: views that left the
//!   configuration or moved to another backend since the last apply;
//! - the routes that change (new views, removed views, moved views).
//!
//! `apply` executes this plan (drops, then creates of whatever is missing)
//! and records the new routing table, so `plan` after `apply` is empty.

use std::collections::BTreeMap;
use std::path::Path;

use api::routing::{RoutedView, RoutingTable};
use serde::Serialize;

use crate::state::Snapshot;

/// One storage object to create or drop.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct StorageChange {
    pub backend: String,
    pub view: String,
    pub kind: String,
    pub name: String,
    pub location: String,
    /// Set on drops of storage other views of the backend still use: only
    /// the view's rows are deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<String>,
}

/// A view whose backend changes; `None` on one side: added or removed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RouteChange {
    pub view: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub project: String,
    pub create: Vec<StorageChange>,
    pub drop: Vec<StorageChange>,
    pub routes: Vec<RouteChange>,
    /// Backends that could not be inspected (down): their views are
    /// listed as creates, which `apply` will attempt.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.drop.is_empty() && self.routes.is_empty()
    }

    /// The plan as text, one change per line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.is_empty() {
            out.push_str(&format!(
                "No changes: project {} is up to date.\n",
                self.project
            ));
        }
        for c in &self.create {
            out.push_str(&format!(
                "+ create {} {} ({}) for view {} in backend {}\n",
                c.kind, c.name, c.location, c.view, c.backend
            ));
        }
        for c in &self.drop {
            if c.shared_with.is_empty() {
                out.push_str(&format!(
                    "- drop {} {} ({}) of view {} in backend {}\n",
                    c.kind, c.name, c.location, c.view, c.backend
                ));
            } else {
                out.push_str(&format!(
                    "- delete the rows of view {} from {} {} ({}) in backend {} (kept: shared with {})\n",
                    c.view,
                    c.kind,
                    c.name,
                    c.location,
                    c.backend,
                    c.shared_with.join(", ")
                ));
            }
        }
        for r in &self.routes {
            match (&r.from, &r.to) {
                (None, Some(to)) => out.push_str(&format!("~ route {}: (new) -> {to}\n", r.view)),
                (Some(from), None) => {
                    out.push_str(&format!("~ route {}: {from} -> (removed)\n", r.view))
                }
                (Some(from), Some(to)) => {
                    out.push_str(&format!("~ route {}: {from} -> {to}\n", r.view))
                }
                (None, None) => {}
            }
        }
        for b in &self.unreachable {
            out.push_str(&format!(
                "! backend {b} is unreachable: its existing tables are unknown\n"
            ));
        }
        out
    }
}

/// Why the state of the last `apply` could not be read or written, or a
/// drop not done.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Parse(#[from] api::error::ConfigError),
    #[error("cannot record the applied routing table in {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("view `{0}` is not in the applied routing table")]
    UnknownView(String),
    #[error("backend `{0}` is not configured")]
    UnknownBackend(String),
    #[error("backend `{backend}`: {source}")]
    Backend {
        backend: String,
        #[source]
        source: backends::BackendError,
    },
    #[error("dropping view `{view}` in backend `{backend}`: {source}")]
    Drop {
        view: String,
        backend: String,
        #[source]
        source: backends::BackendError,
    },
}

/// The routing table recorded by the last `apply`, if any.
pub fn read_state(path: &Path) -> Result<Option<RoutingTable>, StateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(RoutingTable::parse(
            &path.display().to_string(),
            &text,
        )?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// What stands in for a literal secret in anything written out.
pub const REDACTED: &str = "<redacted>";

/// The table with every literal credential (a `password: hunter2`, a
/// `password=` in a Redis connection string) replaced by [`REDACTED`];
/// references are kept as they are. Also returns the names of the backends
/// that had literals. What `routing-table` prints and `apply` records.
pub fn without_secrets(table: &RoutingTable) -> (RoutingTable, Vec<String>) {
    use api::credential::Credential;
    use api::feast_config::BackendConf;
    let mut out = table.clone();
    let mut redacted = Vec::new();
    let scrub = |c: &mut Option<Credential>| match c {
        Some(Credential::Literal(s)) => {
            *s = REDACTED.to_string();
            true
        }
        _ => false,
    };
    for b in &mut out.backends {
        let had = match &mut b.conf {
            BackendConf::Redis(r) => {
                let parts: Vec<String> = r
                    .connection_string
                    .split(',')
                    .map(|part| match part.split_once('=') {
                        Some((k, _)) if k.trim().eq_ignore_ascii_case("password") => {
                            format!("{k}={REDACTED}")
                        }
                        _ => part.to_string(),
                    })
                    .collect();
                let joined = parts.join(",");
                let in_string = joined != r.connection_string;
                r.connection_string = joined;
                scrub(&mut r.password) | in_string
            }
            BackendConf::Cassandra(c) => scrub(&mut c.username) | scrub(&mut c.password),
            BackendConf::Sqlite(_) | BackendConf::Bigtable(_) => false,
        };
        if had {
            redacted.push(b.name.clone());
        }
    }
    (out, redacted)
}

/// Records the applied routing table (written whole, then renamed), its
/// literal credentials redacted (the state is only compared by view and
/// backend names) and readable by its owner only.
pub fn write_state(path: &Path, table: &RoutingTable) -> Result<(), StateError> {
    let fail = |source: std::io::Error| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let (table, _) = without_secrets(table);
    let tmp = path.with_extension("tmp");
    // A leftover temporary file may be anyone's: start from a new one.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(fail)?;
    std::io::Write::write_all(&mut file, table.to_yaml().as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Computes the plan of `snap` (its backends open) against `previous`.
pub async fn compute(snap: &Snapshot, previous: Option<&RoutingTable>, prune: bool) -> Plan {
    let project = snap.table.project.clone();
    let mut plan = Plan {
        project: project.clone(),
        ..Plan::default()
    };
    let mut unreachable = std::collections::BTreeSet::new();
    for view in &snap.view_list {
        let Some(b) = snap.backend_of(view) else {
            continue;
        };
        let Ok(store) = b.store() else {
            unreachable.insert(b.name.clone());
            continue;
        };
        let exists = match store.storage_exists(&project, view).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(backend = %b.name, view = %view.name, error = %e, "cannot inspect");
                unreachable.insert(b.name.clone());
                false
            }
        };
        if !exists {
            for o in store.storage_objects(&project, view) {
                plan.create.push(StorageChange {
                    backend: b.name.clone(),
                    view: view.name.clone(),
                    kind: o.kind.to_string(),
                    name: o.name,
                    location: o.location,
                    shared_with: Vec::new(),
                });
            }
        }
    }
    let before: BTreeMap<&str, &RoutedView> = previous
        .map(|t| {
            t.feature_views
                .iter()
                .map(|v| (v.name.as_str(), v))
                .collect()
        })
        .unwrap_or_default();
    let after: BTreeMap<&str, &RoutedView> = snap
        .view_list
        .iter()
        .map(|v| (v.name.as_str(), v.as_ref()))
        .collect();
    for (name, v) in &after {
        match before.get(name) {
            None => plan.routes.push(RouteChange {
                view: name.to_string(),
                from: None,
                to: Some(v.backend.clone()),
            }),
            Some(old) if old.backend != v.backend => plan.routes.push(RouteChange {
                view: name.to_string(),
                from: Some(old.backend.clone()),
                to: Some(v.backend.clone()),
            }),
            Some(_) => {}
        }
    }
    for (name, old) in &before {
        let moved_or_gone = match after.get(name) {
            None => {
                plan.routes.push(RouteChange {
                    view: name.to_string(),
                    from: Some(old.backend.clone()),
                    to: None,
                });
                true
            }
            Some(v) => v.backend != old.backend,
        };
        if !(prune && moved_or_gone) {
            continue;
        }
        // Only backends still configured can be pruned.
        let Some(b) = snap.backends.get(&old.backend) else {
            continue;
        };
        let Ok(store) = b.store() else {
            unreachable.insert(b.name.clone());
            continue;
        };
        if !store.storage_exists(&project, old).await.unwrap_or(true) {
            continue;
        }
        let staying: Vec<&RoutedView> = snap
            .table
            .feature_views
            .iter()
            .filter(|v| v.backend == old.backend)
            .collect();
        for o in store.storage_objects(&project, old) {
            let shared_with: Vec<String> = staying
                .iter()
                .filter(|s| {
                    store
                        .storage_objects(&project, s)
                        .iter()
                        .any(|x| x.name == o.name)
                })
                .map(|s| s.name.clone())
                .collect();
            plan.drop.push(StorageChange {
                backend: b.name.clone(),
                view: old.name.clone(),
                kind: o.kind.to_string(),
                name: o.name,
                location: o.location,
                shared_with,
            });
        }
    }
    plan.create.sort();
    plan.drop.sort();
    plan.routes.sort();
    plan.unreachable = unreachable.into_iter().collect();
    plan
}

/// Executes the drops of `plan` (pruned views). Creation is
/// [`crate::state::provision`], which creates whatever is missing.
pub async fn execute_drops(
    snap: &Snapshot,
    previous: Option<&RoutingTable>,
    plan: &Plan,
) -> Result<Vec<String>, StateError> {
    let project = &snap.table.project;
    let mut done = Vec::new();
    let mut dropped: Vec<(&str, &str)> = Vec::new();
    for c in &plan.drop {
        if dropped.contains(&(c.backend.as_str(), c.view.as_str())) {
            continue;
        }
        dropped.push((&c.backend, &c.view));
        let old = previous
            .and_then(|t| t.view(&c.view))
            .ok_or_else(|| StateError::UnknownView(c.view.clone()))?;
        let b = snap
            .backends
            .get(&c.backend)
            .ok_or_else(|| StateError::UnknownBackend(c.backend.clone()))?;
        let store = b.store().map_err(|source| StateError::Backend {
            backend: b.name.clone(),
            source,
        })?;
        let remaining: Vec<&RoutedView> = snap
            .view_list
            .iter()
            .map(AsRef::as_ref)
            .filter(|v| v.backend == c.backend)
            .collect();
        store
            .drop_view(project, old, &remaining)
            .await
            .map_err(|source| StateError::Drop {
                view: c.view.clone(),
                backend: c.backend.clone(),
                source,
            })?;
        done.push(format!(
            "dropped view {} from backend {}",
            c.view, c.backend
        ));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"
schema_version: 1
project: p
routing_tag: team
backends:
  - name: r
    type: redis
    conf:
      connection_string: "localhost:6379,password=HUNTER2,db=1"
      password: HUNTER3
  - name: c
    type: cassandra
    conf:
      hosts: [127.0.0.1]
      username: {file: cass/username}
      password: HUNTER4
  - name: s
    type: sqlite
    conf: {path: a.db}
feature_views: []
"#;

    #[test]
    fn literal_secrets_are_redacted_and_references_kept() {
        let table = RoutingTable::parse("t", TABLE).unwrap();
        let (clean, names) = without_secrets(&table);
        let yaml = clean.to_yaml();
        for secret in ["HUNTER2", "HUNTER3", "HUNTER4"] {
            assert!(!yaml.contains(secret), "{secret} in {yaml}");
        }
        assert!(yaml.contains("file: cass/username"), "{yaml}");
        assert!(
            yaml.contains("localhost:6379,password=<redacted>,db=1"),
            "{yaml}"
        );
        assert_eq!(names, vec!["r".to_string(), "c".to_string()]);
        // Still a table that parses.
        RoutingTable::parse("t", &yaml).unwrap();
    }

    #[test]
    fn state_files_hold_no_secret_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.yaml");
        // A leftover temporary file of another mode is replaced, not reused.
        std::fs::write(path.with_extension("tmp"), "old").unwrap();
        let table = RoutingTable::parse("t", TABLE).unwrap();
        write_state(&path, &table).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("HUNTER"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{mode:o}");
        }
        assert!(read_state(&path).unwrap().is_some());
        assert!(!path.with_extension("tmp").exists());
    }
}
