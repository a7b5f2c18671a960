"""A routing table is written from CRs by other teams: what it names must
stay in the proxy's secrets and data directories, and no value in it may
crash the proxy.

Each case plays a CR author who writes a routing table and asserts both the
refusal (exit code and message for a first table; a counted, rejected reload
with the previous routes still serving for a later one) and the absence of
the harm: the planted secret's bytes never reach a listening socket (a
`SocketSink` stands in for the Redis host) nor any message, no file appears
outside the data dir, the process stays alive and applies the next good
table.

Needs REDIS_URL (a real Redis, for the good tables' Redis backend) and
BIGTABLE_EMULATOR_HOST (the emulator, for the table applied after a bad
emulator host), as tests/scripts/{redis,bigtable}-up.sh export them.
"""

from __future__ import annotations

import os
import secrets as pysecrets
import sqlite3
import time
from pathlib import Path

import pytest

import hosutil as H
import secutil

BAD_BACKEND = "team_x_redis"
READ = {"features": ["v:val"], "entities": {"user_id": [1]}}


def need(var: str) -> str:
    v = os.environ.get(var)
    if not v:
        pytest.fail(f"{var} is not set: start the server with tests/scripts/*-up.sh (tests/run.sh does)")
    return v


def view_yaml(name: str, backend: str, feature: str = "val") -> str:
    return f"""\
  - name: {name}
    entities:
      - name: user
        join_keys:
          - name: user_id
            dtype: int64
    features:
      - name: {feature}
        dtype: string
    ttl_seconds: 3153600000
    online: true
    tags:
      team: {backend}
    backend: {backend}
"""


def table_yaml(backends: str, views: str) -> str:
    return f"""\
schema_version: 1
project: interop
entity_key_serialization_version: 3
routing_tag: team
backends:
{backends}feature_views:
{views}"""


def sqlite_backend(name: str, path: str) -> str:
    return f"""\
  - name: {name}
    type: sqlite
    conf:
      path: "{path}"
"""


def redis_backend(name: str, connection_string: str, password: str) -> str:
    return f"""\
  - name: {name}
    type: redis
    conf:
      connection_string: "{connection_string}"
      password: {password}
"""


def bigtable_backend(name: str, host: str) -> str:
    return f"""\
  - name: {name}
    type: bigtable
    conf:
      project_id: sec-project
      instance: sec-instance
      emulator_host: "{host}"
"""


def fill_sqlite(db: Path, val: str) -> None:
    """Feast's table `interop_v` with user 1 -> val."""
    from feast.protos.feast.types.Value_pb2 import Value

    con = sqlite3.connect(str(db))
    try:
        H.create_feast_table(con, "interop_v")
        con.execute("INSERT INTO interop_v (entity_key, feature_name, value, value_text, event_ts, created_ts)"
                    " VALUES (?, ?, ?, ?, ?, NULL)",
                    (H.entity_key_bytes({"user_id": 1}), "val", Value(string_val=val).SerializeToString(), val,
                     1714521600))
        con.commit()
    finally:
        con.close()


