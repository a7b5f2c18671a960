//! The store's proxy: the objects `plan::proxy_objects` returns are
//! server-side applied, the ones it no longer returns are deleted (only
//! objects labelled with the store), and the outcome goes to the store's
//! status: `status.proxy` and the `ProxyAvailable` and `ProxyAuth`
//! conditions.

use std::fmt::Debug;

use api::crd::{HybridOnlineStore, HybridOnlineStoreStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::MANAGER;
use crate::context::Context;
use crate::error::Error;
use crate::plan::{self, ProxyObjects};

use super::replicas;

/// Condition: the proxy's objects are applied, and whether a Pod is ready.
pub const AVAILABLE: &str = "ProxyAvailable";
/// Condition: whether the proxy authenticates its clients.
pub const AUTH: &str = "ProxyAuth";
/// Field manager that holds a Deployment's `replicas` while it passes from
/// the operator's apply to the autoscaler.
const HANDOVER_MANAGER: &str = "hos-operator-replicas-handover";

/// What reconciling the proxy means for the store.
pub struct Outcome {
    /// The store asked for no proxy, or its spec was accepted and every
    /// object applied.
    pub applied: bool,
    /// Every Pod the proxy should run at least is ready (or no proxy).
    pub settled: bool,
    /// Every ready Pod asked serves the routing the operator last wrote
    /// (or no proxy).
    pub routing_current: bool,
}

/// Creates, updates or removes the store's proxy objects and records the
/// result in `status`. A spec the operator or the API server refuses is a
/// condition and an event, not an error: the objects already there stay
/// as they are, and the store waits for a spec change. `expected`: the
/// digest of the routing table in the ConfigMap, compared with the one each
/// ready Pod serves (`status.proxy.replicas`).
pub async fn reconcile(
    store: &HybridOnlineStore,
    ctx: &Context,
    ns: &str,
    old: &HybridOnlineStoreStatus,
    status: &mut HybridOnlineStoreStatus,
    t: &Time,
    expected: Option<&str>,
) -> Result<Outcome, Error> {
    let objects = match plan::proxy_objects(store, &ctx.proxy_image, ctx.operator_peer.as_ref()) {
        Err(e) => {
            let msg = format!("{}: {}", e.path, e.message);
            refuse(store, ctx, old, status, "InvalidSpec", msg, t).await;
            return Ok(Outcome {
                applied: false,
                settled: true,
                routing_current: true,
            });
        }
        Ok(None) => {
            remove_all(store, ctx, ns).await?;
            plan::remove_condition(&mut status.conditions, AVAILABLE);
            plan::remove_condition(&mut status.conditions, AUTH);
            status.proxy = None;
            return Ok(Outcome {
                applied: true,
                settled: true,
                routing_current: true,
            });
        }
        Ok(Some(o)) => o,
    };
    record_auth(store, ctx, old, status, t).await;
    let deployment = match apply_all(store, ctx, ns, &objects).await {
        Ok(d) => d,
        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => {
            let msg = format!("the API server refused the proxy: {}", s.message);
            refuse(store, ctx, old, status, "Rejected", msg, t).await;
            return Ok(Outcome {
                applied: false,
                settled: true,
                routing_current: true,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let want = store
        .spec
        .proxy
        .as_ref()
        .map_or(0, plan::proxy_desired_replicas);
    status.proxy = plan::proxy_status(store, ready);
    let mut routing_current = true;
    if let (Some(p), Some(spec)) = (status.proxy.as_mut(), store.spec.proxy.as_ref()) {
        match replicas::read(ctx, ns, &store.name_any(), spec, expected).await {
            Ok(r) => {
                routing_current = r.up_to_date == r.ready;
                p.expected_routing_digest = expected.map(str::to_string);
                p.up_to_date_replicas = r.up_to_date;
                p.routing = Some(format!("{}/{}", r.up_to_date, r.ready));
                p.replicas = r.listed;
            }
            // Not fatal: the objects are applied; the replicas' routing
            // is reported again on the next try.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the proxy Pods' routing digests");
                routing_current = false;
            }
        }
    }
    let (ok, reason) = if ready > 0 || want == 0 {
        (true, "Available")
    } else {
        (false, "NoReadyPods")
    };
    plan::set_condition(
        &mut status.conditions,
        AVAILABLE,
        ok,
        reason,
        format!(
            "Deployment {}: {ready} Pods ready of at least {want}",
            plan::proxy_name(&store.name_any())
        ),
        store.metadata.generation,
        t.clone(),
    );
    Ok(Outcome {
        applied: true,
        settled: ready >= want,
        routing_current,
    })
}

/// `ProxyAvailable=False` with `reason`, and a Warning event when the
/// message is new. `status.proxy` keeps what the last applied proxy had.
async fn refuse(
    store: &HybridOnlineStore,
    ctx: &Context,
    old: &HybridOnlineStoreStatus,
    status: &mut HybridOnlineStoreStatus,
    reason: &str,
    msg: String,
    t: &Time,
) {
    if plan::condition_changed(&old.conditions, AVAILABLE, &msg) {
        ctx.event(store, true, &format!("Proxy{reason}"), msg.clone())
            .await;
    }
    plan::set_condition(
        &mut status.conditions,
        AVAILABLE,
        false,
        reason,
        msg,
        store.metadata.generation,
        t.clone(),
    );
    status.proxy = old.proxy.clone();
}

/// The `ProxyAuth` condition; a proxy without authentication is also a
/// Warning event (once per change).
async fn record_auth(
    store: &HybridOnlineStore,
    ctx: &Context,
    old: &HybridOnlineStoreStatus,
    status: &mut HybridOnlineStoreStatus,
    t: &Time,
) {
    let Some(spec) = store.spec.proxy.as_ref() else {
        return;
    };
    let (ok, reason, msg) = plan::proxy_auth(spec);
    if !ok && plan::condition_changed(&old.conditions, AUTH, &msg) {
        ctx.event(store, true, "ProxyUnauthenticated", msg.clone())
            .await;
    }
    plan::set_condition(
        &mut status.conditions,
        AUTH,
        ok,
        reason,
        msg,
        store.metadata.generation,
        t.clone(),
    );
}

/// Applies every object the spec asks for and deletes the optional ones it
/// no longer asks for; returns the applied Deployment (with its status).
async fn apply_all(
    store: &HybridOnlineStore,
    ctx: &Context,
    ns: &str,
    objects: &ProxyObjects,
) -> Result<Deployment, kube::Error> {
    let name = plan::proxy_name(&store.name_any());
    let client = &ctx.client;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let existing = deployments.get_opt(&name).await?;
    if objects.autoscaler.is_some()
        && let Some(d) = &existing
    {
        hand_over_replicas(&deployments, d).await?;
    }
    let deployment = apply(&deployments, &name, &objects.deployment).await?;
    apply(
        &Api::namespaced(client.clone(), ns),
        &name,
        &objects.service,
    )
    .await?;
    let mut created = Vec::new();
    let mut deleted = Vec::new();
    if existing.is_none() {
        created.extend(["Deployment", "Service"]);
    }
    let store_name = store.name_any();
    let mut note = |change: Option<(bool, &'static str)>| match change {
        Some((true, kind)) => created.push(kind),
        Some((false, kind)) => deleted.push(kind),
        None => {}
    };
    note(converge(client, ns, &name, &store_name, objects.autoscaler.as_ref()).await?);
    note(
        converge(
            client,
            ns,
            &name,
            &store_name,
            objects.disruption_budget.as_ref(),
        )
        .await?,
    );
    note(
        converge(
            client,
            ns,
            &name,
            &store_name,
            objects.network_policy.as_ref(),
        )
        .await?,
    );
    if !created.is_empty() {
        let msg = format!("{} {name}", created.join(", "));
        ctx.event(store, false, "ProxyCreated", msg).await;
    }
    if !deleted.is_empty() {
        let msg = format!("{} {name}", deleted.join(", "));
        ctx.event(store, false, "ProxyDeleted", msg).await;
    }
    Ok(deployment)
}

/// Server-side apply under the operator's field manager.
async fn apply<K>(api: &Api<K>, name: &str, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}

/// Applies `desired`, or deletes the object of that kind when `None` (if
/// it carries the store's label). Returns (created, kind) for a creation
/// and (false, kind) for a deletion.
async fn converge<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    store: &str,
    desired: Option<&K>,
) -> Result<Option<(bool, &'static str)>, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + k8s_openapi::Resource,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let existing = api.get_opt(name).await?;
    match desired {
        Some(obj) => {
            apply(&api, name, obj).await?;
            Ok(existing.is_none().then_some((true, K::KIND)))
        }
        None => match existing {
            Some(o) if labelled_with(&o, store) => {
                api.delete(name, &Default::default()).await?;
                Ok(Some((false, K::KIND)))
            }
            _ => Ok(None),
        },
    }
}

fn labelled_with<K: ResourceExt>(o: &K, store: &str) -> bool {
    o.labels().get(plan::STORE_LABEL).map(String::as_str) == Some(store)
}

/// Deletes every proxy object of the store (those labelled with it).
async fn remove_all(store: &HybridOnlineStore, ctx: &Context, ns: &str) -> Result<(), Error> {
    let name = plan::proxy_name(&store.name_any());
    let s = store.name_any();
    let c = &ctx.client;
    let mut gone = Vec::new();
    let found = [
        converge::<Deployment>(c, ns, &name, &s, None).await?,
        converge::<Service>(c, ns, &name, &s, None).await?,
        converge::<HorizontalPodAutoscaler>(c, ns, &name, &s, None).await?,
        converge::<PodDisruptionBudget>(c, ns, &name, &s, None).await?,
        converge::<NetworkPolicy>(c, ns, &name, &s, None).await?,
    ];
    gone.extend(found.into_iter().flatten().map(|(_, kind)| kind));
    if !gone.is_empty() {
        let msg = format!("{} {name}", gone.join(", "));
        ctx.event(store, false, "ProxyDeleted", msg).await;
    }
    Ok(())
}

/// Whether the operator's own apply owns the Deployment's `spec.replicas`.
fn operator_owns_replicas(d: &Deployment) -> bool {
    d.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(MANAGER)
            && m.operation.as_deref() == Some("Apply")
            && m.subresource.is_none()
            && m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
    })
}

/// Before the Deployment is applied without `replicas` (autoscaling on):
/// if the operator's apply still owns the field, another field manager
/// takes it at its current value, so dropping it from the operator's apply
/// keeps the running Pods instead of resetting the Deployment to one Pod
/// until the autoscaler's first sync. Not forced: once the autoscaler
/// holds the field, there is nothing to hand over.
async fn hand_over_replicas(api: &Api<Deployment>, d: &Deployment) -> Result<(), kube::Error> {
    let Some(replicas) = d.spec.as_ref().and_then(|s| s.replicas) else {
        return Ok(());
    };
    if !operator_owns_replicas(d) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": d.name_any()},
        "spec": {"replicas": replicas},
    });
    match api
        .patch(
            &d.name_any(),
            &PatchParams::apply(HANDOVER_MANAGER),
            &Patch::Apply(&patch),
        )
        .await
    {
        // Shared ownership at the same value is no conflict; another owner
        // with another value means the autoscaler already took it.
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    #[test]
    fn replicas_ownership() {
        let entry = |manager: &str, op: &str, fields: serde_json::Value| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(op.into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        };
        let mut d = Deployment::default();
        assert!(!operator_owns_replicas(&d));
        d.metadata.managed_fields = Some(vec![
            entry(
                "kube-controller-manager",
                "Update",
                json!({"f:spec": {"f:replicas": {}}}),
            ),
            entry(MANAGER, "Apply", json!({"f:spec": {"f:template": {}}})),
        ]);
        assert!(!operator_owns_replicas(&d));
        d.metadata.managed_fields = Some(vec![entry(
            MANAGER,
            "Apply",
            json!({"f:spec": {"f:replicas": {}, "f:template": {}}}),
        )]);
        assert!(operator_owns_replicas(&d));
    }
}
