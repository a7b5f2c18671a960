//! The operator's error type.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("object has no namespace")]
    NoNamespace,
    #[error("serialization: {0}")]
    Serialize(String),
    /// An HTTP client could not be built (TLS settings).
    #[error("HTTP client: {0}")]
    Http(String),
    /// The reconcile panicked; it ran in its own task, so only this object's
    /// reconcile stopped. The payload is for the log, never for a status.
    #[error("reconcile panicked: {0}")]
    Panicked(String),
    /// The reconcile's task was cancelled (runtime shutting down).
    #[error("reconcile cancelled")]
    Cancelled,
}

impl Error {
    /// Bounded label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::NoNamespace => "no_namespace",
            Error::Serialize(_) => "serialize",
            Error::Http(_) => "http",
            Error::Panicked(_) => "panic",
            Error::Cancelled => "cancelled",
        }
    }

    /// Requeue delay after this error (API errors retry soon).
    pub fn backoff(&self) -> Duration {
        match self {
            Error::Kube(_) | Error::Finalizer(_) | Error::Cancelled | Error::Http(_) => {
                Duration::from_secs(5)
            }
            // The same input would panic again: retry slowly, not hot.
            Error::NoNamespace | Error::Serialize(_) | Error::Panicked(_) => {
                Duration::from_secs(300)
            }
        }
    }
}
