#!/usr/bin/env bash
# Checks the Helm chart (charts/hybrid-online-store) offline and against a
# real kube-apiserver (KUBECONFIG, e.g. from tests/scripts/k8s-up.sh):
#
#   offline  chart CRDs identical to crds/; helm lint (and --strict) in
#            cluster-wide and namespaced modes; helm template of both modes;
#            kubernetes-validate --strict of every rendered object; the
#            rendered RBAC is exactly the expected least-privilege rule set;
#            values.schema.json rejects wrong values with a clear message;
#            observability: with --api-versions monitoring.coreos.com/v1 and
#            the serviceMonitor/prometheusRule/grafanaDashboard switches,
#            tests/helm/observability.py checks the ServiceMonitors select
#            the operator's and the proxies' Services, and that every
#            dashboard query and alert expression uses metrics and labels
#            that proxy/src/metrics.rs and operator/src/metrics.rs register;
#            the API gates and values; promtool (tests/scripts/promtool-build.sh)
#            checks the rules and the dashboard queries and runs
#            tests/helm/alerts.test.yaml.
#   server   kubectl apply --dry-run=server of both renders (no PodSecurity
#            "restricted" warning); then, per mode, helm install creates
#            every object; a token of the chart's ServiceAccount drives the
#            real hos-operator binary against a HybridOnlineStore and a
#            FeatureView on an SQLite backend until both are Ready (the
#            chart's RBAC is enough); kubectl auth can-i checks what the
#            ServiceAccount may and may not do, and `can-i --list` per
#            namespace (watched, other, release) is exactly the chart's rule
#            set in both modes; helm upgrade and uninstall. With the
#            Prometheus Operator CRDs (tests/scripts/prometheus-crds.sh):
#            the monitoring objects pass --validate=strict, helm install
#            creates them, the proxies' ServiceMonitor selects the proxy
#            Service the operator made, and the live /metrics of the
#            operator and of a hos-proxy (quickstart repo) match the
#            families, types and labels derived from their source.
#
# Usage: KUBECONFIG=... tests/helm/check.sh     (called by tests/run.sh)
#
# Env:   HOS_OPERATOR_BIN  operator binary (default: target/debug/hos-operator)
#        HOS_PROXY_BIN     proxy binary (default: target/debug/hos-proxy)
#        HOS_CACHE         cache root (default: $HOME/.cache/hybrid-online-store)
#        HELM_BIN_DIR      directory holding helm (default: built and cached by
#                          tests/scripts/helm-build.sh)
#        KUBE_VALIDATE_VERSION  kubernetes-validate from PyPI (default: 1.36.0)
#        KUBE_VALIDATE_K8S      Kubernetes schema version (default: 1.36.0)
#        PROMTOOL_BIN_DIR       directory holding promtool (default: built and
#                               cached by tests/scripts/promtool-build.sh)
#        HOS_HELM_OFFLINE=1     only the offline checks (no KUBECONFIG needed)
#        HOS_HELM_KEEP=1        keep namespaces, release and logs (debugging)
#
# Prints one PASS/FAIL line per check and exits non-zero when any failed.
# Everything it starts (the operator) is stopped by pid; the releases and
# namespaces it creates are removed at the end.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT="$PWD"

CHART="${ROOT}/charts/hybrid-online-store"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
OPERATOR_BIN="${HOS_OPERATOR_BIN:-${ROOT}/target/debug/hos-operator}"
PROXY_BIN="${HOS_PROXY_BIN:-${ROOT}/target/debug/hos-proxy}"
KV_VERSION="${KUBE_VALIDATE_VERSION:-1.36.0}"
KV_K8S="${KUBE_VALIDATE_K8S:-1.36.0}"
KUBECTL="${KUBECTL:-kubectl}"

log() { echo "helm-check: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

FAILED=()
PASSED=0
pass() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*"; FAILED+=("$*"); }
indent() { sed 's/^/    /'; }
# check NAME CMD...: PASS when CMD succeeds, else FAIL with its output.
check() {
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then
    pass "${name}"
  else
    fail "${name}"
    indent <<<"${out}" | tail -n 30
  fi
}

WORK="$(mktemp -d -t hos-helm-XXXXXX)"
OPERATOR_PID=""
OPERATOR_RC=""
PROXY_PID=""
NAMESPACES=()
RELEASES=() # "release namespace" pairs

# ---- tools -----------------------------------------------------------------
HELM_BIN_DIR="${HELM_BIN_DIR:-$("${ROOT}/tests/scripts/helm-build.sh" | tail -n 1)}"
HELM="${HELM_BIN_DIR}/helm"
[[ -x "${HELM}" ]] || die "helm not found in ${HELM_BIN_DIR}"
# Keep helm's own state (repositories, cache) out of the user's home.
export HELM_CACHE_HOME="${WORK}/helm/cache" HELM_CONFIG_HOME="${WORK}/helm/config" \
  HELM_DATA_HOME="${WORK}/helm/data"

KV_VENV="${CACHE_ROOT}/kubernetes-validate-${KV_VERSION}"
if [[ ! -f "${KV_VENV}/.installed" ]]; then
  log "installing kubernetes-validate ${KV_VERSION} into ${KV_VENV}"
  rm -rf "${KV_VENV}"
  python3 -m venv "${KV_VENV}" >&2 || die "python3 -m venv failed"
  "${KV_VENV}/bin/pip" install --quiet "kubernetes-validate==${KV_VERSION}" >&2 \
    || die "pip install kubernetes-validate==${KV_VERSION} failed"
  touch "${KV_VENV}/.installed"
fi
KV="${KV_VENV}/bin/kubernetes-validate"
PY="${KV_VENV}/bin/python" # has PyYAML (a kubernetes-validate dependency)

# ---- cleanup -----------------------------------------------------------------
# alive PID: the process runs (an exited child stays a zombie until waited for).
alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != "Z" ]]
}
stop_operator() {
  [[ -n "${OPERATOR_PID}" ]] || return 0
  if alive "${OPERATOR_PID}"; then
    kill -TERM "${OPERATOR_PID}" 2>/dev/null || true
    local i
    for ((i = 0; i < 150; i++)); do
      alive "${OPERATOR_PID}" || break
      sleep 0.1
    done
    if alive "${OPERATOR_PID}"; then
      log "operator (pid ${OPERATOR_PID}) ignored SIGTERM for 15 s; sending SIGKILL"
      kill -KILL "${OPERATOR_PID}" 2>/dev/null || true
    fi
  fi
  wait "${OPERATOR_PID}" 2>/dev/null
  OPERATOR_RC=$?
  OPERATOR_PID=""
}

stop_proxy() {
  [[ -n "${PROXY_PID}" ]] || return 0
  if alive "${PROXY_PID}"; then
    kill -TERM "${PROXY_PID}" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
      alive "${PROXY_PID}" || break
      sleep 0.1
    done
    alive "${PROXY_PID}" && kill -KILL "${PROXY_PID}" 2>/dev/null
  fi
  wait "${PROXY_PID}" 2>/dev/null
  PROXY_PID=""
}

