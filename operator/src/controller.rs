//! What both controllers share around their reconcile functions: the API
//! scope (one namespace or all), the reconcile wrapper (its own task, a
//! panic recorded in the status, the duration metric), the error policy
//! and the loop that drives a [`Controller`] until it stops.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use api::crd::{FeatureView, FeatureViewStatus, HybridOnlineStore, HybridOnlineStoreStatus};
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::controller::{Action, Controller};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

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
pub async fn drive<K, F, Fut>(controller: Controller<K>, ctx: Arc<Context>, body: F)
where
    K: Reconciled,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let body = Arc::new(body);
    let reconcile = move |obj: Arc<K>, ctx: Arc<Context>| {
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

fn error_policy<K: Reconciled>(_obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
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
