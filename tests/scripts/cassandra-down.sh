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

alive() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == java ]] || return 1
  tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null \
    | grep -qxF -- "-Dcassandra.storagedir=${STATE_DIR}/data"
}

if [[ -f "${PIDFILE}" ]]; then
  pid="$(cat "${PIDFILE}")"
  if [[ "${pid}" =~ ^[0-9]+$ ]] && alive "${pid}"; then
    log "stopping Cassandra (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      alive "${pid}" || break
      sleep 0.1
    done
    if alive "${pid}"; then
      log "Cassandra (pid ${pid}) ignored SIGTERM for 10 s; sending SIGKILL"
      kill -KILL "${pid}" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        alive "${pid}" || break
        sleep 0.1
      done
    fi
  fi
  rm -f "${PIDFILE}"
fi

rm -rf "${STATE_DIR}/data" "${STATE_DIR}/conf" "${STATE_DIR}/cassandra.env" \
  "${STATE_DIR}/.cql-probe.err"
log "stopped; log kept in ${STATE_DIR}"
