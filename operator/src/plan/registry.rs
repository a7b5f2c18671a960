//! Pure planning for a store's Feast registry (`spec.registry`): where it
//! is, which Secret keys it needs, and what its views become in the
//! store's routing (routed as published, provisioned, unroutable, retired).

use std::collections::{BTreeMap, BTreeSet};

use api::crd::{HybridOnlineStore, RegistrySpec};
use api::feature_view::FeatureViewDef;
use api::registry_config::{RegistryLocation, SqlUrl, remote_target, sql_url};
use api::routing::{Backend, FeatureService, RoutedView, RoutingTable};
use k8s_openapi::api::core::v1::ConfigMap;

use super::{SecretValues, check_data_path, check_host_port, route, routed_view};

/// ConfigMap annotation listing (as a JSON array) the views of the routing
/// table that come from the store's registry, so a later reconcile knows
/// which published views to retire when the registry drops them.
pub const REGISTRY_VIEWS_ANNOTATION: &str = "hybrid-online-store.io/registry-views";

/// How a store's registry is read: the location and the credentials taken
/// from its Secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrySource {
    pub location: RegistryLocation,
    pub token: Option<String>,
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RegistrySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySource")
            .field("location", &self.location.redacted())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .finish()
    }
}

/// The Secret keys `spec.registry` names (all in the store's namespace:
/// a reference has no namespace field).
pub fn registry_secret_refs(store: &HybridOnlineStore) -> BTreeSet<(String, String)> {
    let Some(r) = &store.spec.registry else {
        return BTreeSet::new();
    };
    let remote = r
        .remote
        .iter()
        .flat_map(|m| [&m.ca_secret_ref, &m.token_secret_ref])
        .flatten();
    let sql = r
        .sql
        .iter()
        .flat_map(|s| [Some(&s.url_secret_ref), s.ca_secret_ref.as_ref()])
        .flatten();
    remote
        .chain(sql)
        .map(|k| (k.name.clone(), k.key.clone()))
        .collect()
}

/// The registry `spec` names, its Secret keys resolved from `values`.
/// A SQLite registry's path stays in the namespace's data directory, as a
/// SQLite backend's does; messages never hold the URL or a secret.
pub fn registry_source(
    spec: &RegistrySpec,
    values: &SecretValues,
) -> Result<RegistrySource, String> {
    let value = |r: &api::credential::SecretKeyRef| -> Result<String, String> {
        values
            .get(&(r.name.clone(), r.key.clone()))
            .cloned()
            .ok_or_else(|| format!("Secret {} has no key {}", r.name, r.key))
    };
    match (&spec.remote, &spec.sql) {
        (Some(remote), None) => {
            let target = remote_target(&remote.endpoint)
                .map_err(|e| format!("spec.registry.remote.endpoint: {e}"))?;
            check_host_port(&target).map_err(|e| format!("spec.registry.remote.endpoint: {e}"))?;
            let ca_pem = match &remote.ca_secret_ref {
                Some(r) => Some(value(r)?.into_bytes()),
                None => None,
            };
            let token = match &remote.token_secret_ref {
                Some(r) => Some(value(r)?.trim().to_string()),
                None => None,
            };
            Ok(RegistrySource {
                location: RegistryLocation::Remote {
                    target,
                    tls: remote.tls,
                    cert: None,
                },
                token,
                ca_pem,
            })
        }
        (None, Some(sql)) => {
            let url = value(&sql.url_secret_ref)?;
            let at = format!(
                "spec.registry.sql.urlSecretRef (Secret {}, key {})",
                sql.url_secret_ref.name, sql.url_secret_ref.key
            );
            let parsed = sql_url(url.trim()).map_err(|e| format!("{at}: {e}"))?;
            match &parsed {
                SqlUrl::Sqlite(path) => {
                    check_data_path(path).map_err(|e| format!("{at}: {e}"))?;
                }
                SqlUrl::Postgres(pg) => {
                    let target = backends::pg_tls::parse(pg).map_err(|e| format!("{at}: {e}"))?;
                    if let Some(backends::pg_tls::RootCert::File(_)) = target.root_cert {
                        return Err(format!(
                            "{at}: sslrootcert names a file of the operator's; give the CA in spec.registry.sql.caSecretRef"
                        ));
                    }
                }
            }
            let ca_pem = match &sql.ca_secret_ref {
                Some(r) => Some(value(r)?.into_bytes()),
                None => None,
            };
            Ok(RegistrySource {
                location: RegistryLocation::Sql(parsed),
                token: None,
                ca_pem,
            })
        }
        _ => Err("spec.registry takes exactly one of remote or sql".to_string()),
    }
}

