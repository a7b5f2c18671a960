//! Kubernetes custom resources: `HybridOnlineStore` and `FeatureView`
//! (group `hybrid-online-store.io`, version `v1alpha1`).
//!
//! The store's spec mirrors Feast's `online_store` block; backend `conf`
//! keeps Feast's field names and is checked by the operator with the same
//! parser as `feature_store.yaml` (it is free-form in the schema, as
//! Feast's `conf: Dict` is). Credentials are Secret references only.

// kube's repeated `printcolumn(type_ = ...)` arguments look duplicated to clippy.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::credential::SecretKeyRef;
use crate::dtype::Dtype;
use crate::feast_config::BackendType;
use crate::feature_view::SourceDef;

pub const API_GROUP: &str = "hybrid-online-store.io";
pub const API_VERSION: &str = "v1alpha1";

/// What happens to a feature view's tables when the view is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum TeardownPolicy {
    /// Keep the tables and their data.
    #[default]
    Retain,
    /// Drop the tables in the view's backend.
    Delete,
}

fn default_routing_tag() -> String {
    crate::feast_config::DEFAULT_ROUTING_TAG.to_string()
}

fn default_serialization_version() -> i32 {
    3
}

/// A hybrid online store: several named backends and the rule that routes
/// each FeatureView to one of them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "hybrid-online-store.io",
    version = "v1alpha1",
    kind = "HybridOnlineStore",
    plural = "hybridonlinestores",
    shortname = "hos",
    namespaced,
    status = "HybridOnlineStoreStatus",
    printcolumn(name = "Project", type_ = "string", json_path = ".spec.project"),
    printcolumn(name = "Backends", type_ = "integer", json_path = ".status.backends"),
    printcolumn(name = "Views", type_ = "integer", json_path = ".status.routedViews"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.proxy.endpoint"
    ),
    printcolumn(
        name = "Ready Replicas",
        type_ = "integer",
        json_path = ".status.proxy.readyReplicas"
    ),
    printcolumn(
        name = "Routing",
        type_ = "string",
        json_path = ".status.proxy.routing"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.defaultStore) || self.onlineStores.exists(s, s.name == self.defaultStore)").message("defaultStore must name one of onlineStores"))]
pub struct HybridOnlineStoreSpec {
    /// Feast project name (letters, digits, underscores).
    #[schemars(regex(pattern = r"^[A-Za-z0-9_]+$"), length(min = 1, max = 63))]
    pub project: String,
    /// FeatureView tag whose value selects the backend (Feast's `routing_tag`).
    #[serde(default = "default_routing_tag")]
    #[schemars(length(min = 1, max = 63))]
    pub routing_tag: String,
    /// Feast's `entity_key_serialization_version`: 3, or 2 for legacy data.
    #[serde(default = "default_serialization_version")]
    #[schemars(range(min = 2, max = 3))]
    pub entity_key_serialization_version: i32,
    /// The backends. A view's routing tag names one by `name`, or by `type`
    /// when only one backend has that type.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message("onlineStores names must be unique"))]
    pub online_stores: Vec<OnlineStoreSpec>,
    /// Backend for views without a routing tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_store: Option<String>,
    /// What happens to a deleted view's tables.
    #[serde(default)]
    pub teardown_policy: TeardownPolicy,
    /// Optional proxy Deployment and Service managed with the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySpec>,
    /// Plan only: the operator changes nothing (no tables, no routing
    /// ConfigMap, no proxy) and lists what it would do in each
    /// FeatureView's `status.plan` and the store's `status.plan`. Set it
    /// back to false to apply that plan.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// A Feast registry holding the project's views (`feast apply`
    /// writes it): every view of `project` in it is routed by its
    /// routing tag, its tables provisioned, as if a FeatureView of this
    /// store described it. A FeatureView of the same Feast name overrides
    /// the registry's view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistrySpec>,
}

fn default_refresh_seconds() -> i32 {
    60
}

