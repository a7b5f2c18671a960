# Sourced by the *-down.sh scripts: stops a server by the pid its up script
# recorded, never by name. The caller defines `log`.
#
#   exe_is NAME PID
#       true while PID is a live (non-zombie) process whose executable is
#       NAME (a zombie's /proc/PID/exe cannot be read: it counts as gone).
#
#   stop_pidfile LABEL PIDFILE CHECK [ARG...]
#       if PIDFILE holds a pid for which `CHECK ARG... PID` is true, sends it
#       SIGTERM, waits up to 10 s, then SIGKILL and up to 5 s more; removes
#       PIDFILE. A pid that is gone or was reused by an unrelated process
#       (CHECK false) is never signalled. Safe to call twice.

exe_is() {
  local exe
  exe="$(readlink "/proc/$2/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == "$1" ]]
}

# gone TENTHS CHECK... PID: waits up to TENTHS/10 s for `CHECK... PID` to
# turn false; true once it has.
gone() {
  local tenths="$1" i
  shift
  for ((i = 0; i < tenths; i++)); do
    "$@" || return 0
    sleep 0.1
  done
  ! "$@"
}

stop_pidfile() {
  local label="$1" pidfile="$2" pid
  shift 2
  [[ -f "${pidfile}" ]] || return 0
  pid="$(cat "${pidfile}")"
  if [[ "${pid}" =~ ^[0-9]+$ ]] && "$@" "${pid}"; then
    log "stopping ${label} (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    if ! gone 100 "$@" "${pid}"; then
      log "${label} (pid ${pid}) ignored SIGTERM for 10 s; sending SIGKILL"
      kill -KILL "${pid}" 2>/dev/null || true
      gone 50 "$@" "${pid}" || log "WARNING: ${label} (pid ${pid}) did not exit"
    fi
  fi
  rm -f "${pidfile}"
}
