#!/usr/bin/env bash
# Stop the Bigtable emulator started by bigtable-up.sh (its data lives only in
# memory, so nothing else to remove).
#
# Usage: tests/scripts/bigtable-down.sh STATE_DIR
#
# The emulator is stopped by the pid recorded in STATE_DIR (never by name):
# SIGTERM, up to 10 s grace, then SIGKILL. The pid is only signalled while it
# is still a cbtemulator (zombies, whose /proc/PID/exe cannot be read, count
# as stopped). bigtable.env and the pid file are removed; the log is kept.
# Safe to run twice, and on a half-started state dir.
set -euo pipefail

log() { echo "bigtable-down: $*" >&2; }

[[ $# -eq 1 ]] || { log "usage: $0 STATE_DIR"; exit 2; }
[[ -d "$1" ]] || { log "$1: no such directory, nothing to do"; exit 0; }
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/cbtemulator.pid"

# shellcheck source=stop-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stop-lib.sh"
stop_pidfile cbtemulator "${PIDFILE}" exe_is cbtemulator

rm -f "${STATE_DIR}/bigtable.env" "${STATE_DIR}/.cbt-probe.err"
log "stopped; log kept in ${STATE_DIR}"