/// The names the routing ConfigMap records as coming from the registry.
pub fn registry_view_names(cm: Option<&ConfigMap>) -> BTreeSet<String> {
    cm.and_then(|c| c.metadata.annotations.as_ref())
        .and_then(|a| a.get(REGISTRY_VIEWS_ANNOTATION))
        .and_then(|v| serde_json::from_str::<BTreeSet<String>>(v).ok())
        .unwrap_or_default()
}

/// The routing table a ConfigMap publishes, if it holds one that parses.
pub fn published_table(cm: Option<&ConfigMap>) -> Option<RoutingTable> {
    let doc = cm?.data.as_ref()?.get(super::ROUTING_KEY)?;
    RoutingTable::parse("routing ConfigMap", doc).ok()
}

/// The views a routing ConfigMap routes that came from the registry.
pub fn published_registry_views(cm: Option<&ConfigMap>) -> Vec<RoutedView> {
    let names = registry_view_names(cm);
    published_table(cm)
        .map(|t| t.feature_views)
        .unwrap_or_default()
        .into_iter()
        .filter(|v| names.contains(&v.name))
        .collect()
}

/// What the registry's views become in a store's routing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RegistryRoutes {
    /// Routed exactly as the published table has them: nothing to do.
    pub unchanged: Vec<RoutedView>,
    /// New or changed views: provision their tables, then route them.
    pub provision: Vec<RoutedView>,
    /// Views whose routing tag now names another backend: (view, the
    /// backend it leaves). Their data is not copied; the old tables stay.
    pub moved: Vec<(String, String)>,
    /// Views the routing rule cannot place: (view, why).
    pub unroutable: Vec<(String, String)>,
    /// Registry views of the published table that the registry (and no
    /// FeatureView) holds any more: retired per the teardown policy.
    pub retired: Vec<RoutedView>,
}

/// Plans the registry's views of `store`. `read`: the views of the last
/// read, `None` when it failed (the published views then stay as they
/// are, nothing is retired). `overrides`: Feast names the store's
/// FeatureViews take over (those routed and those being deleted).
/// `published`: the registry's views in the routing ConfigMap now.
pub fn registry_routes(
    store: &HybridOnlineStore,
    mounted: &[Backend],
    read: Option<&[FeatureViewDef]>,
    overrides: &BTreeSet<String>,
    published: &[RoutedView],
) -> RegistryRoutes {
    let mut out = RegistryRoutes::default();
    let published: BTreeMap<&str, &RoutedView> =
        published.iter().map(|v| (v.name.as_str(), v)).collect();
    let Some(read) = read else {
        out.unchanged = published
            .values()
            .filter(|v| !overrides.contains(&v.name))
            .map(|v| (*v).clone())
            .collect();
        return out;
    };
    let mut seen = BTreeSet::new();
    for def in read {
        if overrides.contains(&def.name) || !seen.insert(def.name.as_str()) {
            continue;
        }
        let label = format!("registry view {}", def.name);
        if let Err(e) = def.validate(&label) {
            out.unroutable
                .push((def.name.clone(), format!("{}: {}", e.path, e.message)));
            out.unchanged
                .extend(published.get(def.name.as_str()).map(|v| (*v).clone()));
            continue;
        }
        let backend = match route(store, mounted, def) {
            Ok(b) => b.name.clone(),
            Err(e) => {
                out.unroutable.push((def.name.clone(), e));
                // Served as it was until its tag names a backend again.
                out.unchanged
                    .extend(published.get(def.name.as_str()).map(|v| (*v).clone()));
                continue;
            }
        };
        let view = routed_view(def, &backend);
        match published.get(def.name.as_str()) {
            Some(old) if **old == view => out.unchanged.push(view),
            Some(old) => {
                if old.backend != view.backend {
                    out.moved.push((view.name.clone(), old.backend.clone()));
                }
                out.provision.push(view);
            }
            None => out.provision.push(view),
        }
    }
    out.retired = published
        .values()
        .filter(|v| !seen.contains(v.name.as_str()) && !overrides.contains(&v.name))
        .map(|v| (*v).clone())
        .collect();
    out
}

