#!/usr/bin/env bash
# Idempotently build and cache Helm from its Go module (helm.sh/helm/v3)
# through the Go module proxy (no release downloads).
#
# Usage: BIN=$(tests/scripts/helm-build.sh | tail -n 1)   # last line: bin dir
#
# Result: ${HOS_CACHE:-$HOME/.cache/hybrid-online-store}/helm-<HELM_VERSION>/bin/helm
#         When it already exists the script only prints that directory.
#
# Env:   HOS_CACHE     cache root (default: $HOME/.cache/hybrid-online-store)
#        HELM_VERSION  helm.sh/helm/v3 module version (default: v3.22.0)
#        GO            go binary (default: go)
#
# `go install module@version` builds outside any module, so no throw-away
# module is needed. The ldflags are those of Helm's Makefile: the version
# (else `helm version` reports the branch default) and the Kubernetes
# version matching the k8s.io/client-go it was built with (else `helm
# template`/`helm lint` assume Kubernetes v1.20). All chatter goes to stderr.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
GO="${GO:-go}"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
BIN_DIR="${CACHE_ROOT}/helm-${HELM_VERSION}/bin"

log() { echo "helm-build: $*" >&2; }

if [[ -x "${BIN_DIR}/helm" ]]; then
  echo "${BIN_DIR}"
  exit 0
fi

command -v "${GO}" >/dev/null || { log "ERROR: ${GO} not found"; exit 1; }
log "building helm ${HELM_VERSION} with $("${GO}" version) into ${BIN_DIR}"

TMP_BIN="$(mktemp -d "${CACHE_ROOT}/helm-build-XXXXXX" 2>/dev/null || true)"
if [[ -z "${TMP_BIN}" ]]; then
  mkdir -p "${CACHE_ROOT}"
  TMP_BIN="$(mktemp -d "${CACHE_ROOT}/helm-build-XXXXXX")"
fi
trap 'rm -rf "${TMP_BIN}"' EXIT

# Helm's go.mod names the client-go it builds with: v0.37.0 -> Kubernetes 1.37.
gomod="$("${GO}" mod download -json "helm.sh/helm/v3@${HELM_VERSION}" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[[ -f "${gomod}" ]] || { log "ERROR: cannot download helm.sh/helm/v3@${HELM_VERSION}"; exit 1; }
client_go="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "${gomod}")"
[[ "${client_go}" =~ ^v0\.([0-9]+)\. ]] || { log "ERROR: no k8s.io/client-go version in ${gomod}"; exit 1; }
k8s_minor="${BASH_REMATCH[1]}"
log "helm ${HELM_VERSION} builds with k8s.io/client-go ${client_go} (Kubernetes 1.${k8s_minor})"
ldflags="-s -w"
ldflags+=" -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
ldflags+=" -X helm.sh/helm/v3/internal/version.metadata="
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X ${pkg}.k8sVersionMajor=1 -X ${pkg}.k8sVersionMinor=${k8s_minor}"
done

# Install into a temp dir first so an interrupted build never leaves a
# half-written binary at the cached path.
CGO_ENABLED=0 GOBIN="${TMP_BIN}" GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
  "${GO}" install \
  -ldflags "${ldflags}" \
  "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2

mkdir -p "${BIN_DIR}"
mv "${TMP_BIN}/helm" "${BIN_DIR}/helm"
log "built $("${BIN_DIR}/helm" version --short 2>/dev/null || echo helm)"
echo "${BIN_DIR}"
