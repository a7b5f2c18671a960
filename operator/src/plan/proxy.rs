//! The proxy a store asks for (`spec.proxy`): its Deployment and Service,
//! and with the matching fields a HorizontalPodAutoscaler, a
//! PodDisruptionBudget and a NetworkPolicy, all named `<store>-proxy`,
//! labelled with the store and owned by it. Pure: the store reconciler
//! applies what these return and deletes what they no longer return.

use std::collections::{BTreeMap, BTreeSet};

use api::crd::{
    HybridOnlineStore, ProxyAutoscaling, ProxyDisruptionBudget, ProxyLimits, ProxyNetworkPolicy,
    ProxySpec, ProxyStatus,
};
use api::error::ConfigError;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, KeyToPath,
    LocalObjectReference, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::{ROUTING_KEY, SECRETS_DIR, STORE_LABEL, configmap_name, owner, secret_refs};

mod check;

/// Where the routing ConfigMap is mounted.
pub const ROUTING_DIR: &str = "/etc/hos/routing";
/// Where the principals Secret (`spec.proxy.auth`) is mounted.
pub const AUTH_DIR: &str = "/etc/hos/auth";
/// The principals file's name in [`AUTH_DIR`], whatever its Secret key.
pub const AUTH_FILE: &str = "principals.yaml";
/// Where the TLS Secret (`spec.proxy.tls`) is mounted.
pub const TLS_DIR: &str = "/etc/hos/tls";

/// Label keys of the proxy's selector (Deployment, Service, budget,
/// network policy); `spec.proxy.podLabels` may not set them.
pub(crate) const SELECTOR_KEYS: [&str; 3] = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/managed-by",
    STORE_LABEL,
];

/// The operator's Pods as a NetworkPolicy peer: its namespace (by the
/// `kubernetes.io/metadata.name` label every namespace has) and, when
/// given, its Pods' labels; `None` without a namespace.
pub fn operator_peer(
    namespace: Option<&str>,
    pod_labels: &BTreeMap<String, String>,
) -> Option<NetworkPolicyPeer> {
    let ns = namespace.filter(|n| !n.is_empty())?;
    Some(NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                ns.to_string(),
            )])),
            ..Default::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: (!pod_labels.is_empty()).then(|| pod_labels.clone()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Parses `k=v,k=v` (the operator's own Pod labels); an entry without
/// `=` or with an empty key is an error naming it.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| match e.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("{e:?} is not key=value")),
        })
        .collect()
}

/// Name of a store's proxy Deployment, Service, HorizontalPodAutoscaler,
/// PodDisruptionBudget and NetworkPolicy.
pub fn proxy_name(store: &str) -> String {
    format!("{store}-proxy")
}

/// Everything a store's `spec.proxy` asks for; `None`: the object must not
/// exist (the field is unset).
#[derive(Debug, Clone)]
pub struct ProxyObjects {
    pub deployment: Deployment,
    pub service: Service,
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    pub disruption_budget: Option<PodDisruptionBudget>,
    pub network_policy: Option<NetworkPolicy>,
}

/// The proxy objects a store asks for (`spec.proxy.enabled`), or `None`.
/// A spec the operator refuses (see `check`) is an error naming the field;
/// nothing is planned for it. `operator`: the operator's own Pods, which a
/// NetworkPolicy lets reach the HTTP port (the operator reads each Pod's
/// `/ready`); `None` when the operator does not know where it runs.
pub fn proxy_objects(
    store: &HybridOnlineStore,
    default_image: &str,
    operator: Option<&NetworkPolicyPeer>,
) -> Result<Option<ProxyObjects>, ConfigError> {
    let Some(spec) = store.spec.proxy.as_ref().filter(|p| p.enabled) else {
        return Ok(None);
    };
    check::check(&format!("HybridOnlineStore {}", store.name_any()), spec)?;
    Ok(Some(ProxyObjects {
        deployment: deployment(store, spec, default_image),
        service: service(store, spec),
        autoscaler: spec.autoscaling.as_ref().map(|a| autoscaler(store, a)),
        disruption_budget: spec
            .pod_disruption_budget
            .as_ref()
            .map(|b| disruption_budget(store, b)),
        network_policy: spec
            .network_policy
            .as_ref()
            .map(|n| network_policy(store, spec, n, operator)),
    }))
}

/// Pods the proxy runs at least: `replicas`, or the autoscaler's minimum.
pub fn proxy_desired_replicas(spec: &ProxySpec) -> i32 {
    spec.autoscaling
        .as_ref()
        .map_or(spec.replicas, |a| a.min_replicas)
}

/// Where clients reach the proxy, with the Deployment's ready Pods.
pub fn proxy_status(store: &HybridOnlineStore, ready_replicas: i32) -> Option<ProxyStatus> {
    let spec = store.spec.proxy.as_ref().filter(|p| p.enabled)?;
    let host = format!(
        "{}.{}.svc",
        proxy_name(&store.name_any()),
        store.namespace().unwrap_or_default()
    );
    let scheme = if spec.tls.is_some() { "https" } else { "http" };
    Some(ProxyStatus {
        endpoint: format!("{scheme}://{host}:{}", spec.port),
        grpc_endpoint: spec.grpc_port.map(|p| format!("{host}:{p}")),
        ready_replicas,
        ..Default::default()
    })
}

/// The `ProxyAuth` condition of an enabled proxy: (authenticated, reason,
/// message).
pub fn proxy_auth(spec: &ProxySpec) -> (bool, &'static str, String) {
    match &spec.auth {
        None => (
            false,
            "Unauthenticated",
            "spec.proxy.auth is unset: the proxy serves every feature view to anyone who can reach it; set auth.secretName (a principals file), and networkPolicy to limit who connects".into(),
        ),
        Some(a) => {
            let review = match &a.token_review {
                None => String::new(),
                Some(t) if t.audiences.is_empty() => {
                    ", and Kubernetes tokens through TokenReview".into()
                }
                Some(t) => format!(
                    ", and Kubernetes tokens through TokenReview (audiences {})",
                    t.audiences.join(", ")
                ),
            };
            (
                true,
                "Authenticated",
                format!(
                    "bearer tokens of the principals in Secret {} (key {}){review}",
                    a.secret_name, a.key
                ),
            )
        }
    }
}

