"""Hot reload of the routing table under load, mounted like a Kubernetes
ConfigMap: DIR/routing.yaml -> ..data/routing.yaml, ..data -> ..<timestamp>.

View `v` holds "A" in backend team_a (a.db) and "B" in team_b (b.db), so
every answer tells which backend served it. The table is replaced 50 times:
49 valid swaps alternating between the two routes, half by renaming a new
file over routing.yaml inside the current ..data dir and half by Kubernetes'
..data symlink swap, and once by an invalid table (view routed to a backend
that does not exist), which must be rejected while the old route keeps
serving.
"""

import itertools
import os
import shutil
import sqlite3
import threading
import time

import requests

import hosutil as H

SWAPS = 50
INVALID_AT = 25
WORKERS = 4
VISIBLE_WITHIN = 1.0

READ = {"features": ["v:val", "v:n"], "entities": {"user_id": [1]}}


def table_yaml(a_db, b_db, backend):
    return f"""\
schema_version: 1
project: interop
entity_key_serialization_version: 3
routing_tag: team
backends:
  - name: team_a
    type: sqlite
    conf:
      path: {a_db}
  - name: team_b
    type: sqlite
    conf:
      path: {b_db}
feature_views:
  - name: v
    entities:
      - name: user
        join_keys:
          - name: user_id
            dtype: int64
    features:
      - name: val
        dtype: string
      - name: n
        dtype: int64
    ttl_seconds: 3153600000
    online: true
    tags:
      team: {backend}
    backend: {backend}
"""


def fill_backend(db, val, n):
    """Feast's table and one row for user 1, written with Feast's own
    serializers."""
    from feast.protos.feast.types.Value_pb2 import Value

    con = sqlite3.connect(str(db))
    try:
        H.create_feast_table(con, "interop_v")
        key = H.entity_key_bytes({"user_id": 1})
        for fname, v in (("val", Value(string_val=val)), ("n", Value(int64_val=n))):
            con.execute("INSERT INTO interop_v (entity_key, feature_name, value, value_text, event_ts, created_ts)"
                        " VALUES (?, ?, ?, ?, ?, NULL)", (key, fname, v.SerializeToString(), str(val), 1714521600))
        con.commit()
    finally:
        con.close()


class ConfigMapDir:
    """Kubernetes' AtomicWriter layout and both ways of replacing the file."""

    def __init__(self, root):
        self.root = root
        self.n = 0
        root.mkdir(parents=True)
        first = self._new_dir()
        os.symlink(first, root / "..data")
        os.symlink("..data/routing.yaml", root / "routing.yaml")

    @property
    def path(self):
        return self.root / "routing.yaml"

    def _new_dir(self):
        self.n += 1
        name = "..2024_05_01_00_00_%02d.%09d" % (self.n % 60, self.n)
        (self.root / name).mkdir()
        return name

    def write_initial(self, text):
        (self.root / "..data" / "routing.yaml").write_text(text)

    def rename_in_place(self, text):
        d = self.root / os.readlink(self.root / "..data")
        tmp = d / ".routing.yaml.tmp"
        tmp.write_text(text)
        os.rename(tmp, d / "routing.yaml")

    def symlink_swap(self, text):
        old = os.readlink(self.root / "..data")
        new = self._new_dir()
        (self.root / new / "routing.yaml").write_text(text)
        os.symlink(new, self.root / "..data_tmp")
        os.rename(self.root / "..data_tmp", self.root / "..data")
        shutil.rmtree(self.root / old)


def current_val(session, url):
    r = session.post(url + "/get-online-features", json=READ, timeout=5)
    if r.status_code != 200:
        return f"HTTP {r.status_code}: {r.text[:200]}"
    return H.columns(r.json())["val"]["values"][0]


def reload_errors(proxy):
    r = proxy.get("/metrics")
    assert r.status_code == 200, r.text
    return H.metric_value(r.text, "hos_proxy_reload_total", {"result": "error"}), r.text


