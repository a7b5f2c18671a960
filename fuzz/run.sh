#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 600), one after
# the other, and prints libFuzzer's final stats per target.
#
#   fuzz/run.sh [SECONDS]
#
# Needs rustup; installs the nightly toolchain and cargo-fuzz if missing.
# New inputs go to fuzz/artifacts/<target>/new-corpus (not checked in); the
# checked-in fuzz/corpus/<target> is read only. Crashes are written to
# fuzz/artifacts/<target>/ and make the script exit non-zero. Full logs:
# fuzz/artifacts/<target>/run.log.
set -uo pipefail

secs="${1:-600}"
cd "$(dirname "$0")"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz

failed=()
for t in $(cargo +nightly fuzz list); do
  mkdir -p "artifacts/$t/new-corpus"
  log="artifacts/$t/run.log"
  # Only request_json needs the proxy crate and routing_table_paths the
  # backends crate; the others build without them.
  features=(--no-default-features)
  [ "$t" = request_json ] && features=()
  [ "$t" = routing_table_paths ] && features=(--no-default-features --features backends)
  echo "== $t: ${secs}s (log: fuzz/$log)"
  cargo +nightly fuzz run "${features[@]}" "$t" "artifacts/$t/new-corpus" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  grep -E '^#[0-9]+[[:space:]]+DONE|^Done [0-9]+ runs|^stat::|^SUMMARY|panicked at|Test unit written' "$log"
  if [ "$rc" -ne 0 ]; then
    echo "!! $t failed (exit $rc); see fuzz/$log and fuzz/artifacts/$t/"
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -ne 0 ]; then
  echo "failed targets: ${failed[*]}"
  exit 1
fi
echo "all targets ran ${secs}s without a crash"