class Setup:
    """<tmp>/secrets (the proxy's --secrets-dir), <tmp>/data (--data-dir)
    with a.db serving view v, and <tmp>/outside holding a planted secret
    that no routing table may reach."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.secrets = tmp / "secrets"
        self.data = tmp / "data"
        self.outside = tmp / "outside"
        for d in (self.secrets, self.data, self.outside):
            d.mkdir()
        self.planted = "PLANTED-" + pysecrets.token_hex(16)
        self.secret_file = self.outside / "token"
        self.secret_file.write_text(self.planted + "\n")
        fill_sqlite(self.data / "a.db", "A")
        self.table = tmp / "routing.yaml"

    def args(self):
        return ["--routing-table", str(self.table), "--secrets-dir", str(self.secrets),
                "--data-dir", str(self.data), "--poll-seconds", "0.2"]

    def good(self, extra_backends: str = "", extra_views: str = "") -> str:
        return table_yaml(sqlite_backend("team_a", "a.db") + extra_backends, view_yaml("v", "team_a") + extra_views)

    def write(self, text: str) -> None:
        tmp = self.table.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.table)

    def files_outside_data(self) -> set:
        """Every path under <tmp> except the data dir and the logs."""
        out = set()
        for p in self.tmp.rglob("*"):
            rel = p.relative_to(self.tmp)
            if rel.parts[0] in ("data", "logs") or p.name.startswith("routing."):
                continue
            out.add(str(rel))
        return out


def assert_no_leak(text: str, s: Setup, what: str) -> None:
    assert s.planted not in text, f"{what} shows the planted secret"
    assert str(s.secret_file) not in text, f"{what} shows the secret's path"
    assert str(s.outside) not in text, f"{what} shows the outside directory"


def reload_count(proxy, result: str) -> float:
    r = proxy.get("/metrics")
    assert r.status_code == 200, r.text
    return H.metric_value(r.text, "hos_proxy_reload_total", {"result": result})


def wait_reload(proxy, results, before: float, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    now = before
    while time.monotonic() < deadline:
        assert proxy.proc.alive(), f"proxy died after {what}:\n{proxy.proc.tail(40)}"
        now = sum(reload_count(proxy, r) for r in results)
        if now > before:
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: hos_proxy_reload_total{{result in {results}}} stayed {now} for {timeout}s\n"
                         f"{proxy.proc.tail(40)}")


def val_of(proxy, view: str = "v", feature: str = "val"):
    r = proxy.post("/get-online-features", {"features": [f"{view}:{feature}"], "entities": {"user_id": [1]}})
    assert r.status_code == 200, f"{view}: HTTP {r.status_code}: {r.text[:300]}"
    return H.columns(r.json())[feature]["values"][0]


def start_raw(name: str, proxy_bin, args, tmp_path: Path, env=None) -> H.Proc:
    """`hos-proxy serve ARGS` without waiting for it (it may be meant to
    exit); the caller stops it. Without --listen, a free port."""
    if "--listen" not in args:
        args = [*args, "--listen", f"127.0.0.1:{H.free_port()}"]
    return H.Proc(name, [proxy_bin, "serve", *args], tmp_path, tmp_path / "logs", env=H.sub_env(**(env or {})))


# ---------------------------------------------------------------------------
# credential references
# ---------------------------------------------------------------------------

CREDENTIAL_CASES = ["file_dot_dot", "file_absolute_outside", "file_symlink_escape", "env"]


def bad_reference(case: str, s: Setup) -> tuple:
    """The reference a CR author writes, and the env the proxy runs with."""
    if case == "file_dot_dot":
        return "{file: ../outside/token}", {}
    if case == "file_absolute_outside":
        return f"{{file: {s.secret_file}}}", {}
    if case == "file_symlink_escape":
        (s.secrets / "team-x").mkdir()
        os.symlink(s.secret_file, s.secrets / "team-x" / "password")
        return "{file: team-x/password}", {}
    if case == "env":
        # The proxy's own environment holds the secret: an env reference
        # would read it.
        return "{env: HOS_TEST_PLANTED_SECRET}", {"HOS_TEST_PLANTED_SECRET": s.planted}
    raise AssertionError(case)


@pytest.mark.parametrize("case", CREDENTIAL_CASES)
def test_refused_credential_in_first_table_exits(case, proxy_bin, procs, tmp_path):
    s = Setup(tmp_path)
    sink = secutil.SocketSink()
    try:
        ref, env = bad_reference(case, s)
        s.write(s.good(redis_backend(BAD_BACKEND, f"127.0.0.1:{sink.port}", ref), view_yaml("x", BAD_BACKEND)))
        p = start_raw("hos-proxy-bad-first", proxy_bin, s.args(), tmp_path, env)
        try:
            rc = p.wait_exit(20)
            assert rc is not None, f"{case}: proxy kept running on a refused reference\n{p.tail(40)}"
            assert rc != 0, f"{case}: exit code 0"
            err = p.stderr()
            assert "invalid configuration" in err and BAD_BACKEND in err and "conf.password" in err, err[-2000:]
            assert ("--secrets-dir" in err) if case != "env" else ("env" in err), err[-2000:]
            assert_no_leak(err + p.stdout(), s, f"{case}: stderr/stdout")
            time.sleep(0.3)
            assert s.planted.encode() not in sink.received(), f"{case}: the secret reached the socket"
            assert sink.connections == 0, f"{case}: the proxy connected to the CR's Redis host"
        finally:
            p.stop()
    finally:
        sink.close()


@pytest.mark.parametrize("case", CREDENTIAL_CASES)
def test_refused_credential_on_reload_keeps_the_last_table(case, proxy_bin, procs, tmp_path):
    need("REDIS_URL")
    s = Setup(tmp_path)
    sink = secutil.SocketSink()
    try:
        ref, env = bad_reference(case, s)
        s.write(s.good())
        port = H.free_port()
        proc = start_raw("hos-proxy-reload", proxy_bin, [*s.args(), "--listen", f"127.0.0.1:{port}"], tmp_path, env)
        proxy = H.Proxy(proc, port)
        try:
            H.wait_http_ok(proc, f"{proxy.url}/ready", 30, "hos-proxy")
            assert val_of(proxy) == "A"
            before = reload_count(proxy, "error")
            s.write(s.good(redis_backend(BAD_BACKEND, f"127.0.0.1:{sink.port}", ref), view_yaml("x", BAD_BACKEND)))
            wait_reload(proxy, ["error"], before, f"{case} table")
            assert proxy.proc.alive()
            assert val_of(proxy) == "A", "the previous routes stopped serving"
            r = proxy.post("/get-online-features", {"features": ["x:val"], "entities": {"user_id": [1]}})
            assert r.status_code == 404, f"view x of the rejected table is served: {r.status_code} {r.text[:200]}"
            ready = proxy.get("/ready")
            assert ready.status_code == 200, ready.text
            assert BAD_BACKEND not in ready.text, ready.text
            err = proxy.proc.stderr()
            assert "conf.password" in err and BAD_BACKEND in err, err[-2000:]
            assert_no_leak(err + ready.text + proxy.get("/metrics").text, s, f"{case}: logs, /ready, /metrics")
            time.sleep(0.3)
            assert s.planted.encode() not in sink.received(), f"{case}: the secret reached the socket"
            assert sink.connections == 0, f"{case}: the proxy connected to the CR's Redis host"

            # The next good table (a real Redis, password-less) is applied.
            redis_cs = need("REDIS_URL").removeprefix("redis://").rstrip("/")
            before = reload_count(proxy, "success")
            s.write(s.good(f"""\
  - name: team_r
    type: redis
    conf:
      connection_string: "{redis_cs}"
