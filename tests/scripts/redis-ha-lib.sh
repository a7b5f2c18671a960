# Shared functions for the Redis HA test scripts (sourced, not run):
# redis-cluster-{up,down,node}.sh and redis-sentinel-{up,down,node}.sh.
#
# The caller defines log() and die() before sourcing this file and runs with
# `set -euo pipefail`. Nothing here is ever signalled by name: every process
# is found through the pid file its script wrote.

# alive PID: true while PID is a live (non-zombie) redis-server (sentinels are
# redis-server processes too). Debian's /usr/bin/redis-server is a symlink to
# redis-check-rdb, so /proc/PID/exe names either.
alive() {
  local exe
  [[ "$1" =~ ^[0-9]+$ ]] || return 1
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == redis-server || "${exe##*/}" == redis-check-rdb ]]
}

# pidfile_alive FILE: true if FILE exists and names a live redis-server.
pidfile_alive() {
  [[ -f "$1" ]] && alive "$(cat "$1")"
}

# wait_gone SECONDS PID...: wait until none of the PIDs is alive; false if
# some still are after SECONDS.
wait_gone() {
  local tenths=$(($1 * 10)) i p left
  shift
  for ((i = 0; i <= tenths; i++)); do
    left=0
    for p in "$@"; do
      if alive "${p}"; then left=1; fi
    done
    ((left)) || return 0
    sleep 0.1
  done
  return 1
}

