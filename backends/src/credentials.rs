//! Resolving credential references at the moment a backend connects.
//!
//! How far a reference may reach depends on who wrote it ([`Trust`]): a
//! user's own `feature_store.yaml` keeps Feast's semantics, a routing table
//! (written from CRs by other teams) reads only files under the secrets
//! directory and no environment variable of the proxy.

use std::path::{Path, PathBuf};

use api::credential::{Credential, CredentialRef};

use crate::confine::confine;
use crate::{BackendError, OpenContext, Trust};

/// Where the secret a credential names would be read from, without reading
/// it: the check a configuration passes before anything connects.
/// `field` names the configuration field in messages (e.g. `conf.password`).
/// `Ok(None)`: a literal, nothing to read.
pub fn check(
    c: &Credential,
    field: &str,
    ctx: &OpenContext,
) -> Result<Option<PathBuf>, BackendError> {
    match c {
        Credential::Literal(_) => Ok(None),
        Credential::Reference(CredentialRef::Env(_)) => match ctx.trust {
            Trust::Owner => Ok(None),
            Trust::Confined => Err(BackendError::Config(format!(
                "{field}: `{{env: ...}}` references are refused in a routing table (they would read the proxy's own environment); mount the secret under --secrets-dir and use `{{file: <secret>/<key>}}`"
            ))),
        },
        Credential::Reference(CredentialRef::File(path)) => match ctx.trust {
            Trust::Owner => Ok(Some(ctx.secrets_dir.join(path))),
            Trust::Confined => confine(&ctx.secrets_dir, Path::new(path))
                .map(Some)
                .map_err(|e| {
                    BackendError::Config(format!(
                        "{field}: `{{file: ...}}` reference refused: {e} (credential files must stay under --secrets-dir)"
                    ))
                }),
        },
        Credential::Reference(CredentialRef::SecretKeyRef(r)) => {
            Err(BackendError::Config(format!(
                "{field}: Secret {}/{} must be mounted by the operator (as a file under --secrets-dir) before the proxy can use it",
                r.name, r.key
            )))
        }
    }
}

/// The secret a credential names. Messages name the field, never the file
/// read nor its content.
pub fn resolve(c: &Credential, field: &str, ctx: &OpenContext) -> Result<String, BackendError> {
    let file = check(c, field, ctx)?;
    match (c, file) {
        (Credential::Literal(s), _) => Ok(s.clone()),
        (Credential::Reference(CredentialRef::Env(var)), _) => std::env::var(var).map_err(|_| {
            BackendError::Config(format!("{field}: environment variable `{var}` is not set"))
        }),
        (_, Some(full)) => std::fs::read_to_string(&full)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            // A Secret not mounted yet is a backend that cannot connect yet
            // (retried), not a configuration to reject.
            .map_err(|e| {
                BackendError::Unavailable(format!(
                    "{field}: the credential file cannot be read ({})",
                    e.kind()
                ))
            }),
        (_, None) => Err(BackendError::Config(format!(
            "{field}: unsupported credential reference"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::credential::SecretKeyRef;

    fn file(p: &str) -> Credential {
        Credential::Reference(CredentialRef::File(p.into()))
    }

    fn ctx(secrets: &Path, trust: Trust) -> OpenContext {
        OpenContext {
            base_dir: PathBuf::new(),
            secrets_dir: secrets.to_path_buf(),
            trust,
        }
    }

    /// secrets/<s>/<k> holds "inside"; a sibling directory holds the
    /// secret a routing table must not reach.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let secrets = d.path().join("secrets");
        std::fs::create_dir_all(secrets.join("s")).unwrap();
        std::fs::write(secrets.join("s/k"), "inside\n").unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("token"), "PLANTED-SECRET").unwrap();
        (d, secrets, outside)
    }

    fn refused(c: &Credential, ctx: &OpenContext, outside: &Path) -> String {
        let e = resolve(c, "conf.password", ctx).unwrap_err();
        assert!(matches!(e, BackendError::Config(_)), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("conf.password"), "{msg}");
        assert!(!msg.contains("PLANTED-SECRET"), "{msg}");
        assert!(!msg.contains(&*outside.to_string_lossy()), "{msg}");
        msg
    }

    #[test]
    fn confined_reads_inside_the_secrets_dir() {
        let (_d, secrets, _) = setup();
        let c = ctx(&secrets, Trust::Confined);
        assert_eq!(resolve(&file("s/k"), "f", &c).unwrap(), "inside");
        assert_eq!(resolve(&file("s/../s/k"), "f", &c).unwrap(), "inside");
        let abs = std::fs::canonicalize(secrets.join("s/k")).unwrap();
        assert_eq!(
            resolve(&file(&abs.to_string_lossy()), "f", &c).unwrap(),
            "inside"
        );
        assert_eq!(
            resolve(&Credential::Literal("lit".into()), "f", &c).unwrap(),
            "lit"
        );
    }

    #[test]
    fn confined_refuses_dot_dot_absolute_and_env() {
        let (_d, secrets, outside) = setup();
        let c = ctx(&secrets, Trust::Confined);
        let msg = refused(&file("../outside/token"), &c, &outside);
        assert!(msg.contains("--secrets-dir"), "{msg}");
        refused(
            &file(&outside.join("token").to_string_lossy()),
            &c,
            &outside,
        );
        refused(&file("/etc/passwd"), &c, &outside);
        // PATH is set: only the refusal keeps it from being read.
        let env = Credential::Reference(CredentialRef::Env("PATH".into()));
        let msg = refused(&env, &c, &outside);
        assert!(msg.contains("env"), "{msg}");
        assert!(
            !msg.contains(&std::env::var("PATH").unwrap_or_default()),
            "{msg}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn confined_refuses_a_symlink_out() {
        let (_d, secrets, outside) = setup();
        std::os::unix::fs::symlink(outside.join("token"), secrets.join("s/link")).unwrap();
        std::os::unix::fs::symlink(&outside, secrets.join("dir")).unwrap();
        let c = ctx(&secrets, Trust::Confined);
        refused(&file("s/link"), &c, &outside);
        refused(&file("dir/token"), &c, &outside);
    }

    #[test]
    fn owner_keeps_feast_semantics() {
        let (_d, secrets, outside) = setup();
        let c = ctx(&secrets, Trust::Owner);
        assert_eq!(
            resolve(&file(&outside.join("token").to_string_lossy()), "f", &c).unwrap(),
            "PLANTED-SECRET"
        );
        assert_eq!(
            resolve(&file("../outside/token"), "f", &c).unwrap(),
            "PLANTED-SECRET"
        );
        let env = Credential::Reference(CredentialRef::Env("PATH".into()));
        assert!(resolve(&env, "f", &c).is_ok());
    }

    #[test]
    fn a_missing_file_inside_is_unavailable_and_names_no_path() {
        let (_d, secrets, _) = setup();
        let e = resolve(
            &file("s/missing"),
            "conf.password",
            &ctx(&secrets, Trust::Confined),
        )
        .unwrap_err();
        assert!(matches!(e, BackendError::Unavailable(_)), "{e}");
        assert!(!e.to_string().contains(&*secrets.to_string_lossy()), "{e}");
    }

    #[test]
    fn secret_key_refs_need_mounting() {
        let (_d, secrets, _) = setup();
        let r = Credential::Reference(CredentialRef::SecretKeyRef(SecretKeyRef {
            name: "s".into(),
            key: "k".into(),
        }));
        assert!(matches!(
            resolve(&r, "f", &ctx(&secrets, Trust::Confined)),
            Err(BackendError::Config(_))
        ));
    }
}
