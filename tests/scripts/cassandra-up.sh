#!/usr/bin/env bash
# Start a real, single-node Apache Cassandra 5.0.x (on the machine's JDK 17)
# bound to 127.0.0.1.
#
# Usage: tests/scripts/cassandra-up.sh STATE_DIR
#        eval "$(tests/scripts/cassandra-up.sh STATE_DIR)"
#        ...
#        tests/scripts/cassandra-down.sh STATE_DIR
#
# The jars come from Maven Central (org.apache.cassandra:cassandra-all plus its
# runtime dependencies, copied by `mvn dependency:copy-dependencies` from a
# tiny generated pom) into
#   ${HOS_CACHE:-$HOME/.cache/hybrid-online-store}/cassandra-<version>/lib
# once; later runs reuse that folder and do no Maven work.
#
# STATE_DIR (created if missing) receives:
#   cassandra.pid         pid of the JVM (org.apache.cassandra.service.CassandraDaemon)
#   cassandra.log         its stdout/stderr (INFO level)
#   cassandra.env         facts to source: host, ports, version, credentials
#   conf/                 generated cassandra.yaml and logback.xml
#   data/                 data, commitlog, hints, saved caches (removed by
#                         cassandra-down.sh)
# The last stdout lines are `export CASSANDRA_HOST=127.0.0.1` and
# `export CASSANDRA_PORT=<native port>` (plus CASSANDRA_USERNAME and
# CASSANDRA_PASSWORD when CASSANDRA_AUTH=password); all other output goes to
# stderr.
#
# Env:   CASSANDRA_VERSION        cassandra-all version (default: 5.0.9)
#        CASSANDRA_AUTH           "password": PasswordAuthenticator +
#                                 CassandraAuthorizer, default superuser
#                                 cassandra/cassandra; anything else or unset:
#                                 AllowAllAuthenticator (no credentials)
#        CASSANDRA_HEAP           -Xms/-Xmx (default: 1G)
#        CASSANDRA_READY_TIMEOUT  seconds to wait for a CQL answer (default: 180)
#        CASSANDRA_FIXED_PORT     native (CQL) port to use instead of a free one:
#                                 a restart in place (after cassandra-down.sh on
#                                 the same STATE_DIR) keeps the address clients
#                                 were given (the data is gone: down removes it)
#        CASSANDRA_JAVA           java binary (default: java on PATH; JDK 17)
#        MVN                      maven binary (default: mvn)
# Env for a node of a multi-node cluster (cassandra-cluster-up.sh sets them;
# unset, the node is the single 127.0.0.1 node described above):
#        CASSANDRA_LISTEN_ADDRESS listen_address and rpc_address, the address
#                                 probed and exported (default: 127.0.0.1)
#        CASSANDRA_SEEDS          seed list (default: <listen address>:<storage port>)
#        CASSANDRA_CLUSTER_NAME   cluster_name (default: hos-test)
#        CASSANDRA_NUM_TOKENS     num_tokens (default: 1)
#        CASSANDRA_FIXED_STORAGE_PORT, CASSANDRA_FIXED_JMX_PORT
#                                 storage (gossip) and JMX ports to use instead
#                                 of free ones
#        CASSANDRA_YAML_EXTRA     lines appended to the generated cassandra.yaml
#        CASSANDRA_JVM_EXTRA_OPTS JVM options (space-separated) added last
#        CASSANDRA_KEEP_DATA=1    restart in place: keep STATE_DIR/data (the
#                                 node's sstables, commit log, hints, its
#                                 tokens and host id); on a failed start the
#                                 JVM is stopped by its pid, and data is kept
# Readiness: a CQL `SELECT release_version FROM system.local` answered over
# the native protocol (v4, with SASL PLAIN login when auth is on), by a
# stdlib-only Python probe, so no driver has to be installed first.
# On failure the JVM is stopped (via cassandra-down.sh) and the log tail is
# printed; the log stays in STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CASSANDRA_VERSION="${CASSANDRA_VERSION:-5.0.9}"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
DIST="${CACHE_ROOT}/cassandra-${CASSANDRA_VERSION}"
LIB="${DIST}/lib"
MARKER="${DIST}/.hos-complete"
JAVA="${CASSANDRA_JAVA:-java}"
MVN="${MVN:-mvn}"
HEAP="${CASSANDRA_HEAP:-1G}"
READY_TIMEOUT="${CASSANDRA_READY_TIMEOUT:-180}"
AUTH="${CASSANDRA_AUTH:-}"
LISTEN="${CASSANDRA_LISTEN_ADDRESS:-127.0.0.1}"
CLUSTER_NAME="${CASSANDRA_CLUSTER_NAME:-hos-test}"
NUM_TOKENS="${CASSANDRA_NUM_TOKENS:-1}"
KEEP_DATA="${CASSANDRA_KEEP_DATA:-}"
read -r -a JVM_EXTRA <<<"${CASSANDRA_JVM_EXTRA_OPTS:-}"

