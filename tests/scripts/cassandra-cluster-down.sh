#!/usr/bin/env bash
# Stop the 3-node Cassandra cluster started by cassandra-cluster-up.sh and
# remove its data.
#
# Usage: tests/scripts/cassandra-cluster-down.sh STATE_DIR
#
# Each node is stopped by cassandra-down.sh on its state dir
# (STATE_DIR/nodeN), all three at once: by the pid recorded there (never by
# name), SIGTERM with 10 s grace, then SIGKILL; a stopped node (see
# cassandra-cluster-node.sh) is skipped. Nodes draining together wait for
# each other ("Waiting for messaging service to quiesce") and usually end by
# the SIGKILL, after 10 s: harmless, their data is removed next. Their data
# and conf are removed, as is cluster.env; the logs (nodeN/cassandra.log,
# nodeN.up.log) are kept.
# Safe to run twice, and on a half-started state dir.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "cassandra-cluster-down: $*" >&2; }
# shellcheck source=tests/scripts/cassandra-cluster-lib.sh
source "${SCRIPT_DIR}/cassandra-cluster-lib.sh"

[[ $# -eq 1 ]] || { log "usage: $0 STATE_DIR"; exit 2; }
[[ -d "$1" ]] || { log "$1: no such directory, nothing to do"; exit 0; }
STATE_DIR="$(cd "$1" && pwd)"

pids=()
for ((n = 1; n <= CLUSTER_NODES; n++)); do
  if [[ -d "${STATE_DIR}/node${n}" ]]; then
    "${SCRIPT_DIR}/cassandra-down.sh" "${STATE_DIR}/node${n}" &
    pids+=("$!")
  fi
done
rc=0
for pid in "${pids[@]}"; do
  wait "${pid}" || rc=1
done
for ((n = 1; n <= CLUSTER_NODES; n++)); do
  if node_running "${n}"; then
    log "node ${n} is still running"
    rc=1
  fi
done
rm -f "${STATE_DIR}/cluster.env"
log "stopped; logs kept in ${STATE_DIR}"
exit "${rc}"
