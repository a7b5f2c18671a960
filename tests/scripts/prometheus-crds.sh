#!/usr/bin/env bash
# Idempotently generate and cache the Prometheus Operator's ServiceMonitor
# and PrometheusRule CustomResourceDefinitions, so the chart's monitoring
# objects can be created (with strict field validation) on the test
# kube-apiserver.
#
# Usage: DIR=$(tests/scripts/prometheus-crds.sh | tail -n 1)   # last line: the CRD dir
#
# Result: ${HOS_CACHE:-$HOME/.cache/hybrid-online-store}/prometheus-operator-crds-<PO_API_VERSION>/
#         monitoring.coreos.com_servicemonitors.yaml and
#         monitoring.coreos.com_prometheusrules.yaml. When both exist the
#         script only prints that directory.
#
# Env:   HOS_CACHE                 cache root (default: $HOME/.cache/hybrid-online-store)
#        PO_API_VERSION            github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring
#                                  module version (default: v0.95.2)
#        CONTROLLER_TOOLS_VERSION  sigs.k8s.io/controller-tools version (default: v0.19.0)
#        GO                        go binary (default: go)
#
# How: the Prometheus Operator publishes its API types (with their
# kubebuilder validation markers) as a Go module; controller-gen, the
# generator the Prometheus Operator itself uses, turns them into CRDs
# (crdVersions=v1, descriptions dropped: maxDescLen=0) in a throw-away
# module that imports the types. No file is fetched from outside the Go
# module proxy. Takes about a minute the first time; chatter goes to stderr.
set -euo pipefail

PO_API_VERSION="${PO_API_VERSION:-v0.95.2}"
CONTROLLER_TOOLS_VERSION="${CONTROLLER_TOOLS_VERSION:-v0.19.0}"
GO="${GO:-go}"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
OUT_DIR="${CACHE_ROOT}/prometheus-operator-crds-${PO_API_VERSION}"
API_MODULE="github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring"
FILES=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)

log() { echo "prometheus-crds: $*" >&2; }

have_all() {
  local f
  for f in "${FILES[@]}"; do [[ -s "${OUT_DIR}/${f}" ]] || return 1; done
}
if have_all; then
  echo "${OUT_DIR}"
  exit 0
fi

command -v "${GO}" >/dev/null || { log "ERROR: ${GO} not found"; exit 1; }
mkdir -p "${CACHE_ROOT}"
WORK="$(mktemp -d "${CACHE_ROOT}/prometheus-crds-build-XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT
log "generating the CRDs of ${API_MODULE}@${PO_API_VERSION} with controller-gen ${CONTROLLER_TOOLS_VERSION} in ${WORK}"

GOBIN="${WORK}/bin" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false" \
  "${GO}" install "sigs.k8s.io/controller-tools/cmd/controller-gen@${CONTROLLER_TOOLS_VERSION}" >&2

mkdir -p "${WORK}/mod" "${WORK}/out"
(
  cd "${WORK}/mod"
  "${GO}" mod init hos-prometheus-crds >&2
  # controller-gen type-checks the package: the module must require it and
  # everything it imports (go mod tidy over a file that imports it).
  printf 'package main\n\nimport _ "%s/v1"\n\nfunc main() {}\n' "${API_MODULE}" >main.go
  GOFLAGS="${GOFLAGS:-} -mod=mod" "${GO}" get "${API_MODULE}@${PO_API_VERSION}" >&2
  GOFLAGS="${GOFLAGS:-} -mod=mod" "${GO}" mod tidy >&2
  "${WORK}/bin/controller-gen" crd:crdVersions=v1,maxDescLen=0 \
    "paths=${API_MODULE}/v1" "output:crd:dir=${WORK}/out" >&2
)

mkdir -p "${OUT_DIR}"
for f in "${FILES[@]}"; do
  [[ -s "${WORK}/out/${f}" ]] || { log "ERROR: controller-gen wrote no ${f}"; exit 1; }
  mv "${WORK}/out/${f}" "${OUT_DIR}/${f}"
done
log "wrote ${FILES[*]} into ${OUT_DIR}"
echo "${OUT_DIR}"
