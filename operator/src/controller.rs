//! What both controllers share around their reconcile functions: the API
//! scope (one namespace or all), the watch caches reconciles read instead
//! of listing through the API ([`Ctx`]), the reconcile wrapper (its own
//! task, a panic recorded in the status, the duration metric), the error
//! policy and the loop that drives a [`Controller`] until it stops.

use std::fmt::Debug;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use api::crd::{FeatureView, FeatureViewStatus, HybridOnlineStore, HybridOnlineStoreStatus};
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::context::Context;
use crate::error::Error;
use crate::{plan, supervise};

/// A custom resource one of the operator's controllers reconciles.
pub trait Reconciled:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    type Status: Serialize + Clone + Default + PartialEq + Send + Sync;
    /// The `controller` label of the metrics, and the name in logs.
    const CONTROLLER: &'static str;
    fn status(&self) -> Option<&Self::Status>;
    fn conditions(status: &mut Self::Status) -> &mut Vec<Condition>;
    fn old_conditions(status: &Self::Status) -> &[Condition];
}

impl Reconciled for HybridOnlineStore {
    type Status = HybridOnlineStoreStatus;
    const CONTROLLER: &'static str = "hybridonlinestore";
    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    fn conditions(status: &mut Self::Status) -> &mut Vec<Condition> {
        &mut status.conditions
    }
    fn old_conditions(status: &Self::Status) -> &[Condition] {
        &status.conditions
    }
}

impl Reconciled for FeatureView {
    type Status = FeatureViewStatus;
    const CONTROLLER: &'static str = "featureview";
    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    fn conditions(status: &mut Self::Status) -> &mut Vec<Condition> {
        &mut status.conditions
    }
    fn old_conditions(status: &Self::Status) -> &[Condition] {
        &status.conditions
    }
}

/// A reflector store and whether its watch has listed once.
#[derive(Clone)]
pub struct Cache<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    synced: watch::Receiver<bool>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Cache<K> {
    /// `store` is fed by a reflector whose output goes through `synced`
    /// (see [`mark_synced`]).
    pub fn new(store: Store<K>, synced: watch::Receiver<bool>) -> Self {
        Cache { store, synced }
    }

    /// The store once its watch has listed once. Not
    /// `Store::wait_until_ready`: its readiness wakes one waiter only (see
    /// [`crate::readiness`]), and concurrent reconciles waiting on it hang.
    async fn ready(&self) -> Result<&Store<K>, Error> {
        let mut synced = self.synced.clone();
        synced
            .wait_for(|s| *s)
            .await
            .map_err(|_| Error::Cancelled)?;
        Ok(&self.store)
    }
}

/// Passes a reflector's events on and sets `synced` once its first full
/// list ([`watcher::Event::InitDone`]) is in the store (a reflector applies
/// an event before passing it on).
pub fn mark_synced<K, S>(
    events: S,
    synced: watch::Sender<bool>,
) -> impl Stream<Item = S::Item> + Send
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    K: Send,
{
    events.inspect_ok(move |e| {
        if matches!(e, watcher::Event::InitDone) {
            synced.send_replace(true);
        }
    })
}

/// What a controller's reconciles get: the shared [`Context`] and the
/// watch caches (reflector stores) of the stores and views the operator
/// watches. Reconciles read other objects from these instead of listing
/// them through the API on every reconcile: each cache is fed by a watch
/// the controller runs anyway, and the change that triggered a reconcile
/// is already in it.
pub struct Ctx {
    shared: Arc<Context>,
    views: Cache<FeatureView>,
    stores: Cache<HybridOnlineStore>,
}

impl Deref for Ctx {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.shared
    }
}

impl Ctx {
    pub fn new(
        shared: Arc<Context>,
        views: Cache<FeatureView>,
        stores: Cache<HybridOnlineStore>,
    ) -> Ctx {
        Ctx {
            shared,
            views,
            stores,
        }
    }

