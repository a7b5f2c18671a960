#!/usr/bin/env bash
# The quickstart: builds the proxy, serves this Feast repo on 127.0.0.1:6566
# (two teams routed to two SQLite files by the `team` tag), loads the sample
# rows in rows.json through Feast's write API, and prints requests to try.
# Stop with Ctrl-C.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${HOS_QUICKSTART_PORT:-6566}"

echo "building hos-proxy (first time: a few minutes)..." >&2
cargo build --release -q -p proxy --manifest-path "$root/Cargo.toml"
bin="$root/target/release/hos-proxy"

"$bin" serve --repo "$here" --feature-views "$here/feature_views" --apply \
  --listen "127.0.0.1:$port" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "hos-proxy exited; see the log above" >&2; exit 1; }
  sleep 0.1
done

python3 - "$here/rows.json" "$port" <<'PY'
import datetime, json, sys, urllib.request
rows, port = json.load(open(sys.argv[1])), sys.argv[2]
# Event times are the load time: the views' ttl (1d, 7d) applies on reads.
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
for body in rows:
    df = body["df"]
    df["event_timestamp"] = [now] * len(df["event_timestamp"])
    req = urllib.request.Request(f"http://127.0.0.1:{port}/write-to-online-store",
                                 data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
    print(f"loaded {body['feature_view_name']}", file=sys.stderr)
PY

cat <<EOT

hos-proxy is serving the quickstart repo on http://127.0.0.1:$port
(user_features -> data/team_a.db; user_merchant_stats and global_stats -> data/team_b.db)

Try:
  curl -s -X POST http://127.0.0.1:$port/get-online-features \\
    -d '{"features": ["user_features:age", "user_features:country", "user_merchant_stats:txn_count_7d", "global_stats:active_users"],
         "entities": {"user_id": [1001, 1002], "merchant_id": ["m-42", "m-7"]}}'

  curl -s -X POST http://127.0.0.1:$port/get-online-features \\
    -d '{"features": ["user_features:lifetime_value", "user_features:recent_categories"], "entities": {"user_id": [1001]}, "full_feature_names": true}'

  curl -s http://127.0.0.1:$port/metrics | grep hos_proxy_requests

Edit a file in $here/feature_views (e.g. change a team tag): the proxy reloads it.
Press Ctrl-C to stop.
EOT
wait "$pid"
