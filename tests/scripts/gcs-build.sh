#!/usr/bin/env bash
# Idempotently build and cache fake-gcs-server (a Google Cloud Storage
# emulator: the JSON and XML APIs, resumable and multipart uploads) from its
# Go module through the Go module proxy (no release downloads, no images).
#
# Usage: BIN=$(tests/scripts/gcs-build.sh | tail -n 1)   # last line: bin dir
#
# Result: ${HOS_CACHE:-$HOME/.cache/hybrid-online-store}/fake-gcs-server-<FAKE_GCS_VERSION>/bin/fake-gcs-server
#         When it already exists the script only prints that directory.
#
# Env:   HOS_CACHE         cache root (default: $HOME/.cache/hybrid-online-store)
#        FAKE_GCS_VERSION  github.com/fsouza/fake-gcs-server module version
#                          (default: v1.56.1)
#        GO                go binary (default: go)
#
# The module has no replace directives, so `go install module@version`
# builds it as its go.mod states. Measured here (2 cores, go1.26.8,
# nice -n 19, a Jaeger and a Rust build running beside it): cold build
# 2 min 38 s (module downloads included); binary 33 MB (stripped with -s -w).
# All chatter goes to stderr.
set -euo pipefail

FAKE_GCS_VERSION="${FAKE_GCS_VERSION:-v1.56.1}"
GO="${GO:-go}"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
BIN_DIR="${CACHE_ROOT}/fake-gcs-server-${FAKE_GCS_VERSION}/bin"

log() { echo "gcs-build: $*" >&2; }

if [[ -x "${BIN_DIR}/fake-gcs-server" ]]; then
  echo "${BIN_DIR}"
  exit 0
fi

command -v "${GO}" >/dev/null || { log "ERROR: ${GO} not found"; exit 1; }
[[ "${FAKE_GCS_VERSION}" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] \
  || { log "ERROR: FAKE_GCS_VERSION ${FAKE_GCS_VERSION} is not a vX.Y.Z module version"; exit 1; }
log "building fake-gcs-server ${FAKE_GCS_VERSION} with $("${GO}" version) into ${BIN_DIR}"

mkdir -p "${CACHE_ROOT}"
TMP_BIN="$(mktemp -d "${CACHE_ROOT}/fake-gcs-server-build-XXXXXX")"
trap 'rm -rf "${TMP_BIN}"' EXIT

# Install into a temp dir first so an interrupted build never leaves a
# half-written binary at the cached path.
CGO_ENABLED=0 GOBIN="${TMP_BIN}" GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false" \
  "${GO}" install -trimpath -ldflags "-s -w" \
  "github.com/fsouza/fake-gcs-server@${FAKE_GCS_VERSION}" >&2

mkdir -p "${BIN_DIR}"
mv "${TMP_BIN}/fake-gcs-server" "${BIN_DIR}/fake-gcs-server"
log "built ${BIN_DIR}/fake-gcs-server ($(du -h "${BIN_DIR}/fake-gcs-server" | cut -f1))"
echo "${BIN_DIR}"
