#!/usr/bin/env bash
# Stop the PostgreSQL server started by postgres-up.sh and remove its cluster.
#
# Usage: tests/scripts/postgres-down.sh STATE_DIR
#
# The postmaster is stopped by the pid recorded in STATE_DIR (never by name):
# SIGINT (PostgreSQL's "fast" shutdown: clients disconnected, clean
# checkpoint), up to 30 s grace, then SIGQUIT ("immediate"), then SIGKILL.
# The pid is only signalled while it is still a postgres, so a stale pid file
# cannot hit an unrelated process. Afterwards data/, sock/, tls/, postgres.env and
# the pid file are removed; postgres.log is kept. Safe to run twice, and on a
# half-started state dir.
set -euo pipefail

log() { echo "postgres-down: $*" >&2; }

[[ $# -eq 1 ]] || { log "usage: $0 STATE_DIR"; exit 2; }
[[ -d "$1" ]] || { log "$1: no such directory, nothing to do"; exit 0; }
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/postgres.pid"

# shellcheck source=stop-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stop-lib.sh"
alive() { exe_is postgres "$1"; }

# stop_with SIGNAL TENTHS: send SIGNAL if alive, wait up to TENTHS/10 s.
stop_with() {
  alive "${pid}" || return 0
  kill "-$1" "${pid}" 2>/dev/null || true
  gone "$2" alive "${pid}"
}

if [[ -f "${PIDFILE}" ]]; then
  pid="$(cat "${PIDFILE}")"
  if [[ "${pid}" =~ ^[0-9]+$ ]] && alive "${pid}"; then
    log "stopping postgres (pid ${pid})"
    stop_with INT 300 \
      || { log "no fast shutdown after 30 s; sending SIGQUIT"; stop_with QUIT 100; } \
      || { log "still running; sending SIGKILL"; stop_with KILL 50; } \
      || log "WARNING: postgres (pid ${pid}) did not exit"
  fi
  rm -f "${PIDFILE}"
fi

rm -rf "${STATE_DIR}/data" "${STATE_DIR}/sock" "${STATE_DIR}/tls" "${STATE_DIR}/postgres.env"
log "stopped; log kept in ${STATE_DIR}"
