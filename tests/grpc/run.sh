#!/usr/bin/env bash
# gRPC client tests: "Java and Go clients can read every backend, reading
# values written by Feast Python". Builds (or reuses) the Go and Java clients
# of feast.serving.ServingService (tests/grpc/build.sh), makes (or reuses) the
# Feast venv, then runs pytest with TZ=UTC on tests/grpc.
#   HOS_PROXY_BIN   proxy binary (default target/debug/hos-proxy); it must
#                   serve gRPC with --grpc-listen
#   REDIS_URL, BIGTABLE_EMULATOR_HOST, CASSANDRA_HOST/PORT: the servers
#                   tests/run.sh starts; a backend whose variables are unset
#                   is skipped (SQLite always runs)
#   extra arguments are passed to pytest (e.g. -k java)
set -euo pipefail
cd "$(dirname "$0")/../.."
built="$(tests/grpc/build.sh)"
HOS_GRPC_GO_CLIENT="$(tail -n 2 <<<"$built" | head -n 1)"
HOS_GRPC_JAVA_CLIENT="$(tail -n 1 <<<"$built")"
export HOS_GRPC_GO_CLIENT HOS_GRPC_JAVA_CLIENT
VENV="$(tests/scripts/feast-env.sh | tail -n 1)"
export TZ=UTC PYTHONDONTWRITEBYTECODE=1
export HOS_PROXY_BIN="${HOS_PROXY_BIN:-$PWD/target/debug/hos-proxy}"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -rs tests/grpc "$@"
