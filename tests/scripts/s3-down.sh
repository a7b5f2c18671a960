#!/usr/bin/env bash
# Stop the moto_server started by s3-up.sh (its buckets, in memory, are gone).
#
# Usage: tests/scripts/s3-down.sh STATE_DIR
#
# The server is stopped by the pid recorded in STATE_DIR (never by name):
# SIGTERM, up to 10 s grace, then SIGKILL. The pid is only signalled while it
# is still a python running moto_server, so a stale pid file cannot hit an
# unrelated process. Afterwards s3.env and the pid file are removed; moto.log
# is kept. Safe to run twice, and on a half-started state dir.
set -euo pipefail

log() { echo "s3-down: $*" >&2; }

[[ $# -eq 1 ]] || { log "usage: $0 STATE_DIR"; exit 2; }
[[ -d "$1" ]] || { log "$1: no such directory, nothing to do"; exit 0; }
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/moto.pid"

# shellcheck source=stop-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stop-lib.sh"
alive() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == python* ]] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q moto_server
}
stop_pidfile moto_server "${PIDFILE}" alive

rm -f "${STATE_DIR}/s3.env"
log "stopped; log kept in ${STATE_DIR}"