cleanup() {
  local rc=$?
  stop_operator
  stop_proxy
  if [[ -z "${HOS_HELM_KEEP:-}" ]]; then
    local pair ns
    for pair in ${RELEASES[@]+"${RELEASES[@]}"}; do
      [[ -n "${pair}" ]] || continue
      "${HELM}" uninstall "${pair%% *}" -n "${pair#* }" >/dev/null 2>&1 || true
    done
    for ns in ${NAMESPACES[@]+"${NAMESPACES[@]}"}; do
      # Custom resources left behind (a failed run) would keep their
      # finalizers forever without the operator: drop them first.
      for kind in featureviews.hybrid-online-store.io hybridonlinestores.hybrid-online-store.io; do
        "${KUBECTL}" get "${kind}" -n "${ns}" -o name 2>/dev/null | while read -r obj; do
          "${KUBECTL}" patch -n "${ns}" "${obj}" --type=merge \
            -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
          "${KUBECTL}" delete -n "${ns}" "${obj}" --wait=false >/dev/null 2>&1 || true
        done
      done
      # Without a controller-manager a deleted namespace stays Terminating;
      # that is harmless for a throw-away API server.
      "${KUBECTL}" delete namespace "${ns}" --wait=false >/dev/null 2>&1 || true
    done
    rm -rf "${WORK}"
  else
    log "HOS_HELM_KEEP set: kept ${WORK}, namespaces ${NAMESPACES[*]:-none}"
  fi
  exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- offline checks ------------------------------------------------------------
echo "== offline chart checks (helm $("${HELM}" version --short), kubernetes-validate ${KV_VERSION})"

crds_in_sync() {
  local f rc=0
  for f in "${ROOT}"/crds/*.yaml; do
    cmp "${f}" "${CHART}/crds/$(basename "${f}")" || {
      echo "charts/hybrid-online-store/crds/$(basename "${f}") differs from crds/$(basename "${f}"); copy it: cp crds/*.yaml charts/hybrid-online-store/crds/"
      rc=1
    }
  done
  for f in "${CHART}"/crds/*; do
    [[ -f "${ROOT}/crds/$(basename "${f}")" ]] \
      || { echo "charts/hybrid-online-store/crds/$(basename "${f}") has no counterpart in crds/"; rc=1; }
  done
  return "${rc}"
}
check "chart crds/ byte-identical to crds/" crds_in_sync

check "helm lint (cluster-wide)" "${HELM}" lint "${CHART}"
check "helm lint --strict (cluster-wide)" "${HELM}" lint --strict "${CHART}"
check "helm lint --strict (namespaced)" "${HELM}" lint --strict "${CHART}" --set watchNamespace=team-a
check "helm lint --strict (serviceMonitor, 1 replica, json logs)" "${HELM}" lint --strict "${CHART}" \
  --set serviceMonitor.enabled=true --set replicas=1 --set logFormat=json

render() { # render OUT ARGS...: helm template into OUT
  local out="$1"
  shift
  "${HELM}" template hos "${CHART}" --namespace hos-system "$@" >"${out}"
}
check "helm template (cluster-wide)" render "${WORK}/cluster.yaml"
check "helm template (namespaced)" render "${WORK}/namespaced.yaml" --set watchNamespace=team-a
check "helm template (all options: serviceMonitor, prometheusRule, dashboard, CRDs, digest, extras)" render "${WORK}/full.yaml" \
  --include-crds --api-versions monitoring.coreos.com/v1 \
  --set serviceMonitor.enabled=true --set serviceMonitor.labels.release=prom \
  --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true \
  --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef \
  --set podDisruptionBudget.maxUnavailable=1 --set 'imagePullSecrets[0].name=regcred' \
  --set 'extraEnv[0].name=FOO' --set 'extraEnv[0].value=bar' \
  --set 'extraVolumes[0].name=data' --set 'extraVolumes[0].emptyDir.medium=Memory' \
  --set 'extraVolumeMounts[0].name=data' --set 'extraVolumeMounts[0].mountPath=/data' \
  --set 'tolerations[0].key=dedicated' --set 'tolerations[0].operator=Exists' \
  --set nodeSelector.kubernetes\\.io/os=linux --set priorityClassName=system-cluster-critical

# kubernetes-validate knows the built-in kinds; the Prometheus Operator's
# ServiceMonitor and PrometheusRule have no schema there (they are checked
# structurally below, and by the API server when its CRDs can be installed).
kube_validate() {
  local out rc
  out="$("${KV}" --strict --kubernetes-version "${KV_K8S}" "$1" 2>&1)"
  rc=$?
  echo "${out}"
  [[ ${rc} -eq 0 ]] || return 1
  ! grep -vE "Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1" <<<"${out}" \
    | grep -E '^(WARN|ERROR)'
}
for f in cluster namespaced full; do
  check "kubernetes-validate --strict (${f} render, Kubernetes ${KV_K8S})" kube_validate "${WORK}/${f}.yaml"
done

# Structural checks of the renders: kinds present, the ServiceMonitor selects
# the metrics Service's port, the pod runs with the restricted security
# context, POD_NAME/POD_NAMESPACE come from the downward API, probes hit
# /healthz and /readyz, and the RBAC is exactly the least-privilege set.
cat >"${WORK}/inspect.py" <<'PY'
import sys, yaml

path, mode = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
errors = []
def expect(cond, msg):
    if not cond:
        errors.append(msg)

RELEASE_NS = "hos-system"
want = {"Deployment", "ServiceAccount", "Service", "PodDisruptionBudget", "Role", "RoleBinding"}
if mode == "cluster":
    want |= {"ClusterRole", "ClusterRoleBinding"}
if mode == "full":
    want |= {"ServiceMonitor", "PrometheusRule", "ConfigMap", "CustomResourceDefinition", "ClusterRole",
             "ClusterRoleBinding"}
else:
    for k in ("ServiceMonitor", "PrometheusRule", "ConfigMap"):
        expect(k not in by_kind, f"{k} rendered by default")
for k in sorted(want):
    expect(k in by_kind, f"no {k} rendered")
if mode == "namespaced":
    expect("ClusterRole" not in by_kind and "ClusterRoleBinding" not in by_kind,
           "namespaced mode renders a ClusterRole/ClusterRoleBinding")

dep = by_kind["Deployment"][0]
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
sc = c.get("securityContext", {})
psc = pod.get("securityContext", {})
expect(sc.get("runAsNonRoot") is True, "container runAsNonRoot is not true")
expect(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
expect(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities.drop is not [ALL]")
expect(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "container seccompProfile is not RuntimeDefault")
expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccompProfile is not RuntimeDefault")
expect(dep["spec"]["replicas"] == 2, "default replicas is not 2")
env = {e["name"]: e for e in c.get("env", [])}
expect(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
       "POD_NAME is not from the downward API (metadata.name)")
expect(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
       "POD_NAMESPACE is not from the downward API (metadata.namespace)")
expect(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe is not /healthz")
expect(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe is not /readyz")
args = c.get("args", [])
expect(f"--lease-namespace={RELEASE_NS}" in args, "the Lease is not in the release namespace")
expect(any(a.startswith("--lease-name=") for a in args), "no --lease-name")
proxy_image = [a.split("=", 1)[1] for a in args if a.startswith("--proxy-image=")]
expect(proxy_image == [c["image"]], f"--proxy-image {proxy_image} is not the operator's image {c['image']}")
expect(("--namespace=team-a" in args) == (mode == "namespaced"), f"--namespace flag wrong for {mode} mode: {args}")
expect(pod["serviceAccountName"] == by_kind["ServiceAccount"][0]["metadata"]["name"],
       "the Deployment does not run as the chart's ServiceAccount")

svc = by_kind["Service"][0]
svc_port = svc["spec"]["ports"][0]
expect(svc_port["name"] == "metrics" and svc_port["targetPort"] == "metrics", "metrics Service port is not named metrics")
sel = dep["spec"]["selector"]["matchLabels"]
tpl_labels = dep["spec"]["template"]["metadata"]["labels"]
expect(all(tpl_labels.get(k) == v for k, v in sel.items()), "Deployment selector does not match its pod labels")
expect(all(tpl_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selector does not match the pods")
pdb = by_kind["PodDisruptionBudget"][0]
expect(all(tpl_labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()), "PDB selector does not match the pods")

if "ServiceMonitor" in by_kind:
    sm = [m for m in by_kind["ServiceMonitor"] if not m["metadata"]["name"].endswith("-proxies")][0]
    expect(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion is not monitoring.coreos.com/v1")
    expect(all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()),
           "ServiceMonitor selector does not match the metrics Service's labels")
    ep = sm["spec"]["endpoints"][0]
    expect(ep["port"] == svc_port["name"] and ep["path"] == "/metrics", "ServiceMonitor endpoint is not metrics /metrics")
    expect(sm["spec"]["namespaceSelector"]["matchNames"] == [RELEASE_NS], "ServiceMonitor namespaceSelector is not the release namespace")
    for m in by_kind["ServiceMonitor"]:
        expect(m["metadata"]["labels"].get("release") == "prom", f"serviceMonitor.labels not applied to {m['metadata']['name']}")

# RBAC: exactly these rules, nothing else, nowhere else.
CR = "hybrid-online-store.io"
main_rules = {
    (CR, "hybridonlinestores", None): {"get", "list", "watch", "patch"},
    (CR, "featureviews", None): {"get", "list", "watch", "patch"},
    (CR, "hybridonlinestores/status", None): {"patch"},
    (CR, "featureviews/status", None): {"patch"},
    (CR, "hybridonlinestores/finalizers", None): {"update"},
    ("", "configmaps", None): {"get", "list", "watch", "create", "patch"},
    ("", "secrets", None): {"get", "list", "watch"},
    ("", "services", None): {"get", "create", "patch", "delete"},
    ("apps", "deployments", None): {"get", "create", "patch", "delete"},
    ("autoscaling", "horizontalpodautoscalers", None): {"get", "create", "patch", "delete"},
    ("policy", "poddisruptionbudgets", None): {"get", "create", "patch", "delete"},
    ("networking.k8s.io", "networkpolicies", None): {"get", "create", "patch", "delete"},
    ("", "pods", None): {"list"},
    ("events.k8s.io", "events", None): {"create", "patch"},
}
def flatten(role):
    out = {}
    for r in role.get("rules", []):
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                names = tuple(r.get("resourceNames", [])) or None
                out.setdefault((g, res, names), set()).update(r.get("verbs", []))
        expect(not r.get("nonResourceURLs"), f"{role['metadata']['name']}: nonResourceURLs granted")
    return out
roles = by_kind.get("Role", []) + by_kind.get("ClusterRole", [])
for role in roles:
    for (g, res, names), verbs in flatten(role).items():
        expect("*" not in verbs and res != "*" and g != "*", f"{role['metadata']['name']}: wildcard in {g}/{res} {sorted(verbs)}")
        expect(g != "apiextensions.k8s.io", f"{role['metadata']['name']}: CRD access granted")
        if res == "secrets":
            expect(verbs <= {"get", "list", "watch"}, f"{role['metadata']['name']}: secrets write access {sorted(verbs)}")
lease = [r for r in by_kind.get("Role", []) if any(
    "leases" in rule.get("resources", []) for rule in r.get("rules", []))]
expect(len(lease) == 1, f"expected one Role granting leases, found {len(lease)}")
if lease:
    lr = lease[0]
    expect(lr["metadata"]["namespace"] == RELEASE_NS, "the Lease Role is not in the release namespace")
    got = flatten(lr)
    lease_name = [a.split("=", 1)[1] for a in args if a.startswith("--lease-name=")][0]
    expect(got == {("coordination.k8s.io", "leases", None): {"create"},
                   ("coordination.k8s.io", "leases", (lease_name,)): {"get", "update"}},
           f"lease Role rules differ: {got}")
main = [r for r in roles if r not in lease]
expect(len(main) == 1, f"expected one operator (Cluster)Role besides the Lease Role, found {len(main)}")
if main:
    m = main[0]
    got = flatten(m)
    expect(got == main_rules, "operator rules differ from the least-privilege set:\n  got  "
           + repr(sorted((k, sorted(v)) for k, v in got.items()))
           + "\n  want " + repr(sorted((k, sorted(v)) for k, v in main_rules.items())))
    if mode == "namespaced":
        expect(m["kind"] == "Role" and m["metadata"]["namespace"] == "team-a",
               "namespaced mode: the operator Role is not in the watched namespace")
    else:
        expect(m["kind"] == "ClusterRole", "cluster-wide mode: no ClusterRole")
bindings = by_kind.get("RoleBinding", []) + by_kind.get("ClusterRoleBinding", [])
sa = by_kind["ServiceAccount"][0]["metadata"]["name"]
for b in bindings:
    expect(b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": RELEASE_NS}],
           f"{b['metadata']['name']}: binds {b['subjects']}")
expect(len(bindings) == 2, f"expected 2 bindings, found {len(bindings)}")

for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY
for f in cluster namespaced full; do
  check "rendered objects: security context, downward API, probes, selectors, exact RBAC (${f})" \
    "${PY}" "${WORK}/inspect.py" "${WORK}/${f}.yaml" "${f}"
done

# expect_schema_error NAME MESSAGE HELM-ARGS...: helm template must refuse the
# values and name the problem.
expect_schema_error() {
  local name="$1" message="$2" out
  shift 2
  if out="$("${HELM}" template hos "${CHART}" "$@" 2>&1)"; then
    fail "values schema rejects ${name} (accepted)"
    return
  fi
  if grep -qF -- "${message}" <<<"${out}"; then
    pass "values schema rejects ${name}: $(grep -F -- "${message}" <<<"${out}" | head -n 1 | sed 's/^[- ]*//')"
  else
    fail "values schema rejects ${name} without \"${message}\""
    indent <<<"${out}" | head -n 10
  fi
}
expect_schema_error 'replicas: "two"' "at '/replicas': got string, want integer" --set-string replicas=two
expect_schema_error 'logFormat: xml' "at '/logFormat': value must be one of 'text', 'json'" --set logFormat=xml
expect_schema_error 'image.pullPolicy: Sometimes' "at '/image/pullPolicy'" --set image.pullPolicy=Sometimes
expect_schema_error 'an unknown top-level key' "additional properties 'replicaCount' not allowed" --set replicaCount=3
expect_schema_error 'watchNamespace: Team_A' "at '/watchNamespace'" --set watchNamespace=Team_A
expect_schema_error 'leaderElection.leaseSeconds: 1' "at '/leaderElection/leaseSeconds'" --set leaderElection.leaseSeconds=1
expect_schema_error 'securityContext.capabilities.drop: "ALL"' "at '/securityContext/capabilities/drop'" \
  --set-string securityContext.capabilities.drop=ALL
expect_schema_error 'serviceMonitor without the metrics Service' "serviceMonitor.enabled needs service.enabled" \
  --set serviceMonitor.enabled=true --set service.enabled=false

# ---- observability: ServiceMonitors, PrometheusRule, Grafana dashboard -------
# tests/helm/observability.py derives the series hos-proxy and hos-operator
# export from the `registry.register(` calls of proxy/src/metrics.rs and
# operator/src/metrics.rs; every dashboard query and alert expression must
# use those names and labels, so renaming a metric fails here. promtool
# (built from the Go module proxy, tests/scripts/promtool-build.sh) parses
# the rules and the dashboard queries and runs tests/helm/alerts.test.yaml.
OBS=("${PY}" "${ROOT}/tests/helm/observability.py" "${ROOT}")
OBS_ON=(--set serviceMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true)
MON_API=(--api-versions monitoring.coreos.com/v1)
echo "== observability (ServiceMonitors, PrometheusRule, Grafana dashboard)"
check "metrics derived from the source: $("${OBS[@]}" metrics 2>&1 | wc -l) series ($("${OBS[@]}" metrics 2>&1 | grep -c pending) pending per-view ones)" \
  "${OBS[@]}" metrics
check "helm lint --strict (serviceMonitor, prometheusRule, grafanaDashboard)" "${HELM}" lint --strict "${CHART}" "${OBS_ON[@]}"
check "helm template --api-versions monitoring.coreos.com/v1, observability on (cluster-wide)" \
  render "${WORK}/obs.yaml" "${MON_API[@]}" "${OBS_ON[@]}"
check "helm template --api-versions monitoring.coreos.com/v1, observability on (namespaced)" \
  render "${WORK}/obs-ns.yaml" "${MON_API[@]}" "${OBS_ON[@]}" --set watchNamespace=team-a
check "helm template, serviceMonitor.proxies.namespaces=[shop,ads]" \
  render "${WORK}/obs-list.yaml" "${MON_API[@]}" "${OBS_ON[@]}" --set watchNamespace=team-a \
  --set 'serviceMonitor.proxies.namespaces={shop,ads}'
check "kubernetes-validate --strict (observability render: the dashboard ConfigMap)" kube_validate "${WORK}/obs.yaml"
check "ServiceMonitors: operator Service, and proxy Services by hos-operator's labels in any namespace" \
  "${OBS[@]}" servicemonitors "${WORK}/obs.yaml" ""
check "ServiceMonitors: proxies in the watched namespace only (namespaced)" \
  "${OBS[@]}" servicemonitors "${WORK}/obs-ns.yaml" team-a
check "ServiceMonitors: proxies in serviceMonitor.proxies.namespaces" \
  "${OBS[@]}" servicemonitors "${WORK}/obs-list.yaml" shop,ads
check "Grafana dashboard: valid JSON, every query on exported metrics and labels, required panels" \
  "${OBS[@]}" dashboard "${WORK}/obs.yaml" "${WORK}/dashboard-rules.yaml"
check "PrometheusRule: structure, severities, annotations, every expression on exported metrics and labels" \
  "${OBS[@]}" rules "${WORK}/obs.yaml" "${WORK}/rules.yaml"

# kinds FILE: the kinds rendered, sorted, on one line.
kinds() { grep -h '^kind: ' "$1" | awk '{print $2}' | sort | tr '\n' ' ' | sed 's/ $//'; }
# render_expect NAME WANT HELM-ARGS...: the render's kinds are exactly WANT.
render_expect() {
  local name="$1" want="$2" got
  shift 2
  render "${WORK}/variant.yaml" "$@" || { fail "${name}: helm template failed"; return; }
  got="$(kinds "${WORK}/variant.yaml")"
  if [[ "${got}" == "${want}" ]]; then
    pass "${name}: ${got}"
  else
    fail "${name}: kinds ${got}, want ${want}"
  fi
}
BASE="ClusterRole ClusterRoleBinding"
CORE="Deployment PodDisruptionBudget"
RBAC_SVC="Role RoleBinding Service ServiceAccount"
render_expect "switches on, no monitoring.coreos.com API: only the dashboard ConfigMap is added" \
  "${BASE} ConfigMap ${CORE} ${RBAC_SVC}" "${OBS_ON[@]}"
render_expect "only the ServiceMonitor kind served: no PrometheusRule" \
  "${BASE} ConfigMap ${CORE} ${RBAC_SVC} ServiceMonitor ServiceMonitor" \
  "${OBS_ON[@]}" --api-versions monitoring.coreos.com/v1/ServiceMonitor
render_expect "only the PrometheusRule kind served: no ServiceMonitor" \
  "${BASE} ConfigMap ${CORE} PrometheusRule ${RBAC_SVC}" \
  "${OBS_ON[@]}" --api-versions monitoring.coreos.com/v1/PrometheusRule
render_expect "switches off (defaults) with the API: nothing added" \
  "${BASE} ${CORE} ${RBAC_SVC}" "${MON_API[@]}"
render_expect "serviceMonitor.proxies.enabled=false: the operator's ServiceMonitor only" \
  "${BASE} ${CORE} ${RBAC_SVC} ServiceMonitor" \
  "${MON_API[@]}" --set serviceMonitor.enabled=true --set serviceMonitor.proxies.enabled=false

# Values that shape the objects end up where they belong.
cat >"${WORK}/obs-values.py" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
get = lambda kind, suffix="": [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
errors = []
def expect(cond, msg):
    if not cond:
        errors.append(msg)
cm = get("ConfigMap", "-dashboard")[0]
expect(cm["metadata"]["namespace"] == "monitoring", f"dashboard namespace {cm['metadata']['namespace']}")
expect(cm["metadata"]["labels"].get("my_dashboards") == "yes", "grafanaDashboard.label/labelValue not applied")
expect("grafana_dashboard" not in cm["metadata"]["labels"], "the default sidecar label is still set")
expect(cm["metadata"].get("annotations", {}).get("grafana_folder") == "Feature store", "grafanaDashboard.annotations not applied")
expect(cm["metadata"]["labels"].get("team") == "ml", "grafanaDashboard.labels not applied")
ep = get("ServiceMonitor", "-proxies")[0]["spec"]["endpoints"][0]
expect(ep["scheme"] == "https", f"proxies scheme {ep['scheme']}")
expect(ep.get("tlsConfig") == {"insecureSkipVerify": True, "serverName": "proxy.shop.svc"}, f"tlsConfig {ep.get('tlsConfig')}")
expect(ep.get("authorization") == {"type": "Bearer", "credentials": {"name": "prom-token", "key": "token"}},
       f"authorization {ep.get('authorization')}")
expect(ep["interval"] == "15s" and ep["scrapeTimeout"] == "5s", f"proxies interval {ep['interval']}/{ep['scrapeTimeout']}")
op = [m for m in get("ServiceMonitor") if not m["metadata"]["name"].endswith("-proxies")][0]["spec"]["endpoints"][0]
expect(op["interval"] == "30s", "the operator's ServiceMonitor took the proxies' interval")
pr = get("PrometheusRule")[0]
alerts = [r for g in pr["spec"]["groups"] for r in g["rules"]]
names = [r["alert"] for r in alerts]
expect("HosOperatorMultipleLeaders" not in names and "HosProxyCircuitOpen" not in names, f"disabledAlerts ignored: {names}")
expect(len(names) == 8, f"{len(names)} alerts, want 8")
expect(all(r["labels"].get("team") == "platform" for r in alerts), "alertLabels not on every alert")
expect(all(r["labels"].get("severity") for r in alerts), "alertLabels replaced severity")
expect(pr["metadata"]["labels"].get("release") == "prom", "prometheusRule.labels not applied")
ratio = [r for r in alerts if r["alert"] == "HosProxyErrorRatioHigh"][0]
expect(ratio["expr"].rstrip().endswith("> 0.02") and "More than 2%" in ratio["annotations"]["description"],
       f"errorRatioThreshold 0.02 not applied: {ratio['expr']!r}")
noleader = [r for r in alerts if r["alert"] == "HosOperatorNoLeader"][0]
expect('hos_operator_leader{job="ops"}' in noleader["expr"], f"operatorSelector not applied: {noleader['expr']}")
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY
check "helm template with observability values (dashboard label, namespace; proxies https, token; disabledAlerts, alertLabels, threshold, operatorSelector)" \
  render "${WORK}/obs-values.yaml" "${MON_API[@]}" "${OBS_ON[@]}" \
  --set grafanaDashboard.label=my_dashboards --set grafanaDashboard.labelValue=yes \
  --set grafanaDashboard.namespace=monitoring --set 'grafanaDashboard.annotations.grafana_folder=Feature store' \
  --set grafanaDashboard.labels.team=ml \
  --set serviceMonitor.proxies.scheme=https --set serviceMonitor.proxies.tlsConfig.insecureSkipVerify=true \
  --set serviceMonitor.proxies.tlsConfig.serverName=proxy.shop.svc \
  --set serviceMonitor.proxies.authorization.type=Bearer \
  --set serviceMonitor.proxies.authorization.credentials.name=prom-token \
  --set serviceMonitor.proxies.authorization.credentials.key=token \
  --set serviceMonitor.proxies.interval=15s --set serviceMonitor.proxies.scrapeTimeout=5s \
  --set 'prometheusRule.disabledAlerts={HosOperatorMultipleLeaders,HosProxyCircuitOpen}' \
  --set prometheusRule.alertLabels.team=platform --set prometheusRule.labels.release=prom \
  --set-json 'prometheusRule.errorRatioThreshold=0.02' --set 'prometheusRule.operatorSelector=job="ops"'
check "observability values land in the objects" "${PY}" "${WORK}/obs-values.py" "${WORK}/obs-values.yaml"

expect_schema_error 'prometheusRule.disabledAlerts: [NoSuchAlert]' "at '/prometheusRule/disabledAlerts/0'" \
  --set 'prometheusRule.disabledAlerts[0]=NoSuchAlert'
expect_schema_error 'prometheusRule.errorRatioThreshold: 2' "at '/prometheusRule/errorRatioThreshold'" \
  --set prometheusRule.errorRatioThreshold=2
expect_schema_error 'serviceMonitor.proxies.scheme: ftp' "at '/serviceMonitor/proxies/scheme'" \
  --set serviceMonitor.proxies.scheme=ftp
expect_schema_error 'serviceMonitor.proxies.namespaces: [Shop]' "at '/serviceMonitor/proxies/namespaces/0'" \
  --set 'serviceMonitor.proxies.namespaces[0]=Shop'
expect_schema_error 'grafanaDashboard.label: "not a label!"' "at '/grafanaDashboard/label'" \
  --set 'grafanaDashboard.label=not a label!'

# promtool: the rules and the dashboard queries parse, the alerts' unit tests pass.
PROMTOOL=""
if PROMTOOL_DIR="${PROMTOOL_BIN_DIR:-$(nice -n 19 "${ROOT}/tests/scripts/promtool-build.sh" 2>"${WORK}/promtool-build.log" | tail -n 1)}" \
  && [[ -x "${PROMTOOL_DIR}/promtool" ]]; then
  PROMTOOL="${PROMTOOL_DIR}/promtool"
  pass "promtool $("${PROMTOOL}" --version 2>&1 | head -n 1 | sed -n 's/.*version \([^ ]*\).*/\1/p') (tests/scripts/promtool-build.sh)"
else
  fail "promtool could not be built (tests/scripts/promtool-build.sh)"
  indent <"${WORK}/promtool-build.log" | tail -n 20
fi
if [[ -n "${PROMTOOL}" ]]; then
  check "promtool check rules: the PrometheusRule's $(grep -c 'alert:' "${WORK}/rules.yaml" 2>/dev/null) alerts" \
    "${PROMTOOL}" check rules "${WORK}/rules.yaml"
  check "promtool check rules: the dashboard's $(grep -c 'record:' "${WORK}/dashboard-rules.yaml" 2>/dev/null) queries (variables replaced)" \
    "${PROMTOOL}" check rules "${WORK}/dashboard-rules.yaml"
  cp "${ROOT}/tests/helm/alerts.test.yaml" "${WORK}/alerts.test.yaml"
  check "promtool test rules: tests/helm/alerts.test.yaml ($(grep -c '^  - name:' "${WORK}/alerts.test.yaml") cases, $(grep -c 'alertname:' "${WORK}/alerts.test.yaml") evaluations)" \
    bash -c "cd '${WORK}' && '${PROMTOOL}' test rules alerts.test.yaml"
fi

if [[ -n "${HOS_HELM_OFFLINE:-}" ]]; then
  echo "== HOS_HELM_OFFLINE set: skipping the API server checks"
else
  # ---- API server checks -------------------------------------------------------
  [[ -n "${KUBECONFIG:-}" ]] || die "KUBECONFIG is not set (start tests/scripts/k8s-up.sh, or set HOS_HELM_OFFLINE=1)"
  [[ -x "${OPERATOR_BIN}" ]] || die "${OPERATOR_BIN} not found: build it with cargo build -p operator"
  [[ -x "${PROXY_BIN}" ]] || die "${PROXY_BIN} not found: build it with cargo build -p proxy"
  echo "== API server checks ($("${KUBECTL}" get --raw /version | "${PY}" -c 'import json,sys; print(json.load(sys.stdin)["gitVersion"])'))"

  SUFFIX="$(openssl rand -hex 3)"
  NS_OP="hos-helm-op-${SUFFIX}"   # cluster-wide release
  NS_OP2="hos-helm-op2-${SUFFIX}" # namespaced release
  NS_A="hos-helm-a-${SUFFIX}"     # watched namespace
  NS_B="hos-helm-b-${SUFFIX}"     # any other namespace
  for ns in "${NS_OP}" "${NS_OP2}" "${NS_A}" "${NS_B}"; do
    "${KUBECTL}" create namespace "${ns}" >/dev/null || die "cannot create namespace ${ns}"
    NAMESPACES+=("${ns}")
  done
  # The operator's namespaces enforce the "restricted" Pod Security Standard.
  for ns in "${NS_OP}" "${NS_OP2}"; do
    "${KUBECTL}" label namespace "${ns}" pod-security.kubernetes.io/enforce=restricted \
      pod-security.kubernetes.io/warn=restricted >/dev/null
  done

  # CRDs: tests/run.sh applied them already; apply again (idempotent) so the
  # script also runs on its own.
  if ! "${KUBECTL}" apply --server-side --force-conflicts -f "${ROOT}/crds/" >/dev/null \
    || ! "${KUBECTL}" wait --for=condition=Established --timeout=60s \
      crd/hybridonlinestores.hybrid-online-store.io crd/featureviews.hybrid-online-store.io >/dev/null; then
    die "cannot install the CRDs"
  fi

  dry_run_server() { # dry_run_server NAMESPACE ARGS...
    local ns="$1" out
    shift
    out="$("${HELM}" template hos "${CHART}" --namespace "${ns}" "$@" \
      | "${KUBECTL}" apply --dry-run=server -f - 2>&1)" || { echo "${out}"; return 1; }
    echo "${out}"
    ! grep -i 'warning' <<<"${out}"
  }
  check "kubectl apply --dry-run=server (cluster-wide; restricted PodSecurity, no warning)" \
    dry_run_server "${NS_OP}"
  check "kubectl apply --dry-run=server (namespaced; restricted PodSecurity, no warning)" \
    dry_run_server "${NS_OP2}" --set watchNamespace="${NS_A}"

  # The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs
  # (generated from its Go API module by tests/scripts/prometheus-crds.sh):
  # with them the API server validates the chart's monitoring objects
  # against the real schema, and helm install sees the API and renders them.
  MON_CRDS=""
  if MON_CRD_DIR="$(nice -n 19 "${ROOT}/tests/scripts/prometheus-crds.sh" 2>"${WORK}/prometheus-crds.log" | tail -n 1)" \
    && "${KUBECTL}" apply --server-side --force-conflicts -f "${MON_CRD_DIR}/" >"${WORK}/prometheus-crds.log" 2>&1 \
    && "${KUBECTL}" wait --for=condition=Established --timeout=60s \
      crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com >>"${WORK}/prometheus-crds.log" 2>&1; then
    MON_CRDS=1
    pass "Prometheus Operator CRDs ServiceMonitor and PrometheusRule installed (tests/scripts/prometheus-crds.sh)"
  else
    fail "Prometheus Operator CRDs could not be generated or installed"
    indent <"${WORK}/prometheus-crds.log" | tail -n 20
  fi
  if [[ -n "${MON_CRDS}" ]]; then
    # strict_dry_run NS ARGS...: the render, observability on, created with
    # strict field validation (an unknown or misplaced field is an error).
    strict_dry_run() {
      local ns="$1" out
      shift
      out="$("${HELM}" template hos "${CHART}" --namespace "${ns}" "${MON_API[@]}" "${OBS_ON[@]}" "$@" \
        | "${KUBECTL}" apply --dry-run=server --validate=strict -f - 2>&1)" || { echo "${out}"; return 1; }
      grep -E '^(servicemonitor|prometheusrule)' <<<"${out}" | sort | tr '\n' ';'
      [[ "$(grep -cE '^(servicemonitor|prometheusrule)' <<<"${out}")" == 3 ]]
    }
    check "ServiceMonitors and PrometheusRule accepted by the API server (--validate=strict, defaults)" \
      strict_dry_run "${NS_OP}"
    check "ServiceMonitors and PrometheusRule accepted (--validate=strict; https, tlsConfig, authorization, alertLabels, namespaces)" \
      strict_dry_run "${NS_OP2}" --set watchNamespace="${NS_A}" \
      --set serviceMonitor.proxies.scheme=https --set serviceMonitor.proxies.tlsConfig.insecureSkipVerify=true \
      --set serviceMonitor.proxies.tlsConfig.serverName=proxy.shop.svc \
      --set serviceMonitor.proxies.tlsConfig.ca.secret.name=proxy-ca --set serviceMonitor.proxies.tlsConfig.ca.secret.key=ca.crt \
      --set serviceMonitor.proxies.authorization.type=Bearer \
      --set serviceMonitor.proxies.authorization.credentials.name=prom-token \
      --set serviceMonitor.proxies.authorization.credentials.key=token \
      --set 'serviceMonitor.proxies.namespaces={shop,ads}' --set prometheusRule.alertLabels.team=platform
    # The CRDs do validate: a misspelt field and a bad duration are refused.
    refused() { # refused WHAT SED: the default render edited by SED must be refused
      local out
      if out="$("${HELM}" template hos "${CHART}" --namespace "${NS_OP}" "${MON_API[@]}" "${OBS_ON[@]}" \
        | sed "$2" | "${KUBECTL}" apply --dry-run=server --validate=strict -f - 2>&1)"; then
        echo "accepted: ${1}"
        return 1
      fi
      grep -iE 'unknown field|invalid|should match' <<<"${out}" | head -n 1
    }
    check "the API server refuses a ServiceMonitor endpoint with an unknown field (strict validation works)" \
      refused "portt" 's/^    - port: http$/    - portt: http/'
    check "the API server refuses an alert with 'for: 5 minutes' (the CRD's duration pattern)" \
      refused "for: 5 minutes" 's/^          for: 5m$/          for: 5 minutes/'
  fi

  # A live hos-proxy (the quickstart repo: two SQLite backends, on
  # 127.0.0.1) after a served read and a refused one (404): its /metrics has
  # the families, types and label sets derived from proxy/src/metrics.rs.
  scrape_proxy() {
    local dir="${WORK}/proxy-repo" port i code
    rm -rf "${dir}" && cp -r "${ROOT}/examples/quickstart" "${dir}" && rm -rf "${dir}/data" || return 1
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    "${PROXY_BIN}" serve --repo "${dir}" --feature-views "${dir}/feature_views" --apply \
      --listen "127.0.0.1:${port}" </dev/null >"${WORK}/proxy.log" 2>&1 &
    PROXY_PID=$!
    for ((i = 0; i < 150; i++)); do
      curl -fs --max-time 2 "http://127.0.0.1:${port}/ready" >/dev/null && break
      alive "${PROXY_PID}" || break
      sleep 0.1
    done
    code="$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:${port}/get-online-features" \
      -d '{"features": ["user_features:age"], "entities": {"user_id": [1001]}}')"
    code+=" $(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:${port}/get-online-features" \
      -d '{"features": ["no_such_view:age"], "entities": {"user_id": [1001]}}')"
    curl -fsS --max-time 5 "http://127.0.0.1:${port}/metrics" >"${WORK}/proxy-metrics.txt" 2>&1
    stop_proxy
    [[ "${code}" == "200 404" ]] || { echo "requests answered ${code}, want 200 404"; tail -n 5 "${WORK}/proxy.log"; return 1; }
    "${OBS[@]}" exposition "${WORK}/proxy-metrics.txt" proxy
  }
  check "a live hos-proxy's /metrics: families, types and labels as derived from proxy/src/metrics.rs" scrape_proxy

  # A store with one SQLite backend whose (ignored) credentials reference a
  # Secret, so the operator reads a Secret too, and a proxy Deployment,
  # Service, HorizontalPodAutoscaler, PodDisruptionBudget and NetworkPolicy;
  # and one FeatureView on it. A CR's SQLite path is relative: the
  # operator opens it under HOS_DATA_DIR/<namespace>/ (see start_operator).
  example() { # example NAMESPACE
    cat <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: helm-check-credentials
  namespace: $1
type: Opaque
stringData:
  password: not-used-by-sqlite
---
apiVersion: hybrid-online-store.io/v1alpha1
kind: HybridOnlineStore
metadata:
  name: helm-check
  namespace: $1
spec:
  project: helm_check
  routingTag: team
  defaultStore: local
  teardownPolicy: Delete
  proxy:
    enabled: true
    replicas: 1
    autoscaling: {maxReplicas: 3}
    podDisruptionBudget: {}
    networkPolicy: {}
  onlineStores:
    - name: local
      type: sqlite
      conf:
        path: online.db
      credentials:
        passwordSecretRef:
          name: helm-check-credentials
          key: password
---
apiVersion: hybrid-online-store.io/v1alpha1
kind: FeatureView
metadata:
  name: user-features
  namespace: $1
spec:
  storeRef: helm-check
  name: user_features
  entities:
    - name: user_id
      joinKeys: ["user_id"]
      dtype: int64
  ttl: 1d
  schema:
    - name: age
      dtype: int64
    - name: country
      dtype: string
  online: true
  tags:
    team: local
EOF
  }

  # sa_kubeconfig NAMESPACE SA FILE: a kubeconfig holding a fresh token of the SA.
  sa_kubeconfig() {
    local token server ca
    token="$("${KUBECTL}" create token "$2" -n "$1" --duration=1h)" || return 1
    server="$("${KUBECTL}" config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')"
    ca="$("${KUBECTL}" config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
    (
      umask 077
      cat >"$3" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: ${server}
    certificate-authority-data: ${ca}
users:
- name: sa
  user:
    token: ${token}
contexts:
- name: test
  context: {cluster: test, user: sa, namespace: $1}
current-context: test
EOF
    )
    [[ "$(KUBECONFIG="$3" "${KUBECTL}" auth whoami -o jsonpath='{.status.userInfo.username}')" \
      == "system:serviceaccount:$1:$2" ]]
  }

  condition() { # condition NAMESPACE RESOURCE TYPE -> status
    "${KUBECTL}" get -n "$1" "$2" -o jsonpath="{.status.conditions[?(@.type==\"$3\")].status}" 2>/dev/null
  }
  # wait_ready NAMESPACE RESOURCE: until Ready=True (90 s) while the operator runs.
  wait_ready() {
    local deadline=$((SECONDS + 90))
    until [[ "$(condition "$1" "$2" Ready)" == "True" ]]; do
      if ! alive "${OPERATOR_PID}"; then
        echo "the operator exited; log:"; tail -n 20 "${OPERATOR_LOG}" | cut -c1-400; return 1
      fi
      if ((SECONDS >= deadline)); then
        echo "$2 not Ready after 90 s:"
        "${KUBECTL}" get -n "$1" "$2" -o jsonpath='{.status.conditions}'; echo
        echo "operator log:"; tail -n 8 "${OPERATOR_LOG}" | cut -c1-400
        return 1
      fi
      sleep 0.5
    done
  }
  # wait_gone NAMESPACE OBJECT...: until none of them exists (60 s).
  wait_gone() {
    local ns="$1" deadline=$((SECONDS + 60))
    shift
    until [[ -z "$("${KUBECTL}" get -n "${ns}" "$@" --ignore-not-found -o name 2>/dev/null)" ]]; do
      if ((SECONDS >= deadline)); then
        echo "still there after 60 s: $("${KUBECTL}" get -n "${ns}" "$@" --ignore-not-found -o name)"
        tail -n 5 "${OPERATOR_LOG}" | cut -c1-400
        return 1
      fi
      sleep 0.5
    done
  }
  free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  }
  # start_operator KUBECONFIG NAMESPACE DEPLOYMENT: runs the operator binary
  # locally with the arguments of the chart's Deployment (so the flags the
  # chart passes are the ones the binary takes), except that /metrics binds
  # 127.0.0.1 on a free port; POD_NAME/POD_NAMESPACE as the downward API
  # would set them.
  start_operator() {
    local kc="$1" ns="$2" deploy="$3" args=() a
    METRICS_PORT="$(free_port)"
    OPERATOR_LOG="${WORK}/operator-$((++OPERATOR_RUNS)).log"
    while IFS= read -r a; do
      [[ -n "${a}" ]] || continue
      case "${a}" in
        --metrics-addr=*) args+=("--metrics-addr=127.0.0.1:${METRICS_PORT}") ;;
        *) args+=("${a}") ;;
      esac
    done < <("${KUBECTL}" get deployment "${deploy}" -n "${ns}" \
      -o jsonpath='{range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}')
    echo "hos-operator ${args[*]}" >"${OPERATOR_LOG}"
    KUBECONFIG="${kc}" RUST_LOG="info,kube=warn" POD_NAME="helm-check-${OPERATOR_RUNS}" \
      POD_NAMESPACE="${ns}" HOS_DATA_DIR="${WORK}" \
      "${OPERATOR_BIN}" "${args[@]}" </dev/null >>"${OPERATOR_LOG}" 2>&1 &
    OPERATOR_PID=$!
  }
  OPERATOR_RUNS=0
  http_ok() { # http_ok PATH [GREP]
    local body
    body="$(curl -fsS --max-time 5 "http://127.0.0.1:${METRICS_PORT}$1")" || return 1
    [[ -z "${2:-}" ]] || grep -q "$2" <<<"${body}"
  }
  no_forbidden() {
    local hits
    hits="$(grep -iE 'forbidden|unauthorized|cannot publish event' "${OPERATOR_LOG}")" || return 0
    echo "$(wc -l <<<"${hits}") lines, e.g.:"
    head -n 3 <<<"${hits}" | cut -c1-400
    return 1
  }

  # can_i EXPECT(yes|no) NS(or -A) VERB RESOURCE [ARGS...] as the SA in $SA_USER
  can_i() {
    local want="$1" ns="$2" verb="$3" res="$4" got nsargs
    shift 4
    case "${ns}" in
      -A) nsargs=(--all-namespaces) ;;
      "") nsargs=() ;; # cluster-scoped
      *) nsargs=(-n "${ns}") ;;
    esac
    got="$("${KUBECTL}" auth can-i "${verb}" "${res}" ${nsargs[@]+"${nsargs[@]}"} --as="${SA_USER}" "$@" 2>/dev/null)"
    local where="${ns:-cluster}"
    [[ "${where}" != "-A" ]] || where="all namespaces"
    local what="${verb} ${res}${*:+ $*} (${where})"
    if [[ "${got}" == "${want}" ]]; then
      pass "can-i ${what}: ${got}"
    else
      fail "can-i ${what}: ${got:-error}, want ${want}"
    fi
  }

  # The rules `kubectl auth can-i --list` reports for the SA in a namespace,
  # minus what every authenticated user has there (the namespace's default
  # ServiceAccount as baseline), must be exactly WANT: main (the operator
  # rules of the README table), lease (the leader-election Role), both
  # (main+lease) or none. This proves what the SA can read, not only a few
  # sampled verbs.
  cat >"${WORK}/rules.py" <<'PY'
