#!/usr/bin/env bash
# Stop the Redis Sentinel setup started by redis-sentinel-up.sh and remove
# its state.
#
# Usage: tests/scripts/redis-sentinel-down.sh STATE_DIR
#
# The sentinels are stopped first (so they start no failover while the data
# nodes go), then the master and the replica; each by the pid recorded in
# STATE_DIR (never by name): SIGTERM, up to 10 s grace, then SIGKILL. A pid
# is only signalled while it is still a redis-server (zombies count as
# stopped), so a stale pid file cannot hit an unrelated process. Afterwards
# the process directories (configurations), sentinel.env and the pid files
# are removed; the *.log files are kept. Safe to run twice, and on a
# half-started state dir.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "redis-sentinel-down: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=tests/scripts/redis-ha-lib.sh
source "${SCRIPT_DIR}/redis-ha-lib.sh"

[[ $# -eq 1 ]] || { log "usage: $0 STATE_DIR"; exit 2; }
[[ -d "$1" ]] || { log "$1: no such directory, nothing to do"; exit 0; }
STATE_DIR="$(cd "$1" && pwd)"

stop_pidfiles TERM "${STATE_DIR}"/sentinel{0,1,2}.pid
stop_pidfiles TERM "${STATE_DIR}/master.pid" "${STATE_DIR}/replica.pid"

rm -rf "${STATE_DIR}"/{master,replica,sentinel0,sentinel1,sentinel2}
rm -f "${STATE_DIR}/sentinel.env"
log "stopped; logs kept in ${STATE_DIR}"
