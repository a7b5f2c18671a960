#!/usr/bin/env bash
# The project's test command (README: "Run the tests"). On a fresh machine it
# installs and starts every real server the tests need, runs every check and
# test, and stops what it started (by pid) on exit, pass or fail.
#
#   tests/run.sh            everything
#   HOS_SKIP_K8S=1 ...      skip the checks that need a kube-apiserver
#
# Downloads and builds are cached under ${HOS_CACHE:-~/.cache/hybrid-online-store}.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE="$(mktemp -d -t hos-test-XXXXXX)"
export HOS_TEST_STATE="$STATE"

cleanup() {
  local rc=$?
  if [[ -d "$STATE/k8s" ]]; then
    tests/scripts/k8s-down.sh "$STATE/k8s" || true
  fi
  for s in cassandra-cluster gcs s3 postgres jaeger cassandra bigtable redis-sentinel redis-cluster redis; do
    if [[ -d "$STATE/$s" ]]; then
      "tests/scripts/$s-down.sh" "$STATE/$s" || true
    fi
  done
  rm -rf "$STATE"
  exit "$rc"
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo deny (bans, licenses, sources)"
# deny.toml: banned crates (serde_yaml and others with RustSec advisories),
# the license allow-list, crates.io only. Offline: no advisory database.
# `cargo fetch` first: the metadata cargo-deny reads covers every target,
# so crates only other platforms build (wasm) must be in the local cache.
deny="$(tests/scripts/cargo-deny.sh | tail -n 1)"
cargo fetch --locked -q
"$deny" deny --offline check bans licenses sources

step "start redis-server, a Redis Cluster (3 masters, 3 replicas), Redis Sentinel (master, replica, 3 sentinels), the Bigtable emulator, Apache Cassandra, Jaeger (OTLP in, query API out), PostgreSQL, moto's S3 server and fake-gcs-server"
# Jaeger and fake-gcs-server are built from their Go modules once (cached;
# about 12 and 2.5 min cold); PostgreSQL is Debian's package (TLS on, with a
# test CA), the S3 server is moto's.
tests/scripts/jaeger-build.sh >/dev/null
tests/scripts/gcs-build.sh >/dev/null
for s in redis redis-cluster redis-sentinel bigtable cassandra jaeger postgres s3 gcs; do
  out="$("tests/scripts/$s-up.sh" "$STATE/$s")"
  eval "$(grep '^export ' <<<"$out")"
done

step "cargo test --workspace"
cargo test --workspace

step "backends against the real servers"
cargo test -p backends --test servers -- --ignored

step "Feast interop: the proxy against the real Feast 0.67.0 SDK and feast serve; the newest event wins on every backend"
cargo build -p proxy
HOS_PROXY_BIN="$PWD/target/debug/hos-proxy" tests/interop/run.sh

step "Feast registries: feast apply and Feast's SDK on SQL (PostgreSQL), s3:// (moto), gs:// (fake-gcs-server) and feast serve_registry"
tests/registry/run.sh

step "gRPC clients (Go, Java): the proxy's ServingService on every backend, reading what Feast Python wrote"
HOS_PROXY_BIN="$PWD/target/debug/hos-proxy" tests/grpc/run.sh

step "Fault drills (each server stopped and restarted under load) and SIGTERM durability"
HOS_PROXY_BIN="$PWD/target/debug/hos-proxy" tests/faults/run.sh -k "not cassandra_cluster"

# Started only for its own test: three idle JVMs would load the CPU the
# other drills' latency checks measure.
step "Cassandra cluster (3 nodes, replication factor 3): nodes stopped under load at QUORUM"
out="$(tests/scripts/cassandra-cluster-up.sh "$STATE/cassandra-cluster")"
eval "$(grep '^export ' <<<"$out")"
HOS_PROXY_BIN="$PWD/target/debug/hos-proxy" tests/faults/run.sh -k cassandra_cluster
tests/scripts/cassandra-cluster-down.sh "$STATE/cassandra-cluster"

step "Security suite: hostile inputs against the real proxy and servers (tests/security)"
HOS_PROXY_BIN="$PWD/target/debug/hos-proxy" tests/security/run.sh

if [[ -z "${HOS_SKIP_K8S:-}" ]]; then
  step "CRDs against a real kube-apiserver"
  tests/scripts/k8s-build.sh >/dev/null
  out="$(tests/scripts/k8s-up.sh "$STATE/k8s")"
  eval "$(tail -n 1 <<<"$out")"
  tests/k8s/crd-checks.sh

  step "TokenReview against the real kube-apiserver: audiences, cache TTL, revocation (tests/security)"
  HOS_PROXY_BIN="$PWD/target/debug/hos-proxy" tests/security/run.sh -k tokenreview

  step "operator against the real kube-apiserver, Cassandra and the Bigtable emulator"
  cargo test -p operator --test cluster -- --ignored

  step "Helm chart (lint, schema, install, RBAC with the chart's ServiceAccount, observability) and Dockerfile"
  tests/scripts/helm-build.sh >/dev/null
  tests/helm/dockerfile-check.sh
  HOS_OPERATOR_BIN="$PWD/target/debug/hos-operator" HOS_PROXY_BIN="$PWD/target/debug/hos-proxy" tests/helm/check.sh
fi

step "all tests passed"
