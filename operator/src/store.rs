//! The HybridOnlineStore controller: checks backends and their Secrets,
//! and owns the routing ConfigMap (the views whose tables are provisioned,
//! on the backend their status records).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use api::crd::{FeatureView, HybridOnlineStore, HybridOnlineStoreStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use crate::context::Context;
use crate::controller::{self, Cache, Ctx, Reconciled};
use crate::error::Error;
use crate::plan::{self, Credentials};
use crate::readiness::Readiness;
use crate::{FINALIZER, MANAGER};

mod proxy;
mod registry;
mod replicas;

const CONTROLLER: &str = <HybridOnlineStore as Reconciled>::CONTROLLER;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Builds the controller and registers its watch caches with `readiness`;
/// the returned future runs it until `shutdown`. `namespace`: watch one
/// namespace or all.
pub fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    readiness: &Arc<Readiness>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let client = &ctx.client;
    let ns = namespace.as_deref();
    let stores = controller::scoped::<HybridOnlineStore>(client, ns);
    let views = controller::scoped::<FeatureView>(client, ns);
    let (view_cache, view_writer) = reflector::store();
    let (views_synced, views_ready) = watch::channel(false);
    let (stores_synced, stores_ready) = watch::channel(false);
    let maps = controller::scoped::<PartialObjectMeta<ConfigMap>>(client, ns);
    let secrets = controller::scoped::<Secret>(client, ns);
    let all = watcher::Config::default;
    let (cache, writer) = reflector::store();
    let store_events = readiness
        .cache(CONTROLLER, "hybridonlinestores")
        .tap(controller::mark_synced(
            reflector(writer, watcher(stores, all())),
            stores_synced,
        ))
        .applied_objects();
    let map_events = readiness
        .cache(CONTROLLER, "configmaps")
        .tap(watcher(maps, all().labels(plan::STORE_LABEL)))
        .touched_objects();
    let view_events = readiness
        .cache(CONTROLLER, "featureviews")
        .tap(controller::mark_synced(
            reflector(view_writer, watcher(views, all())),
            views_synced,
        ))
        .touched_objects();
    let secret_events = readiness
        .cache(CONTROLLER, "secrets")
        .tap(watcher(secrets, all()))
        .touched_objects();
    let secret_cache = cache.clone();
    let caches = Ctx::new(
        ctx,
        Cache::new(view_cache, views_ready),
        Cache::new(cache.clone(), stores_ready),
    );
    let controller = Controller::for_stream(store_events, cache)
        .owns_stream(map_events)
        .watches_stream(view_events, |fv: FeatureView| {
            fv.namespace()
                .map(|ns| ObjectRef::<HybridOnlineStore>::new(&fv.spec.store_ref).within(&ns))
        })
        // Secret rotation or deletion re-checks the stores that use it.
        .watches_stream(secret_events, move |s: Secret| {
            let ns = s.namespace().unwrap_or_default();
            let name = s.name_any();
            secret_cache
                .state()
                .into_iter()
                .filter(|st| st.namespace().as_deref() == Some(ns.as_str()))
                .filter(|st| {
                    plan::secret_refs(st)
                        .iter()
                        .chain(plan::registry_secret_refs(st).iter())
                        .any(|(n, _)| *n == name)
                })
                .map(|st| ObjectRef::from(st.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown);
    controller::drive(controller, Arc::new(caches), reconcile_body)
}

async fn reconcile_body(store: Arc<HybridOnlineStore>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = store.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<HybridOnlineStore> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, store, |event| async {
        match event {
            Finalizer::Apply(s) => apply(s, &ctx, &ns).await,
            // The routing ConfigMap goes with its owner; views keep their
            // own finalizers and teardown policy.
            Finalizer::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// A store the operator cannot act on until its spec changes.
struct Refusal {
    step: &'static str,
    reason: &'static str,
    message: String,
    at: Time,
}

impl Refusal {
    fn new(step: &'static str, reason: &'static str, message: String, at: Time) -> Self {
        Refusal {
            step,
            reason,
            message,
            at,
        }
    }
}

/// The store's one failure path for a refused spec: `Ready=False` with the
/// reason, the status written, a Warning event, the step failure counted,
/// and no retry before ten minutes (a spec change comes sooner).
async fn refuse(
    ctx: &Context,
    store: &HybridOnlineStore,
    old: &HybridOnlineStoreStatus,
    mut status: HybridOnlineStoreStatus,
    r: Refusal,
) -> Result<Action, Error> {
    ctx.metrics.step_failed(CONTROLLER, r.step, r.reason);
    plan::set_condition(
        &mut status.conditions,
        "Ready",
        false,
        r.reason,
        &r.message,
        store.metadata.generation,
        r.at,
    );
    write_status(ctx, store, old, status).await?;
    ctx.event(store, true, r.reason, r.message).await;
    // A spec error waits for a spec change; no hot loop.
    Ok(Action::requeue(Duration::from_secs(600)))
}

async fn apply(store: Arc<HybridOnlineStore>, ctx: &Ctx, ns: &str) -> Result<Action, Error> {
    let name = store.name_any();
    let generation = store.metadata.generation;
    let old = store.status.clone().unwrap_or_default();
    let mut status = HybridOnlineStoreStatus {
        observed_generation: generation,
        conditions: old.conditions.clone(),
        // Changed only by the proxy's own reconcile below.
        proxy: old.proxy.clone(),
        // Likewise by the registry's.
        registry: old.registry.clone(),
        ..Default::default()
    };
    let t = now();
    let mut requeue = Duration::from_secs(300);

    // 1. The spec: every backend's conf must parse.
    let mounted = match plan::backends(&store, Credentials::Mounted) {
        Ok(b) => b,
        Err(e) => {
            let refusal = Refusal::new("validate", "InvalidSpec", e.to_string(), t);
            return refuse(ctx, &store, &old, status, refusal).await;
        }
    };
    status.backends = Some(mounted.len() as i32);

    // 2. Secrets and reachability.
    let (values, missing) = ctx.secret_values(ns, &plan::secret_refs(&store)).await?;
    let mut resolved_backends = None;
    let reachable = if !missing.is_empty() {
        let msg = format!(
            "{} not found; the backends that need it cannot connect",
            missing.join(", ")
        );
        if plan::condition_changed(&old.conditions, "BackendsReachable", &msg) {
            ctx.event(store.as_ref(), true, "SecretMissing", msg.clone())
                .await;
        }
        plan::set_condition(
            &mut status.conditions,
            "BackendsReachable",
            false,
            "SecretMissing",
            msg,
            generation,
            t.clone(),
        );
        requeue = Duration::from_secs(30);
        false
    } else {
        let resolved = plan::backends(&store, Credentials::Resolved(&values)).unwrap_or_default();
        let checks = futures::future::join_all(resolved.iter().map(|b| {
            let name = &name;
            async move { (b.name.clone(), ctx.connect(ns, name, b).await.err()) }
        }))
        .await;
        let failures: Vec<String> = checks
            .into_iter()
            .filter_map(|(n, e)| e.map(|e| format!("{n}: {e}")))
            .collect();
        let count = resolved.len();
        resolved_backends = Some(resolved);
        if failures.is_empty() {
            plan::set_condition(
                &mut status.conditions,
                "BackendsReachable",
                true,
                "Reachable",
                format!("all {count} backends answered"),
                generation,
                t.clone(),
            );
            true
        } else {
            let msg = format!("unreachable: {}", failures.join("; "));
            if plan::condition_changed(&old.conditions, "BackendsReachable", &msg) {
                ctx.event(store.as_ref(), true, "BackendUnreachable", msg.clone())
                    .await;
            }
            plan::set_condition(
                &mut status.conditions,
                "BackendsReachable",
                false,
                "BackendUnreachable",
                msg,
                generation,
                t.clone(),
            );
            requeue = Duration::from_secs(30);
            false
        }
    };

    // 3. Routes: the FeatureViews provisioned, on the backend their
    // status records; then the registry's views (a FeatureView of the
    // same name overrides the registry's).
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let cm_name = plan::configmap_name(&name);
    let existing = maps.get_opt(&cm_name).await?;
    let feature_views = ctx.views_of(ns, &name).await?;
    let mut routed = Vec::new();
    let mut pending = Vec::new();
    for fv in &feature_views {
        if fv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let backend = fv.status.as_ref().and_then(|s| s.backend.clone());
        let def = plan::view_def(fv);
        match (backend, def) {
            (Some(b), Ok(def)) if mounted.iter().any(|m| m.name == b) => {
                let mut view = plan::routed_view(&def, &b);
                // A live move: writes to both backends, reads from the old
                // one until the copy is done.
                view.migration = fv
                    .status
                    .as_ref()
                    .and_then(|s| s.migration.as_ref())
                    .filter(|m| {
                        m.to == b
                            && m.phase != api::crd::MigrationPhase::Retiring
                            && mounted.iter().any(|x| x.name == m.from)
                    })
                    .map(|m| api::routing::Migration {
                        from: m.from.clone(),
                        reads_switched: m.phase == api::crd::MigrationPhase::Switched,
                    });
                routed.push(view)
            }
            _ => pending.push(plan::feast_name(fv)),
        }
    }
    // A FeatureView takes its name over from the registry once it is
    // routed (until then the registry's view stays), and while it is being
    // deleted (its teardown may drop the tables the registry's view would
    // use; the registry's view is provisioned again once it is gone).
    let mut overrides: BTreeSet<String> = routed.iter().map(|v| v.name.clone()).collect();
    overrides.extend(
        feature_views
            .iter()
            .filter(|fv| fv.metadata.deletion_timestamp.is_some())
            .map(|fv| plan::feast_name(fv)),
    );
    let reg = registry::reconcile(
        ctx,
        registry::Inputs {
            store: &store,
            ns,
            mounted: &mounted,
            resolved: resolved_backends.as_deref(),
            published: existing.as_ref(),
            overrides: &overrides,
            feature_views: &routed,
        },
        &old,
        &mut status,
        &t,
    )
    .await?;
    if let Some(r) = reg.requeue {
        requeue = requeue.min(r);
    }

    // Dry run: collect the views' plans; change nothing.
    if store.spec.dry_run {
        let mut lines = Vec::new();
        for fv in &feature_views {
            if fv.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let view = plan::feast_name(fv);
            let Some(p) = fv.status.as_ref().and_then(|s| s.plan.as_ref()) else {
                lines.push(format!("view {view}: not planned yet"));
                continue;
            };
            for c in &p.create {
                lines.push(format!(
                    "create {c} for view {view} in backend {}",
                    p.route_to
                ));
            }
            if p.route_from.as_deref() != Some(p.route_to.as_str()) {
                lines.push(format!(
                    "route {view}: {} -> {}",
                    p.route_from.as_deref().unwrap_or("(new)"),
                    p.route_to
                ));
            }
        }
        lines.extend(reg.plan);
        lines.sort();
        status.plan = lines;
        status.routing_config_map = old.routing_config_map.clone();
        plan::set_condition(
            &mut status.conditions,
            "Ready",
            false,
            "DryRun",
            "dry run: nothing is applied; see status.plan",
            generation,
            t,
        );
        write_status(ctx, &store, &old, status).await?;
        return Ok(Action::requeue(requeue.min(Duration::from_secs(30))));
    }

    let registry_names: BTreeSet<String> = reg.views.iter().map(|v| v.name.clone()).collect();
    routed.extend(reg.views);
    pending.extend(reg.pending);
    let services = plan::routable_services(&reg.services, &routed);
    let table = match plan::routing_table(&store, &routed, &services) {
        Ok(t) => t,
        Err(e) => {
            let refusal = Refusal::new("publish", "InvalidRouting", e.to_string(), t);
            return refuse(ctx, &store, &old, status, refusal).await;
        }
    };
    let doc = table.to_json();
    if !plan::configmap_current(existing.as_ref(), &doc, &registry_names) {
        let cm = plan::configmap(&store, &doc, &registry_names);
        maps.patch(
            &cm_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await?;
        ctx.event(
            store.as_ref(),
            false,
            "RoutingUpdated",
            format!(
                "ConfigMap {cm_name} routes {} feature views (hash {})",
                table.feature_views.len(),
                plan::content_hash(&doc)
            ),
        )
        .await;
    }
    status.routing_config_map = Some(cm_name);
    // The digest the proxies compute for this document (they parse it as
    // this does).
    let expected = api::routing::RoutingTable::parse("configmap", &doc)
        .ok()
        .map(|t| t.digest());
    let proxy =
        proxy::reconcile(&store, ctx, ns, &old, &mut status, &t, expected.as_deref()).await?;
    if !proxy.settled {
        // Deployments are not watched: look again until the Pods are ready.
        requeue = requeue.min(Duration::from_secs(30));
    }
    if !proxy.routing_current {
        // Nor are the Pods: ask them again until each serves this table.
        requeue = requeue.min(Duration::from_secs(15));
    }
    status.routed_views = Some(table.feature_views.len() as i32);
    status.views_per_backend = plan::views_per_backend(&table.backends, &table.feature_views);
    if pending.is_empty() {
        plan::set_condition(
            &mut status.conditions,
            "Routed",
            true,
            "AllViewsRouted",
            format!("{} feature views routed", table.feature_views.len()),
            generation,
            t.clone(),
        );
    } else {
        plan::set_condition(
            &mut status.conditions,
            "Routed",
            false,
            "ViewsPending",
            format!(
                "not yet provisioned or not routable (see each FeatureView's status; a registry view's reason is given): {}",
                pending.join(", ")
            ),
            generation,
            t.clone(),
        );
        requeue = requeue.min(Duration::from_secs(60));
    }
    let ready = reachable && pending.is_empty() && proxy.applied && reg.read_ok;
    let (reason, msg) = if ready {
        (
            "Ready",
            "backends reachable and every view routed".to_string(),
        )
    } else if !reachable {
        (
            "BackendsNotReachable",
            "see the BackendsReachable condition".to_string(),
        )
    } else if !pending.is_empty() {
        ("ViewsPending", "see the Routed condition".to_string())
    } else if !reg.read_ok {
        (
            "RegistryNotRead",
            format!("see the {} condition", registry::CONDITION),
        )
    } else {
        (
            "ProxyNotApplied",
            format!("see the {} condition", proxy::AVAILABLE),
        )
    };
    plan::set_condition(
        &mut status.conditions,
        "Ready",
        ready,
        reason,
        msg,
        generation,
        t,
    );
    write_status(ctx, &store, &old, status).await?;
    Ok(Action::requeue(requeue))
}

/// Applies the status when it changed, so an idle reconcile writes nothing.
async fn write_status(
    ctx: &Context,
    store: &HybridOnlineStore,
    old: &HybridOnlineStoreStatus,
    status: HybridOnlineStoreStatus,
) -> Result<(), Error> {
    crate::status::write(&ctx.client, store, old, &status).await
}
