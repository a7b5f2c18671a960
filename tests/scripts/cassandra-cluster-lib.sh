# Shared by cassandra-cluster-up.sh, cassandra-cluster-down.sh and
# cassandra-cluster-node.sh (sourced, not run): the layout of a 3-node
# Cassandra cluster's state dir, starting and stopping one node by its pid,
# and the CQL probe that says whether the cluster is whole.
#
# Layout of STATE_DIR:
#   cluster.env     facts to source (written by cassandra-cluster-up.sh):
#                   CASSANDRA_CLUSTER_HOSTS, CASSANDRA_CLUSTER_PORT (native,
#                   the same on every node), CASSANDRA_CLUSTER_STORAGE_PORT,
#                   CASSANDRA_CLUSTER_JMX_PORTS (node 1 first),
#                   CASSANDRA_CLUSTER_NAME, CASSANDRA_CLUSTER_SEEDS,
#                   CASSANDRA_CLUSTER_HEAP, CASSANDRA_CLUSTER_NUM_TOKENS
#   nodeN/          node N's state dir as cassandra-up.sh makes it (N = 1..3,
#                   address 127.0.0.N): cassandra.pid, cassandra.log,
#                   cassandra.env, conf/, data/
#   nodeN.up.log    the stderr of node N's last cassandra-up.sh run

CLUSTER_NODES=3
CLUSTER_ADDRS=(127.0.0.1 127.0.0.2 127.0.0.3)

# node_addr N: 127.0.0.N
node_addr() { echo "${CLUSTER_ADDRS[$(($1 - 1))]}"; }

# node_pid_alive DIR PID: true while PID is a live (non-zombie) java process
# started for the node state dir DIR (as cassandra-up.sh checks it).
node_pid_alive() {
  local exe
  exe="$(readlink "/proc/$2/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == java ]] || return 1
  tr '\0' '\n' <"/proc/$2/cmdline" 2>/dev/null \
    | grep -qxF -- "-Dcassandra.storagedir=$1/data"
}

# node_running N: true while node N's recorded pid is its live JVM.
node_running() {
  local d="${STATE_DIR}/node$1" pid
  [[ -f "${d}/cassandra.pid" ]] || return 1
  pid="$(cat "${d}/cassandra.pid")"
  [[ "${pid}" =~ ^[0-9]+$ ]] && node_pid_alive "${d}" "${pid}"
}

# stop_node SIGNAL N: sends SIGNAL (TERM or KILL) to node N's JVM by its pid
# and waits until it is gone (TERM: up to 60 s, then KILL). Keeps the node's
# data (unlike cassandra-down.sh) so that start_node can bring it back.
stop_node() {
  local sig="$1" n="$2" d="${STATE_DIR}/node$2" pid i
  if ! node_running "${n}"; then
    rm -f "${d}/cassandra.pid"
    return 0
  fi
  pid="$(cat "${d}/cassandra.pid")"
  kill "-${sig}" "${pid}" 2>/dev/null || true
  for ((i = 0; i < 600; i++)); do
    node_pid_alive "${d}" "${pid}" || break
    sleep 0.1
  done
  if node_pid_alive "${d}" "${pid}"; then
    log "node ${n} (pid ${pid}) still running 60 s after SIG${sig}; sending SIGKILL"
    kill -KILL "${pid}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      node_pid_alive "${d}" "${pid}" || break
      sleep 0.1
    done
  fi
  node_pid_alive "${d}" "${pid}" && return 1
  rm -f "${d}/cassandra.pid"
}

