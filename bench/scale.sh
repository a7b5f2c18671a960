#!/usr/bin/env bash
# Cost curves: hos-proxy's RSS, reload time, 1x50 read p99 and start-up
# time against the size of its routing table (1k, 10k, 100k views over 1,
# 10, 100 SQLite backends). Bounded in time (SCALE_BUDGET_SECONDS).
#
#   bench/scale.sh
#
# Installs (cached, as bench/run.sh does) the release hos-proxy, the load
# generator bench/loadgen and the plotting venv, then runs bench/scale.py,
# which writes bench/results/scale/: results.md, results.json, rss.png,
# reload.png, p99.png, startup.png, command.txt, logs/.
#
# Everything it starts listens on 127.0.0.1 and is stopped by pid on exit.
#
# Env:
#   SCALE_VIEWS           comma-separated view counts (default 1000,10000,100000)
#   SCALE_BACKENDS        comma-separated backend counts (default 1,10,100)
#   SCALE_RATE            requests/s of the open-loop 1x50 read (default 500)
#   SCALE_DURATION        seconds of the measured read (default 6; plus BENCH_WARMUP)
#   SCALE_RELOADS         reloads per pair, the median is reported (default 5)
#   SCALE_MAX_TABLES_PER_FILE  above this many views per SQLite file only the measured view's
#                         table is created (default 2000; see bench/README.md, Cost curves)
#   SCALE_MAX_RSS_MIB     kill a proxy above this RSS (default: 60% of MemAvailable)
#   SCALE_BUDGET_SECONDS  start no new pair after this long (default 1500)
#   BENCH_WARMUP          warm-up seconds before the read (default 1)
#   BENCH_MAX_OTHER_CPU   repeat the read (up to 2 more tries) when other processes used more than this
#                         % of the machine (default 10)
#   BENCH_WAIT_IDLE_SECONDS  wait up to this long for a 1-minute load average below 1 before starting
#   HOS_PROXY_BIN         use this hos-proxy binary instead of building one
#   HOS_BENCH_LOADGEN     use this load generator binary instead of installing one
#   HOS_BENCH_TARGET_DIR  cargo target dir for the release builds (default: <repo>/target)
#   HOS_BENCH_TOOLS       install root of the load generator (default: $HOS_CACHE/bench-tools)
#   HOS_CACHE             cache root (default ~/.cache/hybrid-online-store)
#   TMPDIR                where the routing tables and SQLite files go (about 2 GiB at 100k views)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cache="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
target_dir="${HOS_BENCH_TARGET_DIR:-$root/target}"
tools="${HOS_BENCH_TOOLS:-$cache/bench-tools}"
results="$here/results/scale"
t0=$SECONDS

log() { printf '[scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

mkdir -p "$results"
command_line="$(
  printf 'cd %q && ' "$root"
  for v in SCALE_VIEWS SCALE_BACKENDS SCALE_RATE SCALE_DURATION SCALE_RELOADS SCALE_MAX_TABLES_PER_FILE \
           SCALE_MAX_RSS_MIB SCALE_BUDGET_SECONDS BENCH_WARMUP BENCH_MAX_OTHER_CPU BENCH_WAIT_IDLE_SECONDS TMPDIR \
           HOS_PROXY_BIN HOS_BENCH_LOADGEN HOS_BENCH_TARGET_DIR HOS_BENCH_TOOLS HOS_CACHE; do
    if [[ -n "${!v:-}" ]]; then printf '%s=%q ' "$v" "${!v}"; fi
  done
  printf 'bench/scale.sh'
)"
echo "$command_line" > "$results/command.txt"

state="$(mktemp -d -t hos-scale-XXXXXX)"
cleanup() {
  local rc=$?
  if [[ -d "$state/logs" ]]; then
    rm -rf "$results/logs"
    cp -r "$state/logs" "$results/logs" || true
  fi
  rm -rf "$state"
  log "done in $((SECONDS - t0)) s (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools (cached) -----------------------------------------------------------
if [[ -n "${HOS_PROXY_BIN:-}" ]]; then
  proxy="$HOS_PROXY_BIN"
else
  log "building hos-proxy (release; first time: several minutes)"
  nice -n 19 cargo build --release -q -p proxy --manifest-path "$root/Cargo.toml" --target-dir "$target_dir"
  proxy="$target_dir/release/hos-proxy"
fi
[[ -x "$proxy" ]] || { log "no hos-proxy binary at $proxy"; exit 1; }

# The load generator: bench/run.sh's install and stamp, so both share it.
if [[ -n "${HOS_BENCH_LOADGEN:-}" ]]; then
  loadgen="$HOS_BENCH_LOADGEN"
else
  loadgen="$tools/bin/hos-bench-load"
  stamp="$(cat "$here/loadgen/Cargo.toml" "$here/loadgen/Cargo.lock" "$here"/loadgen/src/*.rs \
            "$root"/api/Cargo.toml "$root"/api/build.rs "$root"/api/src/*.rs 2>/dev/null | sha256sum | cut -c1-16)"
  if [[ ! -x "$loadgen" || "$(cat "$tools/.hos-bench-load.stamp" 2>/dev/null)" != "$stamp" ]]; then
    log "installing the load generator (bench/loadgen) into $tools"
    nice -n 19 cargo install -q --locked --force --path "$here/loadgen" --root "$tools" --target-dir "$target_dir"
    echo "$stamp" > "$tools/.hos-bench-load.stamp"
  fi
fi
[[ -x "$loadgen" ]] || { log "no load generator at $loadgen"; exit 1; }

# bench/run.sh's plotting venv (the same path and marker).
plot_venv="$cache/bench-plot-venv"
if [[ ! -f "$plot_venv/.hos-bench-plot-v1" ]]; then
  log "creating the plotting venv (matplotlib) at $plot_venv"
  rm -rf "$plot_venv"
  python3 -m venv "$plot_venv"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$plot_venv/bin/pip" install -q "matplotlib==3.10.9" >&2
  "$plot_venv/bin/python" -c 'import matplotlib' && touch "$plot_venv/.hos-bench-plot-v1"
fi

# ---- a quiet machine ---------------------------------------------------------
if [[ -n "${BENCH_WAIT_IDLE_SECONDS:-}" ]]; then
  deadline=$((SECONDS + BENCH_WAIT_IDLE_SECONDS))
  until awk '{exit !($1 < 1.0)}' /proc/loadavg || (( SECONDS >= deadline )); do
    sleep 5
  done
  log "load average now $(cut -d' ' -f1-3 /proc/loadavg)"
fi

# ---- the curves -------------------------------------------------------------------
log "running bench/scale.py"
"$plot_venv/bin/python" "$here/scale.py" \
  --proxy "$proxy" --loadgen "$loadgen" --work "$state" --results "$results" \
  --views "${SCALE_VIEWS:-1000,10000,100000}" --backends "${SCALE_BACKENDS:-1,10,100}" \
  --rate "${SCALE_RATE:-500}" --duration "${SCALE_DURATION:-6}" --warmup "${BENCH_WARMUP:-1}" \
  --reloads "${SCALE_RELOADS:-5}" --max-tables-per-file "${SCALE_MAX_TABLES_PER_FILE:-2000}" \
  --max-rss-mib "${SCALE_MAX_RSS_MIB:-0}" --max-other-cpu "${BENCH_MAX_OTHER_CPU:-10}" \
  --budget-seconds "${SCALE_BUDGET_SECONDS:-1500}" --command "$command_line"
log "results in $results"
