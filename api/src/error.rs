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

/// Parses a JSON document into `T`, reporting the failing field's path.
/// What [`from_yaml`] does for a document written as JSON, many times
/// faster (a routing table of thousands of views is megabytes).
pub fn from_json<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, ConfigError> {
    // A byte-order mark is not JSON (YAML readers skip it).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // The YAML reader's depth bound, checked before anything recurses
    // (serde_json's own, 128, is more than a 2 MiB thread's stack holds
    // in a debug build).
    if let Some(line) = deeper_than(text, crate::yaml::MAX_DEPTH) {
        return Err(ConfigError::new(
            file,
            ".",
            format!(
                "nesting deeper than {} levels at line {line}",
                crate::yaml::MAX_DEPTH
            ),
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ConfigError::new(file, e.path().to_string(), e.into_inner().to_string()))?;
    de.end()
        .map_err(|e| ConfigError::new(file, ".", e.to_string()))?;
    Ok(value)
}

/// The line where JSON `text` first nests deeper than `max` arrays and
/// objects (brackets inside strings do not count), if it does.
fn deeper_than(text: &str, max: usize) -> Option<usize> {
    let (mut depth, mut line) = (0usize, 1usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if b == b'\n' {
            line += 1;
        }
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Whether `text` is a JSON object (a YAML document may be written as
/// one); then [`from_json`] reads it.
pub fn is_json_object(text: &str) -> bool {
    text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n'])
        .starts_with('{')
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
