#!/usr/bin/env bash
# Idempotently create a cached Python venv with the real Feast SDK (0.67.0),
# used by the interop tests (feast apply / feast serve / sqlite online store).
#
# Usage: VENV=$(tests/scripts/feast-env.sh)   # last stdout line is the venv path
# Also installs the interop test tools (pytest, requests) into the same venv,
# idempotently: a venv built before they were added gets them on the next run.
# Also installs the Python clients that Feast's cassandra, bigtable and redis
# online stores import (cassandra-driver, google-cloud-bigtable, redis +
# hiredis: Feast's own [cassandra], [gcp] and [redis] extras) whenever one of
# them fails to import, so an existing venv gets them without a rebuild.
# Likewise the clients Feast's registries import (tests/registry): psycopg 3
# with its binary build and pool (Feast's [postgres] extra, for
# `registry_type: sql` on PostgreSQL), boto3 (the s3:// registry, from the
# [aws] extra), google-cloud-storage (the gs:// registry, from [gcp]) and
# grpcio-health-checking + grpcio-reflection (Feast's [grpcio] extra, which
# `feast serve_registry` imports).
# Env:   HOS_CACHE  cache root (default: $HOME/.cache/hybrid-online-store)
#        PYTHON     interpreter used to create the venv (default: python3)
# All pip / venv chatter goes to stderr; stdout carries only the venv path.
set -euo pipefail

FEAST_VERSION="0.67.0"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
VENV="${CACHE_ROOT}/feast-${FEAST_VERSION}"
MARKER="${VENV}/.hos-feast-installed"
# Test tools; bump TEST_DEPS_MARKER's name when this list changes.
TEST_DEPS=("pytest==9.2.0" "requests==2.34.2")
TEST_DEPS_MARKER="${VENV}/.hos-test-deps-v1"
# Online-store clients (versions inside Feast 0.67.0's extras' ranges).
STORE_DEPS=("cassandra-driver==3.30.1" "google-cloud-bigtable==2.50.2" "redis==7.4.1" "hiredis==3.5.0")
STORE_IMPORTS='import cassandra.cluster, google.cloud.bigtable, redis, hiredis  # noqa: F401'
# Registry clients (versions inside Feast 0.67.0's extras' ranges).
REGISTRY_DEPS=("psycopg[binary,pool]==3.3.9" "psycopg-binary==3.3.9" "psycopg-pool==3.3.3"
  "boto3==1.44.18" "google-cloud-storage==2.19.0"
  "grpcio-health-checking==1.85.1" "grpcio-reflection==1.85.1")
REGISTRY_IMPORTS='import psycopg, psycopg_pool, boto3, google.cloud.storage, grpc_health, grpc_reflection  # noqa: F401'
PYTHON="${PYTHON:-python3}"

# Everything below, except the final echo, writes to stderr.
{
  if [[ -f "${MARKER}" && -x "${VENV}/bin/python" && -x "${VENV}/bin/feast" ]]; then
    echo "feast-env: reusing ${VENV}"
  else
    echo "feast-env: creating ${VENV} (feast==${FEAST_VERSION})"
    mkdir -p "${CACHE_ROOT}"
    # A half-built venv (no marker) is discarded and rebuilt from scratch.
    rm -rf "${VENV}"
    "${PYTHON}" -m venv "${VENV}"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    "${VENV}/bin/python" -m pip install --upgrade pip setuptools wheel
    # feast core already pulls in pyarrow, pandas, fastapi, uvicorn, gunicorn
    # (feast serve) and uses the stdlib sqlite3 for the sqlite online store.
    "${VENV}/bin/python" -m pip install "feast==${FEAST_VERSION}"
    # Sanity check: the CLI and the pieces the tests rely on import.
    "${VENV}/bin/python" - <<'PY'
import feast, pyarrow, pandas, sqlite3, fastapi, uvicorn  # noqa: F401
from feast.infra.online_stores.sqlite import SqliteOnlineStore  # noqa: F401
from feast.protos.feast.core.Registry_pb2 import Registry  # noqa: F401
assert feast.__version__ == "0.67.0", feast.__version__
PY
    "${VENV}/bin/feast" version
    date -u +%Y-%m-%dT%H:%M:%SZ > "${MARKER}"
  fi
  # Test tools: installed when this marker is missing (new venv, or a venv
  # made before they were added), then checked to import.
  if [[ ! -f "${TEST_DEPS_MARKER}" ]]; then
    echo "feast-env: installing test tools ${TEST_DEPS[*]}"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "${VENV}/bin/python" -m pip install "${TEST_DEPS[@]}"
    "${VENV}/bin/python" -c 'import pytest, requests  # noqa: F401'
    date -u +%Y-%m-%dT%H:%M:%SZ > "${TEST_DEPS_MARKER}"
  fi
  # Online-store clients: installed when any of them fails to import, then
  # checked together with Feast's own store modules.
  if ! "${VENV}/bin/python" -c "${STORE_IMPORTS}" 2>/dev/null; then
    echo "feast-env: installing online-store clients ${STORE_DEPS[*]}"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "${VENV}/bin/python" -m pip install "${STORE_DEPS[@]}"
    "${VENV}/bin/python" - <<'PY'
import cassandra.cluster, google.cloud.bigtable, redis, hiredis  # noqa: F401
from feast.infra.online_stores.cassandra_online_store.cassandra_online_store import CassandraOnlineStore  # noqa: F401
from feast.infra.online_stores.bigtable import BigtableOnlineStore  # noqa: F401
from feast.infra.online_stores.redis import RedisOnlineStore  # noqa: F401
import feast
assert feast.__version__ == "0.67.0", feast.__version__
PY
  fi
  # Registry clients: the same, checked with Feast's registry modules.
  if ! "${VENV}/bin/python" -c "${REGISTRY_IMPORTS}" 2>/dev/null; then
    echo "feast-env: installing registry clients ${REGISTRY_DEPS[*]}"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "${VENV}/bin/python" -m pip install "${REGISTRY_DEPS[@]}"
    "${VENV}/bin/python" - <<'PY'
import psycopg, psycopg_pool, boto3, google.cloud.storage, grpc_health, grpc_reflection  # noqa: F401
from psycopg.pq import __impl__
from feast.infra.registry.sql import SqlRegistry  # noqa: F401
from feast.infra.registry.s3 import S3RegistryStore  # noqa: F401
from feast.infra.registry.gcs import GCSRegistryStore  # noqa: F401
from feast.registry_server import start_server  # noqa: F401
import feast
assert __impl__ == "binary", __impl__
assert feast.__version__ == "0.67.0", feast.__version__
PY
  fi
} 1>&2

echo "${VENV}"
