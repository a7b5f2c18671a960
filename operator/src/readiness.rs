//! What `/readyz` answers.
//!
//! A replica is in one of four roles: `starting` (it has not read the
//! leader Lease yet), `standby` (it has read the Lease, another replica
//! holds it), `leader` (it holds the Lease and runs the controllers) and
//! `stopping` (SIGTERM or a lost Lease: its controllers are shutting down).
//!
//! - A standby is **ready**. This is the convention for leader-elected
//!   controllers: readiness says whether a Pod works as it should, and a
//!   standby's work is to wait for the Lease. Tying readiness to
//!   leadership would hold every rolling update (a new Pod would never
//!   become ready while an old one leads, and the Deployment would wait
//!   for it) and a PodDisruptionBudget would count standbys as disrupted.
//!   The operator's Service carries only metrics, which a standby serves
//!   too.
//! - The leader is ready once every cache its controllers watch has
//!   synced: each watch has listed its objects once. Before that it
//!   would reconcile against an empty view of the cluster; `/readyz` is
//!   503 and names the caches still listing.
//! - `starting` and `stopping` are not ready.
//!
//! The state is set by `main` (role) and by the controllers' watch streams
//! (each cache marks itself synced when its watcher reports its first
//! complete list, [`kube::runtime::watcher::Event::InitDone`]).
//!
//! Why not `Store::wait_until_ready` (kube-runtime 5.0): only the main
//! kind of a controller has a store (its `owns`/`watches` streams keep
//! none, Secrets included); that store fills only while the controller's
//! stream is polled, i.e. on the leader once it runs; and its readiness is
//! a `futures` oneshot receiver behind a mutex, which keeps one waker: the
//! controller's own applier waits on the same store, so a second waiter may
//! never be woken (measured against the test API server: a waiter started
//! beside a running controller returned only when its 10 s timeout polled
//! it again, though the list had completed in milliseconds).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::{Stream, TryStreamExt};
use kube::runtime::watcher;
use serde::Serialize;

use crate::metrics::Metrics;

/// This replica's part in the leader election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The Lease has not been read yet.
    Starting,
    /// Waiting for the Lease; `holder` is who holds it (`None`: nobody, or
    /// a holder whose lease has not expired yet was not named).
    Standby { holder: Option<String> },
    /// Holding the Lease and running the controllers.
    Leader,
    /// Shutting the controllers down (SIGTERM or the Lease lost).
    Stopping,
}

impl Role {
    fn name(&self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Standby { .. } => "standby",
            Role::Leader => "leader",
            Role::Stopping => "stopping",
        }
    }
}

/// One watched cache: the controller that watches it and the resource
/// (plural, lower case) it lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CacheId {
    pub controller: &'static str,
    pub resource: &'static str,
}

impl std::fmt::Display for CacheId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.controller, self.resource)
    }
}

/// The `/readyz` answer (its JSON body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub ready: bool,
    pub role: &'static str,
    /// Holder of the Lease, as a standby last read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// Why the replica is (not) ready, in words.
    pub reason: String,
    /// Caches still listing (`controller/resource`), sorted.
    pub not_synced: Vec<String>,
    /// Every cache of this replica's controllers and whether it has synced.
    pub caches: BTreeMap<String, bool>,
}

#[derive(Debug)]
struct State {
    role: Role,
    caches: BTreeMap<CacheId, bool>,
}

/// The replica's readiness, shared by `main`, the controllers and the
/// health server.
pub struct Readiness {
    state: Mutex<State>,
    metrics: Option<Arc<Metrics>>,
}

