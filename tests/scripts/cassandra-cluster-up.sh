#!/usr/bin/env bash
# Start a real 3-node Apache Cassandra 5.0.x cluster on 127.0.0.1,
# 127.0.0.2 and 127.0.0.3 (the whole of 127/8 is loopback on Linux), for
# replication factor 3 tests: every node holds every row.
#
# Usage: tests/scripts/cassandra-cluster-up.sh STATE_DIR
#        eval "$(tests/scripts/cassandra-cluster-up.sh STATE_DIR)"
#        tests/scripts/cassandra-cluster-node.sh STATE_DIR stop|kill|start N...   # node loss tests
#        tests/scripts/cassandra-cluster-down.sh STATE_DIR
#
# Each node is started by cassandra-up.sh (same jars, JVM flags and CQL
# readiness probe) in STATE_DIR/nodeN with the cluster's settings: its own
# listen/rpc address 127.0.0.N, the same native (CQL) port and storage
# (gossip) port on every node (the addresses differ; clients such as the
# scylla driver reach the other nodes at the addresses system.peers gives,
# on the port they first connected to), its own JMX port, cluster_name
# hos-cluster-test, a small heap, num_tokens 16, no authentication.
#
# Start-up is short because a fresh cluster needs no bootstrap: every node
# is a seed with auto_bootstrap: false, so the three start at once (no node
# waits for another to stream); ring_delay is 1 s instead of 30 s, gossip is
# not waited on to settle (cassandra-up.sh), and the JVMs run with C1 only
# and one GC thread (see cassandra-cluster-lib.sh).
#
# Returns once every node sees the other two in system.peers with tokens
# and the same schema version, and a read of system_distributed
# (replication factor 3) at consistency THREE coordinated by each node
# answers: all three are up and normal as each of them sees it.
#
# STATE_DIR (created if missing) receives cluster.env and node1..node3 (see
# cassandra-cluster-lib.sh). The last stdout lines are
#   export CASSANDRA_CLUSTER_HOSTS=127.0.0.1,127.0.0.2,127.0.0.3
#   export CASSANDRA_CLUSTER_PORT=<native port>
# all other output goes to stderr.
#
# Env:   CASSANDRA_CLUSTER_HEAP        -Xms/-Xmx of each node (default: 384M)
#        CASSANDRA_CLUSTER_NUM_TOKENS  num_tokens (default: 16)
#        CASSANDRA_CLUSTER_NAME        cluster_name (default: hos-cluster-test)
#        CASSANDRA_READY_TIMEOUT       seconds to wait for each node's CQL
#                                      answer, then for the cluster to be
#                                      whole (default: 180)
#        CASSANDRA_VERSION, CASSANDRA_JAVA, MVN, HOS_CACHE  as for cassandra-up.sh
# On failure every node is stopped (cassandra-cluster-down.sh) and the log
# tails are printed; the logs stay in STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
READY_TIMEOUT="${CASSANDRA_READY_TIMEOUT:-180}"
CASSANDRA_VERSION="${CASSANDRA_VERSION:-5.0.9}"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"

log() { echo "cassandra-cluster-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=tests/scripts/cassandra-cluster-lib.sh
source "${SCRIPT_DIR}/cassandra-cluster-lib.sh"

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
mkdir -p "$1"
STATE_DIR="$(cd "$1" && pwd)"
for ((n = 1; n <= CLUSTER_NODES; n++)); do
  if node_running "${n}"; then
    die "${STATE_DIR}/node${n}/cassandra.pid names a running Cassandra; run cassandra-cluster-down.sh ${STATE_DIR} first"
  fi
done
command -v python3 >/dev/null || die "python3 not found"

# ---- ports ---------------------------------------------------------------------
# The native and storage ports must be free on all three addresses; the JMX
# ports (JMX listens on 127.0.0.1 whatever the node's address) distinct. All
# are held open together while they are chosen.
read -r NATIVE_PORT STORAGE_PORT JMX1 JMX2 JMX3 <<<"$(python3 - "${CLUSTER_ADDRS[@]}" <<'PY'
import socket, sys

addrs = sys.argv[1:]
held, shared = [], []
while len(shared) < 2:
    first = socket.socket()
    first.bind((addrs[0], 0))
    port = first.getsockname()[1]
    socks = [first]
    try:
        for a in addrs[1:]:
            s = socket.socket()
            socks.append(s)
            s.bind((a, port))
    except OSError:
        for s in socks:
            s.close()
        continue
    held += socks
    shared.append(port)
jmx = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
    jmx.append(s.getsockname()[1])
print(" ".join(map(str, shared + jmx)))
PY
)"