/// The feature services whose every projection names a routed view and
/// features it has (the routing table refuses any other).
pub fn routable_services(services: &[FeatureService], views: &[RoutedView]) -> Vec<FeatureService> {
    let by_name: BTreeMap<&str, &RoutedView> = views.iter().map(|v| (v.name.as_str(), v)).collect();
    let mut seen = BTreeSet::new();
    services
        .iter()
        .filter(|s| seen.insert(s.name.as_str()))
        .filter(|s| {
            s.projections.iter().all(|p| {
                by_name
                    .get(p.feature_view.as_str())
                    .is_some_and(|v| p.features.iter().all(|f| v.feature(f).is_some()))
            })
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Credentials, backends};

    fn store(registry: serde_json::Value) -> HybridOnlineStore {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hybrid-online-store.io/v1alpha1",
            "kind": "HybridOnlineStore",
            "metadata": {"name": "s", "namespace": "ns"},
            "spec": {
                "project": "demo",
                "routingTag": "team",
                "defaultStore": "team-a",
                "onlineStores": [
                    {"name": "team-a", "type": "sqlite", "conf": {"path": "a.db"}},
                    {"name": "team-b", "type": "sqlite", "conf": {"path": "b.db"}}
                ],
                "registry": registry
            }
        }))
        .unwrap()
    }

    fn def(name: &str, team: Option<&str>, features: &[&str]) -> FeatureViewDef {
        let schema: Vec<serde_json::Value> = features
            .iter()
            .map(|f| serde_json::json!({"name": f, "dtype": "int64"}))
            .collect();
        let tags: BTreeMap<&str, &str> = team.map(|t| ("team", t)).into_iter().collect();
        let doc = serde_json::json!({
            "name": name,
            "entities": [{"name": "user", "join_keys": ["user_id"], "dtype": "int64"}],
            "schema": schema,
            "tags": tags
        });
        api::yaml::from_str(&doc.to_string()).unwrap()
    }

    fn values(pairs: &[(&str, &str, &str)]) -> SecretValues {
        pairs
            .iter()
            .map(|(n, k, v)| ((n.to_string(), k.to_string()), v.to_string()))
            .collect()
    }

    #[test]
    fn sources_resolve_from_the_namespace_secrets() {
        let s = store(serde_json::json!({"remote": {
            "endpoint": "registry.feast.svc:6570", "tls": true,
            "caSecretRef": {"name": "reg", "key": "ca.crt"},
            "tokenSecretRef": {"name": "reg", "key": "token"}}}));
        let refs = registry_secret_refs(&s);
        assert_eq!(
            refs,
            BTreeSet::from([
                ("reg".to_string(), "ca.crt".to_string()),
                ("reg".to_string(), "token".to_string())
            ])
        );
        let spec = s.spec.registry.as_ref().unwrap();
        let v = values(&[("reg", "ca.crt", "PEM"), ("reg", "token", "t0k\n")]);
        let src = registry_source(spec, &v).unwrap();
        assert_eq!(
            src.location,
            RegistryLocation::Remote {
                target: "registry.feast.svc:6570".into(),
                tls: true,
                cert: None
            }
        );
        assert_eq!(src.token.as_deref(), Some("t0k"));
        assert_eq!(src.ca_pem.as_deref(), Some(&b"PEM"[..]));
        assert!(!format!("{src:?}").contains("t0k"));
        let e = registry_source(spec, &values(&[("reg", "token", "t")])).unwrap_err();
        assert_eq!(e, "Secret reg has no key ca.crt");

        let s = store(serde_json::json!({"sql": {"urlSecretRef": {"name": "db", "key": "url"}}}));
        let spec = s.spec.registry.as_ref().unwrap();
        assert_eq!(
            registry_secret_refs(&s),
            BTreeSet::from([("db".to_string(), "url".to_string())])
        );
        let pg = values(&[("db", "url", "postgresql+psycopg://u:hunter2@pg:5432/feast")]);
        let src = registry_source(spec, &pg).unwrap();
        assert_eq!(src.location.redacted(), "postgresql://u:***@pg:5432/feast");
        let lite = values(&[("db", "url", "sqlite:///feast/registry.db")]);
        assert_eq!(
            registry_source(spec, &lite).unwrap().location,
            RegistryLocation::Sql(SqlUrl::Sqlite("feast/registry.db".into()))
        );
        // The operator's own files are not a tenant's registry.
        for (url, problem) in [
            ("sqlite:////var/run/secrets/x.db", "absolute"),
            ("sqlite:///../other/registry.db", "`..`"),
            ("mysql://u:hunter2@h/db", "mysql"),
        ] {
            let e = registry_source(spec, &values(&[("db", "url", url)])).unwrap_err();
            assert!(
                e.contains(problem) && e.contains("urlSecretRef"),
                "{url}: {e}"
            );
            assert!(!e.contains("hunter2"), "{e}");
        }
        // PostgreSQL TLS: the CA from a Secret key, never a file of the
        // operator's; a bad sslmode is named, without the password.
        let s = store(serde_json::json!({"sql": {
            "urlSecretRef": {"name": "db", "key": "url"},
            "caSecretRef": {"name": "db", "key": "ca.crt"}}}));
        let spec = s.spec.registry.as_ref().unwrap();
        assert_eq!(
            registry_secret_refs(&s),
            BTreeSet::from([
                ("db".to_string(), "ca.crt".to_string()),
                ("db".to_string(), "url".to_string())
            ])
        );
        let url = "postgresql://u:hunter2@pg:5432/feast?sslmode=verify-full";
        let src = registry_source(
            spec,
            &values(&[("db", "url", url), ("db", "ca.crt", "PEM")]),
        )
        .unwrap();
        assert_eq!(src.ca_pem.as_deref(), Some(&b"PEM"[..]));
        for (url, problem) in [
            (
                "postgresql://u:hunter2@pg/feast?sslrootcert=/var/run/secrets/ca.crt",
                "caSecretRef",
            ),
            (
                "postgresql://u:hunter2@pg/feast?sslrootcert=ca.pem",
                "caSecretRef",
            ),
            (
                "postgresql://u:hunter2@pg/feast?sslmode=verify",
                "sslmode `verify`",
            ),
            ("postgresql://u:hunter2@pg/feast?sslkey=/k.pem", "sslkey"),
        ] {
            let v = values(&[("db", "url", url), ("db", "ca.crt", "PEM")]);
            let e = registry_source(spec, &v).unwrap_err();
            assert!(e.contains(problem), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let system = "postgresql://u:p@pg/feast?sslmode=verify-full&sslrootcert=system";
        assert!(
            registry_source(
                spec,
                &values(&[("db", "url", system), ("db", "ca.crt", "PEM")])
            )
            .is_ok()
        );

        let s = store(serde_json::json!({"remote": {"endpoint": "unix:///run/x.sock:1"}}));
        let e = registry_source(s.spec.registry.as_ref().unwrap(), &SecretValues::new());
        assert!(e.unwrap_err().contains("spec.registry.remote.endpoint"));
        let both = RegistrySpec {
            remote: None,
            sql: None,
            refresh_seconds: 60,
        };
        assert!(registry_source(&both, &SecretValues::new()).is_err());
    }

    #[test]
    fn registry_views_route_by_tag_and_leave_when_dropped() {
        let s = store(serde_json::json!({"remote": {"endpoint": "r:1"}}));
        let mounted = backends(&s, Credentials::Mounted).unwrap();
        let a = def("a_view", Some("team-a"), &["x"]);
        let b = def("b_view", Some("team-b"), &["y"]);
        let untagged = def("plain", None, &["z"]);
        let lost = def("lost", Some("team-c"), &["z"]);
        let none = BTreeSet::new();
        let read = [a.clone(), b.clone(), untagged.clone(), lost];
        let r = registry_routes(&s, &mounted, Some(&read), &none, &[]);
        let placed: Vec<(&str, &str)> = r
            .provision
            .iter()
            .map(|v| (v.name.as_str(), v.backend.as_str()))
            .collect();
        assert_eq!(
            placed,
            [
                ("a_view", "team-a"),
                ("b_view", "team-b"),
                ("plain", "team-a")
            ]
        );
        assert_eq!(r.unroutable.len(), 1);
        assert_eq!(r.unroutable[0].0, "lost");
        assert!(r.unroutable[0].1.contains("team-c"), "{:?}", r.unroutable);

        // Published as planned: nothing to do; b dropped from the
        // registry: retired; a now tagged team-b: moved.
        let published = r.provision.clone();
        let a_moved = def("a_view", Some("team-b"), &["x"]);
        let read = [a_moved, untagged.clone()];
        let r = registry_routes(&s, &mounted, Some(&read), &none, &published);
        assert_eq!(r.unchanged.len(), 1);
        assert_eq!(r.unchanged[0].name, "plain");
        assert_eq!(r.provision.len(), 1);
        assert_eq!(r.provision[0].backend, "team-b");
        assert_eq!(r.moved, [("a_view".to_string(), "team-a".to_string())]);
        let retired: Vec<&str> = r.retired.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(retired, ["b_view"]);

        // A FeatureView of the same name takes the view over: neither
        // routed from the registry nor retired.
        let overrides = BTreeSet::from(["b_view".to_string(), "a_view".to_string()]);
        let r = registry_routes(&s, &mounted, Some(&[untagged]), &overrides, &published);
        assert!(r.retired.is_empty() && r.provision.is_empty());
        assert_eq!(r.unchanged.len(), 1);

        // A tag naming no backend: reported, served as before.
        let lost_b = def("b_view", Some("team-z"), &["y"]);
        let r = registry_routes(&s, &mounted, Some(&[lost_b]), &none, &published);
        assert_eq!(r.unroutable.len(), 1);
        let kept: Vec<(&str, &str)> = r
            .unchanged
            .iter()
            .map(|v| (v.name.as_str(), v.backend.as_str()))
            .collect();
        assert_eq!(kept, [("b_view", "team-b")]);
        let retired: Vec<&str> = r.retired.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(retired, ["a_view", "plain"]);

        // A failed read keeps what is published, retires nothing.
        let r = registry_routes(&s, &mounted, None, &none, &published);
        assert_eq!(r.unchanged, published);
        assert!(r.retired.is_empty() && r.provision.is_empty());
    }

    #[test]
    fn services_need_every_view_and_feature_routed() {
        let s = store(serde_json::json!({"remote": {"endpoint": "r:1"}}));
        let mounted = backends(&s, Credentials::Mounted).unwrap();
        let views: Vec<RoutedView> = [def("a", None, &["x", "y"])]
            .iter()
            .map(|d| routed_view(d, &route(&s, &mounted, d).unwrap().name))
            .collect();
        let svc = |name: &str, view: &str, features: &[&str]| FeatureService {
            name: name.into(),
            projections: vec![api::routing::Projection {
                feature_view: view.into(),
                alias: None,
                features: features.iter().map(|f| f.to_string()).collect(),
            }],
        };
        let all = [
            svc("ok", "a", &["x"]),
            svc("whole", "a", &[]),
            svc("missing_view", "b", &[]),
            svc("missing_feature", "a", &["nope"]),
        ];
        let names: Vec<String> = routable_services(&all, &views)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["ok", "whole"]);
    }

    #[test]
    fn the_configmap_names_its_registry_views() {
        let s = store(serde_json::json!({"remote": {"endpoint": "r:1"}}));
        let names = BTreeSet::from(["b,1".to_string(), "a".to_string()]);
        let cm = crate::plan::configmap(&s, "doc", &names);
        assert_eq!(registry_view_names(Some(&cm)), names);
        assert!(crate::plan::configmap_current(Some(&cm), "doc", &names));
        assert!(!crate::plan::configmap_current(
            Some(&cm),
            "doc",
            &BTreeSet::new()
        ));
        let plain = crate::plan::configmap(&s, "doc", &BTreeSet::new());
        assert!(
            !plain
                .metadata
                .annotations
                .unwrap()
                .contains_key(REGISTRY_VIEWS_ANNOTATION)
        );
        assert!(registry_view_names(None).is_empty());
    }
}
