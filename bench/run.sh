#!/usr/bin/env bash
# The benchmark: one command, bounded in time (about 20 minutes on 2 cores).
#
#   bench/run.sh
#
# 1. Installs (cached) what it needs: the Feast 0.67.0 venv
#    (tests/scripts/feast-env.sh), the release hos-proxy, the load generator
#    bench/loadgen (cargo install), a small venv with matplotlib, and
#    redis-server (tests/scripts/redis-up.sh).
# 2. Creates Feast repos with identical data for every target (10,000
#    users; a 50-feature view and two 16-feature views), loads it once
#    through Feast (feast apply + write_to_online_store) into SQLite and
#    Redis, and drives every target with the same load generator
#    (bench/harness.py): hos-proxy, the direct backend call (the floor), and
#    feast serve, at fixed concurrency and fixed open-loop rates.
# 3. Writes bench/results/: results.json, results.md, *.png, machine.md,
#    command.txt, logs/.
#
# Everything it starts listens on 127.0.0.1 and is stopped by pid on exit.
#
# Env:
#   BENCH_DURATION        seconds per measured run (default 7)
#   BENCH_WARMUP          warm-up seconds before each run (default 1)
#   BENCH_RELOAD_DURATION seconds of read load during routing-table rewrites (default 15)
#   BENCH_FEAST_WORKERS   feast serve worker processes (default: nproc)
#   BENCH_WAIT_IDLE_SECONDS  wait up to this long for a 1-minute load average below 1 before starting
#   BENCH_MAX_OTHER_CPU   repeat a run (up to 2 more tries) when other processes used more than this
#                         % of the machine's CPU during it (default 10)
#   BENCH_RETRY_BUDGET    most repeated runs in the whole benchmark (default 15)
#   BENCH_ONLY            comma-separated scenarios (read_1x10,read_1x50,grpc_1x50,read_100x50,read_multi,
#                         write_100x50,reload)
#   BENCH_PROFILE         1: also record hos-proxy with `perf record` once per shape (an extra, unmeasured
#                         run) and write bench/results/flamegraphs/<scenario>-<backend>.svg (inferno,
#                         installed into HOS_BENCH_TOOLS); skipped with a note when perf is missing
#   BENCH_PROFILE_FREQ    perf sampling frequency in Hz (default 199)
#   BENCH_PROFILE_CALLGRAPH  perf --call-graph mode (default dwarf,16384: release builds have no frame pointers)
#   HOS_PROXY_BIN         use this hos-proxy binary instead of building one
#   HOS_BENCH_TARGET_DIR  cargo target dir for the release builds (default: <repo>/target)
#   HOS_BENCH_TOOLS       install root of the load generator (default: $HOS_CACHE/bench-tools)
#   HOS_CACHE             cache root (default ~/.cache/hybrid-online-store)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cache="${HOS_CACHE:-${HOME:-/root}/.cache/hybrid-online-store}"
target_dir="${HOS_BENCH_TARGET_DIR:-$root/target}"
tools="${HOS_BENCH_TOOLS:-$cache/bench-tools}"
results="$here/results"
t0=$SECONDS

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