    /// The views of store `store` in `ns` (those being deleted too), by
    /// name. Waits for the cache's first full list: an empty cache must
    /// not read as "no views" (the store would route none).
    pub async fn views_of(&self, ns: &str, store: &str) -> Result<Vec<Arc<FeatureView>>, Error> {
        let mut views: Vec<Arc<FeatureView>> = self
            .views
            .ready()
            .await?
            .state()
            .into_iter()
            .filter(|v| v.namespace().as_deref() == Some(ns) && v.spec.store_ref == store)
            .collect();
        // The order an API list has, so routes and messages are stable.
        views.sort_by_key(|v| v.name_any());
        Ok(views)
    }

    /// Store `name` of `ns` as last watched (after the cache's first list).
    pub async fn store(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<Arc<HybridOnlineStore>>, Error> {
        Ok(self
            .stores
            .ready()
            .await?
            .get(&ObjectRef::new(name).within(ns)))
    }
}

/// `K` objects of `namespace`, or of every namespace.
pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs `controller` until it stops: each reconcile of `body` in its own
/// task ([`supervise::isolated`]), a panic recorded on the object, every
/// reconcile timed, errors counted and retried after [`Error::backoff`].
pub async fn drive<K, F, Fut>(controller: Controller<K>, ctx: Arc<Ctx>, body: F)
where
    K: Reconciled,
    F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let body = Arc::new(body);
    let reconcile = move |obj: Arc<K>, ctx: Arc<Ctx>| {
        let body = Arc::clone(&body);
        async move {
            let start = Instant::now();
            let res = supervise::isolated(body(Arc::clone(&obj), Arc::clone(&ctx))).await;
            if matches!(res, Err(Error::Panicked(_))) {
                report_panic(obj.as_ref(), &ctx).await;
            }
            ctx.metrics
                .reconciled(K::CONTROLLER, start.elapsed().as_secs_f64());
            res
        }
    };
    controller
        .run(reconcile, error_policy::<K>, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(controller = K::CONTROLLER, error = %e, "reconcile");
            }
        })
        .await;
}

fn error_policy<K: Reconciled>(_obj: Arc<K>, err: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.metrics.failed(K::CONTROLLER, err.metric_label());
    tracing::warn!(controller = K::CONTROLLER, error = %err, "reconcile failed");
    Action::requeue(err.backoff())
}

/// A panicked reconcile leaves the object Ready=False with a generic
/// message (and an event when that is new), so its author sees it.
async fn report_panic<K: Reconciled>(obj: &K, ctx: &Context) {
    let old = obj.status().cloned().unwrap_or_default();
    let mut status = old.clone();
    if plan::condition_changed(K::old_conditions(&old), "Ready", supervise::PANIC_MESSAGE) {
        ctx.event(
            obj,
            true,
            "ReconcileFailed",
            supervise::PANIC_MESSAGE.into(),
        )
        .await;
    }
    plan::set_condition(
        K::conditions(&mut status),
        "Ready",
        false,
        "ReconcileFailed",
        supervise::PANIC_MESSAGE,
        obj.meta().generation,
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    if let Err(e) = crate::status::write(&ctx.client, obj, &old, &status).await {
        tracing::warn!(error = %e, "cannot record the panicked reconcile in the status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Reconciles wait for a cache concurrently: every waiter must wake
    /// once the list is in (kube's `Store::wait_until_ready` wakes one).
    #[tokio::test]
    async fn every_waiter_wakes_when_the_cache_has_listed() {
        let (store, _writer) = kube::runtime::reflector::store::<FeatureView>();
        let (tx, rx) = watch::channel(false);
        let cache = Cache::new(store, rx);
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.ready().await.map(|s| s.state().len()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()));
        tx.send_replace(true);
        for w in waiters {
            let listed = tokio::time::timeout(Duration::from_secs(2), w)
                .await
                .expect("a waiter was not woken")
                .unwrap()
                .unwrap();
            assert_eq!(listed, 0);
        }
        // A sender gone before the list: an error, not a hang.
        let (store, _writer) = kube::runtime::reflector::store::<FeatureView>();
        let (tx, rx) = watch::channel(false);
        drop(tx);
        assert!(matches!(
            Cache::new(store, rx).ready().await,
            Err(Error::Cancelled)
        ));
    }
}
