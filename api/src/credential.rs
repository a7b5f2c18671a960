//! Secrets in backend configuration. A `feature_store.yaml` may hold them
//! literally (as Feast allows); the routing table and the CRDs hold only
//! references, so no secret ever lands in a ConfigMap.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Kubernetes Secret key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Credential {
    /// Written in the file itself (`password: hunter2`). Never written out.
    Literal(String),
    Reference(CredentialRef),
}

/// A reference to a secret held elsewhere. Written as a one-key mapping
/// (`{file: /path}`), never as a YAML tag, so every reader can parse it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialRef {
    /// Name of an environment variable of the reading process.
    Env(String),
    /// Path of a file whose content (trailing newline trimmed) is the secret,
    /// e.g. a mounted Secret volume.
    File(String),
    /// A key of a Secret in the store's namespace (resolved by the operator,
    /// which mounts it for the proxy).
    SecretKeyRef(SecretKeyRef),
}

impl Serialize for CredentialRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            CredentialRef::Env(v) => m.serialize_entry("env", v)?,
            CredentialRef::File(p) => m.serialize_entry("file", p)?,
            CredentialRef::SecretKeyRef(r) => m.serialize_entry("secret_key_ref", r)?,
        }
        m.end()
    }
}

impl Credential {
    pub fn is_literal(&self) -> bool {
        matches!(self, Credential::Literal(_))
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Literal(_) => f.write_str("Literal(<redacted>)"),
            Credential::Reference(r) => write!(f, "{r:?}"),
        }
    }
}

impl fmt::Debug for CredentialRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialRef::Env(v) => write!(f, "Env({v})"),
            CredentialRef::File(p) => write!(f, "File({p})"),
            CredentialRef::SecretKeyRef(s) => write!(f, "SecretKeyRef({}/{})", s.name, s.key),
        }
    }
}

impl fmt::Debug for SecretKeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_is_redacted_in_debug() {
        let c: Credential = crate::yaml::from_str("hunter2").unwrap();
        assert!(c.is_literal());
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn references_round_trip_as_mappings() {
        for c in [
            Credential::Reference(CredentialRef::File("/etc/hos/secrets/s/k".into())),
            Credential::Reference(CredentialRef::Env("PW".into())),
            Credential::Reference(CredentialRef::SecretKeyRef(SecretKeyRef {
                name: "s".into(),
                key: "k".into(),
            })),
        ] {
            let yaml = crate::yaml::to_string(&c).unwrap();
            assert!(!yaml.contains('!'), "{yaml}");
            assert_eq!(crate::yaml::from_str::<Credential>(&yaml).unwrap(), c);
        }
    }

    #[test]
    fn references_parse() {
        let c: Credential = crate::yaml::from_str("{env: CASS_PW}").unwrap();
        assert_eq!(
            c,
            Credential::Reference(CredentialRef::Env("CASS_PW".into()))
        );
        let c: Credential =
            crate::yaml::from_str("{secret_key_ref: {name: cass, key: password}}").unwrap();
        assert_eq!(
            c,
            Credential::Reference(CredentialRef::SecretKeyRef(SecretKeyRef {
                name: "cass".into(),
                key: "password".into()
            }))
        );
    }
}
