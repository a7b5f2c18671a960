"""A backend that is down when the proxy starts.

A hybrid repo with a SQLite backend and a Redis backend pointing at a closed
port (a free port nobody listens on). The proxy starts anyway:
- GET /ready is 200 and its `backends` detail marks the Redis backend not
  ready, with a reason, and the SQLite backend ready;
- hos_proxy_backend_up{backend=...} is 0 for Redis and 1 for SQLite;
- views on SQLite serve normally; requests for views on Redis alone answer
  503 with a Feast-shaped error whose message names the backend; a request
  for both answers 200 with the Redis columns INVALID and `metadata.errors`.
"""

import sqlite3
import time

import backendutil as B
import hosutil as H

STORE = """\
project: interop
provider: local
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - type: sqlite
      name: local_sq
      conf:
        path: local.db
    - type: redis
      name: cache_down
      conf:
        connection_string: "127.0.0.1:{port}"
entity_key_serialization_version: 3
"""

USER = [("user", "user_id", "int64")]
FEATS = [("val", "string"), ("n", "int64")]


def make_repo(d, port):
    d.mkdir(parents=True)
    (d / "feature_store.yaml").write_text(STORE.format(port=port))
    B.write_yaml_view(d / "sq_view.yaml", "sq_view", "local_sq", USER, FEATS)
    B.write_yaml_view(d / "rd_view.yaml", "rd_view", "cache_down", USER, FEATS)
    return d


def backend_detail(body, name):
    backends = body.get("backends")
    if isinstance(backends, dict):
        return backends.get(name)
    if isinstance(backends, list):
        for b in backends:
            if isinstance(b, dict) and b.get("name") == name:
                return b
    return None


def check_down_contract(proxy):
    # /ready: 200, the Redis backend not ready with a reason (the first
    # connection attempt may still be running: wait for it, bounded)
    deadline = time.monotonic() + 15
    while True:
        r = proxy.get("/ready")
        assert r.status_code == 200, f"GET /ready -> {r.status_code} {r.text[:500]}"
        body = r.json()
        down = backend_detail(body, "cache_down")
        if (isinstance(down, dict) and down.get("ready") is False and down.get("reason")) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert isinstance(down, dict), f"/ready has no detail for backend cache_down: {body}"
    assert down.get("ready") is False, f"/ready does not mark cache_down as not ready: {body}"
    assert isinstance(down.get("reason"), str) and down["reason"].strip(), f"/ready gives no reason for cache_down: {body}"
    up = backend_detail(body, "local_sq")
    assert isinstance(up, dict) and up.get("ready") is True, f"/ready does not mark local_sq as ready: {body}"

    # metrics
    r = proxy.get("/metrics")
    assert r.status_code == 200, r.text[:300]
    down_v = B.metric_sample(r.text, "hos_proxy_backend_up", {"backend": "cache_down"})
    up_v = B.metric_sample(r.text, "hos_proxy_backend_up", {"backend": "local_sq"})
    assert down_v == 0, f'hos_proxy_backend_up{{backend="cache_down"}} is {down_v} (want 0):\n' + "\n".join(
        ln for ln in r.text.splitlines() if "backend_up" in ln)
    assert up_v == 1, f'hos_proxy_backend_up{{backend="local_sq"}} is {up_v} (want 1):\n' + "\n".join(
        ln for ln in r.text.splitlines() if "backend_up" in ln)

    # the SQLite views serve
    w = {"feature_view_name": "sq_view", "df": {"user_id": [1], "val": ["ok"], "n": [7],
                                                 "event_timestamp": ["2024-05-01T00:00:00Z"]}}
    r = proxy.post("/write-to-online-store", w)
    assert r.status_code == 200, f"write to the SQLite view: {r.status_code} {r.text[:500]}"
    r = proxy.post("/get-online-features", {"features": ["sq_view:val", "sq_view:n"], "entities": {"user_id": [1, 2]}})
    assert r.status_code == 200, f"read of the SQLite view: {r.status_code} {r.text[:500]}"
    cols = H.columns(r.json())
    assert cols["val"]["values"] == ["ok", None] and cols["n"]["statuses"] == ["PRESENT", "NOT_FOUND"], cols

    # a read of both views: 200, the SQLite view's values, the Redis view's
    # column INVALID, and metadata.errors naming the view and the backend
    r = proxy.post("/get-online-features", {"features": ["sq_view:val", "rd_view:val"], "entities": {"user_id": [1]},
                                            "full_feature_names": True})
    assert r.status_code == 200, f"read of both views: {r.status_code} {r.text[:500]}"
    cols = H.columns(r.json())
    assert cols["sq_view__val"]["values"] == ["ok"] and cols["sq_view__val"]["statuses"] == ["PRESENT"], cols
    assert cols["rd_view__val"]["values"] == [None] and cols["rd_view__val"]["statuses"] == ["INVALID"], cols
    errors = r.json()["metadata"]["errors"]
    assert [(e["feature_view"], e["backend"]) for e in errors] == [("rd_view", "cache_down")], errors
    assert "cache_down" in errors[0]["message"], errors

    # the Redis view alone: 503 naming the backend
    for what, path, body in [
        ("read", "/get-online-features", {"features": ["rd_view:val"], "entities": {"user_id": [1]}}),
        ("write", "/write-to-online-store", {"feature_view_name": "rd_view", "df": {
            "user_id": [1], "val": ["x"], "n": [1], "event_timestamp": ["2024-05-01T00:00:00Z"]}}),
    ]:
        r = proxy.post(path, body)
        assert r.status_code == 503, f"{what} of a view on the down backend: {r.status_code} {r.text[:500]}"
        e = H.feast_error(r)
        assert "cache_down" in e["message"], f"{what}: the 503 message does not name the backend: {e}"
    assert proxy.get("/health").status_code == 200


def test_backend_down_at_start(procs, tmp_path):
    port = H.free_port()  # closed: nothing listens there
    repo = make_repo(tmp_path / "down", port)
    con = sqlite3.connect(str(repo / "local.db"))
    try:
        H.create_feast_table(con, "interop_sq_view")
        con.commit()
    finally:
        con.close()
    proxy = procs.proxy(["--repo", str(repo), "--feature-views", str(repo / "sq_view.yaml"),
                         "--feature-views", str(repo / "rd_view.yaml")])
    check_down_contract(proxy)


def test_backend_down_at_start_with_apply(procs, tmp_path):
    """--apply provisions what it can (the SQLite table) and still starts."""
    port = H.free_port()
    repo = make_repo(tmp_path / "down_apply", port)
    proxy = procs.proxy(["--repo", str(repo), "--feature-views", str(repo / "sq_view.yaml"),
                         "--feature-views", str(repo / "rd_view.yaml"), "--apply"])
    assert "interop_sq_view" in H.tables(repo / "local.db"), "--apply did not create the SQLite view's table"
    check_down_contract(proxy)
