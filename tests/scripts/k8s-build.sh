#!/usr/bin/env bash
# Idempotently build and cache a real kube-apiserver and etcd from the Go
# module proxy (no release downloads, no container images).
#
# Usage: BIN=$(tests/scripts/k8s-build.sh)   # last stdout line is the bin dir
#
# Result: ${HOS_CACHE:-$HOME/.cache/hybrid-online-store}/k8s-<K8S_VERSION>/bin/
#         containing `kube-apiserver` and `etcd`. When both already exist the
#         script does nothing but print that directory.
#
# Env:   HOS_CACHE     cache root (default: $HOME/.cache/hybrid-online-store)
#        K8S_VERSION   k8s.io/kubernetes module version (default: v1.36.3)
#        ETCD_VERSION  go.etcd.io/etcd/server/v3 version  (default: v3.6.16)
#        GO            go binary (default: go; needs the Go version that
#                      k8s.io/kubernetes asks for, 1.26 for v1.36.x)
#
# How: k8s.io/kubernetes is not meant to be consumed as a module: its go.mod
# requires every k8s.io staging module at v0.0.0 and replaces them with
# ./staging/src/... paths, which are ignored when it is a dependency. So a
# throw-away module re-points each of those staging modules at the published
# v0.<minor>.<patch> tag, then builds cmd/kube-apiserver with CGO_ENABLED=0
# and version ldflags (otherwise the server reports v0.0.0). etcd is built in
# a second throw-away module (its dependency graph differs from Kubernetes')
# from a tiny main that calls etcdmain.Main, exactly like etcd's own main.
# GOPATH/GOMODCACHE stay at their defaults so the module cache is shared.
#
# A cold build (empty Go module and build caches) took ~4 minutes on 2 cores
# here (v1.36.3: ~3 min kube-apiserver, ~1 min etcd); all chatter goes to
# stderr, stdout carries only the bin dir.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
GO="${GO:-go}"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
K8S_DIR="${CACHE_ROOT}/k8s-${K8S_VERSION}"
BIN_DIR="${K8S_DIR}/bin"

log() { echo "k8s-build: $*" >&2; }

# Fast path: nothing to do when both binaries are already cached.
have_all() { [[ -x "${BIN_DIR}/kube-apiserver" && -x "${BIN_DIR}/etcd" ]]; }

# Builds kube-apiserver into $1 (a file path) inside a fresh module dir $2.
build_apiserver() {
  local out="$1" work="$2"
  # v1.36.3 -> staging modules are published as v0.36.3.
  local staging_version="v0.${K8S_VERSION#v1.}"
  log "building kube-apiserver ${K8S_VERSION} (staging modules ${staging_version}) in ${work}"

  mkdir -p "${work}"
  (
    cd "${work}"
    "${GO}" mod init hos-k8s-apiserver-build >&2

    # Read the staging module list from k8s.io/kubernetes' own go.mod: every
    # `k8s.io/x => ./staging/src/k8s.io/x` line. Only modules that the
    # kubernetes module actually requires are re-pointed (the sample-* ones
    # are not published and not needed).
    local gomod modules=() m
    gomod="$("${GO}" mod download -json "k8s.io/kubernetes@${K8S_VERSION}" \
      | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    [[ -f "${gomod}" ]] || { log "cannot find go.mod of k8s.io/kubernetes@${K8S_VERSION}"; exit 1; }
    while read -r m; do
      if grep -Eq "^[[:space:]]+${m//./\\.} v0\.0\.0([[:space:]]|$)" "${gomod}"; then
        modules+=("${m}")
      fi
    done < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/.*#\1#p' "${gomod}")
    [[ ${#modules[@]} -gt 0 ]] || { log "no staging modules found in ${gomod}"; exit 1; }
    log "re-pointing ${#modules[@]} staging modules at ${staging_version}"
    local edits=()
    for m in "${modules[@]}"; do
      edits+=("-replace=${m}=${m}@${staging_version}")
    done
    "${GO}" mod edit "${edits[@]}"

    # Resolve the dependency graph for the main package (writes go.mod/go.sum).
    "${GO}" get "k8s.io/kubernetes/cmd/kube-apiserver@${K8S_VERSION}" >&2

    # Version stamping, the same variables hack/lib/version.sh sets.
    local minor="${K8S_VERSION#v1.}"
    minor="${minor%%.*}"
    local ldflags="-s -w" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
      ldflags+=" -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
      ldflags+=" -X ${pkg}.gitTreeState=clean"
      ldflags+=" -X ${pkg}.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    done
    CGO_ENABLED=0 "${GO}" build -trimpath -ldflags "${ldflags}" -o "${out}" \
      k8s.io/kubernetes/cmd/kube-apiserver
  )
}

# Builds etcd into $1 (a file path) inside a fresh module dir $2.
build_etcd() {
  local out="$1" work="$2"
  log "building etcd ${ETCD_VERSION} in ${work}"
  mkdir -p "${work}"
  (
    cd "${work}"
    "${GO}" mod init hos-etcd-build >&2
    # Same body as etcd's own main.go (go.etcd.io/etcd/v3, which carries
    # replace directives and so cannot be built as a dependency).
    cat > main.go <<'EOF'
// Command etcd: a thin wrapper around go.etcd.io/etcd/server/v3/etcdmain.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
    "${GO}" get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >&2
    CGO_ENABLED=0 "${GO}" build -trimpath -ldflags "-s -w" -o "${out}" .
  )
}

if ! have_all; then
  mkdir -p "${BIN_DIR}"
  # Serialise concurrent callers (e.g. parallel CI jobs sharing the cache).
  exec 9>"${K8S_DIR}/.build.lock"
  flock 9
  if ! have_all; then
    export GOFLAGS="-mod=mod"
    export CGO_ENABLED=0
    start=${SECONDS}
    work="$(mktemp -d "${K8S_DIR}/build.XXXXXX")"
    # shellcheck disable=SC2064  # expand ${work} now
    trap "rm -rf '${work}'" EXIT
    log "$("${GO}" version)"

    # Build into temporary names and rename, so an interrupted build never
    # leaves a half-written binary that the fast path would accept.
    if [[ ! -x "${BIN_DIR}/etcd" ]]; then
      build_etcd "${BIN_DIR}/.etcd.tmp" "${work}/etcd"
      mv -f "${BIN_DIR}/.etcd.tmp" "${BIN_DIR}/etcd"
    fi
    if [[ ! -x "${BIN_DIR}/kube-apiserver" ]]; then
      build_apiserver "${BIN_DIR}/.kube-apiserver.tmp" "${work}/apiserver"
      mv -f "${BIN_DIR}/.kube-apiserver.tmp" "${BIN_DIR}/kube-apiserver"
    fi

    # Sanity check: both binaries run and report the expected versions.
    "${BIN_DIR}/kube-apiserver" --version >&2
    "${BIN_DIR}/etcd" --version >&2
    log "build took $((SECONDS - start)) s (a cold Go module/build cache: ~4 min on 2 cores)"
  fi
  flock -u 9
else
  log "reusing ${BIN_DIR}"
fi

echo "${BIN_DIR}"