# start_node N KEEP: runs cassandra-up.sh for node N with the cluster's
# settings (cluster.env must be sourced); KEEP=1 restarts it in place on its
# own data. Its stderr goes to STATE_DIR/nodeN.up.log.
start_node() {
  local n="$1" keep="$2" jmx
  read -r -a jmx <<<"${CASSANDRA_CLUSTER_JMX_PORTS}"
  CASSANDRA_LISTEN_ADDRESS="$(node_addr "${n}")" \
    CASSANDRA_SEEDS="${CASSANDRA_CLUSTER_SEEDS}" \
    CASSANDRA_CLUSTER_NAME="${CASSANDRA_CLUSTER_NAME}" \
    CASSANDRA_NUM_TOKENS="${CASSANDRA_CLUSTER_NUM_TOKENS}" \
    CASSANDRA_HEAP="${CASSANDRA_CLUSTER_HEAP}" \
    CASSANDRA_FIXED_PORT="${CASSANDRA_CLUSTER_PORT}" \
    CASSANDRA_FIXED_STORAGE_PORT="${CASSANDRA_CLUSTER_STORAGE_PORT}" \
    CASSANDRA_FIXED_JMX_PORT="${jmx[$((n - 1))]}" \
    CASSANDRA_YAML_EXTRA="${CLUSTER_YAML_EXTRA}" \
    CASSANDRA_JVM_EXTRA_OPTS="${CLUSTER_JVM_EXTRA_OPTS}" \
    CASSANDRA_KEEP_DATA="${keep}" \
    CASSANDRA_AUTH="" \
    "${SCRIPT_DIR}/cassandra-up.sh" "${STATE_DIR}/node${n}" \
    >/dev/null 2>"${STATE_DIR}/node${n}.up.log"
}

# What every node gets on top of cassandra-up.sh's single-node config: a
# fresh cluster does not stream (every node is a seed; nothing to bootstrap
# from), no hint throttling surprises, and short gossip waits.
CLUSTER_YAML_EXTRA="auto_bootstrap: false"
# ring_delay: how long start-up waits for gossip to propagate (30 s by
# default); C1 only, one JIT compiler thread and one GC thread: three JVMs
# share 2 cores with the rest of the suite, and the tests' load is light.
CLUSTER_JVM_EXTRA_OPTS="-Dcassandra.ring_delay_ms=1000 -XX:TieredStopAtLevel=1 -XX:CICompilerCount=1"
CLUSTER_JVM_EXTRA_OPTS+=" -XX:ParallelGCThreads=1 -XX:ConcGCThreads=1"

# cluster_probe ADDR PORT MEMBER...: exit 0 when the node at ADDR:PORT sees
# the running nodes MEMBER... as one cluster (see tests/scripts/cql_probe.py);
# otherwise prints why on stderr and exits 1.
cluster_probe() {
  python3 "$(dirname "${BASH_SOURCE[0]}")/cql_probe.py" cluster "$@"
}

# wait_cluster TIMEOUT N...: waits until each of the nodes N... sees all of
# them as one (cluster_probe on each); returns 1 after TIMEOUT seconds or
# when one of them is not running, with CLUSTER_NOT_READY saying why.
wait_cluster() {
  local timeout="$1" deadline n why addrs=()
  shift
  for n in "$@"; do addrs+=("$(node_addr "${n}")"); done
  deadline=$((SECONDS + timeout))
  CLUSTER_NOT_READY=""
  while true; do
    why=""
    for n in "$@"; do
      if ! why="$(cluster_probe "$(node_addr "${n}")" "${CASSANDRA_CLUSTER_PORT}" "${addrs[@]}" 2>&1 >/dev/null)"; then
        break
      fi
      why=""
    done
    [[ -z "${why}" ]] && return 0
    CLUSTER_NOT_READY="${why}"
    for n in "$@"; do
      node_running "${n}" || { CLUSTER_NOT_READY="node ${n} is not running; ${why}"; return 1; }
    done
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

# running_nodes: the numbers of the nodes whose JVM is running.
running_nodes() {
  local n out=()
  for ((n = 1; n <= CLUSTER_NODES; n++)); do
    node_running "${n}" && out+=("${n}")
  done
  echo "${out[*]}"
}

# show_node_logs N...: the tails of the nodes' up-script and server logs.
show_node_logs() {
  local n
  for n in "$@"; do
    log "---- node ${n}: last lines of ${STATE_DIR}/node${n}.up.log ----"
    tail -n 15 "${STATE_DIR}/node${n}.up.log" >&2 2>/dev/null || true
    log "---- node ${n}: last lines of ${STATE_DIR}/node${n}/cassandra.log ----"
    tail -n 30 "${STATE_DIR}/node${n}/cassandra.log" >&2 2>/dev/null || true
  done
}
