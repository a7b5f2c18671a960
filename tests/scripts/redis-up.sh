#!/usr/bin/env bash
# Start a real Redis server (Debian's redis-server, no persistence) bound to
# 127.0.0.1 on a free port.
#
# Usage: tests/scripts/redis-up.sh STATE_DIR
#        eval "$(tests/scripts/redis-up.sh STATE_DIR)"
#        ...
#        tests/scripts/redis-down.sh STATE_DIR
#
# redis-server is installed with apt-get when missing (non-interactive;
# `apt-get update` runs only if the install fails without it; needs root or
# sudo).
#
# STATE_DIR (created if missing) receives:
#   redis.pid   pid of redis-server
#   redis.log   its log
#   redis.env   facts to source: REDIS_URL, REDIS_HOST, REDIS_PORT, version
#   data/       working directory (nothing is persisted; removed by redis-down.sh)
# The last stdout line is `export REDIS_URL=redis://127.0.0.1:<port>`; all
# other output goes to stderr.
#
# Env:   REDIS_SERVER         redis-server binary (default: redis-server on PATH)
#        REDIS_CLI            redis-cli binary (default: redis-cli on PATH)
#        REDIS_PASSWORD       if set, --requirepass it (the URL then carries it)
#        REDIS_READY_TIMEOUT  seconds to wait for PONG (default: 30)
#        REDIS_FIXED_PORT     listen on this port instead of a free one: a restart
#                             in place (after redis-down.sh on the same STATE_DIR)
#                             keeps the address clients were given
# On failure the server is stopped (via redis-down.sh) and the log tail is
# printed; the log stays in STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
READY_TIMEOUT="${REDIS_READY_TIMEOUT:-30}"
PASSWORD="${REDIS_PASSWORD:-}"

log() { echo "redis-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
mkdir -p "$1"
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/redis.pid"
LOGFILE="${STATE_DIR}/redis.log"

# alive PID: true while PID is a live (non-zombie) redis-server. Debian's
# /usr/bin/redis-server is a symlink to redis-check-rdb, so /proc/PID/exe
# names either.
alive() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == redis-server || "${exe##*/}" == redis-check-rdb ]]
}

if [[ -f "${PIDFILE}" ]] && alive "$(cat "${PIDFILE}")"; then
  die "${PIDFILE} names a running redis-server; run redis-down.sh ${STATE_DIR} first"
fi
command -v python3 >/dev/null || die "python3 not found"

# ---- install (once) ----------------------------------------------------------
if [[ -z "${REDIS_SERVER:-}" ]] && ! command -v redis-server >/dev/null; then
  command -v apt-get >/dev/null || die "redis-server not found and no apt-get to install it"
  SUDO=()
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null || die "redis-server not found; installing it needs root or sudo"
    SUDO=(sudo)
  fi
  log "installing redis-server with apt-get"
  apt_install() {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends redis-server redis-tools >&2
  }
  if ! apt_install; then
    log "apt-get install failed; running apt-get update once and retrying"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    apt_install || die "apt-get install redis-server failed"
  fi
fi
REDIS_SERVER="${REDIS_SERVER:-redis-server}"
REDIS_CLI="${REDIS_CLI:-redis-cli}"
command -v "${REDIS_SERVER}" >/dev/null || die "${REDIS_SERVER} not found"
command -v "${REDIS_CLI}" >/dev/null || die "${REDIS_CLI} not found"

# ---- start -------------------------------------------------------------------
# A free loopback port chosen by the kernel (small window until Redis binds),
# or the one asked for.
if [[ -n "${REDIS_FIXED_PORT:-}" ]]; then
  [[ "${REDIS_FIXED_PORT}" =~ ^[0-9]+$ ]] || die "REDIS_FIXED_PORT is not a port: ${REDIS_FIXED_PORT}"
  PORT="${REDIS_FIXED_PORT}"
else
  PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
DATA="${STATE_DIR}/data"
rm -rf "${DATA}"
mkdir -p "${DATA}"

auth_args=()
if [[ -n "${PASSWORD}" ]]; then
  auth_args=(--requirepass "${PASSWORD}")
fi

started=0
cleanup_on_failure() {
  local rc=$?
  if [[ ${rc} -ne 0 && ${started} -eq 1 ]]; then
    log "start-up failed (exit ${rc}); stopping what was started"
    "${SCRIPT_DIR}/redis-down.sh" "${STATE_DIR}" >&2 || true
  fi
  exit "${rc}"
}
trap cleanup_on_failure EXIT

show_log() {
  log "---- last 40 lines of ${LOGFILE} ----"
  tail -n 40 "${LOGFILE}" >&2 || true
  log "---- end of ${LOGFILE} ----"
}

log "starting ${REDIS_SERVER} on 127.0.0.1:${PORT}"
started=1
# --logfile "": log to stdout (redirected); --dir: where a stray dump would go.
"${REDIS_SERVER}" --port "${PORT}" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize no --dir "${DATA}" --logfile "" \
  ${auth_args[@]+"${auth_args[@]}"} \
  </dev/null >"${LOGFILE}" 2>&1 &
PID=$!
echo "${PID}" > "${PIDFILE}"

cli=("${REDIS_CLI}" -h 127.0.0.1 -p "${PORT}")
if [[ -n "${PASSWORD}" ]]; then
  # REDISCLI_AUTH keeps the password off the command line.
  export REDISCLI_AUTH="${PASSWORD}"
fi
deadline=$((SECONDS + READY_TIMEOUT))
until [[ "$("${cli[@]}" ping 2>/dev/null)" == PONG ]]; do
  if ! alive "${PID}"; then
    show_log; die "redis-server exited during start-up"
  fi
  if (( SECONDS >= deadline )); then
    show_log; die "no PONG after ${READY_TIMEOUT} s"
  fi
  sleep 0.1
done
version="$("${cli[@]}" info server 2>/dev/null | tr -d '\r' | sed -n 's/^redis_version://p')"
log "Redis ${version} ready on 127.0.0.1:${PORT} (pid ${PID})"

if [[ -n "${PASSWORD}" ]]; then
  URL="redis://:${PASSWORD}@127.0.0.1:${PORT}"
else
  URL="redis://127.0.0.1:${PORT}"
fi
umask 077
cat > "${STATE_DIR}/redis.env" <<EOF
REDIS_URL=${URL}
REDIS_HOST=127.0.0.1
REDIS_PORT=${PORT}
REDIS_VERSION=${version}
EOF
umask 022

echo "export REDIS_URL=${URL}"