impl Readiness {
    /// `metrics`: where `hos_operator_cache_synced` is kept (none in tests).
    pub fn new(metrics: Option<Arc<Metrics>>) -> Readiness {
        Readiness {
            state: Mutex::new(State {
                role: Role::Starting,
                caches: BTreeMap::new(),
            }),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under a panic (each update is one
        // assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_role(&self, role: Role) {
        let mut state = self.lock();
        if state.role != role {
            tracing::debug!(from = state.role.name(), to = role.name(), "readiness role");
        }
        state.role = role;
    }

    pub fn role(&self) -> Role {
        self.lock().role.clone()
    }

    /// Registers a cache as not synced yet and returns the handle its
    /// watch stream marks it synced with.
    pub fn cache(self: &Arc<Self>, controller: &'static str, resource: &'static str) -> CacheSync {
        let id = CacheId {
            controller,
            resource,
        };
        self.lock().caches.insert(id, false);
        if let Some(m) = &self.metrics {
            m.set_cache_synced(controller, resource, false);
        }
        CacheSync {
            readiness: Arc::clone(self),
            id,
        }
    }

    fn mark_synced(&self, id: CacheId) {
        let first = {
            let mut state = self.lock();
            let entry = state.caches.entry(id).or_insert(false);
            !std::mem::replace(entry, true)
        };
        if first {
            tracing::info!(cache = %id, "cache synced");
            if let Some(m) = &self.metrics {
                m.set_cache_synced(id.controller, id.resource, true);
            }
        }
    }

    /// The current answer.
    pub fn report(&self) -> Report {
        let state = self.lock();
        let not_synced: Vec<String> = state
            .caches
            .iter()
            .filter(|(_, synced)| !**synced)
            .map(|(id, _)| id.to_string())
            .collect();
        let caches = state
            .caches
            .iter()
            .map(|(id, synced)| (id.to_string(), *synced))
            .collect();
        let (ready, reason, holder) = match &state.role {
            Role::Starting => (
                false,
                "the leader Lease has not been read yet".to_string(),
                None,
            ),
            Role::Standby { holder } => (
                true,
                match holder {
                    Some(h) => format!("standby: {h} holds the leader Lease"),
                    None => "standby: waiting for the leader Lease".to_string(),
                },
                holder.clone(),
            ),
            Role::Leader if state.caches.is_empty() => (
                false,
                "leader: the controllers have not started their watches yet".to_string(),
                None,
            ),
            Role::Leader if !not_synced.is_empty() => (
                false,
                format!(
                    "leader: waiting for {} cache(s) to sync: {}",
                    not_synced.len(),
                    not_synced.join(", ")
                ),
                None,
            ),
            Role::Leader => (true, "leader: every cache has synced".to_string(), None),
            Role::Stopping => (
                false,
                "stopping: the controllers are shutting down".to_string(),
                None,
            ),
        };
        Report {
            ready,
            role: state.role.name(),
            holder,
            reason,
            not_synced,
            caches,
        }
    }
}

/// A registered cache; its watch stream calls [`CacheSync::observe`] on
/// every event.
#[derive(Clone)]
pub struct CacheSync {
    readiness: Arc<Readiness>,
    id: CacheId,
}

impl CacheSync {
    /// Marks the cache synced on its watcher's first complete list.
    pub fn observe<K>(&self, event: &watcher::Event<K>) {
        if matches!(event, watcher::Event::InitDone) {
            self.readiness.mark_synced(self.id);
        }
    }

    /// `events` (a watcher or reflector stream), marking the cache synced
    /// as they pass. The controller polls the stream, so the mark comes
    /// from the very watch the controller reconciles from.
    pub fn tap<K, S>(self, events: S) -> impl Stream<Item = S::Item> + Send
    where
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
        K: Send,
    {
        events.inspect_ok(move |e| self.observe(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;

    fn ready(r: &Readiness) -> (bool, &'static str, Vec<String>) {
        let rep = r.report();
        (rep.ready, rep.role, rep.not_synced)
    }

    #[test]
    fn starting_is_not_ready_and_a_standby_is() {
        let r = Arc::new(Readiness::new(None));
        assert_eq!(ready(&r), (false, "starting", vec![]));
        r.set_role(Role::Standby {
            holder: Some("op-1".into()),
        });
        let rep = r.report();
        assert!(rep.ready);
        assert_eq!(rep.role, "standby");
        assert_eq!(rep.holder.as_deref(), Some("op-1"));
        assert_eq!(rep.reason, "standby: op-1 holds the leader Lease");
    }

    #[test]
    fn a_leader_is_ready_only_once_every_cache_has_synced() {
        let r = Arc::new(Readiness::new(None));
        r.set_role(Role::Leader);
        // Leading, but no controller has registered its watches yet.
        assert_eq!(ready(&r), (false, "leader", vec![]));
        let stores = r.cache("hybridonlinestore", "hybridonlinestores");
        let secrets = r.cache("hybridonlinestore", "secrets");
        assert_eq!(
            ready(&r),
            (
                false,
                "leader",
                vec![
                    "hybridonlinestore/hybridonlinestores".to_string(),
                    "hybridonlinestore/secrets".to_string()
                ]
            )
        );
        // Events before the first complete list do not count.
        stores.observe::<Secret>(&watcher::Event::Init);
        stores.observe(&watcher::Event::InitApply(Secret::default()));
        assert_eq!(ready(&r).2.len(), 2);
        stores.observe::<Secret>(&watcher::Event::InitDone);
        let rep = r.report();
        assert!(!rep.ready);
        assert_eq!(rep.not_synced, vec!["hybridonlinestore/secrets"]);
        assert_eq!(
            rep.reason,
            "leader: waiting for 1 cache(s) to sync: hybridonlinestore/secrets"
        );
        assert_eq!(
            rep.caches.get("hybridonlinestore/hybridonlinestores"),
            Some(&true)
        );
        secrets.observe::<Secret>(&watcher::Event::InitDone);
        assert_eq!(ready(&r), (true, "leader", vec![]));
        // A relist after a watch error (Init again) keeps the cache synced:
        // its objects are still there, only refreshed.
        secrets.observe::<Secret>(&watcher::Event::Init);
        assert_eq!(ready(&r), (true, "leader", vec![]));
    }

    #[test]
    fn stopping_is_not_ready_even_with_synced_caches() {
        let r = Arc::new(Readiness::new(None));
        r.set_role(Role::Leader);
        r.cache("featureview", "featureviews")
            .observe::<Secret>(&watcher::Event::InitDone);
        assert!(r.report().ready);
        r.set_role(Role::Stopping);
        assert_eq!(ready(&r), (false, "stopping", vec![]));
    }

    #[test]
    fn the_metric_follows_each_cache() {
        let m = Arc::new(Metrics::new());
        let r = Arc::new(Readiness::new(Some(Arc::clone(&m))));
        let c = r.cache("featureview", "hybridonlinestores");
        let line =
            "hos_operator_cache_synced{controller=\"featureview\",resource=\"hybridonlinestores\"}";
        assert!(m.encode().contains(&format!("{line} 0")), "{}", m.encode());
        c.observe::<Secret>(&watcher::Event::InitDone);
        assert!(m.encode().contains(&format!("{line} 1")), "{}", m.encode());
    }

    #[test]
    fn the_report_serializes_in_camel_case() {
        let r = Arc::new(Readiness::new(None));
        r.set_role(Role::Leader);
        let _c = r.cache("featureview", "featureviews");
        let v = serde_json::to_value(r.report()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "ready": false,
                "role": "leader",
                "reason": "leader: waiting for 1 cache(s) to sync: featureview/featureviews",
                "notSynced": ["featureview/featureviews"],
                "caches": {"featureview/featureviews": false}
            })
        );
    }
}
