#!/usr/bin/env bash
# Stop the redis-server started by redis-up.sh and remove its working dir.
#
# Usage: tests/scripts/redis-down.sh STATE_DIR
#
# The server is stopped by the pid recorded in STATE_DIR (never by name):
# SIGTERM, up to 10 s grace, then SIGKILL. The pid is only signalled while it
# is still a redis-server (zombies, whose /proc/PID/exe cannot be read, count
# as stopped), so a stale pid file cannot hit an unrelated process.
# Afterwards data/, redis.env and the pid file are removed; redis.log is kept.
# Safe to run twice, and on a half-started state dir.
set -euo pipefail

log() { echo "redis-down: $*" >&2; }

[[ $# -eq 1 ]] || { log "usage: $0 STATE_DIR"; exit 2; }
[[ -d "$1" ]] || { log "$1: no such directory, nothing to do"; exit 0; }
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/redis.pid"

# shellcheck source=stop-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stop-lib.sh"
alive() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == redis-server || "${exe##*/}" == redis-check-rdb ]]
}
stop_pidfile redis-server "${PIDFILE}" alive

rm -rf "${STATE_DIR}/data" "${STATE_DIR}/redis.env"
log "stopped; log kept in ${STATE_DIR}"
