#!/usr/bin/env bash
# Checks the Dockerfile without a Docker engine:
#   - BuildKit's own Dockerfile frontend (github.com/moby/buildkit, from the Go
#     module proxy, built once and cached) parses it, runs its lint rules and
#     converts every stage to LLB; base images resolve to stub configs, so no
#     registry is contacted;
#   - the Dockerfile builds the binaries the crates declare ([[bin]] names),
#     installs them where the Helm chart runs them, and runs as the chart's
#     user; .dockerignore keeps every workspace member in the build context.
#
# Usage: tests/helm/dockerfile-check.sh      (prints PASS/FAIL lines)
# Env:   HOS_CACHE (default $HOME/.cache/hybrid-online-store),
#        BUILDKIT_VERSION (default v0.34.2), GO (default go)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT="$PWD"

BUILDKIT_VERSION="${BUILDKIT_VERSION:-v0.34.2}"
GO="${GO:-go}"
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
TOOL_DIR="${CACHE_ROOT}/dockerfile-lint-${BUILDKIT_VERSION}"
TOOL="${TOOL_DIR}/bin/dockerfile-lint"

log() { echo "dockerfile-check: $*" >&2; }
FAILED=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }

if [[ ! -x "${TOOL}" ]]; then
  log "building the BuildKit Dockerfile frontend ${BUILDKIT_VERSION} into ${TOOL_DIR}"
  src="${TOOL_DIR}/src"
  rm -rf "${src}"
  mkdir -p "${src}" "${TOOL_DIR}/bin"
  cat >"${src}/main.go" <<'GO'
// dockerfile-lint: parse, lint and convert a Dockerfile to LLB with
// BuildKit's frontend, offline. Exit 0: clean; 1: error; 2: lint warnings.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	digest "github.com/opencontainers/go-digest"
)

// offline resolves every base image to a stub config: no registry access.
type offline struct{}

func (offline) ResolveImageConfig(ctx context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/bin:/usr/bin:/bin"]},"rootfs":{"type":"layers","diff_ids":[]}}`)
	return ref, digest.FromBytes(cfg), cfg, nil
}

func main() {
	dt, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Println("ERROR:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	st := llb.Scratch()
	sm := llb.NewSourceMap(&st, os.Args[1], "Dockerfile", dt)
	def, err := st.Marshal(ctx)
	if err != nil {
		fmt.Println("ERROR:", err)
		os.Exit(1)
	}
	sm.Definition = def
	res, err := dockerfile2llb.DockerfileLint(ctx, dt, dockerfile2llb.ConvertOpt{SourceMap: sm, MetaResolver: offline{}})
	if err != nil {
		fmt.Println("ERROR:", err)
		os.Exit(1)
	}
	for _, w := range res.Warnings {
		fmt.Printf("lint %s: %s (%s)\n", w.RuleName, w.Detail, w.URL)
	}
	if res.Error != nil {
		fmt.Println("ERROR:", res.Error.Message)
		os.Exit(1)
	}
	warnings := 0
	_, err = dockerfile2llb.Dockerfile2LLB(ctx, dt, dockerfile2llb.ConvertOpt{
		SourceMap:    sm,
		MetaResolver: offline{},
		Warn: func(rulename, description, url, fmtmsg string, location []parser.Range) {
			warnings++
		},
	})
	if err != nil {
		fmt.Println("ERROR: converting to LLB:", err)
		os.Exit(1)
	}
	fmt.Printf("parsed, linted (%d warnings) and converted to LLB\n", len(res.Warnings))
	if len(res.Warnings)+warnings > 0 {
		os.Exit(2)
	}
}
GO
  (
    cd "${src}" \
      && "${GO}" mod init hos-dockerfile-lint >&2 \
      && "${GO}" get "github.com/moby/buildkit@${BUILDKIT_VERSION}" >&2 \
      && "${GO}" mod tidy >&2 \
      && CGO_ENABLED=0 "${GO}" build -o "${TOOL}.tmp" . >&2 \
      && mv "${TOOL}.tmp" "${TOOL}"
  ) || { log "ERROR: cannot build the Dockerfile linter"; exit 1; }
fi

if out="$("${TOOL}" "${ROOT}/Dockerfile" 2>&1)"; then
  pass "Dockerfile: BuildKit ${BUILDKIT_VERSION} frontend: ${out}"
else
  fail "Dockerfile: BuildKit ${BUILDKIT_VERSION} frontend"
  while IFS= read -r line; do echo "    ${line}"; done <<<"${out}"
fi

# The binaries the crates declare are the ones the Dockerfile builds and copies.
for crate in operator proxy; do
  bin="$(awk '/^\[\[bin\]\]/ {b=1} b && /^name *=/ {gsub(/[" ]/, "", $3); print $3; exit}' "${ROOT}/${crate}/Cargo.toml")"
  if grep -q -- "-p ${crate}" "${ROOT}/Dockerfile" && grep -q "target/release/${bin}" "${ROOT}/Dockerfile" \
    && grep -q "/usr/local/bin/" "${ROOT}/Dockerfile"; then
    pass "Dockerfile builds -p ${crate} and installs ${bin} in /usr/local/bin"
  else
    fail "Dockerfile does not build -p ${crate} / install ${bin} (the [[bin]] of ${crate}/Cargo.toml)"
  fi