/// Where the operator reads the project's Feast registry: exactly one of
/// `remote` or `sql`. Secrets are read from the store's namespace only.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.remote) != has(self.sql)").message("registry takes exactly one of remote or sql"))]
pub struct RegistrySpec {
    /// Feast's registry server (`feast serve_registry`, or the one the
    /// Feast operator deploys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteRegistrySpec>,
    /// A SQL registry (`registry_type: sql`): SQLite or PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<SqlRegistrySpec>,
    /// Seconds between two reads of the registry (default 60).
    #[serde(default = "default_refresh_seconds")]
    #[schemars(range(min = 5, max = 86400))]
    pub refresh_seconds: i32,
}

/// A Feast registry server.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRegistrySpec {
    /// `host:port` of its gRPC listener (e.g.
    /// `feast-example-registry.feast.svc.cluster.local:443`).
    #[schemars(regex(pattern = r"^[^\s/@]+:[0-9]{1,5}$"), length(min = 3, max = 260))]
    pub endpoint: String,
    /// Connect over TLS (Feast's `is_tls`).
    #[serde(default)]
    pub tls: bool,
    /// A Secret key holding the PEM CA the server's certificate is checked
    /// against (with `tls`); unset: the public web roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// A Secret key holding a bearer token sent with every call (a server
    /// with `auth` enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
}

/// A SQL registry; its SQLAlchemy URL (with its password) lives in a
/// Secret.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqlRegistrySpec {
    /// A Secret key holding the URL, as Feast's `registry.path`:
    /// `postgresql+psycopg://user:password@host:5432/db`, or
    /// `sqlite:///relative/registry.db` (relative to the operator's data
    /// directory for the namespace, like a SQLite backend's path).
    /// PostgreSQL TLS follows libpq's `sslmode` in the URL (`prefer` when
    /// absent; `require`, `verify-ca`, `verify-full`); the CA comes from
    /// `caSecretRef` (`sslrootcert=system` for the public roots; a file
    /// path is refused: it would name a file of the operator's).
    pub url_secret_ref: SecretKeyRef,
    /// A Secret key holding the PEM CA a PostgreSQL registry's certificate
    /// is checked against (`sslmode=verify-ca` or `verify-full`; with
    /// `require`, the chain is checked too, as libpq does with a CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// One backend of the store.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnlineStoreSpec {
    /// Backend name, unique in the store; routing tags may name it.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub name: String,
    /// Backend type.
    #[serde(rename = "type")]
    pub backend_type: BackendType,
    /// Feast's configuration for this store type (e.g. `hosts`, `keyspace`
    /// for cassandra; `project_id`, `instance` for bigtable), without secrets.
    #[serde(default)]
    #[schemars(schema_with = "free_form_object")]
    pub conf: serde_json::Value,
    /// Secrets the backend needs, from Secrets in the store's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsSpec>,
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Secret references for a backend's credentials.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret_ref: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

fn default_replicas() -> i32 {
    1
}

fn default_port() -> i32 {
    6566
}

