#!/usr/bin/env bash
# Idempotently build and cache Jaeger (the v2 binary: an OpenTelemetry
# collector distribution with Jaeger's storage, query API and UI) from its Go
# module through the Go module proxy (no release downloads, no images).
#
# Usage: BIN=$(tests/scripts/jaeger-build.sh | tail -n 1)   # last line: bin dir
#
# Result: ${HOS_CACHE:-$HOME/.cache/hybrid-online-store}/jaeger-<JAEGER_VERSION>/bin/jaeger
#         When it already exists the script only prints that directory.
#
# Env:   HOS_CACHE       cache root (default: $HOME/.cache/hybrid-online-store)
#        JAEGER_VERSION  github.com/jaegertracing/jaeger module version
#                        (default: v1.75.0; the module's v1.x tags carry the
#                        v2 binary under cmd/jaeger)
#        GO              go binary (default: go)
#
# `go install module@version` refuses a module whose go.mod has replace
# directives (Jaeger's has one, for github.com/Shopify/sarama), so the binary
# is built from a throw-away module that requires it as a tool
# (`go get -tool`) and repeats that replace line. Measured here (2 cores,
# go1.26.8, nice -n 19, with Rust and Go builds running beside it, load
# average about 8): cold build 11 min 44 s wall, 4 min 36 s user CPU (the
# module downloads, about 20 s, included); binary 81 MB (stripped, -s -w).
# The module's source carries no built UI, so the query service's web page
# is Jaeger's placeholder; the HTTP and gRPC query APIs are complete.
# All chatter goes to stderr.
set -euo pipefail

JAEGER_VERSION="${JAEGER_VERSION:-v1.75.0}"
GO="${GO:-go}"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
BIN_DIR="${CACHE_ROOT}/jaeger-${JAEGER_VERSION}/bin"
MODULE="github.com/jaegertracing/jaeger"

log() { echo "jaeger-build: $*" >&2; }

if [[ -x "${BIN_DIR}/jaeger" ]]; then
  echo "${BIN_DIR}"
  exit 0
fi

command -v "${GO}" >/dev/null || { log "ERROR: ${GO} not found"; exit 1; }
[[ "${JAEGER_VERSION}" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] \
  || { log "ERROR: JAEGER_VERSION ${JAEGER_VERSION} is not a vX.Y.Z module version"; exit 1; }
log "building jaeger (module ${MODULE}@${JAEGER_VERSION}) with $("${GO}" version) into ${BIN_DIR}"

mkdir -p "${CACHE_ROOT}"
WORK="$(mktemp -d "${CACHE_ROOT}/jaeger-build-XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT

# The throw-away tools module.
(
  cd "${WORK}"
  "${GO}" mod init hos.local/jaeger-tool >&2
  "${GO}" mod edit -replace github.com/Shopify/sarama=github.com/Shopify/sarama@v1.33.0
  "${GO}" get -tool "${MODULE}/cmd/jaeger@${JAEGER_VERSION}" >&2
)

# The version `jaeger version` prints (else it is empty).
ldflags="-s -w -X ${MODULE}/internal/version.latestVersion=${JAEGER_VERSION}"
ldflags+=" -X ${MODULE}/internal/version.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# Build into the temp dir first so an interrupted build never leaves a
# half-written binary at the cached path.
(
  cd "${WORK}"
  CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false" \
    "${GO}" build -trimpath -ldflags "${ldflags}" -o "${WORK}/jaeger" "${MODULE}/cmd/jaeger" >&2
)

mkdir -p "${BIN_DIR}"
mv "${WORK}/jaeger" "${BIN_DIR}/jaeger"
log "built $("${BIN_DIR}/jaeger" version 2>/dev/null | head -n 1 || true) ($(du -h "${BIN_DIR}/jaeger" | cut -f1))"
echo "${BIN_DIR}"
