//! Each reconcile runs in its own task: a panic inside it (a backend client
//! library given input it cannot handle, a bug) ends that task only, comes
//! back as [`Error::Panicked`] and leaves the controller, and every other
//! object's reconcile, running. Without this, kube's controller stream
//! polls the reconcile future itself and one panic ends the whole
//! controller.

use std::any::Any;
use std::future::Future;

use tokio::task::JoinHandle;

use crate::error::Error;

/// What a status or event says about a panicked reconcile: no payload, which
/// could quote configuration.
pub const PANIC_MESSAGE: &str = "the operator hit an internal error (a panic) while reconciling this object, most likely in a backend client library given this spec; see the operator log. Other objects are unaffected; fix the spec or report the bug";

/// Aborts the task when the reconcile future is dropped (controller
/// shutdown), as dropping the future itself would have stopped it.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `fut` in its own task and maps a panic to [`Error::Panicked`].
pub async fn isolated<T, F>(fut: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Error>> + Send + 'static,
{
    let mut task = AbortOnDrop(tokio::spawn(fut));
    match (&mut task.0).await {
        Ok(res) => res,
        Err(e) if e.is_panic() => {
            let message = panic_message(e.into_panic());
            tracing::error!(panic = %message, "reconcile panicked; the controller carries on");
            Err(Error::Panicked(message))
        }
        Err(_) => Err(Error::Cancelled),
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_and_the_next_reconcile_runs() {
        let err = isolated::<(), _>(async { panic!("boom in a reconcile") })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Panicked(m) if m == "boom in a reconcile"),
            "{err}"
        );
        assert_eq!(err.metric_label(), "panic");
        // The runtime and the caller carry on.
        assert_eq!(isolated(async { Ok(7) }).await.unwrap(), 7);
    }

    /// A real panicking input: bigtable_rs 0.4 `expect`s that the emulator
    /// address makes a URI, so an address with a space panics inside its
    /// constructor. Isolated, it is an error.
    #[tokio::test]
    async fn a_bigtable_emulator_address_that_panics_the_client_is_contained() {
        for host in ["a b:8086", "::::"] {
            let host = host.to_string();
            let res = isolated(async move {
                let r = bigtable_rs::bigtable::BigTableConnection::new_with_emulator(
                    &host, "p", "i", false, 1, None,
                );
                Ok(r.is_ok())
            })
            .await;
            assert!(
                matches!(&res, Err(Error::Panicked(m)) if m.contains("emulator uri")),
                "{res:?}"
            );
        }
    }

    #[tokio::test]
    async fn dropping_the_reconcile_aborts_its_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let fut = isolated(async move {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            drop(tx);
            Ok(())
        });
        // Poll once so the task starts, then drop the reconcile.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(20), fut).await;
        // The task was aborted: its `tx` is gone without a send.
        assert!(rx.await.is_err());
    }
}