/// A DNS-1123 subdomain: what Kubernetes requires of a Secret's or a
/// ServiceAccount's name.
const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// The proxy the operator runs for this store: a Deployment and a Service
/// named `<store>-proxy`, and with the fields below a
/// HorizontalPodAutoscaler, a PodDisruptionBudget and a NetworkPolicy of
/// the same name. Every field but `enabled` is optional; an unset field
/// leaves the Kubernetes or proxy default.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// Create the proxy Deployment and Service.
    #[serde(default)]
    pub enabled: bool,
    /// Proxy image; defaults to the operator's configured image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// When the kubelet pulls the image; unset: Kubernetes' default
    /// (`Always` for a `:latest` tag, else `IfNotPresent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Secrets (of type `kubernetes.io/dockerconfigjson`, in the store's
    /// namespace) the kubelet pulls the image with, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(regex(pattern = DNS_SUBDOMAIN), length(min = 1, max = 253)))]
    pub image_pull_secrets: Vec<String>,
    /// ServiceAccount the proxy Pods run as, in the store's namespace;
    /// unset: the namespace's `default`. Its token is mounted only with
    /// `auth.tokenReview` (the proxy then calls the TokenReview API, so the
    /// account needs the `system:auth-delegator` ClusterRole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_SUBDOMAIN), length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// Pods when `autoscaling` is unset (with it, the HorizontalPodAutoscaler
    /// owns the count and this is ignored).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// HTTP port (Feast's feature server port by default): the container
    /// port and Service port named `http`.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Also serve Feast's gRPC ServingService on this port
    /// (`--grpc-listen`): a container port and Service port named `grpc`.
    /// Must differ from `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub grpc_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Per-request and per-connection bounds of the proxy; each unset field
    /// keeps the proxy's own default (the matching `hos-proxy serve` flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ProxyLimits>,
    /// Scale the proxy on CPU with an autoscaling/v2
    /// HorizontalPodAutoscaler named like the Deployment; the Deployment
    /// then carries no replica count. Removing it deletes the autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<ProxyAutoscaling>,
    /// Node labels the proxy Pods must run on (the Pod's `nodeSelector`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the proxy Pods tolerate (the Pod's `tolerations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
    /// The Pod's `affinity` (node affinity, pod affinity and anti-affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// The Pod's `topologySpreadConstraints`; a constraint without
    /// `labelSelector` gets the proxy Pods' selector labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Extra labels on the proxy Pods. The selector labels
    /// (`app.kubernetes.io/name`, `app.kubernetes.io/managed-by`) and keys
    /// under `hybrid-online-store.io/` are the operator's and are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub pod_labels: BTreeMap<String, String>,
    /// Extra annotations on the proxy Pods. Keys under
    /// `hybrid-online-store.io/` and the AppArmor and seccomp annotations
    /// (which would loosen the Pod's sandbox) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub pod_annotations: BTreeMap<String, String>,
    /// Extra environment variables of the proxy container (e.g. `RUST_LOG`).
    /// Names starting with `HOS_` are refused: they are the proxy's
    /// settings, which the operator sets from this spec as flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,
    /// A policy/v1 PodDisruptionBudget over the proxy Pods; `{}` means
    /// `maxUnavailable: 1`. A budget that would allow no eviction at the
    /// proxy's smallest replica count (which blocks node drains) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<ProxyDisruptionBudget>,
    /// A networking.k8s.io/v1 NetworkPolicy letting only the selected Pods
    /// reach the proxy, on its HTTP and gRPC ports only (nothing else of
    /// the Pods is reachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<ProxyNetworkPolicy>,
    /// Client authentication. Unset: the proxy serves anyone who reaches
    /// it (the store then has `ProxyAuth=False`, reason `Unauthenticated`,
    /// and a Warning event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ProxyAuth>,
    /// Serve HTTP and gRPC over TLS with the certificate of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ProxyTls>,
}

/// When the kubelet pulls the proxy image.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    /// The Container field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

fn default_min_replicas() -> i32 {
    1
}

fn default_cpu_target() -> i32 {
    80
}

/// CPU-based autoscaling of the proxy (an autoscaling/v2
/// HorizontalPodAutoscaler). The proxy container needs a CPU request
/// (`resources.requests.cpu`, or a namespace LimitRange default) for the
/// utilization to be measured.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed maxReplicas"))]
pub struct ProxyAutoscaling {
    /// Fewest Pods (default 1).
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most Pods; at least `minReplicas`.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU use the autoscaler aims at, in percent of the Pods' CPU
    /// request (default 80).
    #[serde(default = "default_cpu_target")]
    #[serde(rename = "targetCPUUtilizationPercentage")]
    #[schemars(range(min = 1, max = 1000))]
    pub target_cpu_utilization_percentage: i32,
}