CASSANDRA_CLUSTER_HOSTS="$(IFS=,; echo "${CLUSTER_ADDRS[*]}")"
CASSANDRA_CLUSTER_PORT="${NATIVE_PORT}"
CASSANDRA_CLUSTER_STORAGE_PORT="${STORAGE_PORT}"
CASSANDRA_CLUSTER_JMX_PORTS="${JMX1} ${JMX2} ${JMX3}"
CASSANDRA_CLUSTER_NAME="${CASSANDRA_CLUSTER_NAME:-hos-cluster-test}"
CASSANDRA_CLUSTER_SEEDS="$(for a in "${CLUSTER_ADDRS[@]}"; do printf '%s:%s,' "${a}" "${STORAGE_PORT}"; done)"
CASSANDRA_CLUSTER_SEEDS="${CASSANDRA_CLUSTER_SEEDS%,}"
CASSANDRA_CLUSTER_HEAP="${CASSANDRA_CLUSTER_HEAP:-384M}"
CASSANDRA_CLUSTER_NUM_TOKENS="${CASSANDRA_CLUSTER_NUM_TOKENS:-16}"
[[ "${CASSANDRA_CLUSTER_NAME}" =~ ^[A-Za-z0-9_-]+$ ]] \
  || die "CASSANDRA_CLUSTER_NAME may hold letters, digits, _ and - only: ${CASSANDRA_CLUSTER_NAME}"
{
  echo "CASSANDRA_CLUSTER_HOSTS=${CASSANDRA_CLUSTER_HOSTS}"
  echo "CASSANDRA_CLUSTER_PORT=${CASSANDRA_CLUSTER_PORT}"
  echo "CASSANDRA_CLUSTER_STORAGE_PORT=${CASSANDRA_CLUSTER_STORAGE_PORT}"
  echo "CASSANDRA_CLUSTER_JMX_PORTS=\"${CASSANDRA_CLUSTER_JMX_PORTS}\""
  echo "CASSANDRA_CLUSTER_NAME=${CASSANDRA_CLUSTER_NAME}"
  echo "CASSANDRA_CLUSTER_SEEDS=${CASSANDRA_CLUSTER_SEEDS}"
  echo "CASSANDRA_CLUSTER_HEAP=${CASSANDRA_CLUSTER_HEAP}"
  echo "CASSANDRA_CLUSTER_NUM_TOKENS=${CASSANDRA_CLUSTER_NUM_TOKENS}"
} > "${STATE_DIR}/cluster.env"

cleanup_on_failure() {
  local rc=$?
  if [[ ${rc} -ne 0 ]]; then
    log "start-up failed (exit ${rc}); stopping every node"
    "${SCRIPT_DIR}/cassandra-cluster-down.sh" "${STATE_DIR}" >&2 || true
  fi
  exit "${rc}"
}
trap cleanup_on_failure EXIT

# ---- start ---------------------------------------------------------------------
log "starting ${CLUSTER_NODES} nodes on ${CASSANDRA_CLUSTER_HOSTS} (native ${NATIVE_PORT}, storage ${STORAGE_PORT}," \
  "JMX ${CASSANDRA_CLUSTER_JMX_PORTS}, heap ${CASSANDRA_CLUSTER_HEAP} each)"
start_time=${SECONDS}
first=1
if [[ ! -f "${CACHE_ROOT}/cassandra-${CASSANDRA_VERSION}/.hos-complete" ]]; then
  # The first node fetches the jars (Maven) alone; the others reuse them.
  log "no cached jars yet: node 1 first (it fetches them)"
  start_node 1 "" || { show_node_logs 1; die "node 1 did not start"; }
  first=2
fi
pids=()
for ((n = first; n <= CLUSTER_NODES; n++)); do
  start_node "${n}" "" &
  pids+=("$!")
done
failed=()
for ((i = 0; i < ${#pids[@]}; i++)); do
  wait "${pids[i]}" || failed+=("$((first + i))")
done
if ((${#failed[@]})); then
  show_node_logs "${failed[@]}"
  die "node(s) ${failed[*]} did not start"
fi
nodes_up=$((SECONDS - start_time))
log "every node answers CQL after ${nodes_up} s; waiting up to ${READY_TIMEOUT} s for each to see all three"
if ! wait_cluster "${READY_TIMEOUT}" 1 2 3; then
  show_node_logs 1 2 3
  die "the nodes do not see each other as one cluster: ${CLUSTER_NOT_READY}"
fi
rss=""
for ((n = 1; n <= CLUSTER_NODES; n++)); do
  kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$(cat "${STATE_DIR}/node${n}/cassandra.pid")/status" 2>/dev/null || echo 0)"
  rss+="${rss:+, }$((kb / 1024))"
done
log "cluster of ${CLUSTER_NODES} ready after $((SECONDS - start_time)) s" \
  "(nodes answering CQL after ${nodes_up} s; RSS ${rss} MiB)"

echo "export CASSANDRA_CLUSTER_HOSTS=${CASSANDRA_CLUSTER_HOSTS}"
echo "export CASSANDRA_CLUSTER_PORT=${CASSANDRA_CLUSTER_PORT}"
