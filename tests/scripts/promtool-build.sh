#!/usr/bin/env bash
# Idempotently build and cache promtool (Prometheus' rule checker and rule
# unit-test runner) from its Go module through the Go module proxy (no
# release downloads).
#
# Usage: BIN=$(tests/scripts/promtool-build.sh | tail -n 1)   # last line: bin dir
#
# Result: ${HOS_CACHE:-$HOME/.cache/hybrid-online-store}/promtool-<PROMETHEUS_VERSION>/bin/promtool
#         When it already exists the script only prints that directory.
#
# Env:   HOS_CACHE           cache root (default: $HOME/.cache/hybrid-online-store)
#        PROMETHEUS_VERSION  github.com/prometheus/prometheus module version
#                            (default: v0.316.0, i.e. Prometheus 3.16.0: the
#                            v3 releases are published as v0.3<minor>.<patch>)
#        GO                  go binary (default: go)
#
# `go install module@version` builds outside any module; -mod=mod lets the
# go command resolve the module's own requirements as its go.mod states
# them. promtool pulls in every service-discovery client, so a cold build
# takes several minutes on 2 cores (about 9 here); run it under nice. All
# chatter goes to stderr.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
GO="${GO:-go}"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
BIN_DIR="${CACHE_ROOT}/promtool-${PROMETHEUS_VERSION}/bin"

log() { echo "promtool-build: $*" >&2; }

if [[ -x "${BIN_DIR}/promtool" ]]; then
  echo "${BIN_DIR}"
  exit 0
fi

command -v "${GO}" >/dev/null || { log "ERROR: ${GO} not found"; exit 1; }
[[ "${PROMETHEUS_VERSION}" =~ ^v0\.3([0-9][0-9])\.([0-9]+)$ ]] \
  || { log "ERROR: PROMETHEUS_VERSION ${PROMETHEUS_VERSION} is not a v0.3MM.P module version"; exit 1; }
release="3.$((10#${BASH_REMATCH[1]})).${BASH_REMATCH[2]}"
log "building promtool ${release} (module ${PROMETHEUS_VERSION}) with $("${GO}" version) into ${BIN_DIR}"

mkdir -p "${CACHE_ROOT}"
TMP_BIN="$(mktemp -d "${CACHE_ROOT}/promtool-build-XXXXXX")"
trap 'rm -rf "${TMP_BIN}"' EXIT

# The version stamp promtool --version prints (else it says nothing useful).
ldflags="-s -w -X github.com/prometheus/common/version.Version=${release}"
ldflags+=" -X github.com/prometheus/common/version.Branch=HEAD"

# Install into a temp dir first so an interrupted build never leaves a
# half-written binary at the cached path.
CGO_ENABLED=0 GOBIN="${TMP_BIN}" GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false" \
  "${GO}" install -ldflags "${ldflags}" \
  "github.com/prometheus/prometheus/cmd/promtool@${PROMETHEUS_VERSION}" >&2

mkdir -p "${BIN_DIR}"
mv "${TMP_BIN}/promtool" "${BIN_DIR}/promtool"
log "built $("${BIN_DIR}/promtool" --version 2>&1 | head -n 1)"
echo "${BIN_DIR}"