log() { echo "cassandra-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
[[ "${LISTEN}" =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] \
  || die "CASSANDRA_LISTEN_ADDRESS must be a loopback IPv4 address (127.x.y.z): ${LISTEN}"
[[ "${NUM_TOKENS}" =~ ^[1-9][0-9]*$ ]] || die "CASSANDRA_NUM_TOKENS is not a number: ${NUM_TOKENS}"
mkdir -p "$1"
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/cassandra.pid"
LOGFILE="${STATE_DIR}/cassandra.log"

# alive PID: true while PID is a live (non-zombie) java process started for
# this STATE_DIR (zombies have no readable /proc/PID/exe).
alive() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == java ]] || return 1
  tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null \
    | grep -qxF -- "-Dcassandra.storagedir=${STATE_DIR}/data"
}

if [[ -f "${PIDFILE}" ]] && alive "$(cat "${PIDFILE}")"; then
  die "${PIDFILE} names a running Cassandra; run cassandra-down.sh ${STATE_DIR} first"
fi

command -v python3 >/dev/null || die "python3 not found"
command -v "${JAVA}" >/dev/null || die "java not found (CASSANDRA_JAVA=${JAVA})"
java_major="$("${JAVA}" -XshowSettings:properties -version 2>&1 \
  | sed -n 's/^ *java\.specification\.version = //p')"
[[ "${java_major}" == 11 || "${java_major}" == 17 ]] \
  || die "Cassandra ${CASSANDRA_VERSION} needs JDK 11 or 17; ${JAVA} is ${java_major:-unknown}"

# ---- jars (Maven, cached) ---------------------------------------------------
if [[ -f "${MARKER}" && -d "${LIB}" ]]; then
  log "reusing ${LIB}"
else
  command -v "${MVN}" >/dev/null || die "maven not found (MVN=${MVN}); apt-get install maven"
  log "fetching cassandra-all ${CASSANDRA_VERSION} and its dependencies with Maven into ${LIB}"
  fetch_start=${SECONDS}
  mkdir -p "${DIST}"
  rm -rf "${LIB}"
  cat > "${DIST}/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by tests/scripts/cassandra-up.sh: only used to copy the jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>hos.test</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>${CASSANDRA_VERSION}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>3.8.1</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
  # A private local repository under the cache keeps ~/.m2 untouched and
  # lets CI cache one folder.
  "${MVN}" -B -q -f "${DIST}/pom.xml" \
    -Dmaven.repo.local="${CACHE_ROOT}/maven-repo" \
    dependency:copy-dependencies \
    -DincludeScope=runtime \
    -DoutputDirectory="${LIB}" >&2 \
    || die "maven could not fetch cassandra-all ${CASSANDRA_VERSION}"
  [[ -f "${LIB}/cassandra-all-${CASSANDRA_VERSION}.jar" ]] \
    || die "cassandra-all-${CASSANDRA_VERSION}.jar missing from ${LIB}"
  date -u +%Y-%m-%dT%H:%M:%SZ > "${MARKER}"
  log "fetched $(find "${LIB}" -name '*.jar' | wc -l) jars in $((SECONDS - fetch_start)) s"
