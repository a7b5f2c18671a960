#!/usr/bin/env bash
# Stop, kill or restart one process of the Redis Sentinel setup started by
# redis-sentinel-up.sh, in place, for failover tests.
#
# Usage: tests/scripts/redis-sentinel-node.sh STATE_DIR stop|kill|start WHO
#   WHO is master, replica, sentinel0, sentinel1 or sentinel2.
#   "master" and "replica" always name the ORIGINAL processes (master.pid,
#   replica.pid): after a failover "replica" is the serving master and
#   "master" the one that was stopped. Ask a sentinel for the current one:
#     redis-cli -p SENTINEL_PORT sentinel get-master-addr-by-name mymaster
#   stop WHO   SIGTERM to its pid (10 s grace, then SIGKILL); returns once it
#              has exited. A master stopping this way first lets its replica
#              catch up (Redis 7 shutdown), so no acknowledged write is lost.
#              Stopping the serving master makes the sentinels promote the
#              other data node after down-after-milliseconds
#              (REDIS_SENTINEL_DOWN_AFTER_MS in sentinel.env) plus the
#              election, a few seconds in all.
#   kill WHO   SIGKILL to its pid (a crash); returns once it has exited.
#              Writes the master acknowledged but had not yet replicated are
#              lost (replication is asynchronous).
#   start WHO  restart it from its configuration in STATE_DIR (same port),
#              log appended. A data node starts empty (any dump.rdb a replica
#              kept from a full sync is deleted first, so no stale data comes
#              back) and, if the sentinels report another node as master, as
#              a replica of that node (--replicaof), so it never serves as an
#              empty master. Returns once it answers PING and, for a data
#              node, once it is either the master the sentinels report or a
#              replica with its link to that master up and writes streaming
#              to it (see wait_streaming in redis-ha-lib.sh); for a sentinel,
#              once it names the same master as the other two and sees them.
#              "The master the sentinels report" is the address a majority
#              (2 of 3) of them report.
#
# A data node restarted BEFORE the sentinels failed it over (i.e. while they
# still report it as master) comes back empty as master, and its replica
# resyncs to empty. Wait for the promotion before `start` to keep the data.
#
# Env:   REDIS_SERVER, REDIS_CLI   as for redis-sentinel-up.sh
#        REDIS_READY_TIMEOUT       seconds `start` waits (default: 60)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
READY_TIMEOUT="${REDIS_READY_TIMEOUT:-60}"

log() { echo "redis-sentinel-node: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=tests/scripts/redis-ha-lib.sh
source "${SCRIPT_DIR}/redis-ha-lib.sh"

[[ $# -eq 3 ]] || die "usage: $0 STATE_DIR stop|kill|start master|replica|sentinel0|sentinel1|sentinel2"
[[ -d "$1" ]] || die "$1: no such directory"
STATE_DIR="$(cd "$1" && pwd)"
action="$2"
who="$3"
ENV_FILE="${STATE_DIR}/sentinel.env"
[[ -f "${ENV_FILE}" ]] || die "${ENV_FILE} missing; is the setup up (redis-sentinel-up.sh)?"
# shellcheck disable=SC1090
source "${ENV_FILE}"
read -r -a SENTINEL_PORTS <<<"${REDIS_SENTINEL_PORTS}"
case "${who}" in
  master) PORT="${REDIS_MASTER_PORT}"; CONF="${STATE_DIR}/master/redis.conf"; extra=() ;;
  replica) PORT="${REDIS_REPLICA_PORT}"; CONF="${STATE_DIR}/replica/redis.conf"; extra=() ;;
  sentinel[0-2])
    PORT="${SENTINEL_PORTS[${who#sentinel}]}"; CONF="${STATE_DIR}/${who}/sentinel.conf"; extra=(--sentinel) ;;
  *) die "unknown process '${who}' (master|replica|sentinel0|sentinel1|sentinel2)" ;;
esac
PIDFILE="${STATE_DIR}/${who}.pid"

