#!/usr/bin/env bash
# Start a real Redis Sentinel setup on 127.0.0.1: one master, one replica
# (replicaof the master) and 3 sentinels (`redis-server --sentinel`)
# monitoring it as `mymaster` with quorum 2; no persistence, free ports
# chosen by the kernel.
#
# Usage: tests/scripts/redis-sentinel-up.sh STATE_DIR
#        eval "$(tests/scripts/redis-sentinel-up.sh STATE_DIR)"
#        tests/scripts/redis-sentinel-node.sh STATE_DIR stop|kill|start master   # failover tests
#        tests/scripts/redis-sentinel-down.sh STATE_DIR
#
# redis-server is installed with apt-get when missing (as redis-up.sh).
#
# Sentinel settings: down-after-milliseconds 2000, failover-timeout 3000,
# parallel-syncs 1, so stopping the master promotes the replica within a few
# seconds. Not 1000: a sentinel PINGs at most every 1000 ms, and on
# +switch-master it resets the new master's ping timers to "now", so with
# down-after-milliseconds 1000 a reply only slightly late flags the new master
# down. Seen with Redis 7.0.15: +sdown of the just-promoted master 1.01 s after
# +switch-master, "+odown #quorum 3/2" though the other sentinels logged no
# sdown, and a failover straight back to the node that had just restarted.
#
# Returns once the replica's link to the master is up with writes streaming
# to it (see wait_streaming in redis-ha-lib.sh) and every sentinel
# reports the master (SENTINEL get-master-addr-by-name mymaster),
# flags it plain "master" (not down), lists the replica and sees the 2 other
# sentinels (num-other-sentinels 2).
#
# STATE_DIR (created if missing) receives:
#   master.pid, replica.pid, sentinel0.pid .. sentinel2.pid
#                  one pid per process ("master" and "replica" always name the
#                  ORIGINAL roles: after a failover replica.pid is the master)
#   master.log, replica.log, sentinel0.log .. sentinel2.log
#                  their logs (kept by redis-sentinel-down.sh; appended on restart)
#   master/redis.conf, replica/redis.conf, sentinelN/sentinel.conf
#                  configurations; Redis rewrites them as roles change
#                  (CONFIG REWRITE from the sentinels), so a restarted process
#                  keeps its current role; redis-sentinel-node.sh restarts from them
#   sentinel.env   facts to source: REDIS_SENTINELS, REDIS_SENTINEL_MASTER,
#                  REDIS_SENTINEL_PORTS (space-separated), REDIS_MASTER_PORT and
#                  REDIS_REPLICA_PORT (original roles),
#                  REDIS_SENTINEL_DOWN_AFTER_MS, REDIS_VERSION,
#                  REDIS_PASSWORD
# Stdout (all other output goes to stderr):
#   export REDIS_SENTINEL_MASTER=mymaster
#   export REDIS_SENTINELS=127.0.0.1:s0,127.0.0.1:s1,127.0.0.1:s2
# REDIS_SENTINELS is Feast's connection_string form for
# redis_type: redis_sentinel (with sentinel_master: mymaster).
#
# Env:   REDIS_SERVER         redis-server binary (default: on PATH)
#        REDIS_CLI            redis-cli binary (default: on PATH)
#        REDIS_PASSWORD       if set, master and replica get requirepass and
#                             masterauth, and the sentinels `auth-pass` it; the
#                             sentinels themselves take no password (Feast's
#                             client sends the password to the data nodes only)
#        REDIS_SENTINEL_DOWN_AFTER_MS  down-after-milliseconds (default: 2000;
#                             keep it well above 1000, see above)
#        REDIS_READY_TIMEOUT  seconds to wait for each stage (default: 60)
# On failure everything is stopped (via redis-sentinel-down.sh) and the log
# tails are printed; the logs stay in STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
READY_TIMEOUT="${REDIS_READY_TIMEOUT:-60}"
PASSWORD="${REDIS_PASSWORD:-}"
MASTER_NAME=mymaster
SENTINELS=3
QUORUM=2
DOWN_AFTER_MS="${REDIS_SENTINEL_DOWN_AFTER_MS:-2000}"
FAILOVER_TIMEOUT_MS=3000
PROCS=(master replica sentinel0 sentinel1 sentinel2)

