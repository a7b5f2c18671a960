#!/usr/bin/env bash
# Security suite ("[I] Tenant isolation and hostile input"): each test plays
# an attacker (a CR author in another team, a client with a token, an
# anonymous client, a broken backend) against the real proxy or operator and
# asserts both the refusal (status, message, exit code) and the absence of
# the harm (no secret bytes on a socket, the process alive, no file outside
# the data dir, bounded RSS).
#
#   HOS_PROXY_BIN    proxy binary (default target/debug/hos-proxy)
#   HOS_LOADGEN_BIN  bench/loadgen binary for the overload tests (built by
#                    tests/run.sh in release mode)
#   REDIS_URL, BIGTABLE_EMULATOR_HOST   as tests/scripts/*-up.sh export them
#   extra arguments are passed to pytest (e.g. -k slowloris)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="$(tests/scripts/feast-env.sh | tail -n 1)"
export TZ=UTC PYTHONDONTWRITEBYTECODE=1
export HOS_PROXY_BIN="${HOS_PROXY_BIN:-$PWD/target/debug/hos-proxy}"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/security "$@"
