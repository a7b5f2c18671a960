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

# shellcheck source=stop-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stop-lib.sh"
stop_pidfile fake-gcs-server "${PIDFILE}" exe_is fake-gcs-server

rm -rf "${STATE_DIR}/data" "${STATE_DIR}/gcs.env"
log "stopped; log kept in ${STATE_DIR}"
