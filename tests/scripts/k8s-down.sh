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

# running PID NAME: true while PID is a live (non-zombie) process whose
# executable is NAME.
running() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == "$2" ]]
}

# stop NAME: stop the process whose pid is in STATE_DIR/NAME.pid, if its
# executable is still NAME.
stop() {
  local name="$1" pidfile="${STATE_DIR}/$1.pid" pid
  [[ -f "${pidfile}" ]] || return 0
  pid="$(cat "${pidfile}")"
  [[ "${pid}" =~ ^[0-9]+$ ]] || { rm -f "${pidfile}"; return 0; }
  if ! running "${pid}" "${name}"; then
    # Already gone (or the pid was reused by something else): leave it alone.
    rm -f "${pidfile}"
    return 0
  fi
  log "stopping ${name} (pid ${pid})"
  kill -TERM "${pid}" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do
    running "${pid}" "${name}" || break
    sleep 0.1
  done
  if running "${pid}" "${name}"; then
    log "${name} (pid ${pid}) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "${pid}" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      running "${pid}" "${name}" || break
      sleep 0.1
    done
  fi
  rm -f "${pidfile}"
}

# API server first (it holds etcd connections), then etcd.
stop kube-apiserver
stop etcd

rm -rf "${STATE_DIR}/etcd-data" "${STATE_DIR}/pki" \
  "${STATE_DIR}/kubeconfig" "${STATE_DIR}/cluster.env"
log "stopped; logs kept in ${STATE_DIR}"