log() { echo "redis-sentinel-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=tests/scripts/redis-ha-lib.sh
source "${SCRIPT_DIR}/redis-ha-lib.sh"

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
[[ "${DOWN_AFTER_MS}" =~ ^[0-9]+$ ]] || die "REDIS_SENTINEL_DOWN_AFTER_MS is not a number of ms: ${DOWN_AFTER_MS}"
mkdir -p "$1"
STATE_DIR="$(cd "$1" && pwd)"

for p in "${PROCS[@]}"; do
  if pidfile_alive "${STATE_DIR}/${p}.pid"; then
    die "${STATE_DIR}/${p}.pid names a running redis-server; run redis-sentinel-down.sh ${STATE_DIR} first"
  fi
done
command -v python3 >/dev/null || die "python3 not found"
ensure_redis
check_password

# ---- configure -----------------------------------------------------------------
read -r MASTER_PORT REPLICA_PORT S0 S1 S2 <<<"$(free_ports 5)"
SENTINEL_PORTS=("${S0}" "${S1}" "${S2}")

for p in "${PROCS[@]}"; do
  rm -rf "${STATE_DIR:?}/${p}"
  mkdir -p "${STATE_DIR}/${p}"
  rm -f "${STATE_DIR}/${p}.log"
done

# data_conf ROLE PORT [MASTER_PORT]: redis.conf of the master or the replica.
data_conf() {
  local dir="${STATE_DIR}/$1"
  {
    echo "port $2"
    echo "bind 127.0.0.1"
    echo 'save ""'
    echo "appendonly no"
    # Full syncs start at once (the default waits 5 s for more replicas).
    echo "repl-diskless-sync-delay 0"
    # A replication PING every second: wait_streaming (redis-ha-lib.sh) sees
    # the stream move within a second or two.
    echo "repl-ping-replica-period 1"
    echo "daemonize no"
    echo 'logfile ""'
    echo "dir ${dir}"
    if [[ -n "${PASSWORD}" ]]; then
      echo "requirepass \"${PASSWORD}\""
      echo "masterauth \"${PASSWORD}\""
    fi
    if [[ $# -eq 3 ]]; then echo "replicaof 127.0.0.1 $3"; fi
  } > "${dir}/redis.conf"
  chmod 600 "${dir}/redis.conf"
}
data_conf master "${MASTER_PORT}"
data_conf replica "${REPLICA_PORT}" "${MASTER_PORT}"
for ((i = 0; i < SENTINELS; i++)); do
  dir="${STATE_DIR}/sentinel${i}"
  {
    echo "port ${SENTINEL_PORTS[i]}"
    echo "bind 127.0.0.1"
    echo "daemonize no"
    echo 'logfile ""'
    echo "dir ${dir}"
    echo "sentinel monitor ${MASTER_NAME} 127.0.0.1 ${MASTER_PORT} ${QUORUM}"
    echo "sentinel down-after-milliseconds ${MASTER_NAME} ${DOWN_AFTER_MS}"
    echo "sentinel failover-timeout ${MASTER_NAME} ${FAILOVER_TIMEOUT_MS}"
    echo "sentinel parallel-syncs ${MASTER_NAME} 1"
    if [[ -n "${PASSWORD}" ]]; then echo "sentinel auth-pass ${MASTER_NAME} ${PASSWORD}"; fi
  } > "${dir}/sentinel.conf"
  chmod 600 "${dir}/sentinel.conf"
done

started=0
cleanup_on_failure() {
  local rc=$?
  if [[ ${rc} -ne 0 && ${started} -eq 1 ]]; then
    log "start-up failed (exit ${rc}); stopping what was started"
    "${SCRIPT_DIR}/redis-sentinel-down.sh" "${STATE_DIR}" >&2 || true
  fi
  exit "${rc}"
}
trap cleanup_on_failure EXIT

show_logs() {
  local p
  for p in "${PROCS[@]}"; do show_log "${STATE_DIR}/${p}.log"; done
}

# ---- start the data nodes -----------------------------------------------------
started=1
if [[ -n "${PASSWORD}" ]]; then export REDISCLI_AUTH="${PASSWORD}"; fi
log "starting master on 127.0.0.1:${MASTER_PORT}, replica on 127.0.0.1:${REPLICA_PORT}"
launch "${STATE_DIR}/master/redis.conf" "${STATE_DIR}/master.log" "${STATE_DIR}/master.pid"
launch "${STATE_DIR}/replica/redis.conf" "${STATE_DIR}/replica.log" "${STATE_DIR}/replica.pid"
wait_pong "${MASTER_PORT}" "${STATE_DIR}/master.pid" "${STATE_DIR}/master.log" "${READY_TIMEOUT}"
wait_pong "${REPLICA_PORT}" "${STATE_DIR}/replica.pid" "${STATE_DIR}/replica.log" "${READY_TIMEOUT}"
version="$(info_field "${MASTER_PORT}" server redis_version)"
deadline=$((SECONDS + READY_TIMEOUT))
until [[ "$(info_field "${REPLICA_PORT}" replication master_link_status)" == up ]]; do
  if ((SECONDS >= deadline)); then show_logs; die "replica's link to the master not up after ${READY_TIMEOUT} s"; fi
  sleep 0.1
done
wait_streaming "${REPLICA_PORT}" "${READY_TIMEOUT}"

# ---- start the sentinels ------------------------------------------------------
# Sentinels take no password here: unset it for the redis-cli calls to them.
unset REDISCLI_AUTH
for ((i = 0; i < SENTINELS; i++)); do
  log "starting sentinel ${i} on 127.0.0.1:${SENTINEL_PORTS[i]}"
  launch "${STATE_DIR}/sentinel${i}/sentinel.conf" "${STATE_DIR}/sentinel${i}.log" \
    "${STATE_DIR}/sentinel${i}.pid" --sentinel
done
for ((i = 0; i < SENTINELS; i++)); do
  wait_pong "${SENTINEL_PORTS[i]}" "${STATE_DIR}/sentinel${i}.pid" "${STATE_DIR}/sentinel${i}.log" "${READY_TIMEOUT}"
done

# sentinel_ready PORT: the sentinel at PORT knows the master at its original
# address, not down, with 1 replica and 2 other sentinels; otherwise false
# with the reason in NOT_READY.
sentinel_ready() {
  local port="$1" addr state field
  addr="$(rcli "${port}" sentinel get-master-addr-by-name "${MASTER_NAME}" | paste -sd:)"
  if [[ "${addr}" != "127.0.0.1:${MASTER_PORT}" ]]; then
    NOT_READY="sentinel :${port} reports master '${addr}'"; return 1
  fi
  # SENTINEL MASTER answers field/value pairs, one per line.
  state="$(rcli "${port}" sentinel master "${MASTER_NAME}" | paste -d= - -)"
  field() { sed -n "s/^$1=//p" <<<"${state}"; }
  if [[ "$(field flags)" != master ]]; then
    NOT_READY="sentinel :${port}: master flags '$(field flags)'"; return 1
  fi
  if [[ "$(field num-slaves)" != 1 ]]; then
    NOT_READY="sentinel :${port}: num-slaves '$(field num-slaves)'"; return 1
  fi
  if [[ "$(field num-other-sentinels)" != $((SENTINELS - 1)) ]]; then
    NOT_READY="sentinel :${port}: num-other-sentinels '$(field num-other-sentinels)'"; return 1
  fi
  if [[ "$(rcli "${port}" sentinel replicas "${MASTER_NAME}" | paste -d= - - | sed -n 's/^flags=//p')" != slave ]]; then
    NOT_READY="sentinel :${port}: replica not seen as a healthy slave yet"; return 1
  fi
}
deadline=$((SECONDS + READY_TIMEOUT))
for ((i = 0; i < SENTINELS; i++)); do
  until sentinel_ready "${SENTINEL_PORTS[i]}"; do
    if ((SECONDS >= deadline)); then show_logs; die "sentinels not ready after ${READY_TIMEOUT} s: ${NOT_READY}"; fi
    sleep 0.2
  done
done
log "Redis ${version}: master 127.0.0.1:${MASTER_PORT}, replica 127.0.0.1:${REPLICA_PORT}," \
  "sentinels on ${SENTINEL_PORTS[*]} all agree"

SENTINELS_CSV="127.0.0.1:${S0},127.0.0.1:${S1},127.0.0.1:${S2}"
umask 077
{
  echo "REDIS_SENTINELS=${SENTINELS_CSV}"
  echo "REDIS_SENTINEL_MASTER=${MASTER_NAME}"
  echo "REDIS_SENTINEL_PORTS=\"${SENTINEL_PORTS[*]}\""
  echo "REDIS_MASTER_PORT=${MASTER_PORT}"
  echo "REDIS_REPLICA_PORT=${REPLICA_PORT}"
  echo "REDIS_SENTINEL_DOWN_AFTER_MS=${DOWN_AFTER_MS}"
  echo "REDIS_VERSION=${version}"
  if [[ -n "${PASSWORD}" ]]; then echo "REDIS_PASSWORD=${PASSWORD}"; fi
} > "${STATE_DIR}/sentinel.env"
umask 022

echo "export REDIS_SENTINEL_MASTER=${MASTER_NAME}"
echo "export REDIS_SENTINELS=${SENTINELS_CSV}"
