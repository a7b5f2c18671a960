#!/usr/bin/env bash
# Interop tests: hos-proxy against the real Feast 0.67.0 SDK, CLI and server.
# Makes (or reuses) the Feast venv, then runs pytest with TZ=UTC.
#   HOS_PROXY_BIN   proxy binary (default target/debug/hos-proxy)
#   extra arguments are passed to pytest (e.g. -k hot_reload)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="$(tests/scripts/feast-env.sh | tail -n 1)"
export TZ=UTC PYTHONDONTWRITEBYTECODE=1
export HOS_PROXY_BIN="${HOS_PROXY_BIN:-$PWD/target/debug/hos-proxy}"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/interop "$@"
