//! A store's Feast registry (`spec.registry`) in the store's reconcile:
//! read it (at most every `refreshSeconds`), provision the tables of its
//! views, retire the views it no longer holds per the teardown policy,
//! and report the read in `status.registry` and the `RegistryRead`
//! condition. A read that fails changes no route: the registry views the
//! routing ConfigMap holds stay as they are.

use std::collections::BTreeSet;
use std::time::Duration;

use api::crd::{
    HybridOnlineStore, HybridOnlineStoreStatus, RegistrySpec, RegistryStatus, TeardownPolicy,
};
use api::routing::{Backend, FeatureService, RoutedView};
use backends::registry::{DEFAULT_MAX_BYTES, RegistryReader};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::CONTROLLER;
use crate::context::Context;
use crate::error::Error;
use crate::plan;
use crate::view::{Teardown, feature_views_on, tear_down};

/// The store condition reporting the last read.
pub const CONDITION: &str = "RegistryRead";

/// Most view names `status.registry.viewNames` lists.
const MAX_NAMES: usize = 100;

/// Retry of a teardown that failed.
const TEARDOWN_RETRY: Duration = Duration::from_secs(30);

/// What the store's reconcile needs for the registry's part.
pub(super) struct Inputs<'a> {
    pub store: &'a HybridOnlineStore,
    pub ns: &'a str,
    /// The store's backends, credentials as mounted files.
    pub mounted: &'a [Backend],
    /// The same with their credentials, when every Secret was found.
    pub resolved: Option<&'a [Backend]>,
    /// The routing ConfigMap as it is now.
    pub published: Option<&'a ConfigMap>,
    /// Feast names the store's FeatureViews take over (routed or being
    /// deleted).
    pub overrides: &'a BTreeSet<String>,
    /// The FeatureViews' routes (storage they share stays on a drop).
    pub feature_views: &'a [RoutedView],
}

/// What the registry adds to the store's routing.
#[derive(Default)]
pub(super) struct Outcome {
    /// Registry views to route.
    pub views: Vec<RoutedView>,
    /// The registry's feature services (those over routed views are
    /// published).
    pub services: Vec<FeatureService>,
    /// Views not routed, as `<view> (<why>)`.
    pub pending: Vec<String>,
    /// Whether the registry was read (true without a registry).
    pub read_ok: bool,
    /// Dry run: what applying would change, one line each.
    pub plan: Vec<String>,
    /// Reconcile again no later than this.
    pub requeue: Option<Duration>,
}