fn selector_labels(store: &str) -> BTreeMap<String, String> {
    let [name, managed_by, store_key] = SELECTOR_KEYS;
    BTreeMap::from([
        (name.to_string(), "hos-proxy".to_string()),
        (managed_by.to_string(), "hos-operator".to_string()),
        (store_key.to_string(), store.to_string()),
    ])
}

/// The proxy Pods' label selector, as a list query's `labelSelector`.
pub fn proxy_pod_selector(store: &str) -> String {
    selector_labels(store)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn selector(store: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(store)),
        ..Default::default()
    }
}

/// Name, namespace, labels and owner of every proxy object.
fn meta(store: &HybridOnlineStore) -> ObjectMeta {
    let name = store.name_any();
    ObjectMeta {
        name: Some(proxy_name(&name)),
        namespace: store.namespace(),
        labels: Some(selector_labels(&name)),
        owner_references: Some(vec![owner(store)]),
        ..Default::default()
    }
}

/// `hos-proxy serve` flags for the limits a store sets; an unset limit
/// passes no flag, so the proxy's own default applies (and a later change of
/// that default reaches every store that did not choose otherwise).
pub fn limit_args(limits: Option<&ProxyLimits>) -> Vec<String> {
    let Some(l) = limits else {
        return Vec::new();
    };
    let flags = [
        ("--max-body-bytes", l.max_body_bytes),
        ("--max-entity-rows", l.max_entity_rows),
        ("--max-features", l.max_features),
        ("--max-cells", l.max_cells),
        ("--max-key-bytes", l.max_key_bytes),
        ("--max-in-flight", l.max_in_flight),
        (
            "--max-in-flight-per-principal",
            l.max_in_flight_per_principal,
        ),
        ("--request-timeout-ms", l.request_timeout_ms),
        ("--header-read-timeout-ms", l.header_read_timeout_ms),
        ("--idle-timeout-seconds", l.idle_timeout_seconds),
        ("--max-connections", l.max_connections),
        ("--http2-max-streams", l.http2_max_streams),
        (
            "--max-event-time-skew-seconds",
            l.max_event_time_skew_seconds,
        ),
    ];
    flags
        .into_iter()
        .filter_map(|(flag, value)| value.map(|v| [flag.to_string(), v.to_string()]))
        .flatten()
        .collect()
}

/// The proxy's command line: the routing table, listeners, TLS and
/// authentication files where the Pod mounts them, then the limits.
fn args(spec: &ProxySpec) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--routing-table".into(),
        format!("{ROUTING_DIR}/{ROUTING_KEY}"),
        "--listen".into(),
        format!("0.0.0.0:{}", spec.port),
        "--secrets-dir".into(),
        SECRETS_DIR.into(),
        "--log-format".into(),
        "json".into(),
    ];
    if let Some(p) = spec.grpc_port {
        args.extend(["--grpc-listen".into(), format!("0.0.0.0:{p}")]);
    }
    if spec.tls.is_some() {
        args.extend([
            "--tls-cert".into(),
            format!("{TLS_DIR}/tls.crt"),
            "--tls-key".into(),
            format!("{TLS_DIR}/tls.key"),
        ]);
    }
    if let Some(a) = &spec.auth {
        args.extend(["--auth-config".into(), format!("{AUTH_DIR}/{AUTH_FILE}")]);
        if let Some(t) = &a.token_review {
            args.push("--auth-token-review".into());
            for aud in &t.audiences {
                args.extend(["--auth-audience".into(), aud.clone()]);
            }
        }
    }
    args.extend(limit_args(spec.limits.as_ref()));
    args
}

/// A read-only Secret volume and its mount; `items` picks keys as files.
fn secret_volume(
    volume: &str,
    secret: &str,
    at: &str,
    items: Option<Vec<KeyToPath>>,
) -> (Volume, VolumeMount) {
    (
        Volume {
            name: volume.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.into()),
                items,
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: volume.into(),
            mount_path: at.into(),
            read_only: Some(true),
            ..Default::default()
        },
    )
}

fn key_file(key: &str, path: &str) -> KeyToPath {
    KeyToPath {
        key: key.into(),
        path: path.into(),
        mode: None,
    }
}

/// The routing ConfigMap, each backend Secret under [`SECRETS_DIR`], the
/// principals file under [`AUTH_DIR`] and the certificate under [`TLS_DIR`].
fn volumes(store: &HybridOnlineStore, spec: &ProxySpec) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut pairs = vec![(
        Volume {
            name: "routing".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: configmap_name(&store.name_any()),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: "routing".into(),
            mount_path: ROUTING_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    )];
    let secrets: BTreeSet<String> = secret_refs(store).into_iter().map(|(n, _)| n).collect();
    for (i, s) in secrets.iter().enumerate() {
        pairs.push(secret_volume(
            &format!("secret-{i}"),
            s,
            &format!("{SECRETS_DIR}/{s}"),
            None,
        ));
    }
    if let Some(a) = &spec.auth {
        let items = vec![key_file(&a.key, AUTH_FILE)];
        pairs.push(secret_volume("auth", &a.secret_name, AUTH_DIR, Some(items)));
    }
    if let Some(t) = &spec.tls {
        let items = vec![
            key_file("tls.crt", "tls.crt"),
            key_file("tls.key", "tls.key"),
        ];
        pairs.push(secret_volume("tls", &t.secret_name, TLS_DIR, Some(items)));
    }
    pairs.into_iter().unzip()
}

fn container_ports(spec: &ProxySpec) -> Vec<ContainerPort> {
    let port = |name: &str, n: i32| ContainerPort {
        name: Some(name.into()),
        container_port: n,
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let mut ports = vec![port("http", spec.port)];
    ports.extend(spec.grpc_port.map(|p| port("grpc", p)));
    ports
}

fn container(spec: &ProxySpec, default_image: &str, mounts: Vec<VolumeMount>) -> Container {
    let scheme = spec.tls.as_ref().map(|_| "HTTPS".to_string());
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            scheme: scheme.clone(),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    };
    Container {
        name: "hos-proxy".into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| default_image.to_string()),
        ),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(args(spec)),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        ports: Some(container_ports(spec)),
        resources: spec.resources.clone(),
        readiness_probe: Some(probe("/ready")),
        liveness_probe: Some(probe("/health")),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Pod: the container, and the scheduling, identity and metadata the