fi

# ---- ports, config -----------------------------------------------------------
# Free loopback TCP ports chosen by the kernel, held open together so they
# are distinct (a small window remains between closing and Cassandra binding).
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
read -r NATIVE_PORT STORAGE_PORT JMX_PORT <<<"$(free_ports 3)"
if [[ -n "${CASSANDRA_FIXED_PORT:-}" ]]; then
  [[ "${CASSANDRA_FIXED_PORT}" =~ ^[0-9]+$ ]] || die "CASSANDRA_FIXED_PORT is not a port: ${CASSANDRA_FIXED_PORT}"
  NATIVE_PORT="${CASSANDRA_FIXED_PORT}"
  # The other two must differ from it (it is free now, so the kernel may pick it).
  for ((i = 0; i < 5; i++)); do
    [[ "${STORAGE_PORT}" != "${NATIVE_PORT}" && "${JMX_PORT}" != "${NATIVE_PORT}" ]] && break
    read -r STORAGE_PORT JMX_PORT <<<"$(free_ports 2)"
  done
fi
if [[ -n "${CASSANDRA_FIXED_STORAGE_PORT:-}${CASSANDRA_FIXED_JMX_PORT:-}" ]]; then
  for v in CASSANDRA_FIXED_STORAGE_PORT CASSANDRA_FIXED_JMX_PORT; do
    [[ -z "${!v:-}" || "${!v}" =~ ^[0-9]+$ ]] || die "${v} is not a port: ${!v}"
  done
  STORAGE_PORT="${CASSANDRA_FIXED_STORAGE_PORT:-${STORAGE_PORT}}"
  JMX_PORT="${CASSANDRA_FIXED_JMX_PORT:-${JMX_PORT}}"
  # A free port the kernel picked may be one of the fixed ones: pick again.
  for ((i = 0; i < 5; i++)); do
    ports="$(printf '%s\n' "${NATIVE_PORT}" "${STORAGE_PORT}" "${JMX_PORT}")"
    [[ "$(sort -u <<<"${ports}" | wc -l)" -eq 3 ]] && break
    [[ -n "${CASSANDRA_FIXED_STORAGE_PORT:-}" ]] || read -r STORAGE_PORT <<<"$(free_ports 1)"
    [[ -n "${CASSANDRA_FIXED_JMX_PORT:-}" ]] || read -r JMX_PORT <<<"$(free_ports 1)"
  done
  [[ "$(printf '%s\n' "${NATIVE_PORT}" "${STORAGE_PORT}" "${JMX_PORT}" | sort -u | wc -l)" -eq 3 ]] \
    || die "native, storage and JMX ports must differ: ${NATIVE_PORT} ${STORAGE_PORT} ${JMX_PORT}"
fi
SEEDS="${CASSANDRA_SEEDS:-${LISTEN}:${STORAGE_PORT}}"

DATA="${STATE_DIR}/data"
CONF="${STATE_DIR}/conf"
if [[ "${KEEP_DATA}" == 1 && -d "${DATA}" ]]; then
  log "keeping ${DATA} (CASSANDRA_KEEP_DATA=1: restart in place)"
  rm -rf "${CONF}"
else
  rm -rf "${DATA}" "${CONF}"
fi
mkdir -p "${DATA}/data" "${DATA}/commitlog" "${DATA}/saved_caches" \
  "${DATA}/hints" "${DATA}/cdc_raw" "${CONF}/triggers"

if [[ "${AUTH}" == password ]]; then
  AUTHENTICATOR=PasswordAuthenticator
  AUTHORIZER=CassandraAuthorizer
else
  AUTHENTICATOR=AllowAllAuthenticator
  AUTHORIZER=AllowAllAuthorizer
fi