/// How many proxy Pods voluntary disruptions (node drains) may take down at
/// once: at most one of the two fields, each a number or a percentage
/// (`"25%"`); neither: `maxUnavailable: 1`.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.minAvailable) && has(self.maxUnavailable))").message("podDisruptionBudget takes minAvailable or maxUnavailable, not both"))]
pub struct ProxyDisruptionBudget {
    /// Pods that must stay available (a number, or a percentage of the
    /// desired Pods rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,
    /// Pods that may be unavailable (a number, or a percentage of the
    /// desired Pods rounded up); at least 1 or 1%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// Who may connect to the proxy. Both selectors set: the selected Pods in
/// the selected namespaces; `allowedPods` only: those Pods of the store's
/// namespace; `allowedNamespaces` only: every Pod of those namespaces;
/// neither: every Pod of the store's namespace. An empty selector (`{}`)
/// selects everything of its kind.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyNetworkPolicy {
    /// Namespaces (by their labels, e.g.
    /// `kubernetes.io/metadata.name: ml-serving`) whose Pods may connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<LabelSelector>,
    /// Pods (by their labels) that may connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_pods: Option<LabelSelector>,
}

fn default_principals_key() -> String {
    "principals.yaml".to_string()
}

/// Bearer-token authentication of the proxy's clients (HTTP and gRPC).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyAuth {
    /// Secret (in the store's namespace) holding the proxy's principals
    /// file: tokens (or their SHA-256), users, groups, and the projects,
    /// teams and access of each. Mounted read-only and passed as
    /// `--auth-config`; the proxy re-reads it when the Secret changes.
    #[schemars(regex(pattern = DNS_SUBDOMAIN), length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of the Secret holding the file (default `principals.yaml`).
    #[serde(default = "default_principals_key")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(min = 1, max = 253))]
    pub key: String,
    /// Also accept Kubernetes tokens (e.g. ServiceAccount tokens) not in
    /// the file, checked with a TokenReview (`--auth-token-review`) and
    /// matched to a principal by user or group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_review: Option<ProxyTokenReview>,
}

/// TokenReview settings.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyTokenReview {
    /// Audiences a reviewed token must be valid for (`--auth-audience`,
    /// one flag each); none: the API server's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(regex(pattern = r"^[^,\s]+$"), length(min = 1, max = 253))
    )]
    pub audiences: Vec<String>,
}

/// TLS for the proxy's listeners.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyTls {
    /// A `kubernetes.io/tls` Secret in the store's namespace (keys
    /// `tls.crt` and `tls.key`, e.g. written by cert-manager). Mounted
    /// read-only and passed as `--tls-cert` and `--tls-key`; a renewed
    /// certificate is served without a restart.
    #[schemars(regex(pattern = DNS_SUBDOMAIN), length(min = 1, max = 253))]
    pub secret_name: String,
}

