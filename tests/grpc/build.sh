#!/usr/bin/env bash
# Builds the Go and the Java gRPC clients of Feast's feast.serving.ServingService
# (tests/grpc/go, tests/grpc/java), with stubs generated at build time from the
# project's protos (api/proto/feast/serving/ServingService.proto and
# api/proto/feast/types/*.proto), and prints the two client commands:
#
#   $ tests/grpc/build.sh
#   .../grpc-clients/<key>/bin/hos-grpc-go
#   .../grpc-clients/<key>/bin/hos-grpc-java
#
# (the last two stdout lines; all other output goes to stderr).
#
# Tools, all from package registries:
#   protoc              com.google.protobuf:protoc:<protobuf.version>:exe:<os-arch>
#                       (Maven Central, version in java/pom.xml; the same binary
#                       generates both clients' stubs)
#   protoc-gen-go       google.golang.org/protobuf  (version pinned in go/go.mod)
#   protoc-gen-go-grpc  google.golang.org/grpc/cmd/protoc-gen-go-grpc (go/go.mod)
#   protoc-gen-grpc-java, grpc-java, protobuf-java: java/pom.xml (Maven Central,
#                       through the protobuf-maven-plugin)
#
# Everything is built under ${HOS_CACHE:-$HOME/.cache/hybrid-online-store}/grpc-clients/<key>,
# where <key> hashes every input (this script, the clients' sources, go.mod/go.sum,
# pom.xml, the protos): an unchanged tree reuses the build and runs no tool.
# Maven uses the same private local repository as tests/scripts/cassandra-up.sh
# (${HOS_CACHE}/maven-repo); Go uses its usual module and build caches.
# Nothing is written into the work tree.
#
# Env:  HOS_CACHE  cache root     MVN  maven binary (default mvn)     GO  go binary (default go)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../.." && pwd)"
PROTO_DIR="${ROOT}/api/proto"
PROTOS=(feast/types/Value.proto feast/types/EntityKey.proto feast/serving/ServingService.proto)
CACHE_ROOT="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
BASE="${CACHE_ROOT}/grpc-clients"
M2="${CACHE_ROOT}/maven-repo"
MVN="${MVN:-mvn}"
GO="${GO:-go}"

log() { echo "grpc-build: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# Quiet Maven, its output (without colour codes) on stderr.
mvn_q() {
  "${MVN}" -B -q -Dstyle.color=never "$@" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
  return "${PIPESTATUS[0]}"
}

command -v "${GO}" >/dev/null || die "go not found (GO=${GO})"
command -v "${MVN}" >/dev/null || die "maven not found (MVN=${MVN}); apt-get install maven"
command -v java >/dev/null || die "java not found (JDK 17)"
command -v python3 >/dev/null || die "python3 not found"

# ---- cache key: every input ---------------------------------------------------
inputs() {
  echo "${HERE}/build.sh"
  find "${HERE}/go" -maxdepth 1 -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | sort
  echo "${HERE}/java/pom.xml"
  find "${HERE}/java/src" -type f | sort
  for p in "${PROTOS[@]}"; do echo "${PROTO_DIR}/${p}"; done
}
KEY="$(
  { inputs | while read -r f; do echo "== ${f#"${ROOT}/"}"; cat "$f"; done
    echo "go $("${GO}" env GOVERSION)"; java -version 2>&1 | head -n 1; } | sha256sum | cut -c1-16
)"
OUT="${BASE}/${KEY}"
GO_BIN="${OUT}/bin/hos-grpc-go"
JAVA_BIN="${OUT}/bin/hos-grpc-java"

if [[ -f "${OUT}/.complete" && -x "${GO_BIN}" && -x "${JAVA_BIN}" && -f "${OUT}/java/hos-grpc-java.jar" ]]; then
  log "reusing ${OUT}"
  echo "${GO_BIN}"
  echo "${JAVA_BIN}"
  exit 0
fi

log "building the gRPC clients into ${OUT}"
start=${SECONDS}
rm -rf "${OUT}"
mkdir -p "${OUT}/bin" "${OUT}/tools"

# ---- Java: protoc + protoc-gen-grpc-java via the protobuf-maven-plugin ----------
log "java: mvn package (protoc, protoc-gen-grpc-java, shaded jar)"
mvn_q -f "${HERE}/java/pom.xml" \
  -Dmaven.repo.local="${M2}" \
  -Dhos.proto.dir="${PROTO_DIR}" \
  -Dhos.build.dir="${OUT}/java" \
  package || die "mvn package of tests/grpc/java failed"