# Minimal single-node config; everything not named keeps Cassandra's default.
cat > "${CONF}/cassandra.yaml" <<EOF
cluster_name: ${CLUSTER_NAME}
num_tokens: ${NUM_TOKENS}
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "${SEEDS}"
listen_address: ${LISTEN}
rpc_address: ${LISTEN}
storage_port: ${STORAGE_PORT}
native_transport_port: ${NATIVE_PORT}
start_native_transport: true
authenticator: ${AUTHENTICATOR}
authorizer: ${AUTHORIZER}
role_manager: CassandraRoleManager
data_file_directories:
  - ${DATA}/data
commitlog_directory: ${DATA}/commitlog
saved_caches_directory: ${DATA}/saved_caches
hints_directory: ${DATA}/hints
cdc_raw_directory: ${DATA}/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
key_cache_size: 0MiB
counter_cache_size: 0MiB
row_cache_size: 0MiB
auto_snapshot: false
snapshot_before_compaction: false
disk_failure_policy: stop
commit_failure_policy: stop
EOF
if [[ -n "${CASSANDRA_YAML_EXTRA:-}" ]]; then
  printf '%s\n' "${CASSANDRA_YAML_EXTRA}" >> "${CONF}/cassandra.yaml"
fi

cat > "${CONF}/logback.xml" <<'EOF'
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder>
      <pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="STDOUT" />
  </root>
  <logger name="org.apache.cassandra" level="INFO"/>
  <logger name="com.datastax" level="WARN"/>
  <logger name="io.netty" level="WARN"/>
</configuration>
EOF

# ---- start -------------------------------------------------------------------
# JPMS flags: conf/jvm17-server.options of Cassandra 5.0 (the same list works
# on JDK 11, which ignores none of them).
JPMS_OPTS=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
)
# GC and general flags from jvm-server.options / jvm17-server.options.
JVM_OPTS=(
  "-Xms${HEAP}" "-Xmx${HEAP}"
  -Xss256k
  -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
  -XX:G1HeapRegionSize=16m -XX:G1RSetUpdatingPauseTimePercent=5
  -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
  -XX:+UseThreadPriorities -XX:+PerfDisableSharedMem
  -XX:+ExitOnOutOfMemoryError
  "-XX:ErrorFile=${STATE_DIR}/hs_err_%p.log"
  -Djava.net.preferIPv4Stack=true
  -Dchronicle.analytics.disable=true
)
# jamm measures object sizes (memtable accounting) through the agent.
JAMM=("${LIB}"/jamm-*.jar)
if [[ -f "${JAMM[0]}" ]]; then
  JVM_OPTS+=("-javaagent:${JAMM[0]}")
fi
# Single-node start-up shortcuts: no gossip settling, superuser created at
# once (default waits 10 s), JMX on loopback only.
CASSANDRA_OPTS=(
  "-Dcassandra.config=file://${CONF}/cassandra.yaml"
  "-Dcassandra.storagedir=${DATA}"
  "-Dcassandra.logdir=${STATE_DIR}"
  "-Dcassandra.triggers_dir=${CONF}/triggers"
  "-Dlogback.configurationFile=file://${CONF}/logback.xml"
  -Dcassandra-foreground=yes
  -Dcassandra.skip_wait_for_gossip_to_settle=0
  -Dcassandra.superuser_setup_delay_ms=0
  "-Dcassandra.jmx.local.port=${JMX_PORT}"
  "${JVM_EXTRA[@]}"
)

log "starting Cassandra ${CASSANDRA_VERSION} on ${LISTEN}:${NATIVE_PORT} (storage ${STORAGE_PORT}, JMX ${JMX_PORT}, heap ${HEAP}, auth ${AUTHENTICATOR})"

