//! The FeatureView controller: resolves the view's backend with the
//! store's routing rule, provisions its tables there (before the store's
//! ConfigMap routes to it), and tears them down on delete per the store's
//! `teardownPolicy`.

use std::sync::Arc;
use std::time::Duration;

use api::crd::{FeatureView, FeatureViewStatus, HybridOnlineStore, TeardownPolicy};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use crate::FINALIZER;
use crate::context::Context;
use crate::controller::{self, Cache, Ctx, Reconciled};
use crate::error::Error;
use crate::plan::{self, Credentials};
use crate::readiness::Readiness;

const CONTROLLER: &str = <FeatureView as Reconciled>::CONTROLLER;

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
    let ns = namespace.as_deref();
    let views = controller::scoped::<FeatureView>(&ctx.client, ns);
    let stores = controller::scoped::<HybridOnlineStore>(&ctx.client, ns);
    let (store_cache, store_writer) = reflector::store();
    let (views_synced, views_ready) = watch::channel(false);
    let (stores_synced, stores_ready) = watch::channel(false);
    let all = watcher::Config::default;
    let (cache, writer) = reflector::store();
    let view_events = readiness
        .cache(CONTROLLER, "featureviews")
        .tap(controller::mark_synced(
            reflector(writer, watcher(views, all())),
            views_synced,
        ))
        .applied_objects();
    let store_events = readiness
        .cache(CONTROLLER, "hybridonlinestores")
        .tap(controller::mark_synced(
            reflector(store_writer, watcher(stores, all())),
            stores_synced,
        ))
        .touched_objects();
    let view_cache = cache.clone();
    let caches = Ctx::new(
        ctx,
        Cache::new(cache.clone(), views_ready),
        Cache::new(store_cache, stores_ready),
    );
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
    controller::drive(controller, Arc::new(caches), reconcile_body)
}

async fn reconcile_body(fv: Arc<FeatureView>, ctx: Arc<Ctx>) -> Result<Action, Error> {
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

/// The named steps of a view's reconcile, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The store exists, the view's spec and the store's backends parse.
    Validate,
    /// The backend the store's routing rule picks (and, in a dry run, what
    /// would change there).
    Plan,
    /// Credentials, connection, tables, and a live move in progress.
    Provision,
    /// The outcome in the status (the store then routes the view).
    Publish,
}

impl Step {
    /// The name in the `step` label of the metrics and in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Validate => "validate",
            Step::Plan => "plan",
            Step::Provision => "provision",
            Step::Publish => "publish",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure the status records: the condition set False with `reason`
/// (and `Ready` with it), an event when the message is new, and the retry
/// delay (spec problems wait for a change, others retry).
#[derive(Debug)]
struct Failure {
    condition: &'static str,
    reason: &'static str,
    message: String,
    retry: Duration,
    /// The status to record it in, when the step changed it (a live move's
    /// progress); otherwise the reconcile's starting status.
    status: Option<Box<FeatureViewStatus>>,
}

impl Failure {
    fn new(
        condition: &'static str,
        reason: &'static str,
        message: String,
        retry: Duration,
    ) -> Self {
        Failure {
            condition,
            reason,
            message,
            retry,
            status: None,
        }
    }
}

/// Why a step stopped the view's reconcile.
#[derive(Debug, thiserror::Error)]
enum StepError {
    /// Recorded in the status and retried after the failure's delay.
    #[error("step {step}: {} ({})", .failure.message, .failure.reason)]
    Failed { step: Step, failure: Failure },
    /// A Kubernetes API (or other operator) error: the controller's error
    /// policy counts and retries it.
    #[error("step {step}: {source}")]
    Api {
        step: Step,
        #[source]
        source: Error,
    },
}

impl StepError {
    fn failed(step: Step, failure: Failure) -> Self {
        StepError::Failed { step, failure }
    }

