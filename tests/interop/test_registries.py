"""Issue [M]: every registry Feast 0.67 keeps, read by the proxy.

For each kind (SQL on SQLite, SQL on a real PostgreSQL server, Feast's
registry server `feast serve_registry`, S3 on moto's server, GCS on
fake-gcs-server), Feast applies the interop repo and writes its rows; the
proxy, started with the same feature_store.yaml, answers the interop reads
exactly like `feast serve` on that repo. The servers are started by
tests/run.sh (tests/scripts/{postgres,s3,gcs}-up.sh); a missing one fails.

Then, on a SQL registry with cache_ttl_seconds 2: `feast apply` adding a
view is served (and deleting one stops serving it) within the TTL + 1 s,
without a restart, with 0 failed reads of the other views meanwhile; a
registry that cannot be read keeps the last routes serving, is reported by
/ready and a metric, and is read again once it is back."""

import os
import secrets
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

import hosutil as H
from test_same_json_as_feast_serve import READS


def env(var):
    v = os.environ.get(var)
    if not v:
        pytest.fail(f"{var} is not set: tests/run.sh starts the registry servers (tests/scripts/*-up.sh)")
    return v


def store_yaml(registry: str) -> str:
    return H.FEATURE_STORE_YAML.replace("registry: data/registry.db\n", registry)


def compare(feast, proxy, what):
    for case in ("all_dtypes_hits_misses_nulls", "two_entities", "entityless_with_an_entity", "several_views",
                 "feature_service_alias_full_names", "unknown_view_404"):
        body = READS[case]
        rf, rp = feast.post("/get-online-features", body), proxy.post("/get-online-features", body)
        assert rp.status_code == rf.status_code, f"{what} {case}: proxy {rp.status_code} {rp.text[:500]} feast {rf.status_code}"
        if rf.status_code == 200:
            H.assert_same_response(rp.json(), rf.json(), f"{what} {case}")
        else:
            assert H.feast_error(rp) == H.feast_error(rf), (what, case, rp.text, rf.text)


SERVE_REGISTRY = Path(__file__).resolve().parent.parent / "registry" / "serve_registry.py"


def serve_registry(procs, repo):
    """Feast's `feast serve_registry` CLI on a free port, for the repo's
    own registry (through tests/registry/serve_registry.py, which only
    binds it to 127.0.0.1 instead of every interface)."""
    port = H.free_port()
    p = procs.raw("feast-serve-registry", [sys.executable, SERVE_REGISTRY, "-c", repo, "serve_registry",
                                           "-p", str(port)], repo)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert p.alive(), f"feast serve_registry exited:\n{p.tail()}"
        with socket.socket() as s:
            if s.connect_ex((H.HOST, port)) == 0:
                return port
        time.sleep(0.2)
    raise AssertionError(f"feast serve_registry did not listen on {port}:\n{p.tail()}")


