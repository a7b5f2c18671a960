#!/usr/bin/env bash
# Start a real Redis Cluster on 127.0.0.1: 6 redis-server nodes in cluster
# mode (3 masters, 3 replicas, made by `redis-cli --cluster create
# --cluster-replicas 1`), no persistence, free ports chosen by the kernel.
#
# Usage: tests/scripts/redis-cluster-up.sh STATE_DIR
#        eval "$(tests/scripts/redis-cluster-up.sh STATE_DIR)"
#        tests/scripts/redis-cluster-node.sh STATE_DIR stop|kill|start N   # failover tests
#        tests/scripts/redis-cluster-down.sh STATE_DIR
#
# redis-server is installed with apt-get when missing (as redis-up.sh).
#
# Returns once every node reports cluster_state:ok with all 16384 slots
# covered, sees all 6 nodes (none failed), 3 masters own slots and every
# replica's link to its master is up with writes streaming to it.
#
# STATE_DIR (created if missing) receives, for N in 0..5:
#   nodeN.pid        pid of node N's redis-server
#   nodeN.log        its log (kept by redis-cluster-down.sh; appended on restart)
#   nodeN/redis.conf its configuration (port, cluster bus port, nodes.conf);
#                    redis-cluster-node.sh restarts the node from it in place
#   nodeN/nodes.conf the node's own cluster state file (node id, epochs)
#   cluster.env      facts to source: REDIS_CLUSTER_NODES, REDIS_CLUSTER_PORTS
#                    (space-separated, node 0 first), REDIS_CLUSTER_PORT_N,
#                    REDIS_CLUSTER_BUS_PORTS, REDIS_CLUSTER_INITIAL_MASTERS
#                    (node numbers that were masters after creation; roles
#                    change on failover, ask the cluster for the current ones),
#                    REDIS_CLUSTER_NODE_TIMEOUT, REDIS_VERSION, REDIS_PASSWORD
# The last stdout line is
#   export REDIS_CLUSTER_NODES=127.0.0.1:p0,127.0.0.1:p1,...,127.0.0.1:p5
# (Feast's connection_string form for redis_type: redis_cluster); all other
# output goes to stderr.
#
# Each node's cluster bus port is a second free port given by `cluster-port`
# (the default data port + 10000 can exceed 65535 for kernel-chosen ports).
#
# Env:   REDIS_SERVER                redis-server binary (default: on PATH)
#        REDIS_CLI                   redis-cli binary (default: on PATH)
#        REDIS_PASSWORD              if set, every node gets requirepass and
#                                    masterauth; clients must send it
#        REDIS_CLUSTER_NODE_TIMEOUT  cluster-node-timeout in ms (default: 2000;
#                                    a master failover then takes a few seconds)
#        REDIS_READY_TIMEOUT         seconds to wait for each stage (default: 60)
# On failure every node is stopped (via redis-cluster-down.sh) and the log
# tails are printed; the logs stay in STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
READY_TIMEOUT="${REDIS_READY_TIMEOUT:-60}"
NODE_TIMEOUT="${REDIS_CLUSTER_NODE_TIMEOUT:-2000}"
PASSWORD="${REDIS_PASSWORD:-}"
NODES=6