    /// Wraps an API error of `step`.
    fn api(step: Step) -> impl FnOnce(Error) -> StepError {
        move |source| StepError::Api { step, source }
    }
}

/// The one failure path of the view's reconcile: a recorded failure sets
/// its condition and `Ready` (with an event when the message is new),
/// counts `hos_operator_step_failures_total` once, and requeues after its
/// delay; an API error goes to the controller's error policy.
async fn on_failure(
    ctx: &Context,
    fv: &FeatureView,
    status: FeatureViewStatus,
    old: &FeatureViewStatus,
    err: StepError,
) -> Result<Action, Error> {
    let (step, f) = match err {
        StepError::Api { step, source } => {
            tracing::debug!(step = %step, error = %source, "feature view step failed");
            return Err(source);
        }
        StepError::Failed { step, failure } => (step, failure),
    };
    ctx.metrics.step_failed(CONTROLLER, step.as_str(), f.reason);
    let mut status = f.status.map_or(status, |s| *s);
    let generation = fv.metadata.generation;
    let t = now();
    if plan::condition_changed(&old.conditions, f.condition, &f.message) {
        ctx.event(fv, true, f.reason, f.message.clone()).await;
    }
    plan::set_condition(
        &mut status.conditions,
        f.condition,
        false,
        f.reason,
        &f.message,
        generation,
        t.clone(),
    );
    plan::set_condition(
        &mut status.conditions,
        "Ready",
        false,
        f.reason,
        f.message,
        generation,
        t,
    );
    write_status(ctx, fv, old, status).await?;
    Ok(Action::requeue(f.retry))
}

const SPEC_ERROR: Duration = Duration::from_secs(600);
const TRANSIENT: Duration = Duration::from_secs(30);

async fn apply(fv: Arc<FeatureView>, ctx: &Ctx, ns: &str) -> Result<Action, Error> {
    let old = fv.status.clone().unwrap_or_default();
    let status = FeatureViewStatus {
        observed_generation: fv.metadata.generation,
        conditions: old.conditions.clone(),
        backend: old.backend.clone(),
        tables: old.tables.clone(),
        plan: None,
        migration: old.migration.clone(),
    };
    match steps(ctx, &fv, ns, &old, status.clone()).await {
        Ok(action) => Ok(action),
        Err(e) => on_failure(ctx, &fv, status, &old, e).await,
    }
}

/// validate, plan, provision, publish; a step that ends the reconcile
/// early on success (a dry run, a live move going on) returns its action.
async fn steps(
    ctx: &Ctx,
    fv: &FeatureView,
    ns: &str,
    old: &FeatureViewStatus,
    status: FeatureViewStatus,
) -> Result<Action, StepError> {
    let valid = validate(ctx, fv, ns).await?;
    let planned = plan_route(&valid)?;
    match provision(ctx, fv, ns, old, status, &valid, &planned).await? {
        Provisioned::Done { status, conn } => {
            publish(ctx, fv, old, *status, &valid, &planned, &*conn).await
        }
        Provisioned::Early(action) => Ok(action),
    }
}

/// What `validate` found.
struct Valid {
    store: HybridOnlineStore,
    def: api::feature_view::FeatureViewDef,
    mounted: Vec<api::routing::Backend>,
}

/// The store exists, the view's spec parses, the store's backends parse.
async fn validate(ctx: &Ctx, fv: &FeatureView, ns: &str) -> Result<Valid, StepError> {
    let step = Step::Validate;
    let fail = |reason, message, retry| {
        StepError::failed(step, Failure::new("Routed", reason, message, retry))
    };
    let store = ctx
        .store(ns, &fv.spec.store_ref)
        .await
        .map_err(StepError::api(step))?;
    let Some(store) = store.map(|s| s.as_ref().clone()) else {
        let msg = format!(
            "HybridOnlineStore {} not found in namespace {ns}",
            fv.spec.store_ref
        );
        return Err(fail("StoreNotFound", msg, Duration::from_secs(60)));
    };
    let def = plan::view_def(fv).map_err(|e| fail("InvalidSpec", e, SPEC_ERROR))?;
    let mounted = plan::backends(&store, Credentials::Mounted).map_err(|e| {
        let msg = format!("store {}: {e}", store.name_any());
        fail("InvalidStore", msg, SPEC_ERROR)
    })?;
    Ok(Valid {
        store,
        def,
        mounted,
    })
}

/// What `plan_route` decided.
struct Planned {
    target: String,
    routed: api::routing::RoutedView,
}

/// The backend the store's routing rule picks for the view.
fn plan_route(valid: &Valid) -> Result<Planned, StepError> {
    let target = plan::route(&valid.store, &valid.mounted, &valid.def)
        .map_err(|e| {
            StepError::failed(
                Step::Plan,
                Failure::new("Routed", "Unroutable", e, SPEC_ERROR),
            )
        })?
        .name
        .clone();
    let routed = plan::routed_view(&valid.def, &target);
    Ok(Planned { target, routed })
}

/// How `provision` ended.
enum Provisioned {
    /// Tables exist in the target; a live move, if any, is over.
    Done {
        status: Box<FeatureViewStatus>,
        conn: Arc<dyn backends::OnlineStore>,
    },
    /// The reconcile ends here (a dry run's plan, a live move going on,
    /// a backend not resolved yet) and comes back after this.
    Early(Action),
}

/// Resolves the store's credentials, connects to the target backend,
/// creates the view's tables there (a dry run records its plan instead)
/// and takes a live move from the previous backend one step further.
async fn provision(
    ctx: &Context,
    fv: &FeatureView,
    ns: &str,
    old: &FeatureViewStatus,
    status: FeatureViewStatus,
    valid: &Valid,
    planned: &Planned,
) -> Result<Provisioned, StepError> {
    let step = Step::Provision;
    let fail = |reason, message| {
        StepError::failed(
            step,
            Failure::new("TablesProvisioned", reason, message, TRANSIENT),
        )
    };
    let Valid { store, .. } = valid;
    let Planned { target, routed } = planned;
    let (values, missing) = ctx
        .secret_values(ns, &plan::secret_refs(store))
        .await
        .map_err(|e| StepError::api(step)(e.into()))?;
    if !missing.is_empty() {
        let msg = format!(
            "{} not found; cannot provision in backend {target}",
            missing.join(", ")
        );
        return Err(fail("SecretMissing", msg));
    }
    let resolved = plan::backends(store, Credentials::Resolved(&values))
        .map_err(|e| fail("SecretMissing", e.to_string()))?;
    let Some(backend) = resolved.iter().find(|b| b.name == *target) else {
        return Ok(Provisioned::Early(Action::requeue(TRANSIENT)));
    };
    let project = store.spec.project.clone();
    let conn = ctx
        .connect(ns, &store.name_any(), backend)
        .await
        .map_err(|e| fail("BackendUnreachable", format!("backend {target}: {e}")))?;
    if store.spec.dry_run {
        let action = plan_only(ctx, fv, status, old, &*conn, &project, routed, target).await?;
        return Ok(Provisioned::Early(action));
    }
    if let Err(e) = conn.create(&project, routed).await {
        let msg = format!("creating tables in backend {target}: {e}");
        return Err(fail("ProvisioningFailed", msg));
    }
    // A routing change under traffic: move the data live (see migrate.rs).
    let moving_from = match &old.migration {
        // Moved back to where it came from: writes reached both; just stop.
        Some(m) if m.from == *target => None,
        Some(m) => Some(m.from.clone()),
        None => old.backend.clone().filter(|b| b != target),
    };
    let mut status = status;
    status.migration = None;
    let Some((from, source)) = moving_from
        .and_then(|from| Some((from.clone(), resolved.iter().find(|b| b.name == from)?)))
    else {
        return Ok(Provisioned::Done {
            status: Box::new(status),
            conn,
        });
    };
    status.migration = old.migration.clone();
    let next = crate::migrate::step(
        crate::migrate::Move {
            ctx,
            fv,
            ns,
            store,
            project: &project,
            view: routed,
            from: source,
            to: backend,
            to_conn: &*conn,
        },
        status,
    )
    .await;
    let moving = |st, reason, message, retry| {
        let mut f = Failure::new("Routed", reason, message, retry);
        f.status = Some(Box::new(st));
        StepError::failed(step, f)
    };
    match next {
        crate::migrate::Next::Continue(mut st, delay) => {
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
                fv.metadata.generation,
                now(),
            );
            write_status(ctx, fv, old, st)
                .await
                .map_err(StepError::api(step))?;
            Ok(Provisioned::Early(Action::requeue(delay)))
        }
        crate::migrate::Next::Failed(st, reason, message) => {
            Err(moving(st, reason, message, TRANSIENT))
        }
        crate::migrate::Next::Stuck(st, message, retry) => {
            Err(moving(st, "MigrationStuck", message, retry))
        }
        crate::migrate::Next::Done(status) => Ok(Provisioned::Done {
            status: Box::new(status),
            conn,
        }),
    }
}

