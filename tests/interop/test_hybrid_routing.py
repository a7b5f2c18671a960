"""A hybrid store of two SQLite backends named team_a and team_b: each view's
table and rows exist only in the backend its `team` tag names, in Feast's
layout; a tag naming no backend stops the proxy at start."""

import sqlite3

import hosutil as H

STORE_YAML = """\
project: interop
provider: local
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - type: sqlite
      name: team_a
      conf:
        path: a.db
    - type: sqlite
      name: team_b
      conf:
        path: b.db
entity_key_serialization_version: 3
"""

VIEW_A = """\
name: scores_a
entities:
  - name: user
    join_keys: [user_id]
    dtype: int64
ttl: 36500d
schema:
  - name: user_id
    dtype: int64
  - name: score
    dtype: float64
  - name: label
    dtype: string
online: true
tags:
  team: team_a
"""

VIEW_B = """\
name: spend_b
entities:
  - name: user
    join_keys: [user_id]
    dtype: int64
  - name: merchant
    join_keys: [merchant_id]
    dtype: string
ttl: 36500d
schema:
  - name: total
    dtype: float64
  - name: tags_seen
    dtype: array<string>
online: true
tags:
  team: team_b
"""

VIEW_NOBODY = """\
name: orphan_view
entities:
  - name: user
    join_keys: [user_id]
    dtype: int64
ttl: 1d
schema:
  - name: x
    dtype: int64
online: true
tags:
  team: nobody
"""


def make_repo(d):
    d.mkdir(parents=True, exist_ok=True)
    (d / "feature_store.yaml").write_text(STORE_YAML)
    (d / "scores_a.yaml").write_text(VIEW_A)
    (d / "spend_b.yaml").write_text(VIEW_B)
    return d


def test_hybrid_routing(procs, tmp_path):
    repo = make_repo(tmp_path / "hybrid")
    proxy = procs.proxy(["--repo", str(repo), "--feature-views", str(repo / "scores_a.yaml"),
                         "--feature-views", str(repo / "spend_b.yaml"), "--apply"])
    writes = [
        {"feature_view_name": "scores_a", "df": {"user_id": [1, 2], "score": [0.5, 1.5], "label": ["x", "y"],
                                                  "event_timestamp": ["2024-05-01T00:00:00Z"] * 2}},
        {"feature_view_name": "spend_b", "df": {"user_id": [1], "merchant_id": ["m"], "total": [9.25],
                                                 "tags_seen": [["p", "q"]], "event_timestamp": ["2024-05-02T00:00:00Z"]}},
    ]
    for body in writes:
        r = proxy.post("/write-to-online-store", body)
        assert r.status_code == 200, f"{body} -> {r.status_code} {r.text[:1000]}"

    r = proxy.post("/get-online-features", {"features": ["scores_a:score", "scores_a:label", "spend_b:total",
                                                         "spend_b:tags_seen"],
                                            "entities": {"user_id": [1, 2], "merchant_id": ["m", "m"]}})
    assert r.status_code == 200, r.text
    cols = H.columns(r.json())
    assert cols["score"]["values"] == [0.5, 1.5]
    assert cols["label"]["values"] == ["x", "y"]
    assert cols["total"]["values"] == [9.25, None]
    assert cols["total"]["statuses"] == ["PRESENT", "NOT_FOUND"]
    assert cols["tags_seen"]["values"] == [["p", "q"], None]
    assert cols["total"]["event_timestamps"][0] == "2024-05-02T00:00:00Z"

    a, b = repo / "a.db", repo / "b.db"
    assert a.is_file() and b.is_file(), f"backend files missing: {sorted(p.name for p in repo.iterdir())}"
    ta, tb = H.tables(a), H.tables(b)
    assert "interop_scores_a" in ta and "interop_spend_b" not in ta, f"a.db tables: {ta}"
    assert "interop_spend_b" in tb and "interop_scores_a" not in tb, f"b.db tables: {tb}"


    # rows, in Feast's layout (key bytes, Value bytes, integer epoch seconds)
    from feast.protos.feast.types.Value_pb2 import StringList, Value

    rows_a = H.table_rows(a, "interop_scores_a")
    k1, k2 = H.entity_key_bytes({"user_id": 1}), H.entity_key_bytes({"user_id": 2})
    assert set(rows_a) == {(k, f) for k in (k1, k2) for f in ("score", "label")}, sorted((k.hex(), f) for k, f in rows_a)
    assert rows_a[(k1, "score")][:3] == (Value(double_val=0.5).SerializeToString(), 1714521600, "integer")
    assert rows_a[(k2, "label")][0] == Value(string_val="y").SerializeToString()
    rows_b = H.table_rows(b, "interop_spend_b")
    kb = H.entity_key_bytes({"user_id": 1, "merchant_id": "m"})
    assert set(rows_b) == {(kb, "total"), (kb, "tags_seen")}, sorted((k.hex(), f) for k, f in rows_b)
    assert rows_b[(kb, "tags_seen")][:3] == (
        Value(string_list_val=StringList(val=["p", "q"])).SerializeToString(), 1714608000, "integer")