mkdir -p "$results"
{
  printf 'cd %q && ' "$root"
  for v in BENCH_DURATION BENCH_WARMUP BENCH_RELOAD_DURATION BENCH_FEAST_WORKERS BENCH_ONLY BENCH_WAIT_IDLE_SECONDS \
           BENCH_MAX_OTHER_CPU BENCH_RETRY_BUDGET BENCH_PROFILE BENCH_PROFILE_FREQ BENCH_PROFILE_CALLGRAPH TMPDIR \
           HOS_PROXY_BIN HOS_BENCH_TARGET_DIR HOS_BENCH_TOOLS HOS_CACHE; do
    if [[ -n "${!v:-}" ]]; then printf '%s=%q ' "$v" "${!v}"; fi
  done
  printf 'bench/run.sh'
  if (( $# > 0 )); then printf ' %q' "$@"; fi
  printf '\n'
} > "$results/command.txt"

state="$(mktemp -d -t hos-bench-XXXXXX)"
cleanup() {
  local rc=$?
  if [[ -d "$state/redis" ]]; then
    "$root/tests/scripts/redis-down.sh" "$state/redis" || true
  fi
  if [[ -d "$state/work/logs" ]]; then
    rm -rf "$results/logs"
    cp -r "$state/work/logs" "$results/logs" || true
  fi
  rm -rf "$state"
  log "done in $((SECONDS - t0)) s (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools (cached) -----------------------------------------------------------
log "Feast venv"
venv="$("$root/tests/scripts/feast-env.sh" | tail -n 1)"

if [[ -n "${HOS_PROXY_BIN:-}" ]]; then
  proxy="$HOS_PROXY_BIN"
else
  log "building hos-proxy (release; first time: several minutes)"
  nice -n 19 cargo build --release -q -p proxy --manifest-path "$root/Cargo.toml" --target-dir "$target_dir"
  proxy="$target_dir/release/hos-proxy"
fi
[[ -x "$proxy" ]] || { log "no hos-proxy binary at $proxy"; exit 1; }

# The load generator, reinstalled when its sources or the api crate change.
loadgen="$tools/bin/hos-bench-load"
stamp="$(cat "$here/loadgen/Cargo.toml" "$here/loadgen/Cargo.lock" "$here"/loadgen/src/*.rs \
          "$root"/api/Cargo.toml "$root"/api/build.rs "$root"/api/src/*.rs 2>/dev/null | sha256sum | cut -c1-16)"
if [[ ! -x "$loadgen" || "$(cat "$tools/.hos-bench-load.stamp" 2>/dev/null)" != "$stamp" ]]; then
  log "installing the load generator (bench/loadgen) into $tools"
  nice -n 19 cargo install -q --locked --force --path "$here/loadgen" --root "$tools" --target-dir "$target_dir"
  echo "$stamp" > "$tools/.hos-bench-load.stamp"
fi

# Profiles (BENCH_PROFILE=1): perf from the system, inferno (flamegraph SVG)
# installed once into the tools root.
profile_args=()
if [[ "${BENCH_PROFILE:-0}" == 1 ]]; then
  if ! command -v perf >/dev/null 2>&1; then
    log "BENCH_PROFILE=1 but no perf on PATH: profiles skipped"
  elif ! perf record -q -o /dev/null -- true >/dev/null 2>&1; then
    log "BENCH_PROFILE=1 but perf record is not permitted here (perf_event_paranoid?): profiles skipped"
  else
    if [[ ! -x "$tools/bin/inferno-flamegraph" || ! -x "$tools/bin/inferno-collapse-perf" ]]; then
      log "installing inferno 0.12 (flamegraphs) into $tools"
      nice -n 19 cargo install -q --locked inferno --version '^0.12' --root "$tools" --target-dir "$target_dir"
    fi
    profile_args=(--profile --inferno-bin "$tools/bin" --profile-freq "${BENCH_PROFILE_FREQ:-199}"
                  --profile-callgraph "${BENCH_PROFILE_CALLGRAPH:-dwarf,16384}")
  fi
fi

plot_venv="$cache/bench-plot-venv"
if [[ ! -f "$plot_venv/.hos-bench-plot-v1" ]]; then
  log "creating the plotting venv (matplotlib) at $plot_venv"
  rm -rf "$plot_venv"
  python3 -m venv "$plot_venv"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$plot_venv/bin/pip" install -q "matplotlib==3.10.9" >&2
  "$plot_venv/bin/python" -c 'import matplotlib' && touch "$plot_venv/.hos-bench-plot-v1"
fi

log "starting redis-server"
out="$("$root/tests/scripts/redis-up.sh" "$state/redis")"
eval "$(grep '^export ' <<<"$out")"
# shellcheck disable=SC1091
source "$state/redis/redis.env"

# ---- a quiet machine ---------------------------------------------------------
# Optionally wait (bounded) until the 1-minute load average is below 1, so
# other work on the machine disturbs the measurements less. Every run
# records how much CPU other processes used anyway (results.md).
if [[ -n "${BENCH_WAIT_IDLE_SECONDS:-}" ]]; then
  deadline=$((SECONDS + BENCH_WAIT_IDLE_SECONDS))
  until awk '{exit !($1 < 1.0)}' /proc/loadavg || (( SECONDS >= deadline )); do
    sleep 5
  done
  log "load average now $(cut -d' ' -f1-3 /proc/loadavg)"
fi

# ---- the machine ----------------------------------------------------------------
{
  echo "# Machine and software of this run"
  echo
  echo "Run started $(date -u +%Y-%m-%dT%H:%M:%SZ)."
  echo
  echo '```'
  echo "\$ nproc"; nproc
  echo "\$ lscpu"; lscpu 2>/dev/null | grep -E '^(Architecture|Model name|CPU\(s\)|Thread|Core|Socket|CPU max MHz|CPU MHz|L2|L3|Hypervisor|Virtualization)' || true
  echo "\$ free -m"; free -m
  echo "\$ cat /proc/loadavg   # at the start"; cat /proc/loadavg
  echo "\$ uname -srvm"; uname -srvm
  echo "\$ rustc -V"; rustc -V
  echo "\$ cargo -V"; cargo -V
  echo "\$ python (Feast venv)"; "$venv/bin/python" -V; "$venv/bin/feast" version 2>/dev/null | tail -n 1 | sed 's/\x1b\[[0-9;]*m//g'
  echo "\$ redis-server --version"; redis-server --version
  echo "\$ hos-proxy --version"; "$proxy" --version
  echo "hos-proxy binary: $proxy (modified $(date -u -r "$proxy" +%Y-%m-%dT%H:%M:%SZ))"
  echo "\$ git -C <repo> describe --always --dirty"; git -C "$root" describe --always --dirty 2>/dev/null || echo "(no git)"
  echo '```'
  echo
  echo "Everything (servers, Redis, load generator) shares these cores; nothing is pinned."
} > "$results/machine.md"

# ---- the benchmark --------------------------------------------------------------
mkdir -p "$state/work"
log "running the harness"
"$venv/bin/python" "$here/harness.py" \
  --venv "$venv" --proxy "$proxy" --loadgen "$loadgen" \
  --work "$state/work" --results "$results" \
  --redis-addr "127.0.0.1:$REDIS_PORT" --redis-pid "$(cat "$state/redis/redis.pid")" \
  --duration "${BENCH_DURATION:-7}" --warmup "${BENCH_WARMUP:-1}" \
  --reload-duration "${BENCH_RELOAD_DURATION:-15}" \
  --feast-workers "${BENCH_FEAST_WORKERS:-$(nproc)}" \
  --max-other-cpu "${BENCH_MAX_OTHER_CPU:-10}" --retry-budget "${BENCH_RETRY_BUDGET:-15}" \
  --only "${BENCH_ONLY:-}" "${profile_args[@]}"

log "writing results.md and plots"
"$plot_venv/bin/python" "$here/report.py" "$results" "$((SECONDS - t0))"
log "results in $results"
