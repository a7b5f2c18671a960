//! Configuration errors that name the file, the path inside it and the problem.

use std::fmt;

/// A problem in a configuration document. Displays as
/// `<file>: <path>: <message>`, e.g.
/// `feature_store.yaml: online_store.online_stores[1].conf.hosts: invalid type: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or other source, e.g. `ConfigMap ns/name`) the document came from.
    pub file: String,
    /// Dotted path of the offending field; `.` for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.path, self.message)
    }
}

impl ConfigError {
    pub fn new(
        file: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Parses a YAML (or JSON) document into `T`, reporting the failing field's path.
pub fn from_yaml<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, ConfigError> {
    crate::yaml::from_str(text).map_err(|e| {
        // The parser's messages carry "at line L, column C"; keep it, it helps.
        let message = if e.message.is_empty() {
            "invalid document".to_string()
        } else {
            e.message
        };
        ConfigError::new(file, e.path, message)
    })
}