/// Records the provisioned view in its status (backend, tables, conditions
/// True) with an event when its backend or tables changed; the store's
/// reconcile then routes it.
async fn publish(
    ctx: &Context,
    fv: &FeatureView,
    old: &FeatureViewStatus,
    mut status: FeatureViewStatus,
    valid: &Valid,
    planned: &Planned,
    conn: &dyn backends::OnlineStore,
) -> Result<Action, StepError> {
    let Planned { target, routed } = planned;
    let generation = fv.metadata.generation;
    let tables: Vec<String> = conn
        .storage_objects(&valid.store.spec.project, routed)
        .into_iter()
        .map(|o| format!("{} {} ({})", o.kind, o.name, o.location))
        .collect();
    if old.backend.as_deref() != Some(target.as_str()) || old.tables != tables {
        let moved = old
            .backend
            .as_ref()
            .filter(|b| *b != target)
            .map(|b| format!(" (moved from {b})"))
            .unwrap_or_default();
        ctx.event(
            fv,
            false,
            "Provisioned",
            format!("{} in backend {target}{moved}", tables.join(", ")),
        )
        .await;
    }
    let t = now();
    status.backend = Some(target.clone());
    status.tables = tables;
    for (condition, reason, message) in [
        ("Routed", "Routed", format!("routed to backend {target}")),
        (
            "TablesProvisioned",
            "Provisioned",
            format!("tables exist in backend {target}"),
        ),
        ("Ready", "Ready", format!("served from backend {target}")),
    ] {
        plan::set_condition(
            &mut status.conditions,
            condition,
            true,
            reason,
            message,
            generation,
            t.clone(),
        );
    }
    write_status(ctx, fv, old, status)
        .await
        .map_err(StepError::api(Step::Publish))?;
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// Dry run (part of the plan step): records in `status.plan` what
/// reconciling would change (the tables to create, the route), and changes
/// nothing else.
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
) -> Result<Action, StepError> {
    let exists = store_conn
        .storage_exists(project, routed)
        .await
        .map_err(|e| {
            StepError::failed(
                Step::Plan,
                Failure::new(
                    "TablesProvisioned",
                    "BackendUnreachable",
                    format!("backend {target}: {e}"),
                    TRANSIENT,
                ),
            )
        })?;
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
    write_status(ctx, fv, old, status)
        .await
        .map_err(StepError::api(Step::Plan))?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// The other live views of `fv`'s store that route to `backend`: storage
/// they share with `fv` (a Bigtable table per entity set) must stay when
/// `fv`'s is dropped there. Those are the store's other FeatureViews
/// provisioned there and the registry views its routing ConfigMap routes
/// there.
///
/// Fresh API reads, not the watch cache: they decide what a drop keeps
/// (on delete, and when a live move retires its old backend), and a cache
/// a moment behind could miss a view just provisioned on `backend` whose
/// shared table would then be dropped under it. Deletes and finished moves
/// are rare; every other reconcile reads the cache.
pub(crate) async fn staying_views(
    ctx: &Context,
    ns: &str,
    fv: &FeatureView,
    backend: &str,
) -> Result<Vec<api::routing::RoutedView>, kube::Error> {
    let store = &fv.spec.store_ref;
    let mut views = feature_views_on(ctx, ns, store, backend, Some(&fv.name_any())).await?;
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let published = maps.get_opt(&plan::configmap_name(store)).await?;
    let own = plan::feast_name(fv);
    for v in plan::published_registry_views(published.as_ref()) {
        if v.backend == backend && v.name != own && !views.iter().any(|w| w.name == v.name) {
            views.push(v);
        }
    }
    Ok(views)
}

/// The live FeatureViews of store `store` provisioned on `backend` (all
/// but the object named `except`), from a fresh API list.
pub(crate) async fn feature_views_on(
    ctx: &Context,
    ns: &str,
    store: &str,
    backend: &str,
    except: Option<&str>,
) -> Result<Vec<api::routing::RoutedView>, kube::Error> {
    let views: Api<FeatureView> = Api::namespaced(ctx.client.clone(), ns);
    Ok(views
        .list(&Default::default())
        .await?
        .into_iter()
        .filter(|o| Some(o.name_any().as_str()) != except && o.spec.store_ref == store)
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter(|o| o.status.as_ref().and_then(|s| s.backend.as_deref()) == Some(backend))
        .filter_map(|o| {
            plan::view_def(&o)
                .ok()
                .map(|d| plan::routed_view(&d, backend))
        })
        .collect())
}

/// How tearing a view's storage down in one backend went.
#[derive(Debug)]
pub(crate) enum Teardown {
    /// Dropped: the storage objects, as `<kind> <name>`.
    Dropped(Vec<String>),
    /// The backend is no longer in the store: nothing to drop there.
    NoBackend,
    /// Not now (the store's spec or a Secret must be fixed first): why,
    /// and when to try again.
    Blocked(String, Duration),
    /// The backend failed: why (tried again after 30 s).
    Failed(String),
}

/// Drops `view`'s storage in backend `backend_name` of `store`, keeping
/// the storage the `remaining` views there share. The teardown policy is
/// the caller's to check. Used for a deleted FeatureView and for a view
/// that left the store's registry.
pub(crate) async fn tear_down(
    ctx: &Context,
    ns: &str,
    store: &HybridOnlineStore,
    backend_name: &str,
    view: &api::routing::RoutedView,
    remaining: &[api::routing::RoutedView],
) -> Result<Teardown, Error> {
    // The spec first: no Secret is read for a store the operator refuses.
    if let Err(e) = plan::backends(store, Credentials::Mounted) {
        let msg = format!("cannot tear down until the store is fixed: {e}");
        return Ok(Teardown::Blocked(msg, Duration::from_secs(60)));
    }
    let (values, missing) = ctx.secret_values(ns, &plan::secret_refs(store)).await?;
    let resolved = match plan::backends(store, Credentials::Resolved(&values)) {
        Ok(r) if missing.is_empty() => r,
        Ok(_) => {
            let msg = format!("cannot tear down yet: {}", missing.join(", "));
            return Ok(Teardown::Blocked(msg, Duration::from_secs(30)));
        }
        Err(e) => {
            let msg = format!("cannot tear down yet: {e}");
            return Ok(Teardown::Blocked(msg, Duration::from_secs(30)));
        }
    };
    let Some(backend) = resolved.iter().find(|b| b.name == backend_name) else {
        return Ok(Teardown::NoBackend);
    };
    let conn = match ctx.connect(ns, &store.name_any(), backend).await {
        Ok(c) => c,
        Err(e) => return Ok(Teardown::Failed(format!("backend {backend_name}: {e}"))),
    };
    let remaining: Vec<&api::routing::RoutedView> = remaining.iter().collect();
    let project = &store.spec.project;
    if let Err(e) = conn.drop_view(project, view, &remaining).await {
        return Ok(Teardown::Failed(format!("backend {backend_name}: {e}")));
    }
    Ok(Teardown::Dropped(
        conn.storage_objects(project, view)
            .into_iter()
            .map(|o| format!("{} {}", o.kind, o.name))
            .collect(),
    ))
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
    let def = match plan::view_def(&fv) {
        Ok(d) => d,
        Err(e) => {
            // Keep the finalizer: deleting now would leak the tables.
            let msg = format!("cannot tear down yet: {e}");
            ctx.event(fv.as_ref(), true, "TeardownBlocked", msg).await;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
    };
    let routed = plan::routed_view(&def, &backend_name);
    // Views staying on this backend keep storage they share.
    let others = staying_views(ctx, ns, &fv, &backend_name).await?;
    match tear_down(ctx, ns, &store, &backend_name, &routed, &others).await? {
        Teardown::NoBackend => Ok(Action::await_change()),
        Teardown::Blocked(msg, retry) => {
            // Keep the finalizer: deleting now would leak the tables.
            ctx.event(fv.as_ref(), true, "TeardownBlocked", msg).await;
            Ok(Action::requeue(retry))
        }
        Teardown::Failed(msg) => {
            ctx.event(fv.as_ref(), true, "TeardownFailed", msg).await;
            Ok(Action::requeue(Duration::from_secs(30)))
        }
        Teardown::Dropped(tables) => {
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
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn a_step_error_names_its_step() {
        let e = StepError::failed(
            Step::Validate,
            Failure::new("Routed", "InvalidSpec", "bad ttl".into(), SPEC_ERROR),
        );
        assert_eq!(e.to_string(), "step validate: bad ttl (InvalidSpec)");
        let e = StepError::api(Step::Publish)(Error::NoNamespace);
        assert_eq!(e.to_string(), "step publish: object has no namespace");
        let names: Vec<&str> = [Step::Validate, Step::Plan, Step::Provision, Step::Publish]
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(names, ["validate", "plan", "provision", "publish"]);
    }

    #[test]
    fn step_failures_are_counted_by_step_and_reason() {
        let m = Metrics::new();
        m.step_failed(CONTROLLER, Step::Provision.as_str(), "SecretMissing");
        m.step_failed(CONTROLLER, Step::Provision.as_str(), "SecretMissing");
        let text = m.encode();
        assert!(
            text.contains(
                "hos_operator_step_failures_total{controller=\"featureview\",step=\"provision\",reason=\"SecretMissing\"} 2"
            ),
            "{text}"
        );
    }
}
