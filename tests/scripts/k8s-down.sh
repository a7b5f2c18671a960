#!/usr/bin/env bash
# Stop the etcd + kube-apiserver started by k8s-up.sh and remove their
# temporary data.
#
# Usage: tests/scripts/k8s-down.sh STATE_DIR
#
# Each process is stopped by the pid recorded in STATE_DIR (never by name):
# SIGTERM, up to 10 s grace, then SIGKILL. A pid is only signalled while it
# still belongs to the expected binary, so a stale pid file cannot hit an
# unrelated process. Afterwards etcd-data/, pki/, the kubeconfig, cluster.env
# and the pid files are removed; *.log files are kept for inspection (CI
# artefacts).
# Safe to run twice, and on a half-started state dir.
set -euo pipefail

log() { echo "k8s-down: $*" >&2; }

[[ $# -eq 1 ]] || { log "usage: $0 STATE_DIR"; exit 2; }
STATE_DIR="$1"
[[ -d "${STATE_DIR}" ]] || { log "${STATE_DIR}: no such directory, nothing to do"; exit 0; }

# shellcheck source=stop-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stop-lib.sh"

# API server first (it holds etcd connections), then etcd.
stop_pidfile kube-apiserver "${STATE_DIR}/kube-apiserver.pid" exe_is kube-apiserver
stop_pidfile etcd "${STATE_DIR}/etcd.pid" exe_is etcd

rm -rf "${STATE_DIR}/etcd-data" "${STATE_DIR}/pki" \
  "${STATE_DIR}/kubeconfig" "${STATE_DIR}/cluster.env"
log "stopped; logs kept in ${STATE_DIR}"
