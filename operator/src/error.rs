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
}

impl Error {
    /// Bounded label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::NoNamespace => "no_namespace",
            Error::Serialize(_) => "serialize",
        }
    }

    /// Requeue delay after this error (API errors retry soon).
    pub fn backoff(&self) -> Duration {
        match self {
            Error::Kube(_) | Error::Finalizer(_) => Duration::from_secs(5),
            Error::NoNamespace | Error::Serialize(_) => Duration::from_secs(300),
        }
    }
}
