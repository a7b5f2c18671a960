//! Creating the tables of a snapshot's views in their backends.

use super::snapshot::Snapshot;

/// A view whose tables its backend refused to create.
#[derive(Debug, thiserror::Error)]
#[error("view `{view}` in backend `{backend}`: {source}")]
pub struct ProvisionError {
    pub view: String,
    pub backend: String,
    #[source]
    pub source: backends::BackendError,
}

/// Creates every view's tables in its backend (standalone `--apply`).
pub async fn provision(snapshot: &Snapshot) -> Result<Vec<String>, ProvisionError> {
    provision_views(snapshot, None).await
}

/// Creates the tables of the views routed to `backend`.
pub async fn provision_backend(
    snapshot: &Snapshot,
    backend: &str,
) -> Result<Vec<String>, ProvisionError> {
    provision_views(snapshot, Some(backend)).await
}

async fn provision_views(
    snapshot: &Snapshot,
    only: Option<&str>,
) -> Result<Vec<String>, ProvisionError> {
    let mut done = Vec::new();
    for view in snapshot.views.values() {
        if only.is_some_and(|b| b != view.backend) {
            continue;
        }
        let Some(b) = snapshot.backend_of(view) else {
            continue;
        };
        let store = match b.store() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(backend = %b.name, view = %view.name, error = %e, "not provisioned: backend down");
                continue;
            }
        };
        store
            .create(&snapshot.table.project, view)
            .await
            .map_err(|source| ProvisionError {
                view: view.name.clone(),
                backend: b.name.clone(),
                source,
            })?;
        for o in store.storage_objects(&snapshot.table.project, view) {
            done.push(format!(
                "{} {} ({}) for view {} in backend {}",
                o.kind, o.name, o.location, view.name, b.name
            ));
        }
    }
    done.sort();
    Ok(done)
}
