//! Resolving credential references at the moment a backend connects.

use std::path::Path;

use api::credential::{Credential, CredentialRef};

use crate::BackendError;

/// The secret a credential names. Secret references are resolved by the
/// operator, which mounts them as files or env vars for the proxy; a
/// relative file path is read under `secrets_dir`.
pub fn resolve(c: &Credential, what: &str, secrets_dir: &Path) -> Result<String, BackendError> {
    match c {
        Credential::Literal(s) => Ok(s.clone()),
        Credential::Reference(CredentialRef::Env(var)) => std::env::var(var).map_err(|_| {
            BackendError::Config(format!("{what}: environment variable `{var}` is not set"))
        }),
        Credential::Reference(CredentialRef::File(path)) => {
            let full = secrets_dir.join(path);
            std::fs::read_to_string(&full)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| {
                    BackendError::Config(format!("{what}: cannot read `{}`: {e}", full.display()))
                })
        }
        Credential::Reference(CredentialRef::SecretKeyRef(r)) => {
            Err(BackendError::Config(format!(
                "{what}: Secret {}/{} must be mounted by the operator (as a file or env var) before the proxy can use it",
                r.name, r.key
            )))
        }
    }
}
