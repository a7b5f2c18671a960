#!/usr/bin/env bash
# Stop, kill or restart one node of the Redis Cluster started by
# redis-cluster-up.sh, in place, for failover tests.
#
# Usage: tests/scripts/redis-cluster-node.sh STATE_DIR stop|kill|start N
#   stop N   SIGTERM to node N's pid (10 s grace, then SIGKILL); returns once
#            it has exited. A master stopping this way first lets its replica
#            catch up (Redis 7 shutdown), so no acknowledged write is lost.
#            Its replica is promoted after cluster-node-timeout
#            (REDIS_CLUSTER_NODE_TIMEOUT in cluster.env) plus up to about a
#            second of election.
#   kill N   SIGKILL to node N's pid (a crash); returns once it has exited.
#            Writes the master acknowledged but had not yet replicated are
#            lost (replication is asynchronous).
#   start N  restart node N from STATE_DIR/nodeN/redis.conf: same port, same
#            cluster bus port, same nodes.conf (same node id), log appended to
#            nodeN.log, no data (a dump.rdb a replica kept from a full sync is
#            deleted first, so no stale keys come back). Returns once the
#            whole cluster is healthy again (see redis-cluster-up.sh) and, if
#            the node is a replica, writes stream to it (wait_streaming in
#            redis-ha-lib.sh); a former master whose replica was promoted
#            rejoins as a replica of it and resyncs.
# N is 0..5 (node numbers as in cluster.env). Which nodes are masters now:
#   redis-cli -p PORT cluster nodes   or   redis-cli -p PORT role
#
# Nothing is persisted: a master restarted BEFORE its replica was promoted
# (within cluster-node-timeout) comes back empty and keeps its slots, so its
# keys are lost. Wait for the promotion before `start` to keep them.
#
# Env:   REDIS_SERVER, REDIS_CLI   as for redis-cluster-up.sh
#        REDIS_READY_TIMEOUT       seconds `start` waits (default: 60)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
READY_TIMEOUT="${REDIS_READY_TIMEOUT:-60}"
NODES=6

log() { echo "redis-cluster-node: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=tests/scripts/redis-ha-lib.sh
source "${SCRIPT_DIR}/redis-ha-lib.sh"

[[ $# -eq 3 ]] || die "usage: $0 STATE_DIR stop|kill|start N"
[[ -d "$1" ]] || die "$1: no such directory"
STATE_DIR="$(cd "$1" && pwd)"
action="$2"
n="$3"
[[ "${n}" =~ ^[0-5]$ ]] || die "node number must be 0..5, not '${n}'"
ENV_FILE="${STATE_DIR}/cluster.env"
[[ -f "${ENV_FILE}" ]] || die "${ENV_FILE} missing; is the cluster up (redis-cluster-up.sh)?"
# shellcheck disable=SC1090
source "${ENV_FILE}"
read -r -a PORTS <<<"${REDIS_CLUSTER_PORTS}"
PIDFILE="${STATE_DIR}/node${n}.pid"
LOGFILE="${STATE_DIR}/node${n}.log"
CONF="${STATE_DIR}/node${n}/redis.conf"
if [[ -n "${REDIS_PASSWORD:-}" ]]; then export REDISCLI_AUTH="${REDIS_PASSWORD}"; fi

case "${action}" in
  stop | kill)
    pidfile_alive "${PIDFILE}" || die "node ${n} is not running"
    pid="$(cat "${PIDFILE}")"
    if [[ "${action}" == stop ]]; then
      log "stopping node ${n} (127.0.0.1:${PORTS[n]}, pid ${pid}) with SIGTERM"
      stop_pidfiles TERM "${PIDFILE}"
    else
      log "killing node ${n} (127.0.0.1:${PORTS[n]}, pid ${pid}) with SIGKILL"
      stop_pidfiles KILL "${PIDFILE}"
    fi
    alive "${pid}" && die "node ${n} (pid ${pid}) is still running"
    log "node ${n} stopped"
    ;;
  start)
    ensure_redis
    if pidfile_alive "${PIDFILE}"; then die "node ${n} is already running (pid $(cat "${PIDFILE}"))"; fi
    [[ -f "${CONF}" ]] || die "${CONF} missing"
    rm -f "${STATE_DIR}/node${n}"/*.rdb
    log "restarting node ${n} on 127.0.0.1:${PORTS[n]}"
    echo "---- restarted $(date -u +%FT%TZ) ----" >>"${LOGFILE}"
    launch "${CONF}" "${LOGFILE}" "${PIDFILE}"
    wait_pong "${PORTS[n]}" "${PIDFILE}" "${LOGFILE}" "${READY_TIMEOUT}"
    deadline=$((SECONDS + READY_TIMEOUT))
    until cluster_healthy "${NODES}" "${PORTS[@]}"; do
      pidfile_alive "${PIDFILE}" || { show_log "${LOGFILE}"; die "node ${n} exited after restart"; }
      if ((SECONDS >= deadline)); then
        show_log "${LOGFILE}"; die "cluster not healthy ${READY_TIMEOUT} s after restarting node ${n}: ${CLUSTER_UNHEALTHY}"
      fi
      sleep 0.2
    done
    wait_streaming "${PORTS[n]}" "${READY_TIMEOUT}"
    log "node ${n} back (pid $(cat "${PIDFILE}")) as $(info_field "${PORTS[n]}" replication role); cluster healthy"
    ;;
  *) die "unknown action '${action}' (stop|kill|start)" ;;
esac
