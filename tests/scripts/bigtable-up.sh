#!/usr/bin/env bash
# Start the real Cloud Bigtable emulator (cbtemulator from the Google Cloud
# SDK already on the machine) bound to 127.0.0.1 on a free port.
#
# Usage: tests/scripts/bigtable-up.sh STATE_DIR
#        eval "$(tests/scripts/bigtable-up.sh STATE_DIR)"
#        ...
#        tests/scripts/bigtable-down.sh STATE_DIR
#
# The emulator keeps everything in memory and accepts any project/instance.
# STATE_DIR (created if missing) receives:
#   cbtemulator.pid   its pid
#   cbtemulator.log   its output
#   bigtable.env      facts to source: BIGTABLE_EMULATOR_HOST, port
# Ready when `cbt -project p -instance i ls` answers against it. The last
# stdout line is `export BIGTABLE_EMULATOR_HOST=127.0.0.1:<port>`; all other
# output goes to stderr.
#
# Env:   CBTEMULATOR             emulator binary (default:
#                                /usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator)
#        CBT                     cbt CLI (default: cbt on PATH)
#        BIGTABLE_READY_TIMEOUT  seconds to wait (default: 30)
#        BIGTABLE_FIXED_PORT     listen on this port instead of a free one: a
#                                restart in place (after bigtable-down.sh on the
#                                same STATE_DIR) keeps the address clients were
#                                given (the data, in memory, is gone)
# On failure the emulator is stopped (via bigtable-down.sh) and the log tail
# is printed; the log stays in STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CBTEMULATOR="${CBTEMULATOR:-/usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator}"
CBT="${CBT:-cbt}"
READY_TIMEOUT="${BIGTABLE_READY_TIMEOUT:-30}"

log() { echo "bigtable-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
mkdir -p "$1"
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/cbtemulator.pid"
LOGFILE="${STATE_DIR}/cbtemulator.log"

# alive PID: true while PID is a live (non-zombie) cbtemulator.
alive() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == cbtemulator ]]
}

if [[ -f "${PIDFILE}" ]] && alive "$(cat "${PIDFILE}")"; then
  die "${PIDFILE} names a running cbtemulator; run bigtable-down.sh ${STATE_DIR} first"
fi
[[ -x "${CBTEMULATOR}" ]] || die "${CBTEMULATOR} not found (google-cloud-sdk bigtable emulator component)"
command -v "${CBT}" >/dev/null || die "cbt not found (CBT=${CBT})"
command -v python3 >/dev/null || die "python3 not found"

# A free loopback port chosen by the kernel (small window until it binds), or
# the one asked for.
if [[ -n "${BIGTABLE_FIXED_PORT:-}" ]]; then
  [[ "${BIGTABLE_FIXED_PORT}" =~ ^[0-9]+$ ]] || die "BIGTABLE_FIXED_PORT is not a port: ${BIGTABLE_FIXED_PORT}"
  PORT="${BIGTABLE_FIXED_PORT}"
else
  PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
HOSTPORT="127.0.0.1:${PORT}"

started=0
cleanup_on_failure() {
  local rc=$?
  if [[ ${rc} -ne 0 && ${started} -eq 1 ]]; then
    log "start-up failed (exit ${rc}); stopping what was started"
    "${SCRIPT_DIR}/bigtable-down.sh" "${STATE_DIR}" >&2 || true
  fi
  exit "${rc}"
}
trap cleanup_on_failure EXIT

show_log() {
  log "---- last 40 lines of ${LOGFILE} ----"
  tail -n 40 "${LOGFILE}" >&2 || true
  log "---- end of ${LOGFILE} ----"
}

log "starting cbtemulator on ${HOSTPORT}"
started=1
"${CBTEMULATOR}" --host=127.0.0.1 --port="${PORT}" \
  </dev/null >"${LOGFILE}" 2>&1 &
PID=$!
echo "${PID}" > "${PIDFILE}"

deadline=$((SECONDS + READY_TIMEOUT))
until BIGTABLE_EMULATOR_HOST="${HOSTPORT}" timeout 10 \
        "${CBT}" -project p -instance i ls >/dev/null 2>"${STATE_DIR}/.cbt-probe.err"; do
  if ! alive "${PID}"; then
    show_log; die "cbtemulator exited during start-up"
  fi
  if (( SECONDS >= deadline )); then
    log "last cbt error: $(tail -n 1 "${STATE_DIR}/.cbt-probe.err" 2>/dev/null)"
    show_log; die "cbt ls did not answer after ${READY_TIMEOUT} s"
  fi
  sleep 0.2
done
rm -f "${STATE_DIR}/.cbt-probe.err"
log "Bigtable emulator ready on ${HOSTPORT} (pid ${PID})"

cat > "${STATE_DIR}/bigtable.env" <<EOF2
BIGTABLE_EMULATOR_HOST=${HOSTPORT}
BIGTABLE_EMULATOR_PORT=${PORT}
EOF2

echo "export BIGTABLE_EMULATOR_HOST=${HOSTPORT}"
