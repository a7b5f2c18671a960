#!/usr/bin/env bash
# Start fake-gcs-server (a Google Cloud Storage emulator, built from its Go
# module by gcs-build.sh) over plain HTTP on 127.0.0.1 and a free port, with
# the bucket `feast-registry` created: the store behind Feast's `gs://` file
# registry.
#
# Usage: tests/scripts/gcs-up.sh STATE_DIR
#        eval "$(tests/scripts/gcs-up.sh STATE_DIR)"
#        ...
#        tests/scripts/gcs-down.sh STATE_DIR
#
# Builds the binary first when it is not cached (see gcs-build.sh). Objects
# live in STATE_DIR/data (the filesystem backend; GCS_BACKEND=memory keeps
# them in memory instead). -external-url and -public-host are the server's
# own address, so resumable-upload Location headers and path-style downloads
# point back at it. Clients: google-cloud-storage (Python) and the Go and Rust
# SDKs read STORAGE_EMULATOR_HOST, which is set to the full URL
# (http://127.0.0.1:<port>), the form the Python client needs for plain HTTP.
# Cold start measured here: the build (gcs-build.sh: 2 min 38 s cold), then
# under 1 s.
#
# STATE_DIR (created if missing) receives:
#   fake-gcs-server.pid   its pid
#   fake-gcs-server.log   its log
#   gcs.env               facts to source (the exports below, plus port)
#   data/                 the objects (filesystem backend; removed by gcs-down.sh)
# stdout carries only these lines:
#   export HOS_GCS_ENDPOINT=http://127.0.0.1:<port>
#   export STORAGE_EMULATOR_HOST=http://127.0.0.1:<port>
#
# Env:   FAKE_GCS_SERVER    binary (default: the one gcs-build.sh caches)
#        GCS_BUCKETS        buckets to create (default: feast-registry)
#        GCS_BACKEND        filesystem (default) or memory
#        GCS_READY_TIMEOUT  seconds to wait (default: 30)
# On failure the server is stopped (via gcs-down.sh) and the log tail is
# printed; the log stays in STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUCKETS="${GCS_BUCKETS:-feast-registry}"
BACKEND="${GCS_BACKEND:-filesystem}"
READY_TIMEOUT="${GCS_READY_TIMEOUT:-30}"

log() { echo "gcs-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
mkdir -p "$1"
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/fake-gcs-server.pid"
LOGFILE="${STATE_DIR}/fake-gcs-server.log"
DATA="${STATE_DIR}/data"

# alive PID: true while PID is a live (non-zombie) fake-gcs-server.
alive() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == fake-gcs-server ]]
}

# running PID: true while PID exists and is no zombie. Used while the server
# starts, when PID may still be exec'ing through nice (and unshare), whose
# names alive() would not accept.
running() {
  local state
  state="$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)" || return 1
  [[ -n "${state}" && "${state}" != Z ]]
}

if [[ -f "${PIDFILE}" ]] && alive "$(cat "${PIDFILE}")"; then
  die "${PIDFILE} names a running fake-gcs-server; run gcs-down.sh ${STATE_DIR} first"
fi
[[ "${BACKEND}" == filesystem || "${BACKEND}" == memory ]] \
  || die "GCS_BACKEND must be filesystem or memory, not ${BACKEND}"
command -v python3 >/dev/null || die "python3 not found"
command -v curl >/dev/null || die "curl not found"

if [[ -z "${FAKE_GCS_SERVER:-}" ]]; then
  FAKE_GCS_SERVER="$("${SCRIPT_DIR}/gcs-build.sh" | tail -n 1)/fake-gcs-server"
fi
[[ -x "${FAKE_GCS_SERVER}" ]] || die "${FAKE_GCS_SERVER} not found"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ENDPOINT="http://127.0.0.1:${PORT}"
rm -rf "${DATA}"
mkdir -p "${DATA}"

started=0
cleanup_on_failure() {
  local rc=$?
  if [[ ${rc} -ne 0 && ${started} -eq 1 ]]; then
    log "start-up failed (exit ${rc}); stopping what was started"
    "${SCRIPT_DIR}/gcs-down.sh" "${STATE_DIR}" >&2 || true
  fi
  exit "${rc}"
}
trap cleanup_on_failure EXIT

show_log() {
  log "---- last 40 lines of ${LOGFILE} ----"
  tail -n 40 "${LOGFILE}" >&2 || true
  log "---- end of ${LOGFILE} ----"
}

t0=${SECONDS}
log "starting ${FAKE_GCS_SERVER} (${BACKEND} backend) on ${ENDPOINT}"
started=1
# Every flag is given, so no FAKE_GCS_* variable from the caller applies.
nice -n 19 "${FAKE_GCS_SERVER}" -scheme http -host 127.0.0.1 -port "${PORT}" \
  -external-url "${ENDPOINT}" -public-host "127.0.0.1:${PORT}" \
  -backend "${BACKEND}" -filesystem-root "${DATA}" -data "" -location US-CENTRAL1 \
  -log-level info </dev/null >"${LOGFILE}" 2>&1 &
PID=$!
echo "${PID}" > "${PIDFILE}"

deadline=$((SECONDS + READY_TIMEOUT))
until curl -fsS -o /dev/null "${ENDPOINT}/_internal/healthcheck" 2>/dev/null; do
  if ! running "${PID}"; then
    show_log; die "fake-gcs-server exited during start-up"
  fi
  if (( SECONDS >= deadline )); then
    show_log; die "not ready after ${READY_TIMEOUT} s"
  fi
  sleep 0.1
done

# Buckets through the JSON API, each read back by name.
for b in ${BUCKETS}; do
  curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data "{\"name\": \"${b}\"}" "${ENDPOINT}/storage/v1/b?project=test" \
    || { show_log; die "creating bucket ${b} failed"; }
  got="$(curl -fsS "${ENDPOINT}/storage/v1/b/${b}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["name"])')" \
    || { show_log; die "bucket ${b} not readable after create"; }
  [[ "${got}" == "${b}" ]] || die "bucket ${b} read back as ${got}"
done
log "fake-gcs-server ready on ${ENDPOINT} (pid ${PID}, buckets: ${BUCKETS}) after $((SECONDS - t0)) s"

umask 077
cat > "${STATE_DIR}/gcs.env" <<EOF
HOS_GCS_ENDPOINT=${ENDPOINT}
STORAGE_EMULATOR_HOST=${ENDPOINT}
GCS_PORT=${PORT}
GCS_BUCKETS=${BUCKETS}
EOF
umask 022

echo "export HOS_GCS_ENDPOINT=${ENDPOINT}"
echo "export STORAGE_EMULATOR_HOST=${ENDPOINT}"
