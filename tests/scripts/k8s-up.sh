#!/usr/bin/env bash
# Start a real, single-node Kubernetes API server (etcd + kube-apiserver, no
# controller-manager, no scheduler, no kubelet) bound to 127.0.0.1.
#
# Usage: tests/scripts/k8s-up.sh STATE_DIR
#        eval "$(tests/scripts/k8s-up.sh STATE_DIR | tail -n 1)"
#        ...
#        tests/scripts/k8s-down.sh STATE_DIR
#
# STATE_DIR (created if missing) receives:
#   kubeconfig            admin kubeconfig (bearer token, group system:masters)
#   etcd.pid, kube-apiserver.pid
#   etcd.log, kube-apiserver.log
#   cluster.env           facts to source (`. STATE_DIR/cluster.env`): ports,
#                         URLs, admin token, CA file, bin dir
#   etcd-data/, pki/      temporary data (removed by k8s-down.sh)
# The last stdout line is `export KUBECONFIG=<STATE_DIR>/kubeconfig`; all
# other output goes to stderr.
#
# Env:   K8S_BIN_DIR       directory with kube-apiserver and etcd (default:
#                          whatever tests/scripts/k8s-build.sh prints; it
#                          builds them on first use)
#        K8S_READY_TIMEOUT seconds to wait for /readyz (default: 120)
#        KUBECTL           kubectl binary (default: kubectl)
#        K8S_APISERVER_ARGS extra kube-apiserver flags, whitespace-separated
#                          (e.g. "--feature-gates=Foo=true --v=4")
# On failure the processes started so far are stopped (via k8s-down.sh) and
# the tail of the relevant log is printed; logs stay in STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KUBECTL="${KUBECTL:-kubectl}"
READY_TIMEOUT="${K8S_READY_TIMEOUT:-120}"