/// Bounds that keep one client or team from exhausting a shared proxy. Each
/// field is passed as the `hos-proxy serve` flag of the same name; an unset
/// field passes nothing, so the proxy's default applies. The ranges refuse
/// values that would switch a bound off (0) or make it meaningless.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyLimits {
    /// Largest request body in bytes, also the largest gRPC message; larger
    /// bodies get 413 before they are buffered (`--max-body-bytes`,
    /// default 4194304 = 4 MiB; at most 1 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_073_741_824))]
    pub max_body_bytes: Option<i32>,
    /// Most entity rows per request; more get 413 (`--max-entity-rows`,
    /// default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_entity_rows: Option<i32>,
    /// Most feature columns per request, feature services expanded; more
    /// get 413 (`--max-features`, default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_features: Option<i32>,
    /// Most cells (entity rows x feature columns) one read or write may
    /// touch; more get 413, which also bounds the response size
    /// (`--max-cells`, default 200000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000_000))]
    pub max_cells: Option<i32>,
    /// Longest string or bytes entity key value, in bytes; longer get 413
    /// (`--max-key-bytes`, default 4096; at most 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_048_576))]
    pub max_key_bytes: Option<i32>,
    /// Feature requests in flight in the whole proxy (HTTP and gRPC); more
    /// are shed at once with 503 and `Retry-After` (`--max-in-flight`,
    /// default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_in_flight: Option<i32>,
    /// Feature requests in flight per principal (per client address without
    /// authentication); more get 429, so one team cannot take every slot
    /// (`--max-in-flight-per-principal`, default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_in_flight_per_principal: Option<i32>,
    /// Milliseconds a feature request may take, body upload included; longer
    /// get 504 (`--request-timeout-ms`, default 30000; at most one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3_600_000))]
    pub request_timeout_ms: Option<i32>,
    /// Milliseconds a client has to send a request's headers (and finish a
    /// TLS handshake) before its connection is closed
    /// (`--header-read-timeout-ms`, default 10000; at most 10 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600_000))]
    pub header_read_timeout_ms: Option<i32>,
    /// Seconds a connection may stay open with nothing in flight and no
    /// bytes moving before it is closed (`--idle-timeout-seconds`,
    /// default 30; at most 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub idle_timeout_seconds: Option<i32>,
    /// Client connections open at once per listener; more are closed at
    /// accept (`--max-connections`, default 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_connections: Option<i32>,
    /// Concurrent streams on one HTTP/2 (gRPC) connection
    /// (`--http2-max-streams`, default 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000))]
    pub http2_max_streams: Option<i32>,
    /// How far past the proxy's clock a written event or created time may
    /// be, in seconds; later ones get 422 (`--max-event-time-skew-seconds`,
    /// default 86400; 0: no future times; at most one year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31_536_000))]
    pub max_event_time_skew_seconds: Option<i32>,
}

/// Observed state of a store.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HybridOnlineStoreStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `BackendsReachable`, `Routed`, and `RegistryRead` with
    /// `spec.registry`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Number of backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<i32>,
    /// Number of feature views routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_views: Option<i32>,
    /// Views routed to each backend.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub views_per_backend: BTreeMap<String, i32>,
    /// Name of the routing ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_config_map: Option<String>,
    /// With `dryRun`: every change the operator would make, one per line
    /// (`create <table> ... for view <v>`, `route <v>: <from> -> <to>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<String>,
    /// The proxy, while `spec.proxy.enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyStatus>,
    /// The registry, while `spec.registry` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryStatus>,
}

/// The last read of the store's Feast registry.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatus {
    /// Where the registry is, without credentials (`grpc://host:port`,
    /// `postgresql://user:***@host/db`, `sqlite:///path`).
    pub location: String,
    /// Whether the last read succeeded.
    pub ok: bool,
    /// Why the last read failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the registry was last read successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_read_time: Option<Time>,
    /// Views of the project in the last successful read.
    #[serde(default)]
    pub views: i32,
    /// Their names, sorted (the first 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub view_names: Vec<String>,
}

/// Where clients reach a store's proxy and how many of its Pods are ready.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatus {
    /// URL of the HTTP API in the cluster (Feast's `remote` online store
    /// `path`): `http://<store>-proxy.<namespace>.svc:<port>`, `https://`
    /// with `tls`.
    pub endpoint: String,
    /// `<store>-proxy.<namespace>.svc:<grpcPort>` for gRPC clients, with
    /// `grpcPort`.
    // Absent when unset: the operator applies its whole status
    // (server-side apply), so a field it leaves out is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_endpoint: Option<String>,
    /// Ready Pods of the proxy Deployment when the store was last
    /// reconciled (every 30 s until all are ready).
    #[serde(default)]
    pub ready_replicas: i32,
    /// Digest of the routing table the operator last wrote to the routing
    /// ConfigMap, as the proxy computes it (`RoutingTable::digest`: the
    /// same routes give the same digest), to compare with each replica's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_routing_digest: Option<String>,
    /// Ready proxy Pods whose `/ready` reported `expectedRoutingDigest`.
    #[serde(default)]
    pub up_to_date_replicas: i32,
    /// `<upToDateReplicas>/<ready Pods asked>`: the `Routing` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<String>,
    /// The routing digest each ready proxy Pod serves, read from its
    /// `/ready` (by Pod name; at most 50 entries, the first 50 Pods by
    /// name; `upToDateReplicas` counts them all). A Pod whose `/ready`
    /// did not answer within 1 s has no `routingDigest`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub replicas: Vec<ProxyReplica>,
}

