#!/usr/bin/env bash
# Stop, kill or restart nodes of the 3-node Cassandra cluster started by
# cassandra-cluster-up.sh, in place, for node-loss tests.
#
# Usage: tests/scripts/cassandra-cluster-node.sh STATE_DIR stop|kill|start N...
#   stop N...   SIGTERM to each node's JVM by its pid; returns once they have
#               exited (up to 60 s, then SIGKILL). Cassandra drains on
#               SIGTERM: it stops serving clients, tells the other nodes by
#               gossip that it is shutting down (they mark it down at once)
#               and flushes its memtables.
#   kill N...   SIGKILL (a crash): the others notice through their failure
#               detector, after a few seconds; the commit log replays on start.
#   start N...  start the nodes again from their own data (tokens, host id,
#               sstables, commit log), same addresses and ports, all at once;
#               returns once every running node sees every running node as
#               up with the same schema (see cluster_probe in
#               cassandra-cluster-lib.sh). Writes they missed come back by
#               hinted handoff (or read repair); nothing is deleted.
# N is 1..3 (node N listens on 127.0.0.N).
#
# Env:   CASSANDRA_READY_TIMEOUT  seconds `start` waits (default: 180)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
READY_TIMEOUT="${CASSANDRA_READY_TIMEOUT:-180}"

log() { echo "cassandra-cluster-node: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=tests/scripts/cassandra-cluster-lib.sh
source "${SCRIPT_DIR}/cassandra-cluster-lib.sh"

[[ $# -ge 3 ]] || die "usage: $0 STATE_DIR stop|kill|start N..."
[[ -d "$1" ]] || die "$1: no such directory"
STATE_DIR="$(cd "$1" && pwd)"
action="$2"
shift 2
for n in "$@"; do
  [[ "${n}" =~ ^[1-3]$ ]] || die "node number must be 1..3, not '${n}'"
done
[[ -f "${STATE_DIR}/cluster.env" ]] || die "${STATE_DIR}/cluster.env missing; is the cluster up (cassandra-cluster-up.sh)?"
# shellcheck disable=SC1091
source "${STATE_DIR}/cluster.env"

t0=${SECONDS}
case "${action}" in
  stop | kill)
    sig=TERM
    [[ "${action}" == kill ]] && sig=KILL
    for n in "$@"; do
      node_running "${n}" || die "node ${n} is not running"
    done
    pids=()
    for n in "$@"; do
      log "SIG${sig} to node ${n} ($(node_addr "${n}"), pid $(cat "${STATE_DIR}/node${n}/cassandra.pid"))"
      stop_node "${sig}" "${n}" &
      pids+=("$!")
    done
    rc=0
    for pid in "${pids[@]}"; do wait "${pid}" || rc=1; done
    ((rc == 0)) || die "node(s) $* still running"
    log "node(s) $* stopped in $((SECONDS - t0)) s; data kept"
    ;;
  start)
    for n in "$@"; do
      node_running "${n}" && die "node ${n} is already running (pid $(cat "${STATE_DIR}/node${n}/cassandra.pid"))"
      [[ -d "${STATE_DIR}/node${n}/data" ]] || die "${STATE_DIR}/node${n}/data missing: nothing to restart from"
    done
    pids=()
    for n in "$@"; do
      log "restarting node ${n} on $(node_addr "${n}"):${CASSANDRA_CLUSTER_PORT} from its data"
      echo "---- restarted $(date -u +%FT%TZ) ----" >>"${STATE_DIR}/node${n}/cassandra.log"
      start_node "${n}" 1 &
      pids+=("$!")
    done
    failed=()
    i=0
    for pid in "${pids[@]}"; do
      wait "${pid}" || failed+=("${@:$((i + 1)):1}")
      i=$((i + 1))
    done
    if ((${#failed[@]})); then
      show_node_logs "${failed[@]}"
      die "node(s) ${failed[*]} did not start"
    fi
    answering=$((SECONDS - t0))
    read -r -a running <<<"$(running_nodes)"
    if ! wait_cluster "${READY_TIMEOUT}" "${running[@]}"; then
      show_node_logs "$@"
      die "running nodes ${running[*]} do not see each other as one cluster: ${CLUSTER_NOT_READY}"
    fi
    log "node(s) $* back after $((SECONDS - t0)) s (answering CQL after ${answering} s); nodes ${running[*]} see each other"
    ;;
  *) die "unknown action '${action}' (stop|kill|start)" ;;
esac