# stop_pidfiles SIGNAL FILE...: send SIGNAL (TERM or KILL) to every live
# redis-server named by the pid files, all at once; after TERM allow 10 s of
# grace, then SIGKILL what is left. The pid files are removed afterwards.
# Stale or missing pid files are fine (safe to run twice).
stop_pidfiles() {
  local sig="$1" f p
  shift
  local pids=()
  for f in "$@"; do
    [[ -f "${f}" ]] || continue
    p="$(cat "${f}")"
    if alive "${p}"; then
      log "sending SIG${sig} to redis-server pid ${p} ($(basename "${f}" .pid))"
      kill "-${sig}" "${p}" 2>/dev/null || true
      pids+=("${p}")
    fi
  done
  if ((${#pids[@]})) && ! wait_gone 10 "${pids[@]}"; then
    for p in "${pids[@]}"; do
      if alive "${p}"; then
        log "redis-server pid ${p} still running after 10 s; sending SIGKILL"
        kill -KILL "${p}" 2>/dev/null || true
      fi
    done
    wait_gone 5 "${pids[@]}" || log "WARNING: some redis-server pids outlived SIGKILL: ${pids[*]}"
  fi
  rm -f "$@"
}

# ensure_redis: make REDIS_SERVER and REDIS_CLI name usable binaries,
# installing Debian's redis-server with apt-get when missing (as redis-up.sh).
ensure_redis() {
  if [[ -z "${REDIS_SERVER:-}" ]] && ! command -v redis-server >/dev/null; then
    command -v apt-get >/dev/null || die "redis-server not found and no apt-get to install it"
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
      command -v sudo >/dev/null || die "redis-server not found; installing it needs root or sudo"
      sudo=(sudo)
    fi
    log "installing redis-server with apt-get"
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends redis-server redis-tools >&2; then
      log "apt-get install failed; running apt-get update once and retrying"
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends redis-server redis-tools >&2 \
        || die "apt-get install redis-server failed"
    fi
  fi
  REDIS_SERVER="${REDIS_SERVER:-redis-server}"
  REDIS_CLI="${REDIS_CLI:-redis-cli}"
  command -v "${REDIS_SERVER}" >/dev/null || die "${REDIS_SERVER} not found"
  command -v "${REDIS_CLI}" >/dev/null || die "${REDIS_CLI} not found"
}

# free_ports N: print N distinct free loopback ports chosen by the kernel
# (all sockets are held open together, so they differ; a small window remains
# until the servers bind them).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# launch CONF LOG PIDFILE [ARG...]: start redis-server on CONF in the
# background (stdout and stderr appended to LOG) and record its pid.
launch() {
  local conf="$1" logf="$2" pidf="$3"
  shift 3
  "${REDIS_SERVER}" "${conf}" "$@" </dev/null >>"${logf}" 2>&1 &
  echo "$!" > "${pidf}"
}

# rcli PORT ARG...: redis-cli against 127.0.0.1:PORT, carriage returns removed;
# always succeeds (an unreachable server prints nothing), so it can be polled.
# A password, if any, comes from REDISCLI_AUTH (never on the command line).
rcli() {
  local port="$1"
  shift
  "${REDIS_CLI}" -h 127.0.0.1 -p "${port}" "$@" 2>/dev/null | tr -d '\r' || true
}

# info_field PORT SECTION FIELD: one field of INFO SECTION (empty if absent).
info_field() {
  rcli "$1" info "$2" | sed -n "s/^$3://p"
}

# show_log FILE: the last 40 lines of a server log, on stderr.
show_log() {
  [[ -f "$1" ]] || return 0
  log "---- last 40 lines of $1 ----"
  tail -n 40 "$1" >&2 || true
  log "---- end of $1 ----"
}

# wait_pong PORT PIDFILE LOGFILE TIMEOUT: wait until the server answers PING;
# die (showing its log) if it exits or the timeout passes.
wait_pong() {
  local port="$1" pidf="$2" logf="$3" deadline=$((SECONDS + $4))
  until [[ "$(rcli "${port}" ping)" == PONG ]]; do
    if ! pidfile_alive "${pidf}"; then
      show_log "${logf}"; die "redis-server on port ${port} exited during start-up"
    fi
    if ((SECONDS >= deadline)); then
      show_log "${logf}"; die "redis-server on port ${port}: no PONG after $4 s"
    fi
    sleep 0.1
  done
}

# check_password: refuse passwords that would need quoting in redis.conf or
# would split a Feast connection_string (which is comma-separated).
check_password() {
  [[ -z "${REDIS_PASSWORD:-}" || "${REDIS_PASSWORD}" =~ ^[A-Za-z0-9._~+-]+$ ]] \
    || die "REDIS_PASSWORD may only hold letters, digits and ._~+-"
}

# cluster_healthy EXPECTED_NODES PORT...: true when every node at PORT... says
# cluster_state:ok with all 16384 slots ok, knows EXPECTED_NODES nodes with
# none flagged fail/pfail/handshake/noaddr, counts EXPECTED_NODES/2 masters
# owning slots, and (if a replica) has its master link up. Otherwise false,
# with the first reason found in CLUSTER_UNHEALTHY.
cluster_healthy() {
  local expected="$1" port info nodes masters
  shift
  CLUSTER_UNHEALTHY=""
  for port in "$@"; do
    info="$(rcli "${port}" cluster info)"
    if ! grep -qx 'cluster_state:ok' <<<"${info}"; then
      CLUSTER_UNHEALTHY="node :${port}: $(grep '^cluster_state:' <<<"${info}" || echo 'no answer')"; return 1
    fi
    if ! grep -qx 'cluster_slots_ok:16384' <<<"${info}"; then
      CLUSTER_UNHEALTHY="node :${port}: $(grep '^cluster_slots_ok:' <<<"${info}")"; return 1
    fi
    if ! grep -qx "cluster_known_nodes:${expected}" <<<"${info}"; then
      CLUSTER_UNHEALTHY="node :${port}: $(grep '^cluster_known_nodes:' <<<"${info}")"; return 1
    fi
    nodes="$(rcli "${port}" cluster nodes)"
    # Field 3 holds the flags (e.g. myself,master / slave / master,fail?).
    if awk '$3 ~ /fail|handshake|noaddr/ { bad = 1 } END { exit !bad }' <<<"${nodes}"; then
      CLUSTER_UNHEALTHY="node :${port} sees a node failed or not yet joined"; return 1
    fi
    # A master line with slot ranges has more than 8 fields.
    masters="$(awk '$3 ~ /master/ && NF > 8 { m++ } END { print m + 0 }' <<<"${nodes}")"
    if [[ "${masters}" -ne $((expected / 2)) ]]; then
      CLUSTER_UNHEALTHY="node :${port} sees ${masters} masters owning slots"; return 1
    fi
    if [[ "$(info_field "${port}" replication role)" == slave \
          && "$(info_field "${port}" replication master_link_status)" != up ]]; then
      CLUSTER_UNHEALTHY="replica :${port}: link to its master not up yet"; return 1
    fi
  done
}

# wait_streaming PORT TIMEOUT: if the server at PORT is a replica, wait until
# its replication offset moves past where it stood when first asked. Redis
# 7.0 streams writes to a replica that has just finished a full sync only
# after the replica's first REPLCONF ACK (up to a second later), and WAIT can
# already count it meanwhile (seen: WAIT 1 returned 1, the write reached the
# replica ~1 s later); a master killed in that window loses acknowledged
# writes. The offset moves with the master's replication PINGs
# (repl-ping-replica-period 1 in the configurations written by the up
# scripts). Dies after TIMEOUT seconds.
wait_streaming() {
  local port="$1" deadline=$((SECONDS + $2)) start now
  [[ "$(info_field "${port}" replication role)" == slave ]] || return 0
  start="$(info_field "${port}" replication slave_repl_offset)"
  while :; do
    now="$(info_field "${port}" replication slave_repl_offset)"
    if [[ -n "${start}" && -n "${now}" && "${now}" -gt "${start}" \
          && "$(info_field "${port}" replication master_link_status)" == up ]]; then
      return 0
    fi
    if [[ -z "${start}" ]]; then start="${now}"; fi
    ((SECONDS < deadline)) || die "replica :${port}: replication stream not flowing after $2 s"
    sleep 0.1
  done
}