KINDS = ["sql-sqlite", "sql-postgresql", "remote", "s3", "gcs"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_reads_every_registry_like_feast_serve(kind, procs, tmp_path, monkeypatch):
    tag = secrets.token_hex(4)
    repo = tmp_path / "repo"
    if kind == "sql-sqlite":
        # SQLAlchemy resolves a relative SQLite path against the working
        # directory, which differs between Feast's CLI and SDK: absolute.
        registry = f"registry:\n  registry_type: sql\n  path: sqlite:///{repo}/data/registry_sql.db\n"
    elif kind == "sql-postgresql":
        # Over TLS, the server's certificate checked against the test CA
        # for the URL's host: the same URL for Feast (libpq) and the proxy.
        url = env("HOS_POSTGRES_URL").replace("postgresql://", "postgresql+psycopg://", 1) + \
            f"?sslmode=verify-full&sslrootcert={env('HOS_POSTGRES_CA')}"
        # Feast's SQL registry loads every project's infra, including those
        # of earlier runs whose SQLite files are gone: start empty.
        import psycopg
        with psycopg.connect(env("HOS_POSTGRES_URL"), autocommit=True) as c:
            for (table,) in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall():
                c.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
        registry = f"registry:\n  registry_type: sql\n  path: {url}\n  cache_ttl_seconds: 60\n"
    elif kind == "s3":
        endpoint = env("HOS_S3_ENDPOINT")
        monkeypatch.setenv("FEAST_S3_ENDPOINT_URL", endpoint)
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            env(var)
        monkeypatch.setenv("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
        registry = f"registry: s3://feast-registry/{tag}/registry.pb\n"
    elif kind == "gcs":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", env("HOS_GCS_ENDPOINT"))
        registry = f"registry: gs://feast-registry/{tag}/registry.pb\n"
    else:
        registry = None
    if kind == "remote":
        # The registry server serves the repo's file registry; the proxy
        # reads it from the server with a second feature_store.yaml.
        H.make_base_repo(repo)
        port = serve_registry(procs, repo)
        client = tmp_path / "client"
        client.mkdir()
        (client / "feature_store.yaml").write_text(store_yaml(
            f"registry:\n  registry_type: remote\n  path: {H.HOST}:{port}\n").replace(
            "path: data/online.db", f"path: {repo / 'data' / 'online.db'}"))
        proxy_repo = client
    else:
        text = store_yaml(registry)
        if kind == "sql-postgresql":
            # The database outlives this test: a project of its own, so that
            # `feast apply` creates its tables whatever ran before.
            text = text.replace("project: interop\n", f"project: interop_{tag}\n")
        H.make_base_repo(repo, text)
        proxy_repo = repo
    feast = procs.feast_serve(repo)
    proxy = procs.proxy(["--repo", str(proxy_repo)])
    ready = proxy.get("/ready").json()
    assert ready["feature_views"] == 3, ready
    assert ready["registry"]["kind"] == kind and ready["registry"]["ok"] is True, ready
    assert ready["registry"]["feature_views"] == 3, ready
    compare(feast, proxy, kind)


def test_registry_changes_are_served_within_the_ttl(procs, tmp_path):
    ttl = 2
    repo = tmp_path / "repo"
    H.make_base_repo(repo, store_yaml(
        f"registry:\n  registry_type: sql\n  path: sqlite:///{repo}/data/registry_sql.db\n  cache_ttl_seconds: {ttl}\n"))
    proxy = procs.proxy(["--repo", str(repo)])
    other = {"features": ["user_features:f_int64"], "entities": {"user_id": [1001]}}
    failures, reads, stop = [], [0], threading.Event()

    def keep_reading():
        while not stop.is_set():
            r = requests.post(proxy.url + "/get-online-features", json=other, timeout=10)
            reads[0] += 1
            if r.status_code != 200:
                failures.append((r.status_code, r.text[:200]))
            time.sleep(0.02)

    reader = threading.Thread(target=keep_reading)
    reader.start()
    try:
        # Add a view (a copy of user_merchant under a new name).
        extra = '''
extra_view = FeatureView(
    name="extra_view",
    entities=[user],
    ttl=TTL,
    online=True,
    source=users_src,
    schema=[Field(name="user_id", dtype=Int64), Field(name="bonus", dtype=Int64)],
)
'''
        with open(repo / "features.py", "a") as f:
            f.write(extra)
        H.run([H.FEAST_CLI, "apply"], cwd=repo)
        applied = time.monotonic()
        read_extra = {"features": ["extra_view:bonus"], "entities": {"user_id": [1]}}
        while True:
            r = proxy.post("/get-online-features", read_extra)
            if r.status_code == 200:
                break
            assert r.status_code == 404, r.text
            assert time.monotonic() - applied <= ttl + 1, f"extra_view not served {ttl + 1}s after feast apply"
            time.sleep(0.05)
        added_after = time.monotonic() - applied
        assert H.columns(r.json())["bonus"]["statuses"] == ["NOT_FOUND"]

        # Delete it again.
        text = (repo / "features.py").read_text().replace(extra, "")
        (repo / "features.py").write_text(text)
        H.run([H.FEAST_CLI, "apply"], cwd=repo)
        applied = time.monotonic()
        while proxy.post("/get-online-features", read_extra).status_code != 404:
            assert time.monotonic() - applied <= ttl + 1, f"extra_view still served {ttl + 1}s after its deletion"
            time.sleep(0.05)
        removed_after = time.monotonic() - applied

        # The registry cannot be read: the last routes keep serving.
        db = repo / "data" / "registry_sql.db"
        shutil.move(db, db.with_suffix(".away"))
        deadline = time.monotonic() + ttl + 3
        while True:
            ready = proxy.get("/ready").json()
            if not ready["registry"]["ok"]:
                break
            assert time.monotonic() < deadline, ready
            time.sleep(0.1)
        assert ready["ready"] is True and "registry_sql.db" in ready["registry"]["error"], ready
        assert proxy.post("/get-online-features", other).status_code == 200
        metrics = requests.get(proxy.url + "/metrics", timeout=5).text
        assert H.metric_value(metrics, "hos_proxy_registry_fetch_total", {"kind": "sql-sqlite", "result": "error"}) >= 1
        shutil.move(db.with_suffix(".away"), db)
        deadline = time.monotonic() + 10
        while not proxy.get("/ready").json()["registry"]["ok"]:
            assert time.monotonic() < deadline, "the registry was not read again once back"
            time.sleep(0.1)
    finally:
        stop.set()
        reader.join()
    assert not failures, f"{len(failures)} of {reads[0]} reads of another view failed: {failures[:3]}"
    assert reads[0] > 50, reads
    H.report(f"registry ttl {ttl}s: view added served after {added_after:.2f}s, deleted after {removed_after:.2f}s; "
             f"{reads[0]} reads of another view, 0 failed")
