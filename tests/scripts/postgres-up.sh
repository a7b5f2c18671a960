#!/usr/bin/env bash
# Start a real PostgreSQL server (Debian's `postgresql` package, built with
# OpenSSL: TLS is on) bound to 127.0.0.1 on a free port, with a
# database `feast` owned by a password-authenticated user `feast`: the
# backing store of Feast's SQL registry (`registry_type: sql`).
#
# Usage: tests/scripts/postgres-up.sh STATE_DIR
#        eval "$(tests/scripts/postgres-up.sh STATE_DIR)"
#        ...
#        tests/scripts/postgres-down.sh STATE_DIR
#
# The newest /usr/lib/postgresql/<major>/bin is used; without one, Debian's
# `postgresql` package is installed with apt-get (as redis-up.sh does; its
# own cluster is not used). PostgreSQL refuses to run as root; as root the server (and initdb) run in a
# user namespace where root is mapped to `nobody` (`unshare --user`), so no
# system user is created and no directory permission is widened.
# Start-up measured here (2 cores): about 3 s, initdb and certificates
# included.
#
# STATE_DIR (created if missing) receives:
#   postgres.pid   pid of the postmaster
#   postgres.log   its log (and initdb's)
#   postgres.env   facts to source: HOS_POSTGRES_URL, host, port, user, version
#   data/          the cluster (initdb; removed by postgres-down.sh)
#   sock/          the unix socket directory (local superuser access, trust)
#   tls/ca.pem     the test CA that signed the server's certificate (TLS is
#                  on, not required: the certificate names 127.0.0.1 and
#                  localhost; key and certificate live in data/)
# Only `export HOS_POSTGRES_URL=postgresql://feast:<pw>@127.0.0.1:<port>/feast`
# and `export HOS_POSTGRES_CA=STATE_DIR/tls/ca.pem` go to stdout; everything
# else goes to stderr.
#
# Env:   POSTGRES_BIN             a PostgreSQL bin/ directory to use instead
#        POSTGRES_PASSWORD       the feast user's password (default: random hex)
#        POSTGRES_READY_TIMEOUT  seconds to wait for the server (default: 60)
# The cluster is for tests: fsync, synchronous_commit and full_page_writes are
# off. On failure the server is stopped (via postgres-down.sh) and the log
# tail is printed; the log stays in STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
READY_TIMEOUT="${POSTGRES_READY_TIMEOUT:-60}"
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
# A unix socket path is limited to 107 bytes.
(( ${#SOCK} + 20 < 108 )) || die "STATE_DIR path too long for a unix socket: ${SOCK}"

# ---- the server binaries ---------------------------------------------------------
newest_pg_bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n | tail -n 1)"
  [[ -n "${d}" && -x "${d}/postgres" ]] && echo "${d}"
}
PG_BIN="${POSTGRES_BIN:-$(newest_pg_bin || true)}"
if [[ -z "${PG_BIN}" ]]; then
  command -v apt-get >/dev/null || die "no PostgreSQL under /usr/lib/postgresql and no apt-get to install it"
  SUDO=()
  [[ "$(id -u)" -eq 0 ]] || SUDO=(sudo -n)
  apt_install() {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends postgresql >&2
  }
  log "installing postgresql with apt-get"
  if ! apt_install; then
    log "apt-get install failed; running apt-get update once and retrying"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    apt_install || die "apt-get install postgresql failed"
  fi
  PG_BIN="$(newest_pg_bin)" || die "postgresql installed, but no /usr/lib/postgresql/*/bin/postgres"
fi
for b in postgres initdb psql pg_isready; do
  [[ -x "${PG_BIN}/${b}" ]] || die "no ${b} under ${PG_BIN}"
done
command -v openssl >/dev/null || die "openssl not found (the test CA and server certificate)"

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
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF

# ---- TLS: a throw-away CA and a server certificate it signs ---------------------
TLS="${STATE_DIR}/tls"
rm -rf "${TLS}"
mkdir -p "${TLS}"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=hos-test-postgres-ca" \
  -keyout "${TLS}/ca.key" -out "${TLS}/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>>"${LOGFILE}" || { show_log; die "openssl: the test CA"; }
openssl req "${ec[@]}" -subj "/CN=127.0.0.1" -keyout "${DATA}/server.key" \
  -out "${TLS}/server.csr" 2>>"${LOGFILE}" || { show_log; die "openssl: the server key"; }
printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"${TLS}/server.ext"
openssl x509 -req -in "${TLS}/server.csr" -CA "${TLS}/ca.pem" -CAkey "${TLS}/ca.key" \
  -CAcreateserial -days 2 -extfile "${TLS}/server.ext" -out "${DATA}/server.crt" \
  2>>"${LOGFILE}" || { show_log; die "openssl: the server certificate"; }
chmod 600 "${DATA}/server.key"

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
HOS_POSTGRES_CA=${TLS}/ca.pem
EOF
umask 022

echo "export HOS_POSTGRES_URL=${URL}"
echo "export HOS_POSTGRES_CA=${TLS}/ca.pem"