log() { echo "redis-cluster-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=tests/scripts/redis-ha-lib.sh
source "${SCRIPT_DIR}/redis-ha-lib.sh"

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
[[ "${NODE_TIMEOUT}" =~ ^[0-9]+$ ]] || die "REDIS_CLUSTER_NODE_TIMEOUT is not a number of ms: ${NODE_TIMEOUT}"
mkdir -p "$1"
STATE_DIR="$(cd "$1" && pwd)"

for ((n = 0; n < NODES; n++)); do
  if pidfile_alive "${STATE_DIR}/node${n}.pid"; then
    die "${STATE_DIR}/node${n}.pid names a running redis-server; run redis-cluster-down.sh ${STATE_DIR} first"
  fi
done
command -v python3 >/dev/null || die "python3 not found"
ensure_redis
check_password
if [[ -n "${PASSWORD}" ]]; then
  # REDISCLI_AUTH keeps the password off every command line (redis-cli and
  # its --cluster mode both read it).
  export REDISCLI_AUTH="${PASSWORD}"
fi

# ---- configure -----------------------------------------------------------------
read -r -a ALL_PORTS <<<"$(free_ports $((2 * NODES)))"
PORTS=("${ALL_PORTS[@]:0:NODES}")
BUS_PORTS=("${ALL_PORTS[@]:NODES:NODES}")

for ((n = 0; n < NODES; n++)); do
  dir="${STATE_DIR}/node${n}"
  rm -rf "${dir}"
  mkdir -p "${dir}"
  rm -f "${STATE_DIR}/node${n}.log"
  {
    echo "port ${PORTS[n]}"
    echo "bind 127.0.0.1"
    echo "cluster-enabled yes"
    echo "cluster-port ${BUS_PORTS[n]}"
    echo "cluster-config-file ${dir}/nodes.conf"
    echo "cluster-node-timeout ${NODE_TIMEOUT}"
    # No persistence: a restarted node starts empty and resyncs from its master.
    echo 'save ""'
    echo "appendonly no"
    # Full syncs start at once (the default waits 5 s for more replicas).
    echo "repl-diskless-sync-delay 0"
    # A replication PING every second: wait_streaming (redis-ha-lib.sh) sees
    # the stream move within a second or two.
    echo "repl-ping-replica-period 1"
    echo "daemonize no"
    echo 'logfile ""'
    echo "dir ${dir}"
    if [[ -n "${PASSWORD}" ]]; then
      echo "requirepass \"${PASSWORD}\""
      echo "masterauth \"${PASSWORD}\""
    fi
  } > "${dir}/redis.conf"
  chmod 600 "${dir}/redis.conf"
done

started=0
cleanup_on_failure() {
  local rc=$?
  if [[ ${rc} -ne 0 && ${started} -eq 1 ]]; then
    log "start-up failed (exit ${rc}); stopping what was started"
    "${SCRIPT_DIR}/redis-cluster-down.sh" "${STATE_DIR}" >&2 || true
  fi
  exit "${rc}"
}
trap cleanup_on_failure EXIT

# ---- start ----------------------------------------------------------------------
started=1
for ((n = 0; n < NODES; n++)); do
  log "starting node ${n} on 127.0.0.1:${PORTS[n]} (bus ${BUS_PORTS[n]})"
  launch "${STATE_DIR}/node${n}/redis.conf" "${STATE_DIR}/node${n}.log" "${STATE_DIR}/node${n}.pid"
done
for ((n = 0; n < NODES; n++)); do
  wait_pong "${PORTS[n]}" "${STATE_DIR}/node${n}.pid" "${STATE_DIR}/node${n}.log" "${READY_TIMEOUT}"
done
version="$(info_field "${PORTS[0]}" server redis_version)"

# ---- create the cluster -------------------------------------------------------
addrs=()
for p in "${PORTS[@]}"; do addrs+=("127.0.0.1:${p}"); done
log "redis-cli --cluster create ${addrs[*]} --cluster-replicas 1"
if ! "${REDIS_CLI}" --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >&2; then
  for ((n = 0; n < NODES; n++)); do show_log "${STATE_DIR}/node${n}.log"; done
  die "redis-cli --cluster create failed"
fi

deadline=$((SECONDS + READY_TIMEOUT))
until cluster_healthy "${NODES}" "${PORTS[@]}"; do
  if ((SECONDS >= deadline)); then
    for ((n = 0; n < NODES; n++)); do show_log "${STATE_DIR}/node${n}.log"; done
    die "cluster not healthy after ${READY_TIMEOUT} s: ${CLUSTER_UNHEALTHY}"
  fi
  sleep 0.2
done

masters=()
for ((n = 0; n < NODES; n++)); do
  if [[ "$(info_field "${PORTS[n]}" replication role)" == master ]]; then masters+=("${n}"); fi
  wait_streaming "${PORTS[n]}" "${READY_TIMEOUT}"
done
log "Redis ${version} cluster ready: masters are nodes ${masters[*]}; ports ${PORTS[*]}"

NODES_CSV="$(IFS=,; echo "${addrs[*]}")"
umask 077
{
  echo "REDIS_CLUSTER_NODES=${NODES_CSV}"
  echo "REDIS_CLUSTER_PORTS=\"${PORTS[*]}\""
  for ((n = 0; n < NODES; n++)); do echo "REDIS_CLUSTER_PORT_${n}=${PORTS[n]}"; done
  echo "REDIS_CLUSTER_BUS_PORTS=\"${BUS_PORTS[*]}\""
  echo "REDIS_CLUSTER_INITIAL_MASTERS=\"${masters[*]}\""
  echo "REDIS_CLUSTER_NODE_TIMEOUT=${NODE_TIMEOUT}"
  echo "REDIS_VERSION=${version}"
  if [[ -n "${PASSWORD}" ]]; then echo "REDIS_PASSWORD=${PASSWORD}"; fi
} > "${STATE_DIR}/cluster.env"
umask 022

echo "export REDIS_CLUSTER_NODES=${NODES_CSV}"