/// spec sets. The ServiceAccount token is mounted only for TokenReview.
fn pod_template(store: &HybridOnlineStore, spec: &ProxySpec, image: &str) -> PodTemplateSpec {
    let name = store.name_any();
    let (volumes, mounts) = volumes(store, spec);
    let mut labels = spec.pod_labels.clone();
    // The checks refused podLabels naming a selector key; the selector wins
    // regardless.
    labels.extend(selector_labels(&name));
    let spread = spec
        .topology_spread_constraints
        .iter()
        .cloned()
        .map(|mut c| {
            c.label_selector.get_or_insert_with(|| selector(&name));
            c
        })
        .collect::<Vec<_>>();
    let token_review = spec.auth.as_ref().is_some_and(|a| a.token_review.is_some());
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: (!spec.pod_annotations.is_empty()).then(|| spec.pod_annotations.clone()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container(spec, image, mounts)],
            volumes: Some(volumes),
            service_account_name: spec.service_account_name.clone(),
            automount_service_account_token: Some(token_review),
            image_pull_secrets: (!spec.image_pull_secrets.is_empty()).then(|| {
                spec.image_pull_secrets
                    .iter()
                    .map(|n| LocalObjectReference { name: n.clone() })
                    .collect()
            }),
            node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
            tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
            affinity: spec.affinity.clone(),
            topology_spread_constraints: (!spread.is_empty()).then_some(spread),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The Deployment; with `autoscaling` it has no replica count (the
/// autoscaler sets it).
fn deployment(store: &HybridOnlineStore, spec: &ProxySpec, image: &str) -> Deployment {
    Deployment {
        metadata: meta(store),
        spec: Some(DeploymentSpec {
            replicas: spec.autoscaling.is_none().then_some(spec.replicas),
            selector: selector(&store.name_any()),
            template: pod_template(store, spec, image),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn service(store: &HybridOnlineStore, spec: &ProxySpec) -> Service {
    let port = |name: &str, n: i32| ServicePort {
        name: Some(name.into()),
        port: n,
        protocol: Some("TCP".into()),
        target_port: Some(IntOrString::String(name.into())),
        ..Default::default()
    };
    let mut ports = vec![port("http", spec.port)];
    ports.extend(spec.grpc_port.map(|p| port("grpc", p)));
    Service {
        metadata: meta(store),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(&store.name_any())),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn autoscaler(store: &HybridOnlineStore, a: &ProxyAutoscaling) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata: meta(store),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: proxy_name(&store.name_any()),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(a.target_cpu_utilization_percentage),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            behavior: None,
        }),
        ..Default::default()
    }
}

/// The budget; `{}` is `maxUnavailable: 1`. Pods that are not ready may
/// always be evicted (`AlwaysAllow`), so a crash-looping proxy never
/// blocks a drain.
fn disruption_budget(store: &HybridOnlineStore, b: &ProxyDisruptionBudget) -> PodDisruptionBudget {
    let max_unavailable = match (&b.min_available, &b.max_unavailable) {
        (None, None) => Some(IntOrString::Int(1)),
        (_, m) => m.clone(),
    };
    PodDisruptionBudget {
        metadata: meta(store),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(selector(&store.name_any())),
            min_available: b.min_available.clone(),
            max_unavailable,
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
        }),
        ..Default::default()
    }
}

/// Ingress to the proxy Pods on the HTTP and gRPC ports only, from the
/// selected peers only (see `ProxyNetworkPolicy`), and on the HTTP port
/// from the operator's Pods (`operator`), which read each Pod's `/ready`.
fn network_policy(
    store: &HybridOnlineStore,
    spec: &ProxySpec,
    n: &ProxyNetworkPolicy,
    operator: Option<&NetworkPolicyPeer>,
) -> NetworkPolicy {
    let peer = match (&n.allowed_namespaces, &n.allowed_pods) {
        // Neither: the store's own namespace (an empty pod selector).
        (None, None) => NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..Default::default()
        },
        (ns, pods) => NetworkPolicyPeer {
            namespace_selector: ns.clone(),
            pod_selector: pods.clone(),
            ..Default::default()
        },
    };
    let port = |p: i32| NetworkPolicyPort {
        port: Some(IntOrString::Int(p)),
        protocol: Some("TCP".into()),
        end_port: None,
    };
    let mut ports = vec![port(spec.port)];
    ports.extend(spec.grpc_port.map(port));
    NetworkPolicy {
        metadata: meta(store),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(&store.name_any())),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(
                std::iter::once(NetworkPolicyIngressRule {
                    from: Some(vec![peer]),
                    ports: Some(ports),
                })
                .chain(operator.map(|o| NetworkPolicyIngressRule {
                    from: Some(vec![o.clone()]),
                    ports: Some(vec![port(spec.port)]),
                }))
                .collect(),
            ),
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Every field of `spec.proxy` set.
    fn full() -> Value {
        json!({
            "enabled": true,
            "image": "registry.example/hos:1",
            "imagePullPolicy": "IfNotPresent",
            "imagePullSecrets": ["regcred", "regcred-2"],
            "serviceAccountName": "hos-proxy",
            "replicas": 3,
            "port": 8443,
            "grpcPort": 6567,
            "resources": {"requests": {"cpu": "250m"}},
            "limits": {"maxBodyBytes": 1048576},
            "autoscaling": {"minReplicas": 2, "maxReplicas": 10, "targetCPUUtilizationPercentage": 70},
            "nodeSelector": {"pool": "serving"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "serving", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}},
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
                {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": {"matchLabels": {"tier": "x"}}}],
            "podLabels": {"team": "ml", "example.com/cost-center": "42"},
            "podAnnotations": {"prometheus.io/scrape": "true"},
            "env": [{"name": "RUST_LOG", "value": "debug"},
                    {"name": "EXTRA", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}}],
            "podDisruptionBudget": {"minAvailable": 1},
            "networkPolicy": {
                "allowedNamespaces": {"matchLabels": {"kubernetes.io/metadata.name": "serving"}},
                "allowedPods": {"matchLabels": {"app": "ranker"}}},
            "auth": {"secretName": "principals", "key": "team.yaml",
                     "tokenReview": {"audiences": ["hos", "feast"]}},
            "tls": {"secretName": "proxy-tls"}
        })
    }

    fn store_with(proxy: Value) -> HybridOnlineStore {
        serde_json::from_value(json!({
            "apiVersion": "hybrid-online-store.io/v1alpha1",
            "kind": "HybridOnlineStore",
            "metadata": {"name": "s", "namespace": "ns", "uid": "u1", "generation": 3},
            "spec": {
                "project": "demo",
                "routingTag": "team",
                "onlineStores": [
                    {"name": "a", "type": "sqlite", "conf": {"path": "a/online.db"}},
                    {"name": "c", "type": "cassandra", "conf": {"hosts": ["c1"], "keyspace": "ks"},
                     "credentials": {"usernameSecretRef": {"name": "cass", "key": "user"},
                                     "passwordSecretRef": {"name": "cass", "key": "pass"}}}
                ],
                "proxy": proxy
            }
        }))
        .unwrap()
    }

    fn objects(proxy: Value) -> ProxyObjects {
        proxy_objects(&store_with(proxy), "default-image", None)
            .unwrap()
            .unwrap()
    }

    fn refused(proxy: Value) -> ConfigError {
        proxy_objects(&store_with(proxy), "default-image", None).unwrap_err()
    }

    fn pod(o: &ProxyObjects) -> &PodSpec {
        o.deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn selector_of(store: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "hos-proxy".into()),
            ("app.kubernetes.io/managed-by".into(), "hos-operator".into()),
            ("hybrid-online-store.io/store".into(), store.into()),
        ])
    }

    /// Fails when the CRD gains a `spec.proxy` field these tests do not
    /// know (add it to `full()` and to the removal test).
    #[test]
    fn the_tests_know_every_proxy_field() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(HybridOnlineStore::crd()).unwrap();
        let props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            .pointer("/properties/spec/properties/proxy/properties")
            .and_then(Value::as_object)
            .unwrap();
        let mut in_crd: Vec<&String> = props.keys().collect();
        in_crd.sort();
        let full = full();
        let mut in_test: Vec<&String> = full.as_object().unwrap().keys().collect();
        in_test.sort();
        assert_eq!(in_crd, in_test);
        // The typed spec keeps every field it is given.
        let typed: ProxySpec = serde_json::from_value(full.clone()).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), full);
    }

    #[test]
    fn the_operator_may_read_ready_through_the_network_policy() {
        let labels = parse_labels("app.kubernetes.io/name=hos-operator, team = ml").unwrap();
        assert_eq!(
            labels,
            BTreeMap::from([
                (
                    "app.kubernetes.io/name".to_string(),
                    "hos-operator".to_string()
                ),
                ("team".to_string(), "ml".to_string()),
            ])
        );
        assert!(parse_labels("novalue").unwrap_err().contains("novalue"));
        assert!(parse_labels("").unwrap().is_empty());
        assert!(operator_peer(None, &labels).is_none());
        let peer = operator_peer(Some("hos-system"), &labels).unwrap();
        let store = store_with(full());
        let o = proxy_objects(&store, "img", Some(&peer)).unwrap().unwrap();
        let rules = o.network_policy.unwrap().spec.unwrap().ingress.unwrap();
        assert_eq!(rules.len(), 2);
        let from = rules[1].from.as_ref().unwrap();
        assert_eq!(from, &vec![peer.clone()]);
        assert_eq!(
            from[0]
                .namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["kubernetes.io/metadata.name"],
            "hos-system"
        );
        assert_eq!(
            from[0].pod_selector.as_ref().unwrap().match_labels.as_ref(),
            Some(&labels)
        );
        // The HTTP port only (not gRPC).
        let ports: Vec<Option<&IntOrString>> = rules[1]
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.port.as_ref())
            .collect();
        assert_eq!(ports, [Some(&IntOrString::Int(8443))]);
    }

    #[test]
    fn every_field_reaches_the_objects() {
        let o = objects(full());
        for m in [
            &o.deployment.metadata,
            &o.service.metadata,
            &o.autoscaler.as_ref().unwrap().metadata,
            &o.disruption_budget.as_ref().unwrap().metadata,
            &o.network_policy.as_ref().unwrap().metadata,
        ] {
            assert_eq!(m.name.as_deref(), Some("s-proxy"));
            assert_eq!(m.namespace.as_deref(), Some("ns"));
            assert_eq!(m.labels.as_ref(), Some(&selector_of("s")));
            let owner = &m.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.uid.as_str(), owner.kind.as_str()),
                ("u1", "HybridOnlineStore")
            );
            assert_eq!(owner.controller, Some(true));
        }

        // Deployment: the autoscaler owns the replica count.
        let d = o.deployment.spec.as_ref().unwrap();
        assert_eq!(d.replicas, None);
        assert_eq!(d.selector.match_labels.as_ref(), Some(&selector_of("s")));
        let template = d.template.metadata.as_ref().unwrap();
        let mut labels = selector_of("s");
        labels.insert("team".into(), "ml".into());
        labels.insert("example.com/cost-center".into(), "42".into());
        assert_eq!(template.labels.as_ref(), Some(&labels));
        assert_eq!(
            template.annotations.as_ref(),
            Some(&BTreeMap::from([(
                "prometheus.io/scrape".to_string(),
                "true".to_string()
            )]))
        );

        let p = pod(&o);
        assert_eq!(p.service_account_name.as_deref(), Some("hos-proxy"));
        assert_eq!(p.automount_service_account_token, Some(true));
        let pulls: Vec<&str> = p
            .image_pull_secrets
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(pulls, ["regcred", "regcred-2"]);
        assert_eq!(
            p.node_selector.as_ref(),
            Some(&BTreeMap::from([(
                "pool".to_string(),
                "serving".to_string()
            )]))
        );
        let spec: ProxySpec = serde_json::from_value(full()).unwrap();
        assert_eq!(p.tolerations.as_ref(), Some(&spec.tolerations));
        assert_eq!(p.affinity.as_ref(), spec.affinity.as_ref());
        let spread = p.topology_spread_constraints.as_ref().unwrap();
        assert_eq!(spread.len(), 2);
        // Without a labelSelector a constraint counts the proxy's Pods...
        assert_eq!(
            spread[0]
                .label_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref(),
            Some(&selector_of("s"))
        );
        assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");
        // ... and one the author gave is kept.
        assert_eq!(spread[1], spec.topology_spread_constraints[1]);

        let c = &p.containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.example/hos:1"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(c.env.as_ref(), Some(&spec.env));
        assert_eq!(c.resources, spec.resources);
        assert_eq!(
            c.args.as_ref().unwrap(),
            &strings(&[
                "serve",
                "--routing-table",
                "/etc/hos/routing/routing.yaml",
                "--listen",
                "0.0.0.0:8443",
                "--secrets-dir",
                "/etc/hos/secrets",
                "--log-format",
                "json",
                "--grpc-listen",
                "0.0.0.0:6567",
                "--tls-cert",
                "/etc/hos/tls/tls.crt",
                "--tls-key",
                "/etc/hos/tls/tls.key",
                "--auth-config",
                "/etc/hos/auth/principals.yaml",
                "--auth-token-review",
                "--auth-audience",
                "hos",
                "--auth-audience",
                "feast",
                "--max-body-bytes",
                "1048576",
            ])
        );
        let ports: Vec<(Option<&str>, i32)> = c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.as_deref(), p.container_port))
            .collect();
        assert_eq!(ports, [(Some("http"), 8443), (Some("grpc"), 6567)]);
        for probe in [&c.readiness_probe, &c.liveness_probe] {
            let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
            assert_eq!(get.port, IntOrString::String("http".into()));
        }
        let mounts: Vec<(&str, &str, Option<bool>)> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                ("routing", "/etc/hos/routing", Some(true)),
                ("secret-0", "/etc/hos/secrets/cass", Some(true)),
                ("auth", "/etc/hos/auth", Some(true)),
                ("tls", "/etc/hos/tls", Some(true)),
            ]
        );
        let volumes = p.volumes.as_ref().unwrap();
        let secret = |name: &str| {
            volumes
                .iter()
                .find(|v| v.name == name)
                .and_then(|v| v.secret.as_ref())
                .unwrap()
        };
        let items = |name: &str| -> Vec<(String, String)> {
            secret(name)
                .items
                .iter()
                .flatten()
                .map(|k| (k.key.clone(), k.path.clone()))
                .collect()
        };
        assert_eq!(secret("auth").secret_name.as_deref(), Some("principals"));
        assert_eq!(
            items("auth"),
            [("team.yaml".to_string(), "principals.yaml".to_string())]
        );
        assert_eq!(secret("tls").secret_name.as_deref(), Some("proxy-tls"));
        assert_eq!(
            items("tls"),
            [
                ("tls.crt".to_string(), "tls.crt".to_string()),
                ("tls.key".to_string(), "tls.key".to_string())
            ]
        );
        assert_eq!(secret("secret-0").secret_name.as_deref(), Some("cass"));
        assert!(secret("secret-0").items.is_none());

        // Service: http and grpc, to the named container ports.
        let svc = o.service.spec.as_ref().unwrap();
        assert_eq!(svc.selector.as_ref(), Some(&selector_of("s")));
        let sp: Vec<(Option<&str>, i32, Option<&IntOrString>)> = svc
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.as_deref(), p.port, p.target_port.as_ref()))
            .collect();
        assert_eq!(
            sp,
            [
                (
                    Some("http"),
                    8443,
                    Some(&IntOrString::String("http".into()))
                ),
                (
                    Some("grpc"),
                    6567,
                    Some(&IntOrString::String("grpc".into()))
                ),
            ]
        );

        // Autoscaler.
        let h = o.autoscaler.as_ref().unwrap().spec.as_ref().unwrap();
        assert_eq!(
            (
                h.scale_target_ref.api_version.as_deref(),
                h.scale_target_ref.kind.as_str(),
                h.scale_target_ref.name.as_str()
            ),
            (Some("apps/v1"), "Deployment", "s-proxy")
        );
        assert_eq!((h.min_replicas, h.max_replicas), (Some(2), 10));
        let metric = &h.metrics.as_ref().unwrap()[0];
        let r = metric.resource.as_ref().unwrap();
        assert_eq!(
            (
                metric.type_.as_str(),
                r.name.as_str(),
                r.target.type_.as_str(),
                r.target.average_utilization
            ),
            ("Resource", "cpu", "Utilization", Some(70))
        );

        // Disruption budget.
        let b = o.disruption_budget.as_ref().unwrap().spec.as_ref().unwrap();
        assert_eq!(b.min_available, Some(IntOrString::Int(1)));
        assert_eq!(b.max_unavailable, None);
        assert_eq!(
            b.selector.as_ref().unwrap().match_labels.as_ref(),
            Some(&selector_of("s"))
        );
        assert_eq!(
            b.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );

        // Network policy: ingress to the two ports, from the selected Pods
        // in the selected namespaces (one peer: both must match).
        let n = o.network_policy.as_ref().unwrap().spec.as_ref().unwrap();
        assert_eq!(
            n.pod_selector.as_ref().unwrap().match_labels.as_ref(),
            Some(&selector_of("s"))
        );
        assert_eq!(n.policy_types.as_ref().unwrap(), &strings(&["Ingress"]));
        assert!(n.egress.is_none());
        let rules = n.ingress.as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        let from = rules[0].from.as_ref().unwrap();
        assert_eq!(from.len(), 1);
        assert_eq!(
            from[0].namespace_selector,
            spec.network_policy.as_ref().unwrap().allowed_namespaces
        );
        assert_eq!(
            from[0].pod_selector,
            spec.network_policy.as_ref().unwrap().allowed_pods
        );
        let np: Vec<Option<&IntOrString>> = rules[0]
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.port.as_ref())
            .collect();
        assert_eq!(
            np,
            [Some(&IntOrString::Int(8443)), Some(&IntOrString::Int(6567))]
        );

        // Status and auth condition.
        let st = proxy_status(&store_with(full()), 2).unwrap();
        assert_eq!(st.endpoint, "https://s-proxy.ns.svc:8443");
        assert_eq!(st.grpc_endpoint.as_deref(), Some("s-proxy.ns.svc:6567"));
        assert_eq!(st.ready_replicas, 2);
        let (ok, reason, msg) = proxy_auth(&spec);
        assert!(ok && reason == "Authenticated", "{msg}");
        assert!(
            msg.contains("Secret principals (key team.yaml)") && msg.contains("hos, feast"),
            "{msg}"
        );
        assert_eq!(proxy_desired_replicas(&spec), 2);
    }

    /// Removes `field` (a `/`-separated path) from `full()`.
    fn without(field: &str) -> Value {
        let mut v = full();
        let (parent, key) = match field.rsplit_once('/') {
            Some((p, k)) => (format!("/{p}"), k),
            None => (String::new(), field),
        };
        v.pointer_mut(&parent)
            .and_then(Value::as_object_mut)
            .unwrap()
            .remove(key)
            .unwrap();
        v
    }

    fn args_of(o: &ProxyObjects) -> Vec<String> {
        pod(o).containers[0].args.clone().unwrap()
    }

    #[test]
    fn removing_a_field_removes_what_it_made() {
        let all = objects(full());
        let c = |o: &ProxyObjects| pod(o).containers[0].clone();
        let o = objects(without("imagePullPolicy"));
        assert_eq!(c(&o).image_pull_policy, None);
        let o = objects(without("image"));
        assert_eq!(c(&o).image.as_deref(), Some("default-image"));
        let o = objects(without("imagePullSecrets"));
        assert_eq!(pod(&o).image_pull_secrets, None);
        let o = objects(without("serviceAccountName"));
        assert_eq!(pod(&o).service_account_name, None);
        let o = objects(without("grpcPort"));
        assert!(!args_of(&o).contains(&"--grpc-listen".to_string()));
        assert_eq!(c(&o).ports.as_ref().unwrap().len(), 1);
        assert_eq!(
            o.service
                .spec
                .as_ref()
                .unwrap()
                .ports
                .as_ref()
                .unwrap()
                .len(),
            1
        );
        let np = o.network_policy.as_ref().unwrap().spec.as_ref().unwrap();
        assert_eq!(
            np.ingress.as_ref().unwrap()[0]
                .ports
                .as_ref()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            proxy_status(&store_with(without("grpcPort")), 0)
                .unwrap()
                .grpc_endpoint,
            None
        );
        let o = objects(without("autoscaling"));
        assert!(o.autoscaler.is_none());
        assert_eq!(o.deployment.spec.as_ref().unwrap().replicas, Some(3));
        let o = objects(without("nodeSelector"));
        assert_eq!(pod(&o).node_selector, None);
        let o = objects(without("tolerations"));
        assert_eq!(pod(&o).tolerations, None);
        let o = objects(without("affinity"));
        assert_eq!(pod(&o).affinity, None);
        let o = objects(without("topologySpreadConstraints"));
        assert_eq!(pod(&o).topology_spread_constraints, None);
        let o = objects(without("podLabels"));
        let template = |o: &ProxyObjects| {
            o.deployment
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .clone()
                .unwrap()
        };
        assert_eq!(template(&o).labels, Some(selector_of("s")));
        let o = objects(without("podAnnotations"));
        assert_eq!(template(&o).annotations, None);
        let o = objects(without("env"));
        assert_eq!(c(&o).env, None);
        let o = objects(without("podDisruptionBudget"));
        assert!(o.disruption_budget.is_none());
        let o = objects(without("networkPolicy"));
        assert!(o.network_policy.is_none());
        let o = objects(without("limits"));
        assert!(!args_of(&o).iter().any(|a| a.starts_with("--max")));
        let o = objects(without("resources"));
        assert_eq!(c(&o).resources, None);

        // auth.tokenReview: the flags and the token go; the file stays.
        let o = objects(without("auth/tokenReview"));
        let a = args_of(&o);
        assert!(a.contains(&"--auth-config".to_string()));
        assert!(
            !a.iter()
                .any(|x| x == "--auth-token-review" || x == "--auth-audience")
        );
        assert_eq!(pod(&o).automount_service_account_token, Some(false));
        let o = objects(without("auth/tokenReview/audiences"));
        let a = args_of(&o);
        assert!(a.contains(&"--auth-token-review".to_string()));
        assert!(!a.contains(&"--auth-audience".to_string()));
        // auth: no flag, no volume, no token.
        let o = objects(without("auth"));
        assert!(!args_of(&o).iter().any(|x| x.starts_with("--auth")));
        assert!(
            !pod(&o)
                .volumes
                .as_ref()
                .unwrap()
                .iter()
                .any(|v| v.name == "auth")
        );
        assert!(
            !c(&o)
                .volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.name == "auth")
        );
        assert_eq!(pod(&o).automount_service_account_token, Some(false));
        let (ok, reason, _) = proxy_auth(&serde_json::from_value(without("auth")).unwrap());
        assert!(!ok && reason == "Unauthenticated");
        // tls: no flag, no volume, plain HTTP probes and endpoint.
        let o = objects(without("tls"));
        assert!(!args_of(&o).iter().any(|x| x.starts_with("--tls")));
        assert!(
            !pod(&o)
                .volumes
                .as_ref()
                .unwrap()
                .iter()
                .any(|v| v.name == "tls")
        );
        let probe = c(&o).readiness_probe.unwrap().http_get.unwrap();
        assert_eq!(probe.scheme, None);
        assert_eq!(
            proxy_status(&store_with(without("tls")), 0)
                .unwrap()
                .endpoint,
            "http://s-proxy.ns.svc:8443"
        );

        // Everything but the original fields: the objects of a minimal spec.
        let mut bare = full();
        let keep = [
            "enabled",
            "image",
            "replicas",
            "port",
            "resources",
            "limits",
        ];
        bare.as_object_mut()
            .unwrap()
            .retain(|k, _| keep.contains(&k.as_str()));
        let o = objects(bare);
        assert!(o.autoscaler.is_none() && o.disruption_budget.is_none());
        assert!(o.network_policy.is_none());
        let p = pod(&o);
        assert_eq!(
            (
                &p.service_account_name,
                &p.image_pull_secrets,
                &p.node_selector,
                &p.tolerations,
                &p.affinity,
                &p.topology_spread_constraints
            ),
            (&None, &None, &None, &None, &None, &None)
        );
        assert_eq!(p.automount_service_account_token, Some(false));
        assert_eq!(p.volumes.as_ref().unwrap().len(), 2);
        assert_eq!(
            args_of(&o),
            strings(&[
                "serve",
                "--routing-table",
                "/etc/hos/routing/routing.yaml",
                "--listen",
                "0.0.0.0:8443",
                "--secrets-dir",
                "/etc/hos/secrets",
                "--log-format",
                "json",
                "--max-body-bytes",
                "1048576",
            ])
        );
        assert_ne!(o.deployment, all.deployment);

        // Disabled: nothing at all, whatever else is set.
        let mut off = full();
        off["enabled"] = json!(false);
        assert!(
            proxy_objects(&store_with(off), "img", None)
                .unwrap()
                .is_none()
        );
        assert!(proxy_status(&store_with(json!({"enabled": false})), 0).is_none());
    }

    #[test]
    fn budget_and_network_policy_defaults() {
        let mut v = full();
        v["podDisruptionBudget"] = json!({});
        let o = objects(v);
        let b = o.disruption_budget.unwrap().spec.unwrap();
        assert_eq!(
            (b.min_available, b.max_unavailable),
            (None, Some(IntOrString::Int(1)))
        );
        let peer = |np: Value| {
            let mut v = full();
            v["networkPolicy"] = np;
            let n = objects(v).network_policy.unwrap().spec.unwrap();
            n.ingress.unwrap()[0].from.clone().unwrap()
        };
        // Neither selector: the store's own namespace.
        let from = peer(json!({}));
        assert_eq!(from.len(), 1);
        assert_eq!(from[0].pod_selector, Some(LabelSelector::default()));
        assert_eq!(from[0].namespace_selector, None);
        // Pods only: those Pods of the store's namespace.
        let from = peer(json!({"allowedPods": {"matchLabels": {"app": "r"}}}));
        assert_eq!(from[0].namespace_selector, None);
        assert!(from[0].pod_selector.is_some());
        // Namespaces only: every Pod there.
        let from = peer(json!({"allowedNamespaces": {"matchLabels": {"x": "y"}}}));
        assert_eq!(from[0].pod_selector, None);
        assert!(from[0].namespace_selector.is_some());
    }

    /// Whatever a hostile (or careless) CR author writes in `spec.proxy`,
    /// the operator refuses it with the field named, and never panics.
    #[test]
    fn hostile_proxy_specs_are_refused() {
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            (
                "env",
                json!([{"name": "HOS_LISTEN", "value": "0.0.0.0:1"}]),
                "env[0].name",
                "setting of the proxy",
            ),
            (
                "env",
                json!([{"name": "hos_auth_config", "value": "/dev/null"}]),
                "env[0].name",
                "setting of the proxy",
            ),
            (
                "env",
                json!([{"name": "HOS_CONFIGMAP", "value": "kube-system/x"}]),
                "env[0].name",
                "setting of the proxy",
            ),
            (
                "env",
                json!([{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
                "env[1].name",
                "twice",
            ),
            (
                "env",
                json!([{"name": "A=B", "value": "1"}]),
                "env[0].name",
                "not an environment variable name",
            ),
            (
                "env",
                json!([{"name": "", "value": "1"}]),
                "env[0].name",
                "not an environment variable name",
            ),
            (
                "auth",
                json!({"secretName": "a/b"}),
                "auth.secretName",
                "not an object name",
            ),
            (
                "auth",
                json!({"secretName": ".."}),
                "auth.secretName",
                "not an object name",
            ),
            (
                "auth",
                json!({"secretName": "../kube-system"}),
                "auth.secretName",
                "not an object name",
            ),
            (
                "auth",
                json!({"secretName": "p", "key": "../../token"}),
                "auth.key",
                "not a Secret key",
            ),
            (
                "auth",
                json!({"secretName": "p", "key": "..data"}),
                "auth.key",
                "not a Secret key",
            ),
            (
                "auth",
                json!({"secretName": "p", "key": "a/b"}),
                "auth.key",
                "not a Secret key",
            ),
            (
                "auth",
                json!({"secretName": "p", "tokenReview": {"audiences": ["a,b"]}}),
                "auth.tokenReview.audiences[0]",
                "commas",
            ),
            (
                "auth",
                json!({"secretName": "p", "tokenReview": {"audiences": ["ok", ""]}}),
                "auth.tokenReview.audiences[1]",
                "commas",
            ),
            (
                "tls",
                json!({"secretName": "x/../y"}),
                "tls.secretName",
                "not an object name",
            ),
            (
                "tls",
                json!({"secretName": ".."}),
                "tls.secretName",
                "not an object name",
            ),
            (
                "tls",
                json!({"secretName": "/etc/passwd"}),
                "tls.secretName",
                "not an object name",
            ),
            (
                "serviceAccountName",
                json!("../admin"),
                "serviceAccountName",
                "not an object name",
            ),
            (
                "serviceAccountName",
                json!("Admin"),
                "serviceAccountName",
                "not an object name",
            ),
            (
                "imagePullSecrets",
                json!(["ok", "a/b"]),
                "imagePullSecrets[1]",
                "not an object name",
            ),
            (
                "autoscaling",
                json!({"minReplicas": 5, "maxReplicas": 2}),
                "autoscaling",
                "exceeds maxReplicas",
            ),
            (
                "autoscaling",
                json!({"minReplicas": 0, "maxReplicas": 2}),
                "autoscaling",
                "at least 1",
            ),
            (
                "autoscaling",
                json!({"minReplicas": -3, "maxReplicas": -1}),
                "autoscaling",
                "at least 1",
            ),
            (
                "autoscaling",
                json!({"maxReplicas": 2, "targetCPUUtilizationPercentage": 0}),
                "autoscaling",
                "targetCPUUtilizationPercentage",
            ),
            (
                "podLabels",
                json!({"app.kubernetes.io/name": "evil"}),
                "podLabels.app.kubernetes.io/name",
                "selector labels",
            ),
            (
                "podLabels",
                json!({"app.kubernetes.io/managed-by": "me"}),
                "podLabels.app.kubernetes.io/managed-by",
                "selector labels",
            ),
            (
                "podLabels",
                json!({"hybrid-online-store.io/store": "other"}),
                "podLabels.hybrid-online-store.io/store",
                "selector labels",
            ),
            (
                "podLabels",
                json!({"x.hybrid-online-store.io/y": "z"}),
                "podLabels.x.hybrid-online-store.io/y",
                "selector labels",
            ),
            (
                "podLabels",
                json!({"bad key!": "v"}),
                "podLabels",
                "not a label key",
            ),
            (
                "podLabels",
                json!({"k": "x".repeat(64)}),
                "podLabels.k",
                "not a label value",
            ),
            (
                "nodeSelector",
                json!({"a/b/c": "v"}),
                "nodeSelector",
                "not a label key",
            ),
            (
                "podAnnotations",
                json!({"container.apparmor.security.beta.kubernetes.io/hos-proxy": "unconfined"}),
                "podAnnotations.container.apparmor.security.beta.kubernetes.io/hos-proxy",
                "AppArmor",
            ),
            (
                "podAnnotations",
                json!({"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}),
                "podAnnotations.seccomp.security.alpha.kubernetes.io/pod",
                "seccomp",
            ),
            (
                "podAnnotations",
                json!({"hybrid-online-store.io/routing-hash": "x"}),
                "podAnnotations.hybrid-online-store.io/routing-hash",
                "operator's",
            ),
            (
                "podAnnotations",
                json!({"": "x"}),
                "podAnnotations",
                "not an annotation key",
            ),
            ("grpcPort", json!(8443), "grpcPort", "HTTP port"),
            ("image", json!(" "), "image", "empty"),
            (
                "podDisruptionBudget",
                json!({"minAvailable": 2}),
                "podDisruptionBudget.minAvailable",
                "blocks node drains",
            ),
            (
                "podDisruptionBudget",
                json!({"minAvailable": "100%"}),
                "podDisruptionBudget.minAvailable",
                "blocks node drains",
            ),
            (
                "podDisruptionBudget",
                json!({"maxUnavailable": 0}),
                "podDisruptionBudget.maxUnavailable",
                "blocks node drains",
            ),
            (
                "podDisruptionBudget",
                json!({"maxUnavailable": "0%"}),
                "podDisruptionBudget.maxUnavailable",
                "blocks node drains",
            ),
            (
                "podDisruptionBudget",
                json!({"maxUnavailable": "lots"}),
                "podDisruptionBudget.maxUnavailable",
                "percentage",
            ),
            (
                "podDisruptionBudget",
                json!({"minAvailable": 1, "maxUnavailable": 1}),
                "podDisruptionBudget.minAvailable",
                "not both",
            ),
        ];
        for (field, value, path, problem) in cases {
            let mut v = full();
            v[field] = value.clone();
            let err = refused(v);
            assert_eq!(
                err.path,
                format!("spec.proxy.{path}"),
                "{field}: {value}: {err}"
            );
            assert!(err.message.contains(problem), "{field}: {value}: {err}");
            assert_eq!(err.file, "HybridOnlineStore s");
        }
        // The budget is judged at the smallest replica count: autoscaling's
        // minimum (2 in `full()`), else `replicas`.
        let mut v = without("autoscaling");
        v["podDisruptionBudget"] = json!({"minAvailable": 2});
        objects(v.clone());
        v["replicas"] = json!(2);
        assert!(refused(v).message.contains("at 2 replicas"));
    }

    /// podLabels may add labels, never change the ones that tie the Pods
    /// to their Deployment, Service, budget and network policy.
    #[test]
    fn pod_labels_never_override_the_selector() {
        for key in SELECTOR_KEYS {
            let mut v = full();
            v["podLabels"] = json!({ key: "other" });
            let err = refused(v);
            assert_eq!(err.path, format!("spec.proxy.podLabels.{key}"));
        }
        let o = objects(full());
        let template = o.deployment.spec.unwrap().template.metadata.unwrap();
        for (k, v) in selector_of("s") {
            assert_eq!(template.labels.as_ref().unwrap().get(&k), Some(&v));
        }
    }

    #[test]
    fn proxy_gets_exactly_the_limits_a_store_sets() {
        let args = |limits: Value| {
            let mut v = json!({"enabled": true});
            if !limits.is_null() {
                v["limits"] = limits;
            }
            args_of(&objects(v))
        };
        let base = args(Value::Null);
        assert_eq!(base[0], "serve");
        assert!(!base.iter().any(|a| a.starts_with("--max")), "{base:?}");
        // No limits, or an empty block: the proxy's defaults, no flags.
        assert_eq!(args(json!({})), base);

        let some = args(json!({"maxBodyBytes": 1048576, "idleTimeoutSeconds": 5,
                               "maxInFlightPerPrincipal": 8}));
        let mut want = base.clone();
        want.extend(strings(&[
            "--max-body-bytes",
            "1048576",
            "--max-in-flight-per-principal",
            "8",
            "--idle-timeout-seconds",
            "5",
        ]));
        assert_eq!(some, want);

        // Every field of the CRD's schema reaches the flag of the same name
        // (camelCase to kebab-case), so a field added to the CRD but not to
        // `limit_args` fails here.
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(HybridOnlineStore::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let fields: Vec<String> = schema
            .pointer("/properties/spec/properties/proxy/properties/limits/properties")
            .and_then(|p| p.as_object())
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(fields.len(), 13, "{fields:?}");
        let limits: Value = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), json!(i + 1)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        // The CRD type drops nothing it was given: all fields are known.
        let typed: ProxyLimits = serde_json::from_value(limits.clone()).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), limits);
        let args = limit_args(Some(&typed));
        assert_eq!(args.len(), 2 * fields.len(), "{args:?}");
        for (i, f) in fields.iter().enumerate() {
            let flag = format!(
                "--{}",
                f.chars().fold(String::new(), |mut out, c| {
                    if c.is_ascii_uppercase() {
                        out.push('-');
                    }
                    out.push(c.to_ascii_lowercase());
                    out
                })
            );
            let at = args
                .iter()
                .position(|a| *a == flag)
                .unwrap_or_else(|| panic!("{flag} missing: {args:?}"));
            assert_eq!(args[at + 1], (i + 1).to_string(), "{flag}");
        }
    }
}