[[ -f "${OUT}/java/hos-grpc-java.jar" ]] || die "${OUT}/java/hos-grpc-java.jar missing after mvn package"
# A class-data-sharing archive of the classes one run loads (a run against a
# port with no server: exit 2, as expected) cuts each start-up of the JVM.
JSA="${OUT}/java/hos-grpc-java.jsa"
JVM_FLAGS=(-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xlog:cds=off -Xlog:cds+dynamic=off)
CLOSED_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
echo '{"features": ["v:f"], "entities": {"k": [1]}}' > "${OUT}/java/cds-request.json"
java "${JVM_FLAGS[@]}" -XX:ArchiveClassesAtExit="${JSA}" -jar "${OUT}/java/hos-grpc-java.jar" \
  -addr "127.0.0.1:${CLOSED_PORT}" -request "${OUT}/java/cds-request.json" >/dev/null 2>&1 || true
CDS=""
if [[ -f "${JSA}" ]]; then
  CDS="-XX:SharedArchiveFile=${JSA} -Xshare:auto"
else
  log "java: no class-data-sharing archive (slower start-ups only)"
fi
cat > "${JAVA_BIN}" <<EOF
#!/bin/sh
# Java gRPC client of feast.serving.ServingService (tests/grpc/java), built by tests/grpc/build.sh.
exec "\${JAVA:-java}" ${JVM_FLAGS[*]} ${CDS} -jar "${OUT}/java/hos-grpc-java.jar" "\$@"
EOF
chmod +x "${JAVA_BIN}"

# ---- Go: protoc (Maven Central) + protoc-gen-go + protoc-gen-go-grpc ------------
# The same protoc, and the well-known protos (google/protobuf/timestamp.proto,
# shipped inside protobuf-java's jar), copied by the Maven build into go-tools.
PROTOC="${OUT}/java/go-tools/protoc"
[[ -f "${PROTOC}" && -f "${OUT}/java/go-tools/protobuf-java.jar" ]] \
  || die "protoc / protobuf-java.jar missing from ${OUT}/java/go-tools after mvn package"
chmod +x "${PROTOC}"
mkdir -p "${OUT}/tools/include"
python3 - "${OUT}/java/go-tools/protobuf-java.jar" "${OUT}/tools/include" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n.startswith("google/protobuf/") and n.endswith(".proto"):
            z.extract(n, sys.argv[2])
PY
[[ -f "${OUT}/tools/include/google/protobuf/timestamp.proto" ]] || die "timestamp.proto not in protobuf-java's jar"
log "go: $("${PROTOC}" --version), protoc-gen-go and protoc-gen-go-grpc as go/go.mod pins them"

SRC="${OUT}/go-src"
mkdir -p "${SRC}"
cp "${HERE}/go/go.mod" "${HERE}/go/go.sum" "${HERE}"/go/*.go "${SRC}/"
(
  cd "${SRC}"
  # The plugins at the versions go.mod pins (its `tool` block).
  "${GO}" build -o "${OUT}/tools/" google.golang.org/protobuf/cmd/protoc-gen-go \
    google.golang.org/grpc/cmd/protoc-gen-go-grpc
  MOD=hos/grpcclient
  M="Mfeast/types/Value.proto=${MOD}/gen/feast/types"
  M+=",Mfeast/types/EntityKey.proto=${MOD}/gen/feast/types"
  M+=",Mfeast/serving/ServingService.proto=${MOD}/gen/feast/serving"
  "${PROTOC}" -I "${PROTO_DIR}" -I "${OUT}/tools/include" \
    --plugin=protoc-gen-go="${OUT}/tools/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="${OUT}/tools/protoc-gen-go-grpc" \
    --go_out=. --go_opt="module=${MOD},${M}" \
    --go-grpc_out=. --go-grpc_opt="module=${MOD},${M}" \
    "${PROTOS[@]}"
  "${GO}" vet .
  CGO_ENABLED=0 "${GO}" build -trimpath -o "${GO_BIN}" .
) >&2 || die "building tests/grpc/go failed"

# Earlier builds (other keys) are no longer needed.
find "${BASE}" -mindepth 1 -maxdepth 1 -type d ! -name "${KEY}" -exec rm -rf {} + 2>/dev/null || true
date -u +%Y-%m-%dT%H:%M:%SZ > "${OUT}/.complete"
log "built both clients in $((SECONDS - start)) s"
echo "${GO_BIN}"
echo "${JAVA_BIN}"
