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
# the running nodes MEMBER... (addresses, ADDR among them) as one:
# system.peers lists the other members with tokens and the node's own schema
# version (a stopped node stays listed; it is not looked at), and a read of
# system_distributed (replication factor 3: every node holds every row) at
# consistency ONE/TWO/THREE for 1/2/3 members answers, which needs that many
# replicas up as this coordinator sees them, and answering. Otherwise prints
# why on stderr and exits 1.
cluster_probe() {
  python3 - "$@" <<'PY'
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])
members = sys.argv[3:]
ONE = 0x0001
LEVEL = {1: 0x0001, 2: 0x0002, 3: 0x0003}[len(members)]


class CqlError(Exception):
    pass


def frame(opcode, body):
    return struct.pack(">BBhBi", 0x04, 0, 0, opcode, len(body)) + body


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def read_frame(sock):
    _v, _f, _s, opcode, length = struct.unpack(">BBhBi", recv_exact(sock, 9))
    return opcode, recv_exact(sock, length)


def short_string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


class Reader:
    def __init__(self, body):
        self.b, self.pos = body, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take(">H")
        s = self.b[self.pos:self.pos + n].decode(errors="replace")
        self.pos += n
        return s

    def bytes_(self):
        n = self.take(">i")
        if n < 0:
            return None
        v = self.b[self.pos:self.pos + n]
        self.pos += n
        return v

    def option(self):
        kind = self.take(">H")
        if kind == 0x0000:
            self.string()
        elif kind in (0x0020, 0x0022):
            self.option()
        elif kind == 0x0021:
            self.option(); self.option()
        elif kind == 0x0030:
            self.string(); self.string()
            for _ in range(self.take(">H")):
                self.string(); self.option()
        elif kind == 0x0031:
            for _ in range(self.take(">H")):
                self.option()


def query(sock, cql, consistency):
    """Rows of a QUERY as lists of raw values (bytes or None)."""
    q = cql.encode()
    sock.sendall(frame(0x07, struct.pack(">i", len(q)) + q + struct.pack(">HB", consistency, 0)))
    op, body = read_frame(sock)
    r = Reader(body)
    if op == 0x00:
        code = r.take(">i")
        raise CqlError("%s: CQL error 0x%04x: %s" % (cql, code, r.string()))
    if op != 0x08 or r.take(">i") != 2:
        raise CqlError("%s: not a rows result" % cql)
    flags, ncols = r.take(">i"), r.take(">i")
    if flags & 0x0002:
        r.bytes_()
    if not flags & 0x0004:
        if flags & 0x0001:
            r.string(); r.string()
        for _ in range(ncols):
            if not flags & 0x0001:
                r.string(); r.string()
            r.string(); r.option()
    return [[r.bytes_() for _ in range(ncols)] for _ in range(r.take(">i"))]


def inet(b):
    return socket.inet_ntop(socket.AF_INET if len(b) == 4 else socket.AF_INET6, b) if b else None


try:
    s = socket.create_connection((host, port), timeout=5)
    s.settimeout(15)
    s.sendall(frame(0x01, struct.pack(">H", 1) + short_string("CQL_VERSION") + short_string("3.0.0")))
    op, body = read_frame(s)
    if op != 0x02:
        raise CqlError("STARTUP answered with opcode %d" % op)
    (local_schema, local_tokens), = query(s, "SELECT schema_version, tokens FROM system.local", ONE)
    if not local_tokens:
        raise CqlError("no tokens yet")
    peers = {inet(p): (v, t) for p, v, t in query(s, "SELECT peer, schema_version, tokens FROM system.peers", ONE)}
    missing = [m for m in members if m != host and m not in peers]
    if missing:
        raise CqlError("system.peers lists %s, not %s" % (sorted(peers), missing))
    for p, (v, t) in sorted(peers.items()):
        if p not in members:
            continue
        if not t:
            raise CqlError("peer %s has no tokens yet" % p)
        if v != local_schema:
            raise CqlError("peer %s has another schema version (schema not agreed yet)" % p)
    query(s, "SELECT keyspace_name FROM system_distributed.view_build_status LIMIT 1", LEVEL)
except (OSError, EOFError, CqlError, struct.error, ValueError) as e:
    sys.exit("%s: %s" % (host, e))
PY
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
