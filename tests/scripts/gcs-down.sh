#!/usr/bin/env bash
# Stop the fake-gcs-server started by gcs-up.sh and remove its objects.
#
# Usage: tests/scripts/gcs-down.sh STATE_DIR
#
# The server is stopped by the pid recorded in STATE_DIR (never by name):
# SIGTERM, up to 10 s grace, then SIGKILL. The pid is only signalled while it
# is still a fake-gcs-server, so a stale pid file cannot hit an unrelated
# process. Afterwards data/, gcs.env and the pid file are removed;
# fake-gcs-server.log is kept. Safe to run twice, and on a half-started
# state dir.
set -euo pipefail

log() { echo "gcs-down: $*" >&2; }

[[ $# -eq 1 ]] || { log "usage: $0 STATE_DIR"; exit 2; }
[[ -d "$1" ]] || { log "$1: no such directory, nothing to do"; exit 0; }
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/fake-gcs-server.pid"

alive() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == fake-gcs-server ]]
}

if [[ -f "${PIDFILE}" ]]; then
  pid="$(cat "${PIDFILE}")"
  if [[ "${pid}" =~ ^[0-9]+$ ]] && alive "${pid}"; then
    log "stopping fake-gcs-server (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      alive "${pid}" || break
      sleep 0.1
    done
    if alive "${pid}"; then
      log "fake-gcs-server (pid ${pid}) ignored SIGTERM for 10 s; sending SIGKILL"
      kill -KILL "${pid}" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        alive "${pid}" || break
        sleep 0.1
      done
    fi
  fi
  rm -f "${PIDFILE}"
fi

rm -rf "${STATE_DIR}/data" "${STATE_DIR}/gcs.env"
log "stopped; log kept in ${STATE_DIR}"
