#!/bin/bash
# read_1x50 and grpc_1x50: tokio's default workers (2 here) against TOKIO_WORKER_THREADS=1.
set -u
cd /work/main
out=/work/state/wbench
rm -rf "$out"; mkdir -p "$out"
run() {
  local name="$1"; shift
  env "$@" BENCH_ONLY=read_1x50,grpc_1x50 BENCH_DURATION=4 HOS_BENCH_TOOLS=/work/bench-tools bench/run.sh > "$out/$name.log" 2>&1
  mkdir -p "$out/$name"; cp -r bench/results/results.md bench/results/results.json bench/results/command.txt bench/results/machine.md "$out/$name/" 2>/dev/null
  git checkout -q -- bench/results/; git clean -fdq bench/results/
}
run workers-default HOS_PROXY_BIN=/work/bin/hos-proxy-head
run workers-1 HOS_PROXY_BIN=/work/bin/proxy-w1.sh
echo done > "$out/DONE"