def test_hybrid_unknown_backend_stops_the_proxy(proxy_bin, procs, tmp_path):
    repo = make_repo(tmp_path / "hybrid_bad")
    (repo / "orphan.yaml").write_text(VIEW_NOBODY)
    port = H.free_port()
    p = procs.raw("hos-proxy-bad-route", [proxy_bin, "serve", "--repo", repo, "--feature-views", repo / "scores_a.yaml",
                                          "--feature-views", repo / "orphan.yaml", "--listen", f"{H.HOST}:{port}"], repo)
    rc = p.wait_exit(20)
    assert rc is not None, f"hos-proxy kept running with view orphan_view routed to `nobody`; stderr:\n{p.tail()}"
    err = p.stderr()
    assert rc != 0, f"hos-proxy exited 0; stderr:\n{err}"
    assert "orphan_view" in err and "names no backend" in err, f"unclear error (exit {rc}):\n{err}"


def test_failing_backend_is_503_naming_it(procs, tmp_path):
    """A backend that fails answers 503 naming that backend; views on the
    other backend keep serving."""
    repo = make_repo(tmp_path / "hybrid_fail")
    proxy = procs.proxy(["--repo", str(repo), "--feature-views", str(repo / "scores_a.yaml"),
                         "--feature-views", str(repo / "spend_b.yaml"), "--apply"])
    read_a = {"features": ["scores_a:score"], "entities": {"user_id": [1]}}
    read_b = {"features": ["spend_b:total"], "entities": {"user_id": [1], "merchant_id": ["m"]}}
    for body in (read_a, read_b):
        r = proxy.post("/get-online-features", body)
        assert r.status_code == 200, r.text
    # b.db loses its table behind the proxy's back (another process drops
    # it). Overwriting the file in place no longer fails reads at once: the
    # database is in WAL mode, whose readers keep valid pages cached while
    # the WAL index is unchanged.
    b = sqlite3.connect(repo / "b.db")
    b.execute("DROP TABLE interop_spend_b")
    b.commit()
    b.close()
    r = proxy.post("/get-online-features", read_b)
    assert r.status_code == 503, f"read from a broken backend: {r.status_code} {r.text[:500]}"
    e = H.feast_error(r)
    assert "team_b" in e["message"], e
    r = proxy.post("/write-to-online-store", {"feature_view_name": "spend_b", "df": {
        "user_id": [1], "merchant_id": ["m"], "total": [1.0], "tags_seen": [["x"]],
        "event_timestamp": ["2024-05-01T00:00:00Z"]}})
    assert r.status_code == 503, f"write to a broken backend: {r.status_code} {r.text[:500]}"
    assert "team_b" in H.feast_error(r)["message"]
    r = proxy.post("/get-online-features", read_a)
    assert r.status_code == 200, f"the healthy backend stopped serving: {r.status_code} {r.text[:500]}"
    assert proxy.get("/health").status_code == 200
