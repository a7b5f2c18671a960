#!/usr/bin/env bash
# Stop the Redis Cluster started by redis-cluster-up.sh and remove its state.
#
# Usage: tests/scripts/redis-cluster-down.sh STATE_DIR
#
# The 6 nodes are stopped by the pids recorded in STATE_DIR (never by name):
# SIGTERM to all, up to 10 s grace, then SIGKILL. A pid is only signalled
# while it is still a redis-server (zombies count as stopped), so a stale pid
# file cannot hit an unrelated process. Afterwards the node directories
# (redis.conf, nodes.conf), cluster.env and the pid files are removed; the
# nodeN.log files are kept. Safe to run twice, and on a half-started state dir.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODES=6

log() { echo "redis-cluster-down: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=tests/scripts/redis-ha-lib.sh
source "${SCRIPT_DIR}/redis-ha-lib.sh"

[[ $# -eq 1 ]] || { log "usage: $0 STATE_DIR"; exit 2; }
[[ -d "$1" ]] || { log "$1: no such directory, nothing to do"; exit 0; }
STATE_DIR="$(cd "$1" && pwd)"

pidfiles=()
for ((n = 0; n < NODES; n++)); do pidfiles+=("${STATE_DIR}/node${n}.pid"); done
stop_pidfiles TERM "${pidfiles[@]}"

for ((n = 0; n < NODES; n++)); do rm -rf "${STATE_DIR}/node${n}"; done
rm -f "${STATE_DIR}/cluster.env"
log "stopped; logs kept in ${STATE_DIR}"
