"""Deleting expired data, opt-in per store with `key_ttl_seconds`.

One hybrid store with five backends on the real servers: SQLite, Redis,
Cassandra and the Bigtable emulator with `key_ttl_seconds: 2`, and a second
SQLite backend without it. Rows written through the proxy are in every
backend; a few seconds later they are gone from the four expiring backends
themselves (Cassandra `USING TTL`, Redis `EXPIRE`, a Bigtable max-age GC
rule, the proxy's SQLite sweep), and still in the fifth.
"""

import time

import backendutil as B
import hosutil as H

TTL = 2


def test_expired_rows_disappear_from_the_backends(procs, tmp_path):
    project = B.uniq("exp")
    keyspace = B.uniq("exp_ks")
    instance = B.uniq("exp-bt")
    cleanup = B.Cleanup()
    cleanup.keyspace(keyspace)
    cleanup.bigtable(instance)
    cleanup.redis(project)
    B.create_keyspace(keyspace)
    host, port = B.cassandra_addr()
    B.bigtable_host()
    repo = tmp_path / "repo"
    (repo / "views").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(f"""\
project: {project}
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - {{name: sq, type: sqlite, conf: {{path: sq.db, key_ttl_seconds: {TTL}}}}}
    - {{name: keep, type: sqlite, conf: {{path: keep.db}}}}
    - {{name: rd, type: redis, conf: {{connection_string: "{B.redis_connection_string()}", key_ttl_seconds: {TTL}}}}}
    - {{name: cs, type: cassandra, conf: {{hosts: [{host}], port: {port}, keyspace: {keyspace}, key_ttl_seconds: {TTL}}}}}
    - {{name: bt, type: bigtable, conf: {{project_id: {B.BT_PROJECT}, instance: {instance}, key_ttl_seconds: {TTL}}}}}
""")
    for backend in ("sq", "keep", "rd", "cs", "bt"):
        B.write_yaml_view(repo / "views" / f"{backend}.yaml", f"{backend}_view", backend,
                          [("user", "user_id", "int64")], [("val", "string")])
    try:
        proxy = procs.proxy(["--repo", str(repo), "--feature-views", str(repo / "views"), "--apply",
                             "--sweep-seconds", "0.5"], cwd=repo)
        now = int(time.time())
        for backend in ("sq", "keep", "rd", "cs", "bt"):
            r = proxy.post("/write-to-online-store", {"feature_view_name": f"{backend}_view", "df": {
                "user_id": [1, 2], "val": ["a", "b"], "event_timestamp": [now, now]}})
            assert r.status_code == 200, f"write {backend}: {r.status_code} {r.text[:300]}"

        def stored():
            return {
                "sq": len(H.table_rows(repo / "sq.db", f"{project}_sq_view")),
                "keep": len(H.table_rows(repo / "keep.db", f"{project}_keep_view")),
                "rd": len(B.redis_keys(project)),
                "cs": len(B.cassandra_rows(keyspace, f"{project}_cs_view")),
                "bt": len(B.bigtable_rows(instance, f"{project}.user")),
            }

        first = stored()
        assert first == {"sq": 2, "keep": 2, "rd": 2, "cs": 2, "bt": 2}, f"rows right after the writes: {first}"
        deadline = time.monotonic() + 20
        while True:
            now_stored = stored()
            if all(now_stored[b] == 0 for b in ("sq", "rd", "cs", "bt")) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert now_stored == {"sq": 0, "keep": 2, "rd": 0, "cs": 0, "bt": 0}, \
            f"rows {TTL} s after their ttl (want 0 except in `keep`): {now_stored}"
        # Reads agree: the expired views answer NOT_FOUND, `keep` still has its values.
        r = proxy.post("/get-online-features", {
            "features": ["sq_view:val", "rd_view:val", "cs_view:val", "bt_view:val", "keep_view:val"],
            "entities": {"user_id": [1]}, "full_feature_names": True})
        assert r.status_code == 200, r.text
        cols = H.columns(r.json())
        for b in ("sq", "rd", "cs", "bt"):
            assert cols[f"{b}_view__val"]["statuses"] == ["NOT_FOUND"], (b, cols[f"{b}_view__val"])
        assert cols["keep_view__val"]["values"] == ["a"]
        m = proxy.get("/metrics").text
        assert H.metric_value(m, "hos_proxy_expired_rows_total", {"backend": "sq"}) == 2, \
            [ln for ln in m.splitlines() if "expired" in ln]
    finally:
        cleanup.run()
