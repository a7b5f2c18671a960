#!/usr/bin/env bash
# Start a local S3-compatible server (moto's server mode, `moto_server`, from
# PyPI's moto[server]) bound to 127.0.0.1 on a free port, with the bucket
# `feast-registry` created: the store behind Feast's `s3://` file registry.
#
# Usage: tests/scripts/s3-up.sh STATE_DIR
#        eval "$(tests/scripts/s3-up.sh STATE_DIR)"
#        ...
#        tests/scripts/s3-down.sh STATE_DIR
#
# moto[server] is installed once into a cached venv,
# ${HOS_CACHE:-$HOME/.cache/hybrid-online-store}/moto-<version>.
# Moto keeps everything in memory and accepts any credentials; the ones
# exported below are the conventional dummies. Clients point at it with an
# endpoint override: Feast's S3 registry reads FEAST_S3_ENDPOINT_URL, boto3 /
# botocore (>= 1.31) and the AWS CLI read AWS_ENDPOINT_URL.
# Cold start measured here (2 cores, nice -n 19, other builds running): 44 s
# with the venv's download and install (no pip cache), 2 s once cached.
#
# STATE_DIR (created if missing) receives:
#   moto.pid   pid of moto_server
#   moto.log   its log
#   s3.env     facts to source (the exports below, plus port and version)
# stdout carries only these lines:
#   export HOS_S3_ENDPOINT=http://127.0.0.1:<port>
#   export AWS_ACCESS_KEY_ID=testing
#   export AWS_SECRET_ACCESS_KEY=testing
#   export AWS_DEFAULT_REGION=us-east-1
#
# Env:   MOTO_VERSION      moto version (default: 5.2.6)
#        S3_BUCKETS        buckets to create (default: feast-registry)
#        S3_READY_TIMEOUT  seconds to wait for the server (default: 60)
#        PYTHON            interpreter for the venv (default: python3)
# On failure the server is stopped (via s3-down.sh) and the log tail is
# printed; the log stays in STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MOTO_VERSION="${MOTO_VERSION:-5.2.6}"
BUCKETS="${S3_BUCKETS:-feast-registry}"
READY_TIMEOUT="${S3_READY_TIMEOUT:-60}"
PYTHON="${PYTHON:-python3}"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
VENV="${CACHE_ROOT}/moto-${MOTO_VERSION}"
MARKER="${VENV}/.hos-moto-installed"
ACCESS_KEY=testing
SECRET_KEY=testing
REGION=us-east-1

log() { echo "s3-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
mkdir -p "$1"
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/moto.pid"
LOGFILE="${STATE_DIR}/moto.log"

# alive PID: true while PID is a live (non-zombie) python running moto_server.
alive() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == python* ]] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q moto_server
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
  die "${PIDFILE} names a running moto_server; run s3-down.sh ${STATE_DIR} first"
fi
command -v "${PYTHON}" >/dev/null || die "${PYTHON} not found"

# ---- install (once) ----------------------------------------------------------
if [[ ! -f "${MARKER}" || ! -x "${VENV}/bin/moto_server" ]]; then
  log "installing moto[server]==${MOTO_VERSION} into ${VENV}"
  mkdir -p "${CACHE_ROOT}"
  rm -rf "${VENV}"
  "${PYTHON}" -m venv "${VENV}" >&2
  PIP_DISABLE_PIP_VERSION_CHECK=1 "${VENV}/bin/python" -m pip install -q \
    "moto[server]==${MOTO_VERSION}" >&2
  "${VENV}/bin/python" -c 'import moto.server, boto3, flask  # noqa: F401' >&2
  date -u +%Y-%m-%dT%H:%M:%SZ > "${MARKER}"
fi

# ---- start -------------------------------------------------------------------
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ENDPOINT="http://127.0.0.1:${PORT}"

started=0
cleanup_on_failure() {
  local rc=$?
  if [[ ${rc} -ne 0 && ${started} -eq 1 ]]; then
    log "start-up failed (exit ${rc}); stopping what was started"
    "${SCRIPT_DIR}/s3-down.sh" "${STATE_DIR}" >&2 || true
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
log "starting moto_server ${MOTO_VERSION} on 127.0.0.1:${PORT}"
started=1
# nice execs python: the recorded pid is the server itself, not a wrapper.
nice -n 19 "${VENV}/bin/python" "${VENV}/bin/moto_server" -H 127.0.0.1 -p "${PORT}" \
  </dev/null >"${LOGFILE}" 2>&1 &
PID=$!
echo "${PID}" > "${PIDFILE}"

# Ready when S3's ListBuckets answers; then create the buckets, and check
# each is there (boto3 from moto's own venv).
export AWS_ACCESS_KEY_ID="${ACCESS_KEY}" AWS_SECRET_ACCESS_KEY="${SECRET_KEY}" AWS_DEFAULT_REGION="${REGION}"
deadline=$((SECONDS + READY_TIMEOUT))
until curl -fsS -o /dev/null "${ENDPOINT}/" 2>/dev/null; do
  if ! running "${PID}"; then
    show_log; die "moto_server exited during start-up"
  fi
  if (( SECONDS >= deadline )); then
    show_log; die "not ready after ${READY_TIMEOUT} s"
  fi
  sleep 0.2
done
# shellcheck disable=SC2086 # BUCKETS is a space-separated list
"${VENV}/bin/python" - "${ENDPOINT}" ${BUCKETS} >&2 <<'PY' || { show_log; die "creating buckets failed"; }
import sys
import boto3

endpoint, buckets = sys.argv[1], sys.argv[2:]
s3 = boto3.client("s3", endpoint_url=endpoint)
for b in buckets:
    s3.create_bucket(Bucket=b)
have = {b["Name"] for b in s3.list_buckets()["Buckets"]}
missing = set(buckets) - have
assert not missing, f"buckets not listed after create: {missing}"
print(f"s3-up: buckets {sorted(have)}")
PY
log "moto_server ready on ${ENDPOINT} (pid ${PID}) after $((SECONDS - t0)) s"

umask 077
cat > "${STATE_DIR}/s3.env" <<EOF
HOS_S3_ENDPOINT=${ENDPOINT}
AWS_ACCESS_KEY_ID=${ACCESS_KEY}
AWS_SECRET_ACCESS_KEY=${SECRET_KEY}
AWS_DEFAULT_REGION=${REGION}
S3_PORT=${PORT}
S3_BUCKETS=${BUCKETS}
MOTO_VERSION=${MOTO_VERSION}
EOF
umask 022

echo "export HOS_S3_ENDPOINT=${ENDPOINT}"
echo "export AWS_ACCESS_KEY_ID=${ACCESS_KEY}"
echo "export AWS_SECRET_ACCESS_KEY=${SECRET_KEY}"
echo "export AWS_DEFAULT_REGION=${REGION}"
