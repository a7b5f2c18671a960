#!/usr/bin/env bash
# Feast registry smoke tests: the real Feast 0.67.0 CLI and SDK against each
# registry kind on a real server: SQL on PostgreSQL, s3:// on moto, gs:// on
# fake-gcs-server, and the gRPC registry server (`feast serve_registry`).
# Makes (or reuses) the Feast venv, then runs pytest with TZ=UTC.
# Needs the servers' variables in the environment (tests/run.sh sets them):
#   eval "$(tests/scripts/postgres-up.sh STATE/postgres)"   HOS_POSTGRES_URL
#   eval "$(tests/scripts/s3-up.sh STATE/s3)"               HOS_S3_ENDPOINT, AWS_*
#   eval "$(tests/scripts/gcs-up.sh STATE/gcs)"             HOS_GCS_ENDPOINT, STORAGE_EMULATOR_HOST
# A test whose variable is missing fails; none is skipped.
#   extra arguments are passed to pytest (e.g. -k s3)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="$(tests/scripts/feast-env.sh | tail -n 1)"
export TZ=UTC PYTHONDONTWRITEBYTECODE=1
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/registry "$@"