done

# The chart runs the operator from where the image puts it; the proxy
# Deployments the operator creates give only arguments (`serve ...`), so the
# entrypoint must be hos-proxy.
chart_cmd="$(grep -o 'command: \["[^"]*"\]' "${ROOT}/charts/hybrid-online-store/templates/deployment.yaml" | sed 's/.*\["\(.*\)"\]/\1/')"
if [[ "${chart_cmd}" == /usr/local/bin/hos-operator ]] \
  && grep -q 'cp target/release/hos-operator ' "${ROOT}/Dockerfile" \
  && grep -q '/out/hos-operator /out/hos-proxy /usr/local/bin/' "${ROOT}/Dockerfile"; then
  pass "chart command ${chart_cmd} is installed by the image"
else
  fail "chart command ${chart_cmd} is not where the Dockerfile installs hos-operator"
fi
if grep -q '"serve".into()' "${ROOT}/operator/src/plan.rs" && ! grep -q 'command: Some' "${ROOT}/operator/src/plan.rs"; then
  if grep -q '^ENTRYPOINT \["/usr/local/bin/hos-proxy"\]' "${ROOT}/Dockerfile"; then
    pass "image entrypoint is hos-proxy (the operator's proxy Deployments pass only arguments)"
  else
    fail "the operator's proxy Deployments pass only arguments (serve ...) but the ENTRYPOINT is not /usr/local/bin/hos-proxy"
  fi
fi
chart_uid="$(awk '/^podSecurityContext:/ {p=1} p && /runAsUser:/ {print $2; exit}' "${ROOT}/charts/hybrid-online-store/values.yaml")"
if grep -q "^USER ${chart_uid}:" "${ROOT}/Dockerfile"; then
  pass "image user ${chart_uid} matches the chart's runAsUser"
else
  fail "Dockerfile USER is not the chart's runAsUser ${chart_uid}"
fi

# .dockerignore must keep every workspace member and the manifests.
members="$(python3 - "${ROOT}/Cargo.toml" <<'PY'
import sys, tomllib
print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["workspace"]["members"]))
PY
)"
ignored=""
for m in ${members} Cargo.toml Cargo.lock; do
  if grep -qxE "/?${m}/?(\*\*)?" "${ROOT}/.dockerignore"; then
    ignored+=" ${m}"
  fi
done
if [[ -z "${ignored}" ]]; then
  pass ".dockerignore keeps the workspace members (${members}) and Cargo.toml/Cargo.lock"
else
  fail ".dockerignore excludes${ignored}, which cargo build needs"
fi

if ((FAILED)); then
  echo "dockerfile checks: ${FAILED} FAILED"
  exit 1
fi
echo "dockerfile checks: all passed"
