#!/usr/bin/env bash
# Checks the generated CRDs against a real API server (KUBECONFIG set):
# they install, the examples validate, and invalid specs are rejected with
# the schema/CEL message. Called by tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "FAIL: $*" >&2; exit 1; }

kubectl apply --dry-run=client -f crds/
kubectl apply --dry-run=server -f crds/
kubectl apply -f crds/
kubectl wait --for=condition=Established \
  crd/hybridonlinestores.hybrid-online-store.io crd/featureviews.hybrid-online-store.io --timeout=60s
kubectl apply --dry-run=server -f examples/

# expect_rejected NAME MESSAGE: the manifest on stdin must be refused with MESSAGE.
expect_rejected() {
  local name=$1 message=$2 out
  if out=$(kubectl apply --dry-run=server -f - 2>&1); then
    fail "$name: accepted, expected rejection"
  fi
  grep -qF "$message" <<<"$out" || fail "$name: rejected without \"$message\": $out"
  echo "rejected as expected: $name"
}

expect_rejected "duplicate backend names" "onlineStores names must be unique" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: dup, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
    - {name: a, type: redis, conf: {}}
YAML

expect_rejected "defaultStore naming nothing" "defaultStore must name one of onlineStores" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: nodefault, namespace: default}
spec:
  project: p
  defaultStore: nowhere
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
YAML

expect_rejected "proxy limit of zero" "spec.proxy.limits.maxBodyBytes" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: zerolimit, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
  proxy: {enabled: true, limits: {maxBodyBytes: 0}}
YAML

expect_rejected "negative idle timeout" "spec.proxy.limits.idleTimeoutSeconds" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: negidle, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
  proxy: {enabled: true, limits: {idleTimeoutSeconds: -1}}
YAML

expect_rejected "event time skew over a year" "spec.proxy.limits.maxEventTimeSkewSeconds" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: bigskew, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
  proxy: {enabled: true, limits: {maxEventTimeSkewSeconds: 31536001}}
YAML

expect_rejected "autoscaling minReplicas over maxReplicas" "autoscaling.minReplicas must not exceed maxReplicas" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: badhpa, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
  proxy: {enabled: true, autoscaling: {minReplicas: 5, maxReplicas: 2}}
YAML

expect_rejected "both disruption budget fields" "podDisruptionBudget takes minAvailable or maxUnavailable, not both" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: badpdb, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
  proxy: {enabled: true, podDisruptionBudget: {minAvailable: 1, maxUnavailable: 1}}
YAML

expect_rejected "TLS Secret name climbing out" "spec.proxy.tls.secretName" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: badtls, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
  proxy: {enabled: true, tls: {secretName: ../kube-system}}
YAML

expect_rejected "unknown image pull policy" "spec.proxy.imagePullPolicy" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: badpull, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
  proxy: {enabled: true, imagePullPolicy: Sometimes}
YAML

expect_rejected "unknown backend type" "Unsupported value: \"mongodb\"" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: badtype, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: mongodb, conf: {}}
YAML

expect_rejected "registry with both kinds" "registry takes exactly one of remote or sql" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: tworegistries, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
  registry:
    remote: {endpoint: "registry.feast.svc:6570"}
    sql: {urlSecretRef: {name: reg, key: url}}
YAML

expect_rejected "registry with neither kind" "registry takes exactly one of remote or sql" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: noregistry, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
  registry: {refreshSeconds: 60}
YAML

expect_rejected "registry refreshed too often" "spec.registry.refreshSeconds" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: hotregistry, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
  registry: {remote: {endpoint: "registry.feast.svc:6570"}, refreshSeconds: 1}
YAML

expect_rejected "registry endpoint with a scheme" "spec.registry.remote.endpoint" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata: {name: schemeregistry, namespace: default}
spec:
  project: p
  onlineStores:
    - {name: a, type: sqlite, conf: {}}
  registry: {remote: {endpoint: "http://registry.feast.svc:6570"}}
YAML

expect_rejected "bad dtype" "spec.schema[0].dtype" <<'YAML'
apiVersion: hybrid-online-store.io/v1alpha1
kind: FeatureView
metadata: {name: baddtype, namespace: default}
spec:
  storeRef: s
  schema:
    - {name: a, dtype: "int64 int64"}
YAML
echo "CRD checks passed"