log() { echo "k8s-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
mkdir -p "$1"
STATE_DIR="$(cd "$1" && pwd)"

# Refuse to start over a live instance (zombies, whose /proc/PID/exe cannot
# be read, do not count: this machine's init may leave them unreaped).
for b in etcd kube-apiserver; do
  if [[ -f "${STATE_DIR}/${b}.pid" ]] \
    && exe="$(readlink "/proc/$(cat "${STATE_DIR}/${b}.pid")/exe" 2>/dev/null)" \
    && [[ "${exe##*/}" == "${b}" ]]; then
    die "${STATE_DIR}/${b}.pid names a running ${b}; run k8s-down.sh ${STATE_DIR} first"
  fi
done

for tool in openssl curl python3 base64; do
  command -v "${tool}" >/dev/null || die "${tool} not found"
done
command -v "${KUBECTL}" >/dev/null || die "kubectl not found (KUBECTL=${KUBECTL})"

# Binaries: built and cached on first use; the bin dir is the last line.
if [[ -z "${K8S_BIN_DIR:-}" ]]; then
  K8S_BIN_DIR="$("${SCRIPT_DIR}/k8s-build.sh" | tail -n 1)"
fi
for b in etcd kube-apiserver; do
  [[ -x "${K8S_BIN_DIR}/${b}" ]] || die "${K8S_BIN_DIR}/${b} missing"
done

# A free loopback TCP port chosen by the kernel. There is a small window
# between closing this socket and the server binding it; the ports are
# distinct because all three sockets are held open together.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Print the last lines of a log file to stderr.
show_log() {
  log "---- last 40 lines of $1 ----"
  tail -n 40 "$1" >&2 || true
  log "---- end of $1 ----"
}

# Stop whatever was started if anything below fails.
started=0
cleanup_on_failure() {
  local rc=$?
  if [[ ${rc} -ne 0 && ${started} -eq 1 ]]; then
    log "start-up failed (exit ${rc}); stopping what was started"
    "${SCRIPT_DIR}/k8s-down.sh" "${STATE_DIR}" >&2 || true
  fi
  exit "${rc}"
}
trap cleanup_on_failure EXIT

read -r ETCD_CLIENT_PORT ETCD_PEER_PORT API_PORT <<<"$(free_ports 3)"
ETCD_URL="http://127.0.0.1:${ETCD_CLIENT_PORT}"
API_URL="https://127.0.0.1:${API_PORT}"

ETCD_DATA="${STATE_DIR}/etcd-data"
PKI="${STATE_DIR}/pki"
rm -rf "${ETCD_DATA}" "${PKI}"
mkdir -p "${ETCD_DATA}" "${PKI}/serving"
chmod 700 "${ETCD_DATA}" "${PKI}"

# ---- credentials --------------------------------------------------------
# Static admin token (file format: token,user,uid,"group1,group2").
ADMIN_TOKEN="$(openssl rand -hex 24)"
printf '%s,admin,admin-uid,"system:masters"\n' "${ADMIN_TOKEN}" > "${PKI}/tokens.csv"
# One RSA key both verifies and signs ServiceAccount tokens.
openssl genrsa -out "${PKI}/sa.key" 2048 2>/dev/null
chmod 600 "${PKI}/tokens.csv" "${PKI}/sa.key"

# ---- etcd ---------------------------------------------------------------
log "starting etcd on ${ETCD_URL} (peer port ${ETCD_PEER_PORT})"
started=1
"${K8S_BIN_DIR}/etcd" \
  --name=hos-test \
  --data-dir="${ETCD_DATA}" \
  --listen-client-urls="${ETCD_URL}" \
  --advertise-client-urls="${ETCD_URL}" \
  --listen-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-advertise-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-cluster="hos-test=http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-cluster-state=new \
  --unsafe-no-fsync \
  --log-level=warn \
  </dev/null >"${STATE_DIR}/etcd.log" 2>&1 &
echo $! > "${STATE_DIR}/etcd.pid"

# etcd is up when /health reports true (usually well under a second).
deadline=$((SECONDS + 30))
until curl -fsS "${ETCD_URL}/health" 2>/dev/null | grep -q '"health":"true"'; do
  if ! kill -0 "$(cat "${STATE_DIR}/etcd.pid")" 2>/dev/null; then
    show_log "${STATE_DIR}/etcd.log"; die "etcd exited"
  fi
  if (( SECONDS >= deadline )); then
    show_log "${STATE_DIR}/etcd.log"; die "etcd not healthy after 30 s"
  fi
  sleep 0.2
done
log "etcd healthy"

# ---- kube-apiserver -----------------------------------------------------
# --cert-dir: it writes a self-signed serving cert (leaf + its own CA) there.
# --endpoint-reconciler-type=none: the advertised address is loopback, which
#   the default Endpoints reconciler would keep rejecting in the log.
log "starting kube-apiserver on ${API_URL}"
read -r -a extra_args <<<"${K8S_APISERVER_ARGS:-}"
"${K8S_BIN_DIR}/kube-apiserver" \
  --etcd-servers="${ETCD_URL}" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="${API_PORT}" \
  --cert-dir="${PKI}/serving" \
  --token-auth-file="${PKI}/tokens.csv" \
  --service-account-key-file="${PKI}/sa.key" \
  --service-account-signing-key-file="${PKI}/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range=10.0.0.0/24 \
  --authorization-mode=RBAC \
  --disable-admission-plugins=ServiceAccount \
  --endpoint-reconciler-type=none \
  --profiling=false \
  ${extra_args[@]+"${extra_args[@]}"} \
  </dev/null >"${STATE_DIR}/kube-apiserver.log" 2>&1 &
echo $! > "${STATE_DIR}/kube-apiserver.pid"

# The serving certificate appears within a second or two of start-up; the
# kubeconfig trusts that bundle (its second certificate is the CA).
CERT="${PKI}/serving/apiserver.crt"
deadline=$((SECONDS + READY_TIMEOUT))
until [[ -s "${CERT}" ]]; do
  if ! kill -0 "$(cat "${STATE_DIR}/kube-apiserver.pid")" 2>/dev/null; then
    show_log "${STATE_DIR}/kube-apiserver.log"; die "kube-apiserver exited"
  fi
  if (( SECONDS >= deadline )); then
    show_log "${STATE_DIR}/kube-apiserver.log"; die "no serving certificate after ${READY_TIMEOUT} s"
  fi
  sleep 0.2
done

KUBECONFIG_FILE="${STATE_DIR}/kubeconfig"
umask 077
cat > "${KUBECONFIG_FILE}" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: hos-test
  cluster:
    server: ${API_URL}
    certificate-authority-data: $(base64 -w0 < "${CERT}")
users:
- name: admin
  user:
    token: ${ADMIN_TOKEN}
contexts:
- name: hos-test
  context:
    cluster: hos-test
    user: admin
    namespace: default
current-context: hos-test
EOF

# Facts for tests that want them without parsing YAML.
cat > "${STATE_DIR}/cluster.env" <<EOF
K8S_API_URL=${API_URL}
K8S_API_PORT=${API_PORT}
K8S_ADMIN_TOKEN=${ADMIN_TOKEN}
K8S_CA_FILE=${CERT}
K8S_ETCD_URL=${ETCD_URL}
K8S_BIN_DIR=${K8S_BIN_DIR}
KUBECONFIG=${KUBECONFIG_FILE}
EOF
umask 022

# Wait for /readyz (all post-start hooks done: RBAC bootstrap roles, the
# default ServiceCIDR, priority classes, CRD informers, ...).
log "waiting up to ${READY_TIMEOUT} s for ${API_URL}/readyz"
until [[ "$("${KUBECTL}" --kubeconfig "${KUBECONFIG_FILE}" --request-timeout=5s \
            get --raw /readyz 2>/dev/null)" == "ok" ]]; do
  if ! kill -0 "$(cat "${STATE_DIR}/kube-apiserver.pid")" 2>/dev/null; then
    show_log "${STATE_DIR}/kube-apiserver.log"; die "kube-apiserver exited"
  fi
  if (( SECONDS >= deadline )); then
    "${KUBECTL}" --kubeconfig "${KUBECONFIG_FILE}" --request-timeout=5s \
      get --raw '/readyz?verbose' >&2 || true
    show_log "${STATE_DIR}/kube-apiserver.log"
    die "kube-apiserver not ready after ${READY_TIMEOUT} s"
  fi
  sleep 0.5
done
log "kube-apiserver ready at ${API_URL} ($("${K8S_BIN_DIR}/kube-apiserver" --version))"

echo "export KUBECONFIG=${KUBECONFIG_FILE}"