started=0
# Restart in place gone wrong: stop the JVM by its pid (SIGTERM, 10 s grace,
# SIGKILL), as cassandra-down.sh does, but keep data/ for the next attempt.
stop_keeping_data() {
  local i
  if alive "${PID}"; then
    kill -TERM "${PID}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      alive "${PID}" || break
      sleep 0.1
    done
    if alive "${PID}"; then
      kill -KILL "${PID}" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        alive "${PID}" || break
        sleep 0.1
      done
    fi
  fi
  rm -f "${PIDFILE}"
}
cleanup_on_failure() {
  local rc=$?
  if [[ ${rc} -ne 0 && ${started} -eq 1 ]]; then
    log "start-up failed (exit ${rc}); stopping what was started"
    if [[ "${KEEP_DATA}" == 1 ]]; then
      stop_keeping_data
    else
      "${SCRIPT_DIR}/cassandra-down.sh" "${STATE_DIR}" >&2 || true
    fi
  fi
  exit "${rc}"
}
trap cleanup_on_failure EXIT

show_log() {
  log "---- last 60 lines of ${LOGFILE} ----"
  tail -n 60 "${LOGFILE}" >&2 || true
  log "---- end of ${LOGFILE} ----"
}

start_time=${SECONDS}
started=1
"${JAVA}" "${JVM_OPTS[@]}" "${JPMS_OPTS[@]}" "${CASSANDRA_OPTS[@]}" \
  -cp "${LIB}/*" org.apache.cassandra.service.CassandraDaemon \
  </dev/null >"${LOGFILE}" 2>&1 &
PID=$!
echo "${PID}" > "${PIDFILE}"

# ---- readiness: a real CQL query ---------------------------------------------
# Exit 0 and print release_version when the query answers; non-zero otherwise.
cql_probe() {
  python3 "${SCRIPT_DIR}/cql_probe.py" version "$@"
}

if [[ "${AUTH}" == password ]]; then
  CQL_USER=cassandra CQL_PASSWORD=cassandra
else
  CQL_USER="" CQL_PASSWORD=""
fi

log "waiting up to ${READY_TIMEOUT} s for a CQL answer on ${LISTEN}:${NATIVE_PORT}"
deadline=$((SECONDS + READY_TIMEOUT))
probe_err="${STATE_DIR}/.cql-probe.err"
until release="$(cql_probe "${LISTEN}" "${NATIVE_PORT}" "${CQL_USER}" "${CQL_PASSWORD}" 2>"${probe_err}")"; do
  if ! alive "${PID}"; then
    show_log; die "Cassandra exited during start-up"
  fi
  if (( SECONDS >= deadline )); then
    log "last probe error: $(tail -n 1 "${probe_err}" 2>/dev/null)"
    show_log; die "no CQL answer after ${READY_TIMEOUT} s"
  fi
  sleep 1
done
rm -f "${probe_err}"
rss_kb="$(awk '/^VmRSS:/ {print $2}' "/proc/${PID}/status" 2>/dev/null || echo 0)"
log "Cassandra ${release} ready on ${LISTEN}:${NATIVE_PORT} after $((SECONDS - start_time)) s (pid ${PID}, RSS $((rss_kb / 1024)) MiB)"

umask 077
{
  echo "CASSANDRA_HOST=${LISTEN}"
  echo "CASSANDRA_PORT=${NATIVE_PORT}"
  echo "CASSANDRA_STORAGE_PORT=${STORAGE_PORT}"
  echo "CASSANDRA_JMX_PORT=${JMX_PORT}"
  echo "CASSANDRA_VERSION=${release}"
  echo "CASSANDRA_LIB=${LIB}"
  if [[ "${AUTH}" == password ]]; then
    echo "CASSANDRA_USERNAME=cassandra"
    echo "CASSANDRA_PASSWORD=cassandra"
  fi
} > "${STATE_DIR}/cassandra.env"
umask 022

echo "export CASSANDRA_HOST=${LISTEN}"
echo "export CASSANDRA_PORT=${NATIVE_PORT}"
if [[ "${AUTH}" == password ]]; then
  echo "export CASSANDRA_USERNAME=cassandra"
  echo "export CASSANDRA_PASSWORD=cassandra"
fi
