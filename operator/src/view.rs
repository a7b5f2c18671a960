//! The FeatureView controller: resolves the view's backend with the
//! store's routing rule, provisions its tables there (before the store's
//! ConfigMap routes to it), and tears them down on delete per the store's
//! `teardownPolicy`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::crd::{FeatureView, FeatureViewStatus, HybridOnlineStore, TeardownPolicy};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use crate::FINALIZER;
use crate::context::Context;
use crate::error::Error;
use crate::plan::{self, Credentials};
use crate::readiness::Readiness;
use crate::supervise;

const CONTROLLER: &str = "featureview";

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
    let client = ctx.client.clone();
    let (views, stores) = match &namespace {
        Some(ns) => (
            Api::<FeatureView>::namespaced(client.clone(), ns),
            Api::<HybridOnlineStore>::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let all = watcher::Config::default;
    let (cache, writer) = reflector::store();
    let view_events = readiness
        .cache(CONTROLLER, "featureviews")
        .tap(reflector(writer, watcher(views, all())))
        .applied_objects();
    let store_events = readiness
        .cache(CONTROLLER, "hybridonlinestores")
        .tap(watcher(stores, all()))
        .touched_objects();
    let view_cache = cache.clone();
    let controller = Controller::for_stream(view_events, cache)
        // A store's change (backends, routing tag, secrets fixed) re-routes its views.
        .watches_stream(store_events, move |s: HybridOnlineStore| {
            let ns = s.namespace();
            let name = s.name_any();
            view_cache
                .state()
                .into_iter()
                .filter(|v| v.namespace() == ns && v.spec.store_ref == name)
                .map(|v| ObjectRef::from(v.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown);
    async move {
        controller
            .run(reconcile, error_policy, ctx)
            .for_each(|res| async move {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "view reconcile");
                }
            })
            .await;
    }
}

fn error_policy(_fv: Arc<FeatureView>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(CONTROLLER, err.metric_label());
    tracing::warn!(error = %err, "feature view reconcile failed");
    Action::requeue(err.backoff())
}

async fn reconcile(fv: Arc<FeatureView>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let res = supervise::isolated(reconcile_body(Arc::clone(&fv), Arc::clone(&ctx))).await;
    if matches!(res, Err(Error::Panicked(_))) {
        report_panic(&fv, &ctx).await;
    }
    ctx.metrics
        .reconciled(CONTROLLER, start.elapsed().as_secs_f64());
    res
}

/// A panicked reconcile leaves the view Ready=False with a generic message
/// (and an event when that is new).
async fn report_panic(fv: &FeatureView, ctx: &Context) {
    let old = fv.status.clone().unwrap_or_default();
    let mut status = old.clone();
    if plan::condition_changed(&old.conditions, "Ready", supervise::PANIC_MESSAGE) {
        ctx.event(fv, true, "ReconcileFailed", supervise::PANIC_MESSAGE.into())
            .await;
    }
    plan::set_condition(
        &mut status.conditions,
        "Ready",
        false,
        "ReconcileFailed",
        supervise::PANIC_MESSAGE,
        fv.metadata.generation,
        now(),
    );
    if let Err(e) = write_status(ctx, fv, &old, status).await {
        tracing::warn!(error = %e, "cannot record the panicked reconcile in the status");
    }
}

async fn reconcile_body(fv: Arc<FeatureView>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = fv.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<FeatureView> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, fv, |event| async {
        match event {
            Finalizer::Apply(v) => apply(v, &ctx, &ns).await,
            Finalizer::Cleanup(v) => cleanup(v, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Records a failure in the status (with an event when it is new) and
/// picks the retry delay: spec problems wait for a change, others retry.
struct Failure {
    condition: &'static str,
    reason: &'static str,
    message: String,
    retry: Duration,
}

async fn fail(
    ctx: &Context,
    fv: &FeatureView,
    mut status: FeatureViewStatus,
    old: &FeatureViewStatus,
    f: Failure,
) -> Result<Action, Error> {
    let Failure {
        condition,
        reason,
        message,
        retry,
    } = f;
    let generation = fv.metadata.generation;
    let t = now();
    if plan::condition_changed(&old.conditions, condition, &message) {
        ctx.event(fv, true, reason, message.clone()).await;
    }
    plan::set_condition(
        &mut status.conditions,
        condition,
        false,
        reason,
        &message,
        generation,
        t.clone(),
    );
    plan::set_condition(
        &mut status.conditions,
        "Ready",
        false,
        reason,
        message,
        generation,
        t,
    );
    write_status(ctx, fv, old, status).await?;
    Ok(Action::requeue(retry))
}

async fn apply(fv: Arc<FeatureView>, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let generation = fv.metadata.generation;
    let old = fv.status.clone().unwrap_or_default();
    let status = FeatureViewStatus {
        observed_generation: generation,
        conditions: old.conditions.clone(),
        backend: old.backend.clone(),
        tables: old.tables.clone(),
        plan: None,
        migration: old.migration.clone(),
    };
    let spec_error = Duration::from_secs(600);
    let transient = Duration::from_secs(30);

    let stores: Api<HybridOnlineStore> = Api::namespaced(ctx.client.clone(), ns);
    let Some(store) = stores.get_opt(&fv.spec.store_ref).await? else {
        let msg = format!(
            "HybridOnlineStore {} not found in namespace {ns}",
            fv.spec.store_ref
        );
        return fail(
            ctx,
            &fv,
            status,
            &old,
            Failure {
                condition: "Routed",
                reason: "StoreNotFound",
                message: msg,
                retry: Duration::from_secs(60),
            },
        )
        .await;
    };
    let def = match plan::view_def(&fv) {
        Ok(d) => d,
        Err(e) => {
            return fail(
                ctx,
                &fv,
                status,
                &old,
                Failure {
                    condition: "Routed",
                    reason: "InvalidSpec",
                    message: e,
                    retry: spec_error,
                },
            )
            .await;
        }
    };
    let mounted = match plan::backends(&store, Credentials::Mounted) {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("store {}: {e}", store.name_any());
            return fail(
                ctx,
                &fv,
                status,
                &old,
                Failure {
                    condition: "Routed",
                    reason: "InvalidStore",
                    message: msg,
                    retry: spec_error,
                },
            )
            .await;
        }
    };
    let target = match plan::route(&store, &mounted, &def) {
        Ok(b) => b.name.clone(),
        Err(e) => {
            return fail(
                ctx,
                &fv,
                status,
                &old,
                Failure {
                    condition: "Routed",
                    reason: "Unroutable",
                    message: e,
                    retry: spec_error,
                },
            )
            .await;
        }
    };
    let (values, missing) = ctx.secret_values(ns, &plan::secret_refs(&store)).await?;
    if !missing.is_empty() {
        let msg = format!(
            "{} not found; cannot provision in backend {target}",
            missing.join(", ")
        );
        return fail(
            ctx,
            &fv,
            status,
            &old,
            Failure {
                condition: "TablesProvisioned",
                reason: "SecretMissing",
                message: msg,
                retry: transient,
            },
        )
        .await;
    }
    let resolved = match plan::backends(&store, Credentials::Resolved(&values)) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                ctx,
                &fv,
                status,
                &old,
                Failure {
                    condition: "TablesProvisioned",
                    reason: "SecretMissing",
                    message: e.to_string(),
                    retry: transient,
                },
            )
            .await;
        }
    };
    let Some(backend) = resolved.iter().find(|b| b.name == target) else {
        return Ok(Action::requeue(transient));
    };
    let routed = plan::routed_view(&def, &target);
    let project = store.spec.project.clone();
    let store_conn = match ctx.connect(ns, &store.name_any(), backend).await {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("backend {target}: {e}");
            return fail(
                ctx,
                &fv,
                status,
                &old,
                Failure {
                    condition: "TablesProvisioned",
                    reason: "BackendUnreachable",
                    message: msg,
                    retry: transient,
                },
            )
            .await;
        }
    };
    if store.spec.dry_run {
        return plan_only(
            ctx,
            &fv,
            status,
            &old,
            &*store_conn,
            &project,
            &routed,
            &target,
        )
        .await;
    }
    if let Err(e) = store_conn.create(&project, &routed).await {
        let msg = format!("creating tables in backend {target}: {e}");
        return fail(
            ctx,
            &fv,
            status,
            &old,
            Failure {
                condition: "TablesProvisioned",
                reason: "ProvisioningFailed",
                message: msg,
                retry: transient,
            },
        )
        .await;
    }
    // A routing change under traffic: move the data live (see migrate.rs).
    let moving_from = match &old.migration {
        // Moved back to where it came from: writes reached both; just stop.
        Some(m) if m.from == target => None,
        Some(m) => Some(m.from.clone()),
        None => old.backend.clone().filter(|b| *b != target),
    };
    let mut status = status;
    status.migration = None;
    if let Some(from) = moving_from
        && let Some(source) = resolved.iter().find(|b| b.name == from)
    {
        status.migration = old.migration.clone();
        let step = crate::migrate::step(
            crate::migrate::Move {
                ctx,
                fv: &fv,
                ns,
                store: &store,
                project: &project,
                view: &routed,
                from: source,
                to: backend,
                to_conn: &*store_conn,
            },
            status,
        )
        .await;
        match step {
            crate::migrate::Next::Continue(st, delay) => {
                let mut st = st;
                let phase = st
                    .migration
                    .as_ref()
                    .map(|m| m.phase.as_str())
                    .unwrap_or_default();
                plan::set_condition(
                    &mut st.conditions,
                    "Routed",
                    true,
                    "Migrating",
                    format!("moving from backend {from} to {target}: phase {phase}"),
                    generation,
                    now(),
                );
                write_status(ctx, &fv, &old, st).await?;
                return Ok(Action::requeue(delay));
            }
            crate::migrate::Next::Failed(st, reason, message) => {
                return fail(
                    ctx,
                    &fv,
                    st,
                    &old,
                    Failure {
                        condition: "Routed",
                        reason,
                        message,
                        retry: transient,
                    },
                )
                .await;
            }
            crate::migrate::Next::Stuck(st, message, retry) => {
                return fail(
                    ctx,
                    &fv,
                    st,
                    &old,
                    Failure {
                        condition: "Routed",
                        reason: "MigrationStuck",
                        message,
                        retry,
                    },
                )
                .await;
            }
            crate::migrate::Next::Done(st) => status = st,
        }
    }
    let tables: Vec<String> = store_conn
        .storage_objects(&project, &routed)
        .into_iter()
        .map(|o| format!("{} {} ({})", o.kind, o.name, o.location))
        .collect();
    if old.backend.as_deref() != Some(target.as_str()) || old.tables != tables {
        let moved = old
            .backend
            .as_ref()
            .filter(|b| **b != target)
            .map(|b| format!(" (moved from {b})"))
            .unwrap_or_default();
        ctx.event(
            fv.as_ref(),
            false,
            "Provisioned",
            format!("{} in backend {target}{moved}", tables.join(", ")),
        )
        .await;
    }
    let t = now();
    status.backend = Some(target.clone());
    status.tables = tables;
    plan::set_condition(
        &mut status.conditions,
        "Routed",
        true,
        "Routed",
        format!("routed to backend {target}"),
        generation,
        t.clone(),
    );
    plan::set_condition(
        &mut status.conditions,
        "TablesProvisioned",
        true,
        "Provisioned",
        format!("tables exist in backend {target}"),
        generation,
        t.clone(),
    );
    plan::set_condition(
        &mut status.conditions,
        "Ready",
        true,
        "Ready",
        format!("served from backend {target}"),
        generation,
        t,
    );
    write_status(ctx, &fv, &old, status).await?;
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// Dry run: records in `status.plan` what reconciling would change (the
/// tables to create, the route), and changes nothing else.
#[allow(clippy::too_many_arguments)]
async fn plan_only(
    ctx: &Context,
    fv: &FeatureView,
    mut status: FeatureViewStatus,
    old: &FeatureViewStatus,
    store_conn: &dyn backends::OnlineStore,
    project: &str,
    routed: &api::routing::RoutedView,
    target: &str,
) -> Result<Action, Error> {
    let exists = match store_conn.storage_exists(project, routed).await {
        Ok(e) => e,
        Err(e) => {
            return fail(
                ctx,
                fv,
                status,
                old,
                Failure {
                    condition: "TablesProvisioned",
                    reason: "BackendUnreachable",
                    message: format!("backend {target}: {e}"),
                    retry: Duration::from_secs(30),
                },
            )
            .await;
        }
    };
    let create = if exists {
        Vec::new()
    } else {
        store_conn
            .storage_objects(project, routed)
            .into_iter()
            .map(|o| format!("{} {} ({})", o.kind, o.name, o.location))
            .collect()
    };
    status.plan = Some(api::crd::ViewPlan {
        create,
        route_from: old.backend.clone(),
        route_to: target.to_string(),
    });
    plan::set_condition(
        &mut status.conditions,
        "Planned",
        true,
        "DryRun",
        format!("dry run: would route to backend {target}; see status.plan"),
        fv.metadata.generation,
        now(),
    );
    write_status(ctx, fv, old, status).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// The other live views of `fv`'s store that route to `backend`: storage
/// they share with `fv` (a Bigtable table per entity set) must stay when
/// `fv`'s is dropped there.
pub(crate) async fn staying_views(
    ctx: &Context,
    ns: &str,
    fv: &FeatureView,
    backend: &str,
) -> Result<Vec<api::routing::RoutedView>, kube::Error> {
    let views: Api<FeatureView> = Api::namespaced(ctx.client.clone(), ns);
    Ok(views
        .list(&Default::default())
        .await?
        .into_iter()
        .filter(|o| o.name_any() != fv.name_any() && o.spec.store_ref == fv.spec.store_ref)
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter(|o| o.status.as_ref().and_then(|s| s.backend.as_deref()) == Some(backend))
        .filter_map(|o| {
            plan::view_def(&o)
                .ok()
                .map(|d| plan::routed_view(&d, backend))
        })
        .collect())
}

async fn cleanup(fv: Arc<FeatureView>, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let stores: Api<HybridOnlineStore> = Api::namespaced(ctx.client.clone(), ns);
    let store = stores.get_opt(&fv.spec.store_ref).await?;
    let backend = fv.status.as_ref().and_then(|s| s.backend.clone());
    let (Some(store), Some(backend_name)) = (store, backend) else {
        ctx.event(
            fv.as_ref(),
            false,
            "Retained",
            "no store or no provisioned backend; nothing to tear down".into(),
        )
        .await;
        return Ok(Action::await_change());
    };
    if store.spec.teardown_policy == TeardownPolicy::Retain {
        ctx.event(
            fv.as_ref(),
            false,
            "Retained",
            format!("teardownPolicy Retain: tables in backend {backend_name} are kept"),
        )
        .await;
        return Ok(Action::await_change());
    }
    // The spec first: no Secret is read for a store the operator refuses.
    if let Err(e) = plan::backends(&store, Credentials::Mounted) {
        // Keep the finalizer: deleting now would leak the tables.
        let msg = format!("cannot tear down until the store is fixed: {e}");
        ctx.event(fv.as_ref(), true, "TeardownBlocked", msg).await;
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    let (values, missing) = ctx.secret_values(ns, &plan::secret_refs(&store)).await?;
    let resolved = plan::backends(&store, Credentials::Resolved(&values));
    let def = plan::view_def(&fv);
    let (Ok(resolved), Ok(def), true) = (resolved, def, missing.is_empty()) else {
        // Keep the finalizer: deleting now would leak the tables.
        let msg = format!("cannot tear down yet: {}", missing.join(", "));
        ctx.event(fv.as_ref(), true, "TeardownBlocked", msg).await;
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let Some(backend) = resolved.iter().find(|b| b.name == backend_name) else {
        return Ok(Action::await_change());
    };
    let routed = plan::routed_view(&def, &backend_name);
    // Views staying on this backend keep storage they share.
    let others = staying_views(ctx, ns, &fv, &backend_name).await?;
    let remaining: Vec<&api::routing::RoutedView> = others.iter().collect();
    let conn = match ctx.connect(ns, &store.name_any(), backend).await {
        Ok(c) => c,
        Err(e) => {
            ctx.event(
                fv.as_ref(),
                true,
                "TeardownFailed",
                format!("backend {backend_name}: {e}"),
            )
            .await;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
    };
    if let Err(e) = conn
        .drop_view(&store.spec.project, &routed, &remaining)
        .await
    {
        ctx.event(
            fv.as_ref(),
            true,
            "TeardownFailed",
            format!("backend {backend_name}: {e}"),
        )
        .await;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let tables: Vec<String> = conn
        .storage_objects(&store.spec.project, &routed)
        .into_iter()
        .map(|o| format!("{} {}", o.kind, o.name))
        .collect();
    ctx.event(
        fv.as_ref(),
        false,
        "TornDown",
        format!(
            "teardownPolicy Delete: dropped {} in backend {backend_name}",
            tables.join(", ")
        ),
    )
    .await;
    Ok(Action::await_change())
}

/// Applies the status when it changed, so an idle reconcile writes nothing.
async fn write_status(
    ctx: &Context,
    fv: &FeatureView,
    old: &FeatureViewStatus,
    status: FeatureViewStatus,
) -> Result<(), Error> {
    crate::status::write(&ctx.client, fv, old, &status).await
}