/// One ready proxy Pod and the routing table version it serves.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyReplica {
    /// The Pod's name.
    pub pod: String,
    /// `routing_digest` of the Pod's `/ready`; absent when it could not be
    /// read (see `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_digest: Option<String>,
    /// Why the digest could not be read (no answer, not ready, no digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A Feast FeatureView served by a HybridOnlineStore.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "hybrid-online-store.io",
    version = "v1alpha1",
    kind = "FeatureView",
    plural = "featureviews",
    shortname = "fv",
    namespaced,
    status = "FeatureViewStatus",
    printcolumn(name = "Feast name", type_ = "string", json_path = ".spec.name"),
    printcolumn(name = "Store", type_ = "string", json_path = ".spec.storeRef"),
    printcolumn(name = "Backend", type_ = "string", json_path = ".status.backend"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FeatureViewSpec {
    /// Name of the HybridOnlineStore (same namespace) serving this view.
    #[schemars(length(min = 1, max = 253))]
    pub store_ref: String,
    /// Feast name of the view (may hold `_`, which object names cannot);
    /// defaults to the object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"),
        length(min = 1, max = 128)
    )]
    pub name: Option<String>,
    /// Entities; empty for an entityless view.
    #[serde(default)]
    pub entities: Vec<EntitySpec>,
    /// Time to live, e.g. `86400s`, `24h`, `1d`; absent or `0s` = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[smhdw]?)+$"))]
    pub ttl: Option<String>,
    /// Features; names are unique (a list-map keyed by name).
    #[schemars(length(max = 2048), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub schema: Vec<FieldSpec>,
    /// Serve the view online.
    #[serde(default = "yes")]
    pub online: bool,
    /// Batch source (informational for online serving).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceDef>,
    /// Tags; the store's routing tag selects the backend.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// An entity of a view.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntitySpec {
    #[schemars(length(min = 1))]
    pub name: String,
    /// Join keys; default: the entity name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub join_keys: Vec<String>,
    /// Value type of the join keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<Dtype>,
}

/// A feature.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldSpec {
    #[schemars(regex(pattern = r"^[^:\s]+$"), length(min = 1, max = 256))]
    pub name: String,
    pub dtype: Dtype,
}

/// Observed state of a view.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureViewStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Routed`, `TablesProvisioned`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Backend the view routes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Tables provisioned for the view in its backend.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// With the store's `dryRun`: what reconciling this view would change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<ViewPlan>,
    /// A live move to another backend, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,
}