def test_hot_reload_under_load(proxy_bin, procs, tmp_path):
    a_db, b_db = tmp_path / "a.db", tmp_path / "b.db"
    fill_backend(a_db, "A", 1)
    fill_backend(b_db, "B", 2)
    tables = {x: table_yaml(a_db, b_db, f"team_{x.lower()}") for x in "AB"}
    invalid = table_yaml(a_db, b_db, "team_zzz")

    cm = ConfigMapDir(tmp_path / "configmap")
    cm.write_initial(tables["A"])
    # The backends' files live beside the mounted directory: the data dir.
    proxy = procs.proxy(["--routing-table", str(cm.path), "--data-dir", str(tmp_path)])
    check = requests.Session()
    assert current_val(check, proxy.url) == "A"

    stop = threading.Event()
    lock = threading.Lock()
    stats = {"ok": 0, "failed": 0, "failures": []}

    def worker():
        s = requests.Session()
        deadline = time.monotonic() + 240
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                r = s.post(proxy.url + "/get-online-features", json=READ, timeout=10)
                val = H.columns(r.json())["val"]["values"][0] if r.status_code == 200 else None
                good = r.status_code == 200 and val in ("A", "B")
                with lock:
                    if good:
                        stats["ok"] += 1
                    else:
                        stats["failed"] += 1
                        if len(stats["failures"]) < 20:
                            stats["failures"].append(f"HTTP {r.status_code}: {r.text[:300]}")
            except Exception as e:  # connection errors count as failures
                with lock:
                    stats["failed"] += 1
                    if len(stats["failures"]) < 20:
                        stats["failures"].append(f"{type(e).__name__}: {e}"[:300])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    slow, latencies = [], []
    current = "A"
    methods = itertools.cycle([cm.rename_in_place, cm.symlink_swap])
    try:
        time.sleep(0.3)
        for i in range(SWAPS):
            method = next(methods)
            if i == INVALID_AT:
                before, _ = reload_errors(proxy)
                method(invalid)
                deadline = time.monotonic() + 5
                after, text = reload_errors(proxy)
                while after < before + 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                    after, text = reload_errors(proxy)
                assert after >= before + 1, (
                    f"invalid routing table (view v -> backend team_zzz) written by {method.__name__}: "
                    f"hos_proxy_reload_total{{result=\"error\"}} stayed {after} (was {before}) for 5 s\n"
                    f"/metrics:\n{text[:3000]}")
                assert current_val(check, proxy.url) == current, "old route no longer answers after an invalid table"
                r = proxy.get("/ready")
                assert r.status_code == 200, f"/ready {r.status_code} after an invalid table"
                continue
            target = "B" if current == "A" else "A"
            t0 = time.monotonic()
            method(tables[target])
            seen = None
            while time.monotonic() - t0 < VISIBLE_WITHIN:
                seen = current_val(check, proxy.url)
                if seen == target:
                    break
                time.sleep(0.02)
            took = time.monotonic() - t0
            if seen != target:
                # wait longer so later swaps are judged on their own
                while time.monotonic() - t0 < 6 and seen != target:
                    time.sleep(0.05)
                    seen = current_val(check, proxy.url)
                late = f"seen after {time.monotonic() - t0:.2f}s" if seen == target else f"still {seen!r} after 6s"
                slow.append(f"swap {i} ({method.__name__}) to {target}: not visible within {VISIBLE_WITHIN}s, {late}")
            latencies.append(took)
            current = target
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)

    problems = []
    if stats["failed"]:
        problems.append(f"{stats['failed']} failed requests under reload (ok: {stats['ok']}):\n  "
                        + "\n  ".join(stats["failures"][:20]))
    if stats["ok"] < 200:
        problems.append(f"load too light to mean anything: {stats['ok']} requests")
    if slow:
        problems.append(f"{len(slow)} of {SWAPS - 1} valid swaps not visible within {VISIBLE_WITHIN}s "
                        f"({stats['ok']} requests ok, {stats['failed']} failed):\n  " + "\n  ".join(slow))
    assert not problems, "\n".join(problems)
    assert proxy.get("/ready").status_code == 200
    print(f"hot reload: {stats['ok']} requests ok, swap visibility max {max(latencies):.3f}s")
