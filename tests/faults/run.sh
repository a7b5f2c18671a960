#!/usr/bin/env bash
# Fault drills and shutdown durability ("[G] Reliability"): hos-proxy while
# one of its backends is stopped and restarted under read load, and while it
# is stopped with SIGTERM under write load.
#
# Needs the real servers running as tests/run.sh starts them, and their state
# dirs: the drills stop each server with its down script and start it again
# in place (same state dir and port) with its up script, so the rest of the
# suite still finds it.
#   HOS_TEST_STATE   state root: $HOS_TEST_STATE/{redis,bigtable,cassandra}
#   REDIS_URL, BIGTABLE_EMULATOR_HOST, CASSANDRA_HOST, CASSANDRA_PORT
#                    (CASSANDRA_USERNAME/PASSWORD with auth) as the up
#                    scripts export them
#   HOS_PROXY_BIN    proxy binary (default target/debug/hos-proxy)
#   FAULTS_PHASE_SECONDS  length of each load phase of a drill (default 8)
#   FAULTS_RATE           requests/s of each of the 4 request kinds (default 50)
#   FAULTS_P99_RETRIES    reruns of a drill whose only failure is the p99
#                         bound (default 1)
#   FAULTS_P99_RATIO, FAULTS_P99_FLOOR_MS
#                    outage p99 of the other backends' views must stay within
#                    RATIO x max(baseline p99, FLOOR) (defaults 2 and 2 ms)
#   extra arguments are passed to pytest (e.g. -k cassandra)
# Makes (or reuses) the Feast venv, then runs pytest with TZ=UTC.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${HOS_TEST_STATE:?set HOS_TEST_STATE to the state root of the running servers (tests/run.sh sets it)}"
VENV="$(tests/scripts/feast-env.sh | tail -n 1)"
export TZ=UTC PYTHONDONTWRITEBYTECODE=1
export HOS_PROXY_BIN="${HOS_PROXY_BIN:-$PWD/target/debug/hos-proxy}"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/faults "$@"