/// Progress of a live move between backends. Phases: `DualWrite` (writes
/// to both, reads from `from`), `Backfill` (copying `from`'s rows to `to`,
/// resumable from `cursor`), `Verify` (comparing `to` with `from`; a failed
/// verification goes back to `Backfill`), `Stuck` (verification failed too
/// often: reads stay on `from`, writes go to both, retried later),
/// `Switched` (reads from `to`, writes to both), `Retiring` (`to` only),
/// then the move ends: `from`'s tables go per the teardown policy.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// Backend the view moves away from (reads stay there until `Switched`).
    pub from: String,
    /// Backend the view moves to.
    pub to: String,
    /// `DualWrite`, `Backfill`, `Verify`, `Stuck`, `Switched` or `Retiring`.
    pub phase: MigrationPhase,
    /// RFC 3339 time the phase began.
    pub phase_since: String,
    /// Entity keys of `from` examined so far by the backfill (all passes).
    #[serde(default)]
    pub scanned_keys: i64,
    /// Rows written to `to` by the backfill (missing or older there).
    #[serde(default)]
    pub copied_rows: i64,
    /// Backfill pass: 0 is the copy; 1 a second pass catching rows changed
    /// during the first; each failed verification adds one more.
    #[serde(default)]
    pub pass: i32,
    /// Where the backfill or the verification resumes (hex of the backend's
    /// key cursor).
    // Absent when unset (here and below): the operator applies its whole
    // status (server-side apply), so a finished pass leaves no cursor
    // behind for the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Why the backfill (and so the verification) was skipped, if it was
    /// (e.g. Bigtable sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The verification of the copy: in progress during `Verify`, then the
    /// figures of the last one (the one that let reads switch, or the one
    /// that failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<MigrationVerification>,
}

/// The phase of a live move, in order (see [`MigrationStatus`]).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
pub enum MigrationPhase {
    /// Writes go to both backends, reads stay on `from`; waits the settle
    /// time so every proxy writes to both before the copy starts.
    #[default]
    DualWrite,
    /// Copying `from`'s rows to `to`.
    Backfill,
    /// Comparing `to` with `from`.
    Verify,
    /// Verification failed too often: reads stay on `from`, retried later.
    Stuck,
    /// Reads from `to`, writes to both.
    Switched,
    /// `to` only; `from`'s tables go per the teardown policy next.
    Retiring,
}

impl MigrationPhase {
    /// The name written in `status.migration.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationPhase::DualWrite => "DualWrite",
            MigrationPhase::Backfill => "Backfill",
            MigrationPhase::Verify => "Verify",
            MigrationPhase::Stuck => "Stuck",
            MigrationPhase::Switched => "Switched",
            MigrationPhase::Retiring => "Retiring",
        }
    }
}

impl std::fmt::Display for MigrationPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What verifying a live move's copy found: every entity key `from` lists
/// is looked up in `to` (the counts), and a sample of keys is compared row
/// against row: `to` must hold the same or a newer event time, and the same
/// values when the event times are equal (compared at the coarser of the
/// two backends' timestamp precisions). Reads switch to `to` only after a
/// verification with no missing key and no mismatch.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationVerification {
    /// Which verification this is, from 1; after `maxAttempts` failed ones
    /// in a row the move is `Stuck`.
    pub attempt: i32,
    /// Failed verifications allowed in a row before the move is `Stuck`.
    pub max_attempts: i32,
    /// `Running`, `Passed` or `Failed`.
    pub result: String,
    /// Entity keys `from` lists that still had a row when read.
    #[serde(default)]
    pub source_keys: i64,
    /// Of `sourceKeys`, the keys `to` holds a row for.
    #[serde(default)]
    pub destination_keys: i64,
    /// Keys whose rows were read from both backends and compared (event
    /// time and values).
    #[serde(default)]
    pub sampled_keys: i64,
    /// Sampled keys where `to` holds the same or a newer event time, and
    /// the same values at an equal event time.
    #[serde(default)]
    pub verified_keys: i64,
    /// Keys where `to` is behind `from`: the keys missing there
    /// (`sourceKeys - destinationKeys`) plus the sampled keys not verified
    /// (an older event time there, or other values at the same event
    /// time). Each was read again from `to` after a short delay first, so a
    /// write still in flight to both backends is not a mismatch.
    #[serde(default)]
    pub mismatches: i64,
    /// Keys `to` looked behind on when first read (writes in flight to
    /// both backends, mostly), read from it again before they counted.
    #[serde(default)]
    pub rechecked_keys: i64,
    /// A few of the mismatches, for a human: the entity key (hex) and how
    /// the rows differ.
    #[serde(default)]
    pub examples: Vec<String>,
}

