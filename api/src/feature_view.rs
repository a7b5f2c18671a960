//! FeatureView definitions in YAML, in the shape of Feast's hybrid store
//! docs (`name`, `entities` with `join_keys`, `ttl`, `schema` with `dtype`,
//! `online`, `source`, `tags`). A file may hold several `---` documents.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::dtype::Dtype;
use crate::error::ConfigError;
use crate::yaml::Value;

/// An entity a view is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntityDef {
    pub name: String,
    /// Columns of the entity key; Feast entities have one.
    pub join_keys: Vec<String>,
    /// Value type of the join keys, when declared here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<Dtype>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    name: String,
    #[serde(default)]
    join_keys: Option<Vec<String>>,
    #[serde(default, alias = "value_type")]
    dtype: Option<Dtype>,
    #[serde(default)]
    description: Option<String>,
}

impl<'de> Deserialize<'de> for EntityDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            // `entities: [user_id]`, as Feast's Python accepts entity names.
            Name(String),
            Full(RawEntity),
        }
        // Untagged enums lose the inner error; parse the map form directly
        // when it is a map so unknown fields are reported.
        let v = Value::deserialize(d)?;
        let e = match v {
            Value::String(s) => Either::Name(s),
            other => Either::Full(RawEntity::deserialize(other).map_err(serde::de::Error::custom)?),
        };
        Ok(match e {
            Either::Name(name) => EntityDef {
                join_keys: vec![name.clone()],
                name,
                dtype: None,
                description: None,
            },
            Either::Full(r) => EntityDef {
                join_keys: r.join_keys.unwrap_or_else(|| vec![r.name.clone()]),
                name: r.name,
                dtype: r.dtype,
                description: r.description,
            },
        })
    }
}

/// A schema column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub name: String,
    pub dtype: Dtype,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// The batch source; not used for online serving, kept for completeness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SourceDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "timestamp_field"
    )]
    pub event_timestamp_column: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "created_timestamp_field"
    )]
    pub created_timestamp_column: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub field_mapping: BTreeMap<String, String>,
}

/// A time to live: `null`, seconds as a number, or text such as `86400s`,
/// `90m`, `24h`, `1d`, `1h30m`.
pub fn deserialize_ttl<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Value::deserialize(d)?;
    match v {
        Value::Null => Ok(None),
        Value::UInt(s) => Ok(if s == 0 { None } else { Some(s) }),
        n @ (Value::Int(_) | Value::Float(_)) => Err(serde::de::Error::custom(format!(
            "ttl must be whole non-negative seconds, got {n}"
        ))),
        Value::String(s) => parse_duration(&s).map_err(serde::de::Error::custom),
        _ => Err(serde::de::Error::custom(
            "ttl must be null, seconds, or a duration like `24h`",
        )),
    }
}

/// Parses `1d2h3m4s`-style durations into seconds; zero means no limit.
pub fn parse_duration(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    let bad = || format!("invalid duration `{s}` (use seconds or units s, m, h, d, e.g. `24h`)");
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() {
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total.checked_add(n).ok_or_else(bad)?;
    }
    Ok(if total == 0 { None } else { Some(total) })
}

fn default_true() -> bool {
    true
}

/// A FeatureView definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureViewDef {
    pub name: String,
    #[serde(default)]
    pub entities: Vec<EntityDef>,
    /// Seconds; `None` means no limit.
    #[serde(default, deserialize_with = "deserialize_ttl")]
    pub ttl: Option<u64>,
    #[serde(default)]
    pub schema: Vec<FieldDef>,
    #[serde(default = "default_true")]
    pub online: bool,
    #[serde(default)]
    pub source: Option<SourceDef>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
}

/// Checks a Feast object name: non-empty, no whitespace and no `:` (which
/// separates view and feature in feature references).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || *c == ':' || c.is_control())
    {
        return Err(format!("name `{name}` must not contain {c:?}"));
    }
    Ok(())
}

/// Most FeatureView documents in one file.
const MAX_DOCUMENTS: usize = 10_000;

impl FeatureViewDef {
    /// Parses every YAML document in `text` as a feature view.
    pub fn parse_all(file: &str, text: &str) -> Result<Vec<FeatureViewDef>, ConfigError> {
        // Every document is read (to a `Value`) before any is checked, so
        // a syntax error anywhere is reported first; reading stops at the
        // first document that does not parse (serde-yaml's iterator used to
        // repeat such an error forever, found by fuzzing).
        let docs = crate::yaml::documents(text, MAX_DOCUMENTS).map_err(|e| match e {
            crate::yaml::DocumentsError::TooMany(_) => ConfigError::new(file, "", e.to_string()),
            crate::yaml::DocumentsError::Invalid { index, message } => {
                let path = if index <= 1 {
                    String::new()
                } else {
                    format!("(document {index})")
                };
                ConfigError::new(file, path, message)
            }
        })?;
        let mut out = Vec::new();
        let many = docs.len() > 1;
        for (i, doc) in docs.into_iter().enumerate() {
            let fv: FeatureViewDef = serde_path_to_error::deserialize(doc).map_err(|e| {
                let path = e.path().to_string();
                let path = if many {
                    format!("(document {}) {path}", i + 1)
                } else {
                    path
                };
                ConfigError::new(file, path, e.into_inner().to_string())
            })?;
            fv.validate(file)?;
            out.push(fv);
        }
        Ok(out)
    }