""", view_yaml("w", "team_r")))
            wait_reload(proxy, ["success"], before, "next good table")
            assert val_of(proxy, "w") is None  # served (no row yet), not 404
            assert val_of(proxy) == "A"
        finally:
            proxy.stop()
    finally:
        sink.close()


def test_a_missing_secret_file_inside_shows_no_path(proxy_bin, procs, tmp_path):
    """A reference that stays inside but whose Secret is not mounted yet:
    the backend is down, and its reason in /ready and the logs names the
    field, never the file."""
    s = Setup(tmp_path)
    sink = secutil.SocketSink()
    try:
        s.write(s.good(redis_backend(BAD_BACKEND, f"127.0.0.1:{sink.port}", "{file: team-x/not-mounted}"),
                       view_yaml("x", BAD_BACKEND)))
        proxy = procs.proxy(s.args())
        ready = proxy.get("/ready").json()
        reason = ready["backends"][BAD_BACKEND]["reason"]
        assert "conf.password" in reason, reason
        text = proxy.get("/ready").text + proxy.proc.stderr()
        assert str(s.secrets) not in text and "not-mounted" not in text, text[-2000:]
        assert sink.connections == 0
    finally:
        sink.close()


# ---------------------------------------------------------------------------
# SQLite paths
# ---------------------------------------------------------------------------

SQLITE_CASES = ["dot_dot", "absolute_outside", "symlinked_parent"]


def bad_sqlite_path(case: str, s: Setup) -> tuple:
    """The path a CR author writes, and where the file would land."""
    if case == "dot_dot":
        return "../outside.db", s.tmp / "outside.db"
    if case == "absolute_outside":
        target = s.outside / "new-dir" / "outside.db"
        return str(target), target
    if case == "symlinked_parent":
        os.symlink(s.outside, s.data / "team-x")
        return "team-x/sub/outside.db", s.outside / "sub" / "outside.db"
    raise AssertionError(case)


@pytest.mark.parametrize("case", SQLITE_CASES)
def test_sqlite_path_outside_the_data_dir_in_first_table(case, proxy_bin, procs, tmp_path):
    s = Setup(tmp_path)
    path, lands = bad_sqlite_path(case, s)
    s.write(s.good(sqlite_backend("team_x", path), view_yaml("x", "team_x")))
    before = s.files_outside_data()
    p = start_raw("hos-proxy-sqlite-first", proxy_bin, [*s.args(), "--apply"], tmp_path)
    try:
        rc = p.wait_exit(20)
        assert rc is not None and rc != 0, f"{case}: exit code {rc}\n{p.tail(40)}"
        err = p.stderr()
        assert "invalid configuration" in err and "team_x" in err, err[-2000:]
        assert "conf.path" in err and "--data-dir" in err, err[-2000:]
    finally:
        p.stop()
    assert not lands.exists(), f"{case}: {lands} created"
    assert s.files_outside_data() == before, f"{case}: files appeared outside the data dir"


@pytest.mark.parametrize("case", SQLITE_CASES)
def test_sqlite_path_outside_the_data_dir_on_reload(case, proxy_bin, procs, tmp_path):
    s = Setup(tmp_path)
    s.write(s.good())
    proxy = procs.proxy([*s.args(), "--apply"])
    assert val_of(proxy) == "A"
    path, lands = bad_sqlite_path(case, s)
    before = s.files_outside_data()
    errors = reload_count(proxy, "error")
    s.write(s.good(sqlite_backend("team_x", path), view_yaml("x", "team_x")))
    wait_reload(proxy, ["error"], errors, f"{case} table")
    assert val_of(proxy) == "A"
    err = proxy.proc.stderr()
    assert "team_x" in err and "conf.path" in err and "--data-dir" in err, err[-2000:]
    time.sleep(0.5)
    assert not lands.exists(), f"{case}: {lands} created"
    assert s.files_outside_data() == before, f"{case}: files appeared outside the data dir"
    # Inside the data dir is fine, directories included.
    ok = reload_count(proxy, "success")
    s.write(s.good(sqlite_backend("team_x", "teams/x/online.db"), view_yaml("x", "team_x")))
    wait_reload(proxy, ["success"], ok, "table with a SQLite path inside")
    assert (s.data / "teams" / "x" / "online.db").exists()
    assert val_of(proxy, "x") is None


# ---------------------------------------------------------------------------
# a Bigtable emulator host the client library panics on
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["::::", "host name:1"])
def test_bad_bigtable_emulator_host_hot_reloaded(host, proxy_bin, procs, tmp_path):
    emulator = need("BIGTABLE_EMULATOR_HOST")
    s = Setup(tmp_path)
    s.write(s.good())
    proxy = procs.proxy([*s.args(), "--apply"])
    assert val_of(proxy) == "A"
    pid = proxy.proc.pid
    failed = reload_count(proxy, "error") + reload_count(proxy, "panic")
    s.write(s.good(bigtable_backend("team_bt", host), view_yaml("bt", "team_bt")))
    wait_reload(proxy, ["error", "panic"], failed, f"emulator_host {host!r}")
    assert proxy.proc.alive() and proxy.proc.pid == pid
    assert val_of(proxy) == "A", "the previous routes stopped serving"
    err = proxy.proc.stderr()
    assert "team_bt" in err and "conf.emulator_host" in err, err[-2000:]
    assert "panicked" not in err, f"something panicked:\n{err[-3000:]}"
    # The next good table, on the real emulator, is applied and served.
    ok = reload_count(proxy, "success")
    s.write(s.good(bigtable_backend("team_bt", emulator), view_yaml("bt2", "team_bt", "val")))
    wait_reload(proxy, ["success"], ok, "next good table", timeout=30)
    assert val_of(proxy, "bt2") is None  # its (empty) table answers
    assert val_of(proxy) == "A"
    assert proxy.proc.alive()


# ---------------------------------------------------------------------------
# what the one-shot commands write out
# ---------------------------------------------------------------------------

def test_routing_table_output_holds_no_literal_secret(proxy_bin, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    planted = "PLANTED-" + pysecrets.token_hex(16)
    (repo / "feature_store.yaml").write_text(f"""\
project: p
registry: data/registry.db
provider: local
online_store:
  type: redis
  connection_string: "localhost:6379,password={planted}"
entity_key_serialization_version: 3
""")
    p = H.run([proxy_bin, "routing-table", "--repo", str(repo)], cwd=tmp_path, timeout=60)
    assert "schema_version: 1" in p.stdout, p.stdout
    assert planted not in p.stdout + p.stderr, "a literal credential was printed"
    assert "password=<redacted>" in p.stdout, p.stdout
    assert "redis" in p.stderr and "not printed" in p.stderr, p.stderr


def test_apply_state_file_is_private(proxy_bin, tmp_path):
    s = Setup(tmp_path)
    s.write(s.good())
    state = tmp_path / "applied.yaml"
    p = H.run([proxy_bin, "apply", "--routing-table", str(s.table), "--data-dir", str(s.data),
               "--secrets-dir", str(s.secrets), "--state", str(state)], cwd=tmp_path, timeout=60)
    assert state.exists()
    assert state.stat().st_mode & 0o777 == 0o600, oct(state.stat().st_mode)
