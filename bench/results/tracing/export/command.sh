#!/bin/bash
# Three runs of read_1x50: no exporter; exporter at the default ratio; exporter at ratio 1.
set -u
cd /work/main
out=/work/state/otelbench
rm -rf "$out"; mkdir -p "$out"
run() {
  local name="$1"; shift
  env "$@" BENCH_ONLY=read_1x50 BENCH_DURATION=4 HOS_BENCH_TOOLS=/work/bench-tools bench/run.sh > "$out/$name.log" 2>&1
  mkdir -p "$out/$name"; cp -r bench/results/results.md bench/results/results.json bench/results/command.txt bench/results/machine.md "$out/$name/" 2>/dev/null
  git checkout -q -- bench/results/; git clean -fdq bench/results/
}
run off HOS_PROXY_BIN=/work/bin/hos-proxy-j5lto
run on-default HOS_PROXY_BIN=/work/bin/hos-proxy-j5lto OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:47955
run on-ratio1 HOS_PROXY_BIN=/work/bin/proxy-ratio1.sh OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:47955
echo done > "$out/DONE"