# current_master [SKIP_PORT]: HOST:PORT of the master as a majority (2 of 3)
# of the sentinels report it, leaving out the one at SKIP_PORT if given;
# empty if no address has a majority. One sentinel alone is not trusted: a
# sentinel restarted from its configuration reports the master it last knew
# until the others' hello messages update it.
current_master() {
  local p
  for p in "${SENTINEL_PORTS[@]}"; do
    [[ "${p}" != "${1:-}" ]] || continue
    rcli "${p}" sentinel get-master-addr-by-name "${REDIS_SENTINEL_MASTER}" | paste -sd:
  done | grep . | sort | uniq -c \
    | awk -v need=$((${#SENTINEL_PORTS[@]} / 2 + 1)) '$1 >= need { print $2 }' || true
}
LOGFILE="${STATE_DIR}/${who}.log"

case "${action}" in
  stop | kill)
    pidfile_alive "${PIDFILE}" || die "${who} is not running"
    pid="$(cat "${PIDFILE}")"
    if [[ "${action}" == stop ]]; then
      log "stopping ${who} (127.0.0.1:${PORT}, pid ${pid}) with SIGTERM"
      stop_pidfiles TERM "${PIDFILE}"
    else
      log "killing ${who} (127.0.0.1:${PORT}, pid ${pid}) with SIGKILL"
      stop_pidfiles KILL "${PIDFILE}"
    fi
    alive "${pid}" && die "${who} (pid ${pid}) is still running"
    log "${who} stopped"
    ;;
  start)
    ensure_redis
    if pidfile_alive "${PIDFILE}"; then die "${who} is already running (pid $(cat "${PIDFILE}"))"; fi
    [[ -f "${CONF}" ]] || die "${CONF} missing"
    if [[ "${who}" != sentinel* ]]; then
      rm -f "$(dirname "${CONF}")"/*.rdb
      # The master the sentinels report now (asked without the password).
      current="$(unset REDISCLI_AUTH; current_master)"
      if [[ "${current}" =~ ^127\.0\.0\.1:([0-9]+)$ && "${BASH_REMATCH[1]}" != "${PORT}" ]]; then
        extra=(--replicaof 127.0.0.1 "${BASH_REMATCH[1]}")
      elif [[ -z "${current}" ]]; then
        log "WARNING: no majority of sentinels names a master; starting ${who} with the role in its configuration"
      fi
      # Data nodes carry the password, if any; sentinels take none.
      if [[ -n "${REDIS_PASSWORD:-}" ]]; then export REDISCLI_AUTH="${REDIS_PASSWORD}"; fi
    fi
    log "restarting ${who} on 127.0.0.1:${PORT} ${extra[*]}"
    echo "---- restarted $(date -u +%FT%TZ) ----" >>"${LOGFILE}"
    launch "${CONF}" "${LOGFILE}" "${PIDFILE}" ${extra[@]+"${extra[@]}"}
    wait_pong "${PORT}" "${PIDFILE}" "${LOGFILE}" "${READY_TIMEOUT}"
    if [[ "${who}" != sentinel* ]]; then
      deadline=$((SECONDS + READY_TIMEOUT))
      while :; do
        current="$(unset REDISCLI_AUTH; current_master)"
        role="$(info_field "${PORT}" replication role)"
        if [[ "${current}" == "127.0.0.1:${PORT}" && "${role}" == master ]]; then break; fi
        if [[ "${role}" == slave \
              && "127.0.0.1:$(info_field "${PORT}" replication master_port)" == "${current}" \
              && "$(info_field "${PORT}" replication master_link_status)" == up ]]; then break; fi
        pidfile_alive "${PIDFILE}" || { show_log "${LOGFILE}"; die "${who} exited after restart"; }
        if ((SECONDS >= deadline)); then
          show_log "${LOGFILE}"
          die "${who} not settled ${READY_TIMEOUT} s after restart (role ${role}, sentinels' master ${current})"
        fi
        sleep 0.2
      done
      wait_streaming "${PORT}" "${READY_TIMEOUT}"
      log "${who} back (pid $(cat "${PIDFILE}")) as ${role}; sentinels' master is ${current}"
    else
      # Settled once it names the same master as the other sentinels and
      # sees both of them.
      deadline=$((SECONDS + READY_TIMEOUT))
      while :; do
        others="$(current_master "${PORT}")"
        mine="$(rcli "${PORT}" sentinel get-master-addr-by-name "${REDIS_SENTINEL_MASTER}" | paste -sd:)"
        peers="$(rcli "${PORT}" sentinel master "${REDIS_SENTINEL_MASTER}" | paste -d= - - | sed -n 's/^num-other-sentinels=//p')"
        if [[ -n "${others}" && "${mine}" == "${others}" && "${peers}" == $((${#SENTINEL_PORTS[@]} - 1)) ]]; then break; fi
        pidfile_alive "${PIDFILE}" || { show_log "${LOGFILE}"; die "${who} exited after restart"; }
        if ((SECONDS >= deadline)); then
          show_log "${LOGFILE}"
          die "${who} not settled ${READY_TIMEOUT} s after restart (names '${mine}', the others '${others}', sees ${peers:-no} other sentinels)"
        fi
        sleep 0.2
      done
      log "${who} back (pid $(cat "${PIDFILE}")); names master ${mine} like the others"
    fi
    ;;
  *) die "unknown action '${action}' (stop|kill|start)" ;;
esac
