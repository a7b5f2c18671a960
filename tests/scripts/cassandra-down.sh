#!/usr/bin/env bash
# Stop the Cassandra started by cassandra-up.sh and remove its data.
#
# Usage: tests/scripts/cassandra-down.sh STATE_DIR
#
# The JVM is stopped by the pid recorded in STATE_DIR (never by name):
# SIGTERM, up to 10 s grace, then SIGKILL. The pid is only signalled while it
# is still a java process started for this STATE_DIR (its command line holds
# -Dcassandra.storagedir=STATE_DIR/data), so a stale pid file cannot hit an
# unrelated process; zombies (no readable /proc/PID/exe) count as stopped.
# Afterwards data/, conf/, cassandra.env and the pid file are removed; the
# log (cassandra.log) is kept for inspection. Safe to run twice, and on a
# half-started state dir.
set -euo pipefail

log() { echo "cassandra-down: $*" >&2; }

[[ $# -eq 1 ]] || { log "usage: $0 STATE_DIR"; exit 2; }
[[ -d "$1" ]] || { log "$1: no such directory, nothing to do"; exit 0; }
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/cassandra.pid"

# shellcheck source=stop-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stop-lib.sh"
alive() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == java ]] || return 1
  tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null \
    | grep -qxF -- "-Dcassandra.storagedir=${STATE_DIR}/data"
}
stop_pidfile Cassandra "${PIDFILE}" alive

rm -rf "${STATE_DIR}/data" "${STATE_DIR}/conf" "${STATE_DIR}/cassandra.env" \
  "${STATE_DIR}/.cql-probe.err"
log "stopped; log kept in ${STATE_DIR}"