/// The registry's part of the store's reconcile; sets `status.registry`
/// and the `RegistryRead` condition.
pub(super) async fn reconcile(
    ctx: &Context,
    inp: Inputs<'_>,
    old: &HybridOnlineStoreStatus,
    status: &mut HybridOnlineStoreStatus,
    t: &Time,
) -> Result<Outcome, Error> {
    let store = inp.store;
    let key = format!("{}/{}", inp.ns, store.name_any());
    let Some(spec) = &store.spec.registry else {
        plan::remove_condition(&mut status.conditions, CONDITION);
        status.registry = None;
        ctx.forget_registry(&key).await;
        return Ok(Outcome {
            read_ok: true,
            ..Outcome::default()
        });
    };
    let refresh = Duration::from_secs(u64::try_from(spec.refresh_seconds.max(5)).unwrap_or(60));
    let published = plan::published_registry_views(inp.published);

    // 1. Where it is, with the Secrets of the store's namespace.
    let (values, missing) = ctx
        .secret_values(inp.ns, &plan::registry_secret_refs(store))
        .await?;
    if !missing.is_empty() {
        let msg = format!("{} not found", missing.join(", "));
        let failure = ReadFailure::new("SecretMissing", msg, describe(spec));
        return Ok(failed(ctx, &inp, old, status, t, failure, &published, refresh).await);
    }
    let source = match plan::registry_source(spec, &values) {
        Ok(s) => s,
        Err(msg) => {
            let failure = ReadFailure::new("InvalidRegistry", msg, describe(spec));
            return Ok(failed(ctx, &inp, old, status, t, failure, &published, refresh).await);
        }
    };
    let location = source.location.redacted();

    // 2. The read (a recent one is reused).
    let project = store.spec.project.clone();
    let fingerprint = plan::content_hash(&format!(
        "{:?}\n{project}\n{:?}\n{:?}",
        source.location, source.token, source.ca_pem
    ));
    let reader = RegistryReader {
        location: source.location,
        project: project.clone(),
        base_dir: ctx.data_dir.join(inp.ns),
        token_file: None,
        token: source.token,
        ca_pem: source.ca_pem,
        max_bytes: DEFAULT_MAX_BYTES,
    };
    let read = ctx
        .read_registry(&key, &fingerprint, refresh, &reader)
        .await;
    let contents = match read.outcome {
        Ok(c) => c,
        Err(msg) => {
            let failure = ReadFailure::new("ReadFailed", msg, location);
            return Ok(failed(ctx, &inp, old, status, t, failure, &published, refresh).await);
        }
    };
    let mut names: Vec<String> = contents
        .feature_views
        .iter()
        .map(|v| v.name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let count = i32::try_from(names.len()).unwrap_or(i32::MAX);
    names.truncate(MAX_NAMES);
    status.registry = Some(RegistryStatus {
        location: location.clone(),
        ok: true,
        error: None,
        last_read_time: Some(read.time),
        views: count,
        view_names: names,
    });
    plan::set_condition(
        &mut status.conditions,
        CONDITION,
        true,
        "Read",
        format!("{count} feature views of project {project} read from {location}"),
        store.metadata.generation,
        t.clone(),
    );

    // 3. Routes, tables, retirements.
    let routes = plan::registry_routes(
        store,
        inp.mounted,
        Some(&contents.feature_views),
        inp.overrides,
        &published,
    );
    let mut out = Outcome {
        services: contents.feature_services.clone(),
        read_ok: true,
        requeue: Some(refresh),
        ..Outcome::default()
    };
    out.views = routes.unchanged;
    out.pending = routes
        .unroutable
        .iter()
        .map(|(v, why)| format!("{v} ({why})"))
        .collect();
    let was = |name: &str| published.iter().find(|p| p.name == name).cloned();
    for view in routes.provision {
        let from = routes
            .moved
            .iter()
            .find(|(v, _)| *v == view.name)
            .map(|(_, f)| f.clone());
        match provision(ctx, &inp, &view).await {
            Provision::Planned(lines) => {
                out.plan.extend(lines);
                let old = was(&view.name);
                let route_from = old.as_ref().map_or("(new)", |o| o.backend.as_str());
                if route_from != view.backend {
                    out.plan.push(format!(
                        "route registry view {}: {route_from} -> {}",
                        view.name, view.backend
                    ));
                }
                // Nothing changes in a dry run.
                out.views.extend(old);
            }
            Provision::Done(objects) => {
                let note = match &from {
                    Some(f) => format!(" (moved from backend {f})"),
                    None => String::new(),
                };
                ctx.event(
                    store,
                    false,
                    "RegistryViewProvisioned",
                    format!(
                        "registry view {}: {} in backend {}{note}",
                        view.name,
                        objects.join(", "),
                        view.backend
                    ),
                )
                .await;
                if let Some(f) = &from {
                    ctx.event(
                        store,
                        true,
                        "RegistryViewMoved",
                        format!(
                            "registry view {} moved from backend {f} to {} by its routing tag: its rows were not copied and its tables in {f} are kept (a FeatureView moves a view live)",
                            view.name, view.backend
                        ),
                    )
                    .await;
                }
                out.views.push(view);
            }
            Provision::Failed(why) => {
                ctx.metrics
                    .step_failed(CONTROLLER, "registry", "ProvisioningFailed");
                out.pending.push(format!("{} ({why})", view.name));
                // Served as before until its new tables exist.
                out.views.extend(was(&view.name));
            }
        }
    }
    for view in routes.retired {
        if store.spec.dry_run {
            out.plan.push(format!(
                "retire registry view {} from backend {} (teardownPolicy {:?})",
                view.name, view.backend, store.spec.teardown_policy
            ));
            out.views.push(view);
            continue;
        }
        if !retire(ctx, &inp, &view, &out.views).await? {
            // Routed until its tables are gone, so it is tried again.
            out.views.push(view);
            out.requeue = Some(refresh.min(TEARDOWN_RETRY));
        }
    }
    Ok(out)
}

/// A failed registry step: the condition's reason, the message, and the
/// location as far as it is known.
struct ReadFailure {
    reason: &'static str,
    message: String,
    location: String,
}

impl ReadFailure {
    fn new(reason: &'static str, message: String, location: String) -> Self {
        ReadFailure {
            reason,
            message,
            location,
        }
    }
}

/// The location of a registry whose Secret is not read yet.
fn describe(spec: &RegistrySpec) -> String {
    match (&spec.remote, &spec.sql) {
        (Some(r), _) => {
            let scheme = if r.tls { "grpcs" } else { "grpc" };
            format!("{scheme}://{}", r.endpoint)
        }
        (None, Some(s)) => format!(
            "sql (URL in Secret {}, key {})",
            s.url_secret_ref.name, s.url_secret_ref.key
        ),
        (None, None) => String::new(),
    }
}

/// A registry that cannot be read: `RegistryRead=False`, a Warning event
/// when the message is new, the last good read's figures kept, and the
/// published registry views routed as they are (none retired).
#[allow(clippy::too_many_arguments)]
async fn failed(
    ctx: &Context,
    inp: &Inputs<'_>,
    old: &HybridOnlineStoreStatus,
    status: &mut HybridOnlineStoreStatus,
    t: &Time,
    f: ReadFailure,
    published: &[RoutedView],
    refresh: Duration,
) -> Outcome {
    let store = inp.store;
    ctx.metrics.step_failed(CONTROLLER, "registry", f.reason);
    if plan::condition_changed(&old.conditions, CONDITION, &f.message) {
        ctx.event(store, true, "RegistryReadFailed", f.message.clone())
            .await;
    }
    let last = old.registry.clone().unwrap_or_default();
    status.registry = Some(RegistryStatus {
        location: f.location,
        ok: false,
        error: Some(f.message.clone()),
        last_read_time: last.last_read_time,
        views: last.views,
        view_names: last.view_names,
    });
    plan::set_condition(
        &mut status.conditions,
        CONDITION,
        false,
        f.reason,
        f.message,
        store.metadata.generation,
        t.clone(),
    );
    let kept = plan::registry_routes(store, inp.mounted, None, inp.overrides, published);
    Outcome {
        views: kept.unchanged,
        services: plan::published_table(inp.published)
            .map(|t| t.feature_services)
            .unwrap_or_default(),
        pending: Vec::new(),
        read_ok: false,
        plan: Vec::new(),
        requeue: Some(refresh),
    }
}

/// How provisioning one registry view went.
enum Provision {
    /// Dry run: what would be created.
    Planned(Vec<String>),
    /// Its tables exist: their names.
    Done(Vec<String>),
    /// Why not (the view waits, served as before if it was).
    Failed(String),
}

/// Creates the tables of `view` in its backend (a dry run lists the
/// missing ones instead).
async fn provision(ctx: &Context, inp: &Inputs<'_>, view: &RoutedView) -> Provision {
    let target = &view.backend;
    let Some(backend) = inp
        .resolved
        .and_then(|r| r.iter().find(|b| b.name == *target))
    else {
        return Provision::Failed(format!(
            "the Secrets of backend {target} are missing; see BackendsReachable"
        ));
    };
    let conn = match ctx.connect(inp.ns, &inp.store.name_any(), backend).await {
        Ok(c) => c,
        Err(e) => return Provision::Failed(format!("backend {target}: {e}")),
    };
    let project = &inp.store.spec.project;
    let objects: Vec<String> = conn
        .storage_objects(project, view)
        .into_iter()
        .map(|o| format!("{} {} ({})", o.kind, o.name, o.location))
        .collect();
    if inp.store.spec.dry_run {
        return match conn.storage_exists(project, view).await {
            Ok(true) => Provision::Planned(Vec::new()),
            Ok(false) => Provision::Planned(
                objects
                    .iter()
                    .map(|o| {
                        format!(
                            "create {o} for registry view {} in backend {target}",
                            view.name
                        )
                    })
                    .collect(),
            ),
            Err(e) => Provision::Planned(vec![format!(
                "registry view {}: backend {target} did not answer: {e}",
                view.name
            )]),
        };
    }
    match conn.create(project, view).await {
        Ok(()) => Provision::Done(objects),
        Err(e) => Provision::Failed(format!("creating tables in backend {target}: {e}")),
    }
}

/// Retires a view that left the registry: per the teardown policy, its
/// tables are kept or dropped (keeping what the views staying on its
/// backend share). False when the drop has to be tried again.
async fn retire(
    ctx: &Context,
    inp: &Inputs<'_>,
    view: &RoutedView,
    routed: &[RoutedView],
) -> Result<bool, Error> {
    let store = inp.store;
    let backend = &view.backend;
    if store.spec.teardown_policy == TeardownPolicy::Retain {
        let msg = format!(
            "registry view {} left the registry: no longer routed; teardownPolicy Retain keeps its tables in backend {backend}",
            view.name
        );
        ctx.event(store, false, "RegistryViewRetired", msg).await;
        return Ok(true);
    }
    // What stays on the backend: the registry's views routed there and
    // the FeatureViews there (the cache's and a fresh list's).
    let mut staying: Vec<RoutedView> = routed
        .iter()
        .chain(inp.feature_views)
        .filter(|v| v.backend == *backend && v.name != view.name)
        .cloned()
        .collect();
    let listed = feature_views_on(ctx, inp.ns, &store.name_any(), backend, None).await?;
    for v in listed {
        if v.name != view.name && !staying.iter().any(|s| s.name == v.name) {
            staying.push(v);
        }
    }
    let (warning, reason, msg, done) = match tear_down(ctx, inp.ns, store, backend, view, &staying)
        .await?
    {
        Teardown::Dropped(tables) => (
            false,
            "RegistryViewRetired",
            format!(
                "registry view {} left the registry: teardownPolicy Delete dropped {} in backend {backend}",
                view.name,
                tables.join(", ")
            ),
            true,
        ),
        Teardown::NoBackend => (
            false,
            "RegistryViewRetired",
            format!(
                "registry view {} left the registry; its backend {backend} is no longer in the store",
                view.name
            ),
            true,
        ),
        Teardown::Blocked(why, _) => (
            true,
            "TeardownBlocked",
            format!("registry view {}: {why}", view.name),
            false,
        ),
        Teardown::Failed(why) => (
            true,
            "TeardownFailed",
            format!("registry view {}: {why}", view.name),
            false,
        ),
    };
    if !done {
        ctx.metrics.step_failed(CONTROLLER, "registry", reason);
    }
    ctx.event(store, warning, reason, msg).await;
    Ok(done)
}
