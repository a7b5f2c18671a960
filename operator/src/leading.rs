//! What the leader does while it holds the Lease: run both controllers,
//! renew, and on shutdown stop the controllers before releasing the Lease.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinSet;

use crate::context::Context;
use crate::leader::{LeaderElection, Lost};
use crate::readiness::{Readiness, Role};

/// Runs the store and view controllers (watching `namespace`, or all)
/// while renewing the Lease. When `shutdown` completes, the controllers
/// stop taking new work and get `grace` to finish their reconciles (the
/// Lease still renewed), are aborted after that, and then the Lease is
/// released. When the Lease is lost (taken, or not renewed within the
/// renew deadline) the controllers are aborted at once and `Err` says why:
/// another replica may be acting already.
pub async fn lead(
    election: &mut LeaderElection,
    ctx: Arc<Context>,
    namespace: Option<String>,
    readiness: &Arc<Readiness>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), Lost> {
    let (stop_tx, _) = broadcast::channel::<()>(1);
    let stop = |tx: &broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    let mut controllers = JoinSet::new();
    controllers.spawn(crate::store::run(
        Arc::clone(&ctx),
        namespace.clone(),
        readiness,
        stop(&stop_tx),
    ));
    controllers.spawn(crate::view::run(ctx, namespace, readiness, stop(&stop_tx)));

    let lost = match election.renew_until(shutdown).await {
        Ok(()) => {
            readiness.set_role(Role::Stopping);
            tracing::info!("stopping the controllers, then releasing the leader Lease");
            let _ = stop_tx.send(());
            let drained = tokio::time::timeout(grace, async {
                while controllers.join_next().await.is_some() {}
            });
            match election.renew_until(drained).await {
                Ok(Ok(())) => None,
                Ok(Err(_)) => {
                    tracing::warn!(
                        ?grace,
                        "controllers still busy after the grace period; aborting them"
                    );
                    None
                }
                Err(lost) => Some(lost),
            }
        }
        Err(lost) => Some(lost),
    };
    readiness.set_role(Role::Stopping);
    controllers.shutdown().await;
    if let Some(lost) = lost {
        return Err(lost);
    }
    let timeout = election.timing().renew_deadline;
    match tokio::time::timeout(timeout, election.release()).await {
        Ok(Ok(true)) => tracing::info!("released the leader Lease"),
        Ok(Ok(false)) => tracing::warn!("the leader Lease was no longer ours to release"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not release the leader Lease; it expires after its duration")
        }
        Err(_) => {
            tracing::warn!("releasing the leader Lease timed out; it expires after its duration")
        }
    }
    Ok(())
}