/// The changes reconciling a FeatureView would make (dry run).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ViewPlan {
    /// Storage objects to create: `<kind> <name> (<location>)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create: Vec<String>,
    /// Backend the view is served from now (none: not yet routed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_from: Option<String>,
    /// Backend the view would be served from.
    pub route_to: String,
}

/// The CRD documents `crdgen` writes, as (file name, YAML).
pub fn crd_documents() -> Result<Vec<(&'static str, String)>, crate::yaml::WriteError> {
    use kube::CustomResourceExt;
    Ok(vec![
        (
            "hybridonlinestores.yaml",
            crate::yaml::to_string(&HybridOnlineStore::crd())?,
        ),
        (
            "featureviews.yaml",
            crate::yaml::to_string(&FeatureView::crd())?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `spec.registry`: one kind, a default refresh, and Secret references
    /// that cannot name another namespace (the type has no such field: a
    /// `namespace` key is refused here, and the CRD schema has none, so the
    /// API server prunes it).
    #[test]
    fn registry_spec_parses_and_secret_refs_stay_in_the_namespace() {
        let r: RegistrySpec = serde_json::from_value(serde_json::json!({
            "remote": {"endpoint": "registry.feast.svc:6570", "tokenSecretRef": {"name": "t", "key": "token"}}
        }))
        .unwrap();
        assert_eq!(r.refresh_seconds, 60);
        let remote = r.remote.unwrap();
        assert!(!remote.tls);
        assert_eq!(remote.token_secret_ref.unwrap().key, "token");
        let r: RegistrySpec = serde_json::from_value(serde_json::json!({
            "sql": {"urlSecretRef": {"name": "reg", "key": "url"}}, "refreshSeconds": 5
        }))
        .unwrap();
        assert_eq!(r.sql.unwrap().url_secret_ref.name, "reg");
        assert_eq!(r.refresh_seconds, 5);
        let other_ns = serde_json::json!({
            "sql": {"urlSecretRef": {"name": "reg", "key": "url", "namespace": "kube-system"}}
        });
        let e = serde_json::from_value::<RegistrySpec>(other_ns).unwrap_err();
        assert!(e.to_string().contains("namespace"), "{e}");

        use kube::CustomResourceExt;
        let crd = serde_json::to_value(HybridOnlineStore::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["registry"];
        let rules: Vec<&str> = spec["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap())
            .collect();
        assert_eq!(rules, ["has(self.remote) != has(self.sql)"]);
        assert_eq!(
            spec["properties"]["refreshSeconds"]["minimum"].as_f64(),
            Some(5.0)
        );
        for r in [
            &spec["properties"]["sql"]["properties"]["urlSecretRef"],
            &spec["properties"]["remote"]["properties"]["caSecretRef"],
            &spec["properties"]["remote"]["properties"]["tokenSecretRef"],
        ] {
            let mut keys: Vec<&String> = r["properties"].as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(keys, ["key", "name"], "{r}");
        }
    }

    /// The phases are written as the strings the status always had, so a
    /// move in progress when the operator is upgraded reads back; anything
    /// else is refused (the CRD's enum refuses it at the API server too).
    #[test]
    fn migration_phases_keep_their_names() {
        let all = [
            MigrationPhase::DualWrite,
            MigrationPhase::Backfill,
            MigrationPhase::Verify,
            MigrationPhase::Stuck,
            MigrationPhase::Switched,
            MigrationPhase::Retiring,
        ];
        for p in all {
            let text = serde_json::to_string(&p).unwrap();
            assert_eq!(text, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<MigrationPhase>(&text).unwrap(), p);
        }
        let old = serde_json::json!({"from": "a", "to": "b", "phase": "Switched", "phaseSince": "2026-12-06T00:00:00Z"});
        let m: MigrationStatus = serde_json::from_value(old).unwrap();
        assert_eq!(m.phase, MigrationPhase::Switched);
        assert!(serde_json::from_str::<MigrationPhase>("\"switched\"").is_err());
    }
}
