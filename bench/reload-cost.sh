#!/usr/bin/env bash
# The cost of a routing-table reload at 1,000 views, without request load:
# for each hos-proxy binary given, and each document format (the YAML a
# person writes, the compact JSON the operator publishes), start-up time,
# RSS at rest, CPU of 10 reloads (the table rewritten by rename every
# second, every view moved to the other backend) and the peak RSS while
# they run (VmRSS sampled every 0.1 s).
#
#   bench/reload-cost.sh BIN [BIN...]      (env: RELOADS, default 10)
#
# Prints one Markdown table row per binary and format. Everything listens
# on 127.0.0.1 and each proxy is stopped by its pid.
set -euo pipefail
(($# > 0)) || { echo "usage: $0 HOS_PROXY_BIN [HOS_PROXY_BIN...]" >&2; exit 2; }
reloads="${RELOADS:-10}"
work="$(mktemp -d "${TMPDIR:-/tmp}/hos-reload-cost.XXXXXX")"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Two variants of a 1,000-view table over two SQLite backends (the shape
# of bench/harness.py's reload scenario), each as YAML and as JSON.
python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
def table(shift):
    d = {"schema_version": 1, "project": "bench", "entity_key_serialization_version": 3,
         "routing_tag": "team",
         "backends": [{"name": b, "type": "sqlite", "conf": {"path": f"{b}.db"}}
                      for b in ("sqlite_a", "sqlite_b")],
         "feature_views": []}
    for i in range(1000):
        b = ("sqlite_a", "sqlite_b")[(i + shift) % 2]
        d["feature_views"].append({
            "name": f"syn_{i:04d}",
            "entities": [{"name": "user", "join_keys": [{"name": "user_id", "dtype": "int64"}]}],
            "features": [{"name": f"f{f:02d}", "dtype": "float64" if f % 2 == 0 else "int64"}
                         for f in range(50)],
            "ttl_seconds": 86400 * (1 + shift), "online": True, "tags": {"team": b}, "backend": b})
    return d
def yaml_of(v, indent=0):
    # Block YAML, enough for this document (strings, numbers, booleans).
    pad = " " * indent
    out = []
    if isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                out.append(f"{pad}{k}:")
                out.append(yaml_of(x, indent + 2))
            else:
                out.append(f"{pad}{k}: {scalar(x)}")
    else:
        for x in v:
            inner = yaml_of(x, indent + 2).lstrip()
            out.append(f"{pad}- {inner}")
    return "\n".join(out)
def scalar(x):
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (dict, list)):
        return "{}" if isinstance(x, dict) else "[]"
    return str(x)
for shift in (0, 1):
    d = table(shift)
    open(f"{work}/v{shift}.json", "w").write(json.dumps(d, separators=(",", ":")))
    open(f"{work}/v{shift}.yaml", "w").write(yaml_of(d) + "\n")
EOF

rss() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tick="$(getconf CLK_TCK)"

echo "| binary | format | file (KiB) | start to ready (ms) | RSS at rest (MiB) | CPU per reload (ms) | peak RSS in reloads (MiB) | reloads ok |"
echo "|---|---|---|---|---|---|---|---|"
for bin in "$@"; do
  for fmt in yaml json; do
    table="$work/routing-table.yaml"
    cp "$work/v0.$fmt" "$table"
    p="$(port)"
    t0="$(date +%s%N)"
    "$bin" serve --routing-table "$table" --data-dir "$work" --listen "127.0.0.1:$p" \
      > "$work/proxy.log" 2>&1 &
    pid=$!
    ready=""
    for _ in $(seq 200); do
      if curl -sf "http://127.0.0.1:$p/ready" > /dev/null; then ready=1; break; fi
      sleep 0.05
    done
    [[ -n "$ready" ]] || { echo "$bin did not become ready:" >&2; tail -5 "$work/proxy.log" >&2; exit 1; }
    t1="$(date +%s%N)"
    sleep 1
    rest="$(rss "$pid")"
    c0="$(cpu_ticks "$pid")"
    peak=0
    for i in $(seq "$reloads"); do
      cp "$work/v$((i % 2)).$fmt" "$work/.next" && mv "$work/.next" "$table"
      for _ in $(seq 10); do
        r="$(rss "$pid")"; ((r > peak)) && peak=$r
        sleep 0.1
      done
    done
    sleep 1
    c1="$(cpu_ticks "$pid")"
    ok="$(curl -sf "http://127.0.0.1:$p/metrics" | awk '/^hos_proxy_reload_total\{result="success"\}/{print $2}')"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    size=$(( $(stat -c %s "$work/v0.$fmt") / 1024 ))
    awk -v b="$(basename "$bin")" -v f="$fmt" -v s="$size" -v st="$(( (t1 - t0) / 1000000 ))" \
        -v rest="$rest" -v cpu="$(( (c1 - c0) * 1000 / tick ))" -v n="$reloads" -v peak="$peak" -v ok="${ok:-0}" \
        'BEGIN { printf "| %s | %s | %d | %d | %.1f | %.0f | %.1f | %d of %d (+1 at start) |\n", b, f, s, st, rest/1024, cpu/n, peak/1024, ok - 1, n }'
  done
done
