//! Writing a custom resource's status: server-side apply of the whole
//! status under the operator's field manager ([`crate::MANAGER`]), forced.
//! The operator owns every status field it sends, so a field it stops
//! sending is removed by the API server (no explicit `null`s as a merge
//! patch needed). Conditions keep their `lastTransitionTime`: the
//! reconcilers build the new status from the old one
//! ([`crate::plan::set_condition`] changes the time only when the status
//! flips) and apply the list whole.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::MANAGER;
use crate::error::Error;

/// The server-side apply body of `status` for an object of kind `K` named
/// `name`: apiVersion, kind, name and the status; nothing else, so the
/// operator claims no spec or metadata field with it.
pub fn apply_body<K, S>(name: &str, status: &S) -> Result<Value, Error>
where
    K: Resource<DynamicType = ()>,
    S: Serialize,
{
    let status = serde_json::to_value(status).map_err(|e| Error::Serialize(e.to_string()))?;
    Ok(json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name},
        "status": status,
    }))
}

/// Applies `status` to `obj` when it differs from `old` (an idle reconcile
/// writes nothing). A status written before the operator used server-side
/// apply (a merge patch, an `Update` entry in `managedFields`) is first
/// handed to the operator's apply entry, so fields only that entry held are
/// removed too when the new status leaves them out.
pub async fn write<K, S>(client: &Client, obj: &K, old: &S, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
    S: Serialize + PartialEq,
{
    if old == status {
        return Ok(());
    }
    let ns = obj.namespace().ok_or(Error::NoNamespace)?;
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    if let Some(fields) = adopted_status_fields(obj.meta()) {
        adopt(&api, &name, obj.meta(), fields).await?;
    }
    let body = apply_body::<K, S>(&name, status)?;
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Replaces the object's `managedFields` (guarded by its resourceVersion:
/// a concurrent write makes this a conflict, retried by the reconcile).
/// The API server takes a list sent in `managedFields` as it is.
async fn adopt<K>(
    api: &Api<K>,
    name: &str,
    meta: &ObjectMeta,
    fields: Vec<ManagedFieldsEntry>,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    // A resourceVersion in a merge patch is a precondition.
    let body = json!({"metadata": {
        "resourceVersion": meta.resource_version,
        "managedFields": fields,
    }});
    api.patch(name, &PatchParams::default(), &Patch::Merge(body))
        .await?;
    Ok(())
}

fn is_status_update(m: &ManagedFieldsEntry) -> bool {
    m.operation.as_deref() == Some("Update") && m.subresource.as_deref() == Some("status")
}

/// `managedFields` with every `Update` entry of the status subresource
/// (the operator's merge patches before it applied its status, or a hand
/// edit of the status) folded into the operator's `Apply` entry for the
/// status; `None` when there is no such entry (nothing to adopt).
pub fn adopted_status_fields(meta: &ObjectMeta) -> Option<Vec<ManagedFieldsEntry>> {
    let entries = meta.managed_fields.as_ref()?;
    if !entries.iter().any(is_status_update) {
        return None;
    }
    let ours = |m: &ManagedFieldsEntry| {
        m.manager.as_deref() == Some(MANAGER)
            && m.operation.as_deref() == Some("Apply")
            && m.subresource.as_deref() == Some("status")
    };
    let mut owned = Value::Object(Default::default());
    let mut api_version = None;
    let mut kept = Vec::new();
    for m in entries {
        if is_status_update(m) || ours(m) {
            if let Some(f) = &m.fields_v1 {
                union(&mut owned, &f.0);
            }
            api_version = api_version.or_else(|| m.api_version.clone());
        } else {
            kept.push(m.clone());
        }
    }
    kept.push(ManagedFieldsEntry {
        manager: Some(MANAGER.to_string()),
        operation: Some("Apply".to_string()),
        subresource: Some("status".to_string()),
        api_version,
        fields_type: Some("FieldsV1".to_string()),
        fields_v1: Some(FieldsV1(owned)),
        time: None,
    });
    Some(kept)
}

/// Adds the field set `from` to `into` (both FieldsV1 trees).
fn union(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                union(
                    a.entry(k.clone())
                        .or_insert(Value::Object(Default::default())),
                    v,
                );
            }
        }
        (into, from) => {
            if !into.is_object() || into.as_object().is_some_and(|o| o.is_empty()) {
                *into = from.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::crd::{FeatureView, FeatureViewStatus, HybridOnlineStore, HybridOnlineStoreStatus};

    fn entry(manager: &str, op: &str, sub: Option<&str>, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(op.into()),
            subresource: sub.map(str::to_string),
            api_version: Some("hybrid-online-store.io/v1alpha1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            time: None,
        }
    }

    #[test]
    fn the_apply_body_is_the_typed_status_and_nothing_else() {
        let status = HybridOnlineStoreStatus {
            observed_generation: Some(3),
            routed_views: Some(2),
            ..Default::default()
        };
        let body = apply_body::<HybridOnlineStore, _>("shop", &status).unwrap();
        assert_eq!(
            body,
            json!({
                "apiVersion": "hybrid-online-store.io/v1alpha1",
                "kind": "HybridOnlineStore",
                "metadata": {"name": "shop"},
                "status": {"observedGeneration": 3, "conditions": [], "routedViews": 2},
            })
        );
        // Unset fields are absent, not null: null is not "remove" in an
        // apply, absence is.
        let body = apply_body::<FeatureView, _>("v", &FeatureViewStatus::default()).unwrap();
        assert_eq!(body["kind"], "FeatureView");
        assert_eq!(body["status"], json!({"conditions": []}));
    }

    #[test]
    fn legacy_status_updates_are_folded_into_the_operators_apply_entry() {
        let mut meta = ObjectMeta::default();
        assert!(adopted_status_fields(&meta).is_none());
        let spec = entry(
            "kubectl",
            "Update",
            None,
            json!({"f:spec": {"f:project": {}}}),
        );
        let ours = entry(
            MANAGER,
            "Apply",
            Some("status"),
            json!({"f:status": {"f:conditions": {}}}),
        );
        meta.managed_fields = Some(vec![spec.clone(), ours.clone()]);
        // Already only applied: nothing to adopt.
        assert!(adopted_status_fields(&meta).is_none());
        let legacy = entry(
            "unknown",
            "Update",
            Some("status"),
            json!({"f:status": {"f:plan": {}, "f:conditions": {}, "f:migration": {"f:cursor": {}}}}),
        );
        meta.managed_fields = Some(vec![spec.clone(), legacy, ours]);
        let fields = adopted_status_fields(&meta).unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0], spec);
        let adopted = &fields[1];
        assert_eq!(
            (
                adopted.manager.as_deref(),
                adopted.operation.as_deref(),
                adopted.subresource.as_deref()
            ),
            (Some(MANAGER), Some("Apply"), Some("status"))
        );
        assert_eq!(
            adopted.fields_v1.as_ref().unwrap().0,
            json!({"f:status": {"f:conditions": {}, "f:plan": {}, "f:migration": {"f:cursor": {}}}})
        );
    }
}