    /// Checks names and uniqueness of entity and schema columns.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        check_name(&self.name).map_err(|m| ConfigError::new(file, "name", m))?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in self.schema.iter().enumerate() {
            check_name(&f.name)
                .map_err(|m| ConfigError::new(file, format!("schema[{i}].name"), m))?;
            if !seen.insert(f.name.as_str()) {
                return Err(ConfigError::new(
                    file,
                    format!("schema[{i}].name"),
                    format!("duplicate field `{}`", f.name),
                ));
            }
        }
        for (i, e) in self.entities.iter().enumerate() {
            check_name(&e.name)
                .map_err(|m| ConfigError::new(file, format!("entities[{i}].name"), m))?;
            if e.join_keys.is_empty() {
                return Err(ConfigError::new(
                    file,
                    format!("entities[{i}].join_keys"),
                    "an entity needs at least one join key",
                ));
            }
            for (j, k) in e.join_keys.iter().enumerate() {
                check_name(k).map_err(|m| {
                    ConfigError::new(file, format!("entities[{i}].join_keys[{j}]"), m)
                })?;
            }
            if let Some(d) = e.dtype
                && !d.allowed_in_entity_key()
            {
                return Err(ConfigError::new(
                    file,
                    format!("entities[{i}].dtype"),
                    format!(
                        "{d} cannot be a join key type (use int32, int64, string, bytes or unix_timestamp)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("86400s"), Ok(Some(86400)));
        assert_eq!(parse_duration("1d2h"), Ok(Some(93600)));
        assert_eq!(parse_duration("90"), Ok(Some(90)));
        assert_eq!(parse_duration("0s"), Ok(None));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn entity_names_and_maps() {
        let fv = &FeatureViewDef::parse_all(
            "fv.yaml",
            "name: v\nentities: [driver_id, {name: user, join_keys: [user_id], dtype: int64}]\nschema: []\n",
        )
        .unwrap()[0];
        assert_eq!(fv.entities[0].join_keys, vec!["driver_id"]);
        assert_eq!(fv.entities[1].dtype, Some(Dtype::Int64));
    }

    #[test]
    fn errors_name_the_field() {
        let err = FeatureViewDef::parse_all(
            "fv.yaml",
            "name: v\nschema:\n  - name: a\n    dtype: int65\n",
        )
        .unwrap_err();
        assert_eq!(err.path, "schema[0].dtype");
        assert!(err.message.contains("int65"), "{err}");
        let err = FeatureViewDef::parse_all("fv.yaml", "name: v\ntgas: {}\n").unwrap_err();
        assert!(err.message.contains("unknown field `tgas`"), "{err}");
        // Found by fuzzing: a syntax error used to loop forever.
        let err = FeatureViewDef::parse_all("fv.yaml", "project: p\n name: [\n").unwrap_err();
        assert!(err.to_string().contains("fv.yaml"), "{err}");
        let err = FeatureViewDef::parse_all("fv.yaml", "name: v\nttl: forever\n").unwrap_err();
        assert_eq!(err.path, "ttl");
        let err = FeatureViewDef::parse_all(
            "fv.yaml",
            "name: v\nschema: [{name: a, dtype: int64}, {name: a, dtype: string}]\n",
        )
        .unwrap_err();
        assert_eq!(err.path, "schema[1].name");
    }

    #[test]
    fn documents_are_numbered_and_capped() {
        let two = FeatureViewDef::parse_all("fv.yaml", "name: a\n---\nname: b\n").unwrap();
        assert_eq!(two.len(), 2);
        // An empty document is an error, as is an empty file.
        let err = FeatureViewDef::parse_all("fv.yaml", "name: a\n---\n").unwrap_err();
        assert_eq!(err.path, "(document 2) .");
        assert!(err.message.contains("missing field `name`"), "{err}");
        let err = FeatureViewDef::parse_all("fv.yaml", "").unwrap_err();
        assert_eq!(err.path, ".");
        // A syntax error anywhere is reported before a type error earlier.
        let err =
            FeatureViewDef::parse_all("fv.yaml", "name: a\nbad: 1\n---\nname: [\n").unwrap_err();
        assert_eq!(err.path, "(document 2)");
        let err =
            FeatureViewDef::parse_all("fv.yaml", "name: a\nbad: 1\n---\nname: b\n").unwrap_err();
        assert_eq!(err.path, "(document 1) bad");
        // A list is not a view (serde_json would have read it field by field).
        let err = FeatureViewDef::parse_all("fv.yaml", "- v\n").unwrap_err();
        assert!(err.message.contains("invalid type: sequence"), "{err}");
        let many = "name: v\n---\n".repeat(MAX_DOCUMENTS);
        let err = FeatureViewDef::parse_all("fv.yaml", &format!("{many}name: w\n")).unwrap_err();
        assert_eq!(
            err.message,
            format!("more than {MAX_DOCUMENTS} YAML documents")
        );
        let views = FeatureViewDef::parse_all("fv.yaml", many.trim_end_matches("---\n")).unwrap();
        assert_eq!(views.len(), MAX_DOCUMENTS);
    }

    #[test]
    fn ttl_spellings() {
        let ttl = |t: &str| {
            FeatureViewDef::parse_all("fv.yaml", &format!("name: v\nttl: {t}\n"))
                .map(|v| v[0].ttl)
                .map_err(|e| e.message)
        };
        assert_eq!(ttl("86400"), Ok(Some(86400)));
        assert_eq!(ttl("0"), Ok(None));
        assert_eq!(ttl("~"), Ok(None));
        assert_eq!(ttl("1d"), Ok(Some(86400)));
        assert_eq!(ttl("\"90\""), Ok(Some(90)));
        assert_eq!(
            ttl("-5").unwrap_err(),
            "ttl must be whole non-negative seconds, got -5"
        );
        assert_eq!(
            ttl("1.5").unwrap_err(),
            "ttl must be whole non-negative seconds, got 1.5"
        );
        assert_eq!(
            ttl(".nan").unwrap_err(),
            "ttl must be whole non-negative seconds, got .nan"
        );
        assert!(ttl("[1]").is_err());
    }
}