import re, sys
sa_out, base_out, want = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3]
row = re.compile(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")
def rules(text):
    out = {}
    for line in text.splitlines():
        m = row.match(line)
        if not m or m.group(1) == "Resources":
            continue
        res, names, verbs = m.group(1), m.group(3), set(m.group(4).split())
        out.setdefault((res, names), set()).update(verbs)
    return out
CR = "hybrid-online-store.io"
main = {
    (f"hybridonlinestores.{CR}", ""): {"get", "list", "watch", "patch"},
    (f"featureviews.{CR}", ""): {"get", "list", "watch", "patch"},
    (f"hybridonlinestores.{CR}/status", ""): {"patch"},
    (f"featureviews.{CR}/status", ""): {"patch"},
    (f"hybridonlinestores.{CR}/finalizers", ""): {"update"},
    ("configmaps", ""): {"get", "list", "watch", "create", "patch"},
    ("secrets", ""): {"get", "list", "watch"},
    ("services", ""): {"get", "create", "patch", "delete"},
    ("deployments.apps", ""): {"get", "create", "patch", "delete"},
    ("horizontalpodautoscalers.autoscaling", ""): {"get", "create", "patch", "delete"},
    ("poddisruptionbudgets.policy", ""): {"get", "create", "patch", "delete"},
    ("networkpolicies.networking.k8s.io", ""): {"get", "create", "patch", "delete"},
    ("pods", ""): {"list"},
    ("events.events.k8s.io", ""): {"create", "patch"},
}
lease = {
    ("leases.coordination.k8s.io", ""): {"create"},
    ("leases.coordination.k8s.io", sys.argv[4]): {"get", "update"},
}
expected = {"main": main, "lease": lease, "both": {**main, **lease}, "none": {}}[want]
sa, base = rules(sa_out), rules(base_out)
got = {k: v - base.get(k, set()) for k, v in sa.items()}
got = {k: v for k, v in got.items() if v}
if got != expected:
    for k in sorted(set(got) | set(expected)):
        if got.get(k) != expected.get(k):
            print(f"{k[0]} {k[1] or ''}: has {sorted(got.get(k, []))}, want {sorted(expected.get(k, []))}")
    sys.exit(1)
print("; ".join(f"{r}{'/' + n if n else ''}: {' '.join(sorted(v))}" for (r, n), v in sorted(got.items())) or "nothing")
PY
  exact_rules() { # exact_rules NAMESPACE WANT LEASE
    local ns="$1" want="$2" out
    "${KUBECTL}" auth can-i --list -n "${ns}" --as="${SA_USER}" >"${WORK}/rules-sa.txt" 2>&1 || true
    "${KUBECTL}" auth can-i --list -n "${ns}" --as="system:serviceaccount:${ns}:default" \
      >"${WORK}/rules-base.txt" 2>&1 || true
    if out="$("${PY}" "${WORK}/rules.py" "${WORK}/rules-sa.txt" "${WORK}/rules-base.txt" "${want}" "$3" 2>&1)"; then
      pass "can-i --list in ${ns}: exactly the ${want} rules (${out})"
    else
      fail "can-i --list in ${ns}: not exactly the ${want} rules"
      indent <<<"${out}"
    fi
  }

  # sm_selects SM.json NS SERVICE STORE: the ServiceMonitor's namespace and
  # label selectors pick SERVICE in NS (asked of the API server), the
  # Service has the endpoint's port, and the relabeled store label is STORE.
  sm_selects() {
    local sel ns_ok
    sel="$("${PY}" - "$1" "$2" <<'PY'
import json, sys
sm = json.load(open(sys.argv[1]))["spec"]
nsel = sm["namespaceSelector"]
if not (nsel.get("any") or sys.argv[2] in nsel.get("matchNames", [])):
    sys.exit(f"namespaceSelector {nsel} leaves out {sys.argv[2]}")
parts = [f"{k}={v}" for k, v in sm["selector"].get("matchLabels", {}).items()]
for e in sm["selector"].get("matchExpressions", []):
    if e["operator"] != "Exists":
        sys.exit(f"unexpected matchExpression {e}")
    parts.append(e["key"])
print(",".join(parts), sm["endpoints"][0]["port"])
PY
)" || { echo "${sel}"; return 1; }
    local labels="${sel% *}" port="${sel##* }" got
    got="$("${KUBECTL}" get services -n "$2" -l "${labels}" -o name)" || return 1
    [[ "${got}" == "service/$3" ]] || { echo "-l ${labels} in $2 selects: ${got:-nothing}"; return 1; }
    "${KUBECTL}" get service "$3" -n "$2" -o jsonpath='{.spec.ports[*].name}' | tr ' ' '\n' | grep -qx "${port}" \
      || { echo "service/$3 has no port ${port}"; return 1; }
    [[ "$("${KUBECTL}" get service "$3" -n "$2" -o jsonpath='{.metadata.labels.hybrid-online-store\.io/store}')" == "$4" ]] \
      || { echo "service/$3 is not labelled hybrid-online-store.io/store=$4"; return 1; }
  }

  # run_mode NAME RELEASE_NS WATCH_NS(empty: all) : install, operate, check, uninstall.
  run_mode() {
    local mode="$1" rel_ns="$2" watch_ns="$3" rel="hos" set_args=("${OBS_ON[@]}")
    local fullname="hos-hybrid-online-store"
    [[ -z "${watch_ns}" ]] || set_args+=(--set "watchNamespace=${watch_ns}")
    local ex_ns="${watch_ns:-${NS_A}}"
    echo "== ${mode}: release ${rel} in ${rel_ns}${watch_ns:+, watching ${watch_ns}}"

    if "${HELM}" install "${rel}" "${CHART}" -n "${rel_ns}" "${set_args[@]}" >"${WORK}/install-${mode}.out" 2>&1; then
      RELEASES+=("${rel} ${rel_ns}")
      pass "${mode}: helm install"
    else
      fail "${mode}: helm install"; indent <"${WORK}/install-${mode}.out"; return
    fi
    check "${mode}: helm status is deployed" \
      bash -c "'${HELM}' status '${rel}' -n '${rel_ns}' -o json | grep -q '\"status\":\"deployed\"'"
    "${HELM}" get manifest "${rel}" -n "${rel_ns}" >"${WORK}/manifest-${mode}.yaml"
    check "${mode}: every rendered object exists in the API server ($(grep -c '^kind:' "${WORK}/manifest-${mode}.yaml") objects)" \
      "${KUBECTL}" get -f "${WORK}/manifest-${mode}.yaml"
    check "${mode}: NOTES.txt rendered" grep -q "hos-operator 0.1.0 is installed" "${WORK}/install-${mode}.out"
    check "${mode}: Grafana dashboard ConfigMap ${fullname}-dashboard (label grafana_dashboard=1) created" \
      bash -c "'${KUBECTL}' get configmap -n '${rel_ns}' -l grafana_dashboard=1 -o name | grep -qx 'configmap/${fullname}-dashboard'"
    if [[ -n "${MON_CRDS}" ]]; then
      check "${mode}: helm install saw the monitoring API: ServiceMonitors ${fullname}, ${fullname}-proxies and PrometheusRule ${fullname} created" \
        "${KUBECTL}" get -n "${rel_ns}" "servicemonitor.monitoring.coreos.com/${fullname}" \
        "servicemonitor.monitoring.coreos.com/${fullname}-proxies" "prometheusrule.monitoring.coreos.com/${fullname}"
      check "${mode}: NOTES.txt lists the ServiceMonitors and the PrometheusRule" \
        bash -c "grep -q 'ServiceMonitors ${fullname} (operator) and ${fullname}-proxies (hos-proxy Services in ${watch_ns:-every namespace})' '${WORK}/install-${mode}.out' && grep -q 'PrometheusRule ${fullname} (alerts' '${WORK}/install-${mode}.out'"
    else
      check "${mode}: without the monitoring CRDs, NOTES.txt says no ServiceMonitor was created" \
        grep -q "no ServiceMonitor was created" "${WORK}/install-${mode}.out"
    fi

    # The chart's ServiceAccount drives the real operator.
    local kc="${WORK}/sa-${mode}.kubeconfig" sa="${fullname}"
    SA_USER="system:serviceaccount:${rel_ns}:${sa}"
    check "${mode}: token of the chart's ServiceAccount (kubectl create token) in a kubeconfig" \
      sa_kubeconfig "${rel_ns}" "${sa}" "${kc}"
    mkdir -p "${WORK}/${ex_ns}"
    example "${ex_ns}" | "${KUBECTL}" apply -f - >/dev/null || { fail "${mode}: apply the example"; return; }
    start_operator "${kc}" "${rel_ns}" "${fullname}"
    check "${mode}: the operator runs with the chart's Deployment arguments" \
      bash -c "sleep 1; kill -0 ${OPERATOR_PID} && head -n 1 '${OPERATOR_LOG}' | grep -q -- '--lease-namespace=${rel_ns}'"
    check "${mode}: HybridOnlineStore helm-check Ready=True under the chart's RBAC" \
      wait_ready "${ex_ns}" hybridonlinestore/helm-check
    check "${mode}: FeatureView user-features Ready=True under the chart's RBAC" \
      wait_ready "${ex_ns}" featureview/user-features
    check "${mode}: routing ConfigMap written (server-side apply, manager hos-operator)" \
      bash -c "'${KUBECTL}' get configmap helm-check-routing -n '${ex_ns}' -o jsonpath='{.metadata.managedFields[*].manager} {.data}' | grep 'hos-operator' | grep -q user_features"
    check "${mode}: events.k8s.io Events recorded" \
      bash -c "'${KUBECTL}' get events.events.k8s.io -n '${ex_ns}' -o jsonpath='{.items[*].reason}' | grep -q Provisioned"
    check "${mode}: Lease ${rel_ns}/${fullname} held by the operator" \
      bash -c "[[ \$('${KUBECTL}' get lease '${fullname}' -n '${rel_ns}' -o jsonpath='{.spec.holderIdentity}') == helm-check-${OPERATOR_RUNS} ]]"
    local proxy_image
    proxy_image="$("${KUBECTL}" get deployment "${fullname}" -n "${rel_ns}" -o jsonpath='{.spec.template.spec.containers[0].image}')"
    check "${mode}: proxy Deployment helm-check-proxy created with the chart's image (${proxy_image})" \
      bash -c "[[ \$('${KUBECTL}' get deployment helm-check-proxy -n '${ex_ns}' -o jsonpath='{.spec.template.spec.containers[0].image}') == '${proxy_image}' ]]"
    check "${mode}: proxy Service helm-check-proxy created" \
      "${KUBECTL}" get service helm-check-proxy -n "${ex_ns}"
    # The proxies' ServiceMonitor (as the API server holds it, or as
    # rendered without the CRDs) selects the Service the operator made.
    if [[ -n "${MON_CRDS}" ]]; then
      "${KUBECTL}" get -n "${rel_ns}" "servicemonitor.monitoring.coreos.com/${fullname}-proxies" -o json \
        >"${WORK}/proxies-sm-${mode}.json" 2>&1
    else
      "${HELM}" template "${rel}" "${CHART}" -n "${rel_ns}" "${MON_API[@]}" "${set_args[@]}" \
        --show-only templates/servicemonitor.yaml | "${PY}" -c \
        'import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d][-1]))' \
        >"${WORK}/proxies-sm-${mode}.json" 2>&1
    fi
    check "${mode}: the proxies' ServiceMonitor selects service/helm-check-proxy in ${ex_ns}, port http, label store=helm-check" \
      sm_selects "${WORK}/proxies-sm-${mode}.json" "${ex_ns}" helm-check-proxy helm-check
    check "${mode}: proxy HorizontalPodAutoscaler, PodDisruptionBudget and NetworkPolicy helm-check-proxy created" \
      "${KUBECTL}" get horizontalpodautoscaler.autoscaling/helm-check-proxy \
      poddisruptionbudget.policy/helm-check-proxy networkpolicy.networking.k8s.io/helm-check-proxy -n "${ex_ns}"
    "${KUBECTL}" patch -n "${ex_ns}" hybridonlinestore/helm-check --type=merge \
      -p '{"spec":{"proxy":{"enabled":false}}}' >/dev/null
    check "${mode}: proxy objects deleted once the store no longer asks for them" \
      wait_gone "${ex_ns}" deployment/helm-check-proxy service/helm-check-proxy \
      horizontalpodautoscaler.autoscaling/helm-check-proxy poddisruptionbudget.policy/helm-check-proxy \
      networkpolicy.networking.k8s.io/helm-check-proxy
    check "${mode}: /healthz answers (liveness probe path)" http_ok /healthz
    check "${mode}: /readyz answers (readiness probe path)" http_ok /readyz
    check "${mode}: /metrics reports the leader" http_ok /metrics 'hos_operator_leader 1'
    curl -fsS --max-time 5 "http://127.0.0.1:${METRICS_PORT}/metrics" >"${WORK}/operator-metrics-${mode}.txt" 2>&1
    check "${mode}: the operator's /metrics: families, types and labels as derived from operator/src/metrics.rs" \
      "${OBS[@]}" exposition "${WORK}/operator-metrics-${mode}.txt" operator
    # Teardown through the operator: finalizers removed, table dropped.
    "${KUBECTL}" delete -n "${ex_ns}" featureview/user-features --timeout=60s >/dev/null 2>&1
    check "${mode}: FeatureView deleted (finalizer removed by the operator)" \
      bash -c "! '${KUBECTL}' get -n '${ex_ns}' featureview/user-features >/dev/null 2>&1"
    "${KUBECTL}" delete -n "${ex_ns}" hybridonlinestore/helm-check --timeout=60s >/dev/null 2>&1
    check "${mode}: HybridOnlineStore deleted (finalizer removed by the operator)" \
      bash -c "! '${KUBECTL}' get -n '${ex_ns}' hybridonlinestore/helm-check >/dev/null 2>&1"
    check "${mode}: no permission error in the operator log" no_forbidden
    stop_operator
    check "${mode}: the operator exited 0 on SIGTERM" \
      bash -c "[[ '${OPERATOR_RC}' == 0 ]] || { echo 'exit status ${OPERATOR_RC}'; tail -n 5 '${OPERATOR_LOG}'; exit 1; }"
    "${KUBECTL}" delete -n "${ex_ns}" secret/helm-check-credentials configmap/helm-check-routing \
      deployment/helm-check-proxy service/helm-check-proxy \
      horizontalpodautoscaler.autoscaling/helm-check-proxy poddisruptionbudget.policy/helm-check-proxy \
      networkpolicy.networking.k8s.io/helm-check-proxy \
      --ignore-not-found >/dev/null 2>&1

    # What the ServiceAccount may do ...
    local lease="${fullname}" scope="${watch_ns:--A}"
    can_i yes "${scope}" list hybridonlinestores.hybrid-online-store.io
    can_i yes "${scope}" watch featureviews.hybrid-online-store.io
    can_i yes "${ex_ns}" patch hybridonlinestores.hybrid-online-store.io
    can_i yes "${ex_ns}" patch featureviews.hybrid-online-store.io --subresource=status
    can_i yes "${ex_ns}" update hybridonlinestores.hybrid-online-store.io --subresource=finalizers
    can_i yes "${scope}" watch configmaps
    can_i yes "${ex_ns}" create configmaps
    can_i yes "${ex_ns}" patch configmaps
    can_i yes "${scope}" list secrets
    can_i yes "${ex_ns}" get secrets
    can_i yes "${ex_ns}" create events.events.k8s.io
    can_i yes "${ex_ns}" create deployments.apps
    can_i yes "${ex_ns}" patch deployments.apps
    can_i yes "${ex_ns}" delete deployments.apps
    can_i yes "${ex_ns}" create services
    can_i yes "${ex_ns}" delete services
    can_i yes "${ex_ns}" create horizontalpodautoscalers.autoscaling
    can_i yes "${ex_ns}" delete horizontalpodautoscalers.autoscaling
    can_i yes "${ex_ns}" patch poddisruptionbudgets.policy
    can_i yes "${ex_ns}" delete poddisruptionbudgets.policy
    can_i yes "${ex_ns}" create networkpolicies.networking.k8s.io
    can_i yes "${ex_ns}" delete networkpolicies.networking.k8s.io
    can_i yes "${rel_ns}" create leases.coordination.k8s.io
    can_i yes "${rel_ns}" update "leases.coordination.k8s.io/${lease}"
    # ... and what it may not.
    can_i no "${ex_ns}" create secrets
    can_i no "${ex_ns}" update secrets
    can_i no "${ex_ns}" delete secrets
    can_i no "" delete customresourcedefinitions.apiextensions.k8s.io
    can_i no "" get customresourcedefinitions.apiextensions.k8s.io
    can_i no "${ex_ns}" delete hybridonlinestores.hybrid-online-store.io
    can_i no "${ex_ns}" update featureviews.hybrid-online-store.io
    can_i no "${ex_ns}" delete configmaps
    can_i no "${ex_ns}" update configmaps
    can_i no "${ex_ns}" delete events.events.k8s.io
    can_i no "${ex_ns}" create events
    can_i no "${rel_ns}" update leases.coordination.k8s.io/some-other-lease
    can_i no "${rel_ns}" delete "leases.coordination.k8s.io/${lease}"
    can_i no "${NS_B}" create leases.coordination.k8s.io
    can_i no "${ex_ns}" create pods
    can_i no "${ex_ns}" update deployments.apps
    can_i no "${ex_ns}" list deployments.apps
    can_i no "${ex_ns}" list horizontalpodautoscalers.autoscaling
    can_i no "${ex_ns}" update networkpolicies.networking.k8s.io
    can_i no "${ex_ns}" delete pods
    can_i no "${ex_ns}" create serviceaccounts
    can_i no "${ex_ns}" create rolebindings.rbac.authorization.k8s.io
    can_i no "" create clusterrolebindings.rbac.authorization.k8s.io
    can_i no "${ex_ns}" '*' '*'
    # Exactly what it can do (and read), namespace by namespace.
    if [[ -n "${watch_ns}" ]]; then
      exact_rules "${watch_ns}" main "${lease}"
      exact_rules "${NS_B}" none "${lease}"
      exact_rules "${rel_ns}" lease "${lease}"
    else
      exact_rules "${NS_A}" main "${lease}"
      exact_rules "${NS_B}" main "${lease}"
      exact_rules "${rel_ns}" both "${lease}"
      # Cluster-wide means every Secret of the cluster is readable (as the
      # chart's values and README say), and still none is writable.
      can_i yes "${NS_B}" get secrets
      can_i yes -A watch secrets
      can_i no "${NS_B}" create secrets
      can_i no "${NS_B}" patch secrets
    fi
    if [[ -n "${watch_ns}" ]]; then
      # Secrets: the watched namespace only, not even the release namespace.
      can_i no "${rel_ns}" get secrets
      can_i no "${NS_B}" watch secrets
      can_i no "${NS_B}" get secrets
      can_i no -A list secrets
      can_i no "${NS_B}" list hybridonlinestores.hybrid-online-store.io
      can_i no -A list hybridonlinestores.hybrid-online-store.io
      can_i no "${NS_B}" create configmaps
      can_i no "${NS_B}" create events.events.k8s.io
      can_i no "${NS_B}" create deployments.apps
      can_i no "${NS_B}" create services
      can_i no "${NS_B}" create networkpolicies.networking.k8s.io
      can_i no "${watch_ns}" create leases.coordination.k8s.io
    fi

    # helm upgrade changes values in place.
    check "${mode}: helm upgrade --set replicas=3" \
      "${HELM}" upgrade "${rel}" "${CHART}" -n "${rel_ns}" "${set_args[@]}" --set replicas=3
    check "${mode}: Deployment has 3 replicas after the upgrade" \
      bash -c "[[ \$('${KUBECTL}' get deployment '${fullname}' -n '${rel_ns}' -o jsonpath='{.spec.replicas}') == 3 ]]"
    if "${HELM}" uninstall "${rel}" -n "${rel_ns}" >/dev/null 2>&1; then
      RELEASES=("${RELEASES[@]/"${rel} ${rel_ns}"/}")
      pass "${mode}: helm uninstall"
    else
      fail "${mode}: helm uninstall"
    fi
    check "${mode}: uninstall removed every object" \
      bash -c "[[ -z \$('${KUBECTL}' get -f '${WORK}/manifest-${mode}.yaml' --ignore-not-found -o name) ]]"
  }

  run_mode cluster-wide "${NS_OP}" ""
  run_mode namespaced "${NS_OP2}" "${NS_A}"
fi

echo
if ((${#FAILED[@]})); then
  echo "helm checks: ${PASSED} passed, ${#FAILED[@]} FAILED:"
  printf '  FAIL: %s\n' "${FAILED[@]}"
  exit 1
fi
echo "helm checks: all ${PASSED} passed"
