//! Reads Feast's file registry (`registry.db` written by `feast apply`: a
//! serialized `feast.core.Registry`) into feature view definitions and
//! feature services for one project.

use std::collections::BTreeMap;

use prost::Message;

use crate::dtype::Dtype;
use crate::feature_view::{EntityDef, FeatureViewDef, FieldDef, SourceDef};
use crate::keys::DUMMY_ENTITY_NAME;
use crate::proto::ValueType;
use crate::proto::feast::core::{self, data_source::SourceType};
use crate::routing::{FeatureService, Projection};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{file}: not a Feast registry: {source}")]
    Decode {
        file: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("{file}: feature view `{view}`: {message}")]
    View {
        file: String,
        view: String,
        message: String,
    },
}

/// What the registry holds for a project.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryContents {
    pub feature_views: Vec<FeatureViewDef>,
    pub feature_services: Vec<FeatureService>,
}

fn dtype(vt: i32, file: &str, view: &str, what: &str) -> Result<Dtype, RegistryError> {
    ValueType::try_from(vt)
        .ok()
        .and_then(Dtype::from_value_type)
        .ok_or_else(|| RegistryError::View {
            file: file.to_string(),
            view: view.to_string(),
            message: format!("{what} has value type {vt}, which this project does not serve"),
        })
}

fn source_def(
    batch: Option<&core::DataSource>,
    stream: Option<&core::DataSource>,
) -> Option<SourceDef> {
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    if let Some(push) = stream.filter(|s| s.r#type == SourceType::PushSource as i32) {
        let inner = push.batch_source.as_deref();
        let ts = nonempty(&push.timestamp_field)
            .or_else(|| inner.and_then(|b| nonempty(&b.timestamp_field)));
        let created = nonempty(&push.created_timestamp_column)
            .or_else(|| inner.and_then(|b| nonempty(&b.created_timestamp_column)));
        return Some(SourceDef {
            name: nonempty(&push.name),
            kind: Some("push".to_string()),
            event_timestamp_column: ts,
            created_timestamp_column: created,
            ..SourceDef::default()
        });
    }
    batch.map(|b| SourceDef {
        name: nonempty(&b.name),
        event_timestamp_column: nonempty(&b.timestamp_field),
        created_timestamp_column: nonempty(&b.created_timestamp_column),
        ..SourceDef::default()
    })
}

struct ViewParts<'a> {
    name: &'a str,
    entities: &'a [String],
    features: &'a [core::FeatureSpecV2],
    entity_columns: &'a [core::FeatureSpecV2],
    tags: &'a std::collections::HashMap<String, String>,
    ttl: Option<&'a prost_types::Duration>,
    online: bool,
    source: Option<SourceDef>,
}

fn view_def(
    p: ViewParts<'_>,
    entities: &BTreeMap<&str, &core::EntitySpecV2>,
    file: &str,
) -> Result<FeatureViewDef, RegistryError> {
    let mut defs = Vec::new();
    for e in p
        .entities
        .iter()
        .filter(|e| e.as_str() != DUMMY_ENTITY_NAME)
    {
        let spec = entities.get(e.as_str());
        let join_key = spec
            .map(|s| s.join_key.clone())
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| e.clone());
        // The entity column carries the authoritative type; the entity's own
        // value_type may be 0 (unknown) for entities declared without one.
        let col = p.entity_columns.iter().find(|c| c.name == join_key);
        let vt = col
            .map(|c| c.value_type)
            .or(spec.map(|s| s.value_type))
            .unwrap_or(0);
        let dtype = if vt == 0 {
            None
        } else {
            Some(dtype(vt, file, p.name, &format!("join key `{join_key}`"))?)
        };
        defs.push(EntityDef {
            name: e.clone(),
            join_keys: vec![join_key],
            dtype,
            description: None,
        });
    }
    let schema = p
        .features
        .iter()
        .map(|f| {
            Ok(FieldDef {
                name: f.name.clone(),
                dtype: dtype(f.value_type, file, p.name, &format!("feature `{}`", f.name))?,
                description: None,
                tags: f.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            })
        })
        .collect::<Result<Vec<_>, RegistryError>>()?;
    let ttl = p
        .ttl
        .map(|d| d.seconds)
        .filter(|s| *s > 0)
        .map(|s| s as u64);
    Ok(FeatureViewDef {
        name: p.name.to_string(),
        entities: defs,
        ttl,
        schema,
        online: p.online,
        source: p.source,
        tags: p.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        description: None,
        owner: None,
    })
}

/// Decodes `bytes` (the content of `file`) and returns the online feature
/// views and feature services of `project`.
pub fn read_registry(
    file: &str,
    bytes: &[u8],
    project: &str,
) -> Result<RegistryContents, RegistryError> {
    let reg = core::Registry::decode(bytes).map_err(|source| RegistryError::Decode {
        file: file.to_string(),
        source,
    })?;
    registry_contents(file, &reg, project)
}

/// The online feature views and feature services of `project` in a decoded
/// registry (read from a file, assembled from a SQL registry's rows, or
/// answered by a registry server); `file` names it in errors.
pub fn registry_contents(
    file: &str,
    reg: &core::Registry,
    project: &str,
) -> Result<RegistryContents, RegistryError> {
    let entities: BTreeMap<&str, &core::EntitySpecV2> = reg
        .entities
        .iter()
        .filter_map(|e| e.spec.as_ref())
        .filter(|s| s.project == project)
        .map(|s| (s.name.as_str(), s))
        .collect();
    let mut out = RegistryContents::default();
    // Batch and stream feature views carry the same parts under different
    // field numbers.
    let batch = reg
        .feature_views
        .iter()
        .filter_map(|v| v.spec.as_ref())
        .filter(|fv| fv.project == project)
        .map(|fv| ViewParts {
            name: &fv.name,
            entities: &fv.entities,
            features: &fv.features,
            entity_columns: &fv.entity_columns,
            tags: &fv.tags,
            ttl: fv.ttl.as_ref(),
            online: fv.online,
            source: source_def(fv.batch_source.as_ref(), fv.stream_source.as_ref()),
        });
    let stream = reg
        .stream_feature_views
        .iter()
        .filter_map(|v| v.spec.as_ref())
        .filter(|fv| fv.project == project)
        .map(|fv| ViewParts {
            name: &fv.name,
            entities: &fv.entities,
            features: &fv.features,
            entity_columns: &fv.entity_columns,
            tags: &fv.tags,
            ttl: fv.ttl.as_ref(),
            online: fv.online,
            source: source_def(fv.batch_source.as_ref(), fv.stream_source.as_ref()),
        });
    for parts in batch.chain(stream) {
        out.feature_views.push(view_def(parts, &entities, file)?);
    }
    for fs in reg.feature_services.iter().filter_map(|s| s.spec.as_ref()) {
        if fs.project != project {
            continue;
        }
        out.feature_services.push(FeatureService {
            name: fs.name.clone(),
            projections: fs
                .features
                .iter()
                .map(|p| Projection {
                    feature_view: p.feature_view_name.clone(),
                    alias: (!p.feature_view_name_alias.is_empty())
                        .then(|| p.feature_view_name_alias.clone()),
                    features: p.feature_columns.iter().map(|c| c.name.clone()).collect(),
                })
                .collect(),
        });
    }
    Ok(out)
}
