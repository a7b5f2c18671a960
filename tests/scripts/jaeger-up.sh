#!/usr/bin/env bash
# Start Jaeger (the v2 binary built by jaeger-build.sh: an OpenTelemetry
# collector with Jaeger's in-memory trace storage and query API/UI) for the
# OpenTelemetry trace tests. Every listener is on 127.0.0.1, on free ports:
#   OTLP/gRPC receiver, OTLP/HTTP receiver (POST /v1/traces),
#   query HTTP API + UI (/api/services, /api/traces/<id>), query gRPC API.
# Nothing else listens: no health-check, sampling, zpages or pprof extension,
# and the collector's own metrics endpoint (default :8888) is disabled.
#
# Usage: tests/scripts/jaeger-up.sh STATE_DIR
#        eval "$(tests/scripts/jaeger-up.sh STATE_DIR)"
#        ...
#        tests/scripts/jaeger-down.sh STATE_DIR
#
# Builds the binary first when it is not cached (jaeger-build.sh: about
# 12 min cold here). Start-up measured here: under 1 s once built. The UI
# page is a placeholder (no built UI in the Go module); the APIs are whole.
# Spans are kept in memory (at most JAEGER_MAX_TRACES traces) and written as
# they arrive (no batch processor), so a trace is queryable as soon as the
# OTLP export returns.
#
# STATE_DIR (created if missing) receives:
#   jaeger.yaml   the collector configuration
#   jaeger.pid    its pid
#   jaeger.log    its log
#   jaeger.env    facts to source (the exports below, plus the query gRPC port)
# stdout carries only these lines:
#   export HOS_JAEGER_OTLP_GRPC=http://127.0.0.1:<port>
#   export HOS_JAEGER_OTLP_HTTP=http://127.0.0.1:<port>
#   export HOS_JAEGER_QUERY=http://127.0.0.1:<port>
#
# Env:   JAEGER               binary (default: the one jaeger-build.sh caches)
#        JAEGER_MAX_TRACES    in-memory trace limit (default: 100000)
#        JAEGER_READY_TIMEOUT seconds to wait for the query API (default: 60)
# On failure the server is stopped (via jaeger-down.sh) and the log tail is
# printed; the log stays in STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MAX_TRACES="${JAEGER_MAX_TRACES:-100000}"
READY_TIMEOUT="${JAEGER_READY_TIMEOUT:-60}"

log() { echo "jaeger-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 STATE_DIR"
mkdir -p "$1"
STATE_DIR="$(cd "$1" && pwd)"
PIDFILE="${STATE_DIR}/jaeger.pid"
LOGFILE="${STATE_DIR}/jaeger.log"
CONFIG="${STATE_DIR}/jaeger.yaml"

# alive PID: true while PID is a live (non-zombie) jaeger.
alive() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe##*/}" == jaeger ]]
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
  die "${PIDFILE} names a running jaeger; run jaeger-down.sh ${STATE_DIR} first"
fi
[[ "${MAX_TRACES}" =~ ^[0-9]+$ ]] || die "JAEGER_MAX_TRACES is not a number: ${MAX_TRACES}"
command -v python3 >/dev/null || die "python3 not found"
command -v curl >/dev/null || die "curl not found"

if [[ -z "${JAEGER:-}" ]]; then
  JAEGER="$("${SCRIPT_DIR}/jaeger-build.sh" | tail -n 1)/jaeger"
fi
[[ -x "${JAEGER}" ]] || die "${JAEGER} not found"

# Four distinct free loopback ports, chosen together (all held open until
# each is known, so none is handed out twice).
read -r OTLP_GRPC OTLP_HTTP QUERY_HTTP QUERY_GRPC < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')

cat > "${CONFIG}" <<EOF
# Written by tests/scripts/jaeger-up.sh: OTLP in, in-memory storage, query
# API out; every listener on 127.0.0.1.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: []
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: ${MAX_TRACES}
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:${QUERY_HTTP}
    grpc:
      endpoint: 127.0.0.1:${QUERY_GRPC}

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:${OTLP_GRPC}
      http:
        endpoint: 127.0.0.1:${OTLP_HTTP}

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF

started=0
cleanup_on_failure() {
  local rc=$?
  if [[ ${rc} -ne 0 && ${started} -eq 1 ]]; then
    log "start-up failed (exit ${rc}); stopping what was started"
    "${SCRIPT_DIR}/jaeger-down.sh" "${STATE_DIR}" >&2 || true
  fi
  exit "${rc}"
}
trap cleanup_on_failure EXIT

show_log() {
  log "---- last 40 lines of ${LOGFILE} ----"
  tail -n 40 "${LOGFILE}" >&2 || true
  log "---- end of ${LOGFILE} ----"
}

QUERY="http://127.0.0.1:${QUERY_HTTP}"
t0=${SECONDS}
log "starting ${JAEGER} (OTLP gRPC ${OTLP_GRPC}, OTLP HTTP ${OTLP_HTTP}, query ${QUERY_HTTP}/${QUERY_GRPC})"
started=1
nice -n 19 "${JAEGER}" --config "file:${CONFIG}" </dev/null >"${LOGFILE}" 2>&1 &
PID=$!
echo "${PID}" > "${PIDFILE}"

# Ready when the query API answers and the OTLP/HTTP receiver takes an empty
# export (the receivers start after the extensions).
deadline=$((SECONDS + READY_TIMEOUT))
until curl -fsS -o /dev/null "${QUERY}/api/services" 2>/dev/null \
  && curl -fsS -o /dev/null -H 'Content-Type: application/json' --data '{"resourceSpans":[]}' \
       "http://127.0.0.1:${OTLP_HTTP}/v1/traces" 2>/dev/null; do
  if ! running "${PID}"; then
    show_log; die "jaeger exited during start-up"
  fi
  if (( SECONDS >= deadline )); then
    show_log; die "not ready after ${READY_TIMEOUT} s"
  fi
  sleep 0.2
done
log "jaeger ready, query API on ${QUERY} (pid ${PID}) after $((SECONDS - t0)) s"

umask 077
cat > "${STATE_DIR}/jaeger.env" <<EOF
HOS_JAEGER_OTLP_GRPC=http://127.0.0.1:${OTLP_GRPC}
HOS_JAEGER_OTLP_HTTP=http://127.0.0.1:${OTLP_HTTP}
HOS_JAEGER_QUERY=${QUERY}
JAEGER_QUERY_GRPC=127.0.0.1:${QUERY_GRPC}
EOF
umask 022

echo "export HOS_JAEGER_OTLP_GRPC=http://127.0.0.1:${OTLP_GRPC}"
echo "export HOS_JAEGER_OTLP_HTTP=http://127.0.0.1:${OTLP_HTTP}"
echo "export HOS_JAEGER_QUERY=${QUERY}"
