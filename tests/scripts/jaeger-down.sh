#!/usr/bin/env bash
# Stop the jaeger started by jaeger-up.sh (its traces, in memory, are gone).
#
# Usage: tests/scripts/jaeger-down.sh STATE_DIR
#
# The server is stopped by the pid recorded in STATE_DIR (never by name):
# SIGTERM, up to 10 s grace, then SIGKILL. The pid is only signalled while it
# is still a jaeger, so a stale pid file cannot hit an unrelated process.
# Afterwards jaeger.env and the pid file are removed; jaeger.log and
# jaeger.yaml are kept. Safe to run twice, and on a half-started state dir.
set -euo pipefail

log() { echo "jaeger-down: $*" >&2; }

[[ $# -eq 1 ]] || { log "usage: $0 STATE_DIR"; exit 2; }
[[ -d "$1" ]] || { log "$1: no such directory, nothing to do"; exit 0; }
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/jaeger.pid"

# shellcheck source=stop-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stop-lib.sh"
stop_pidfile jaeger "${PIDFILE}" exe_is jaeger

rm -f "${STATE_DIR}/jaeger.env"
log "stopped; log kept in ${STATE_DIR}"
