"""Helpers for the hos-proxy <-> Feast interop tests.

Everything here runs with TZ=UTC (conftest sets it for this process, and every
subprocess gets it explicitly), because Feast's SQLite store converts
timestamps through the process-local time zone.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import requests

ROOT = Path(__file__).resolve().parents[2]
PROXY_BIN = Path(os.environ.get("HOS_PROXY_BIN", str(ROOT / "target" / "debug" / "hos-proxy")))
VENV_BIN = Path(sys.executable).parent
FEAST_CLI = VENV_BIN / "feast"
TEMPLATE = Path(__file__).resolve().parent / "repo_template"

PROJECT = "interop"
HOST = "127.0.0.1"

# Every process started by a test is registered here, so a failing test's
# report can show the tail of each live process's stderr (see conftest).
LIVE_PROCS: List["Proc"] = []

# Figures measured by the tests, printed at the end of the run (conftest).
REPORT: List[str] = []


def report(line: str) -> None:
    print(line, flush=True)
    REPORT.append(line)


def sub_env(**extra: str) -> Dict[str, str]:
    # The proxy reads HOS_* settings from the environment; tests pass flags.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOS_")}
    env["TZ"] = "UTC"
    env.setdefault("RUST_BACKTRACE", "1")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------


class Proc:
    """A subprocess with stdout/stderr in files; stopped by its pid."""

    def __init__(self, name: str, cmd: Sequence[str], cwd: Path, logdir: Path, env=None):
        self.name = name
        self.cmd = [str(c) for c in cmd]
        logdir.mkdir(parents=True, exist_ok=True)
        self.out_path = logdir / f"{name}.stdout"
        self.err_path = logdir / f"{name}.stderr"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        # Own session so that helpers it forks (gunicorn workers) can be
        # stopped together, by this process group's id, if the pid ignores TERM.
        self.popen = subprocess.Popen(
            self.cmd,
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=env or sub_env(),
            start_new_session=True,
        )
        self.pid = self.popen.pid
        LIVE_PROCS.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stderr(self) -> str:
        self._err.flush()
        return self.err_path.read_text(errors="replace")

    def stdout(self) -> str:
        self._out.flush()
        return self.out_path.read_text(errors="replace")

    def tail(self, n: int = 60) -> str:
        lines = self.stderr().splitlines()
        return "\n".join(lines[-n:])

    def wait_exit(self, timeout: float) -> Optional[int]:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> None:
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait_exit(timeout) is None:
                # Our own session (start_new_session): its group id is our pid.
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait_exit(5)
        else:
            # The leader is gone; reap helpers it may have left in its group.
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        if self in LIVE_PROCS:
            LIVE_PROCS.remove(self)
        self._out.close()
        self._err.close()


def require_proxy_bin() -> Path:
    if not PROXY_BIN.is_file() or not os.access(PROXY_BIN, os.X_OK):
        raise AssertionError(
            f"hos-proxy binary not found or not executable at {PROXY_BIN}; "
            "build it (cargo build) or set HOS_PROXY_BIN"
        )
    return PROXY_BIN


class Proxy:
    def __init__(self, proc: Proc, port: int):
        self.proc = proc
        self.port = port
        self.url = f"http://{HOST}:{port}"

    def post(self, path: str, body: Any = None, *, data: Optional[bytes] = None, timeout: float = 30, **kw):
        if data is None:
            data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        headers.update(kw.pop("headers", {}))
        return requests.post(self.url + path, data=data, headers=headers, timeout=timeout, **kw)

    def get(self, path: str, timeout: float = 10):
        return requests.get(self.url + path, timeout=timeout)

    def stop(self):
        self.proc.stop()


def wait_http_ok(proc: Proc, url: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise AssertionError(
                f"{what} exited with code {proc.popen.returncode} before {url} answered 200\n"
                f"command: {' '.join(proc.cmd)}\n--- stderr ---\n{proc.tail(80)}\n--- stdout ---\n{proc.stdout()[-4000:]}"
            )
        try:
            r = requests.get(url, timeout=2)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except requests.RequestException as e:
            last = repr(e)
        time.sleep(0.1)
    raise AssertionError(
        f"{what} did not answer 200 on {url} within {timeout}s (last: {last})\n"
        f"command: {' '.join(proc.cmd)}\n--- stderr ---\n{proc.tail(80)}"
    )


def start_proxy(args: Sequence[str], logdir: Path, name: str = "hos-proxy", cwd: Optional[Path] = None,
                ready_timeout: float = 30.0) -> Proxy:
    """Starts `hos-proxy serve ARGS --listen 127.0.0.1:PORT`; waits for /ready."""
    binary = require_proxy_bin()
    port = free_port()
    cmd = [binary, "serve", *args, "--listen", f"{HOST}:{port}"]
    proc = Proc(name, cmd, cwd or logdir, logdir)
    try:
        wait_http_ok(proc, f"http://{HOST}:{port}/ready", ready_timeout, "hos-proxy")
    except BaseException:
        proc.stop()
        raise
    return Proxy(proc, port)


def start_feast_serve(repo: Path, logdir: Path, name: str = "feast-serve", timeout: float = 90.0) -> Proxy:
    port = free_port()
    cmd = [FEAST_CLI, "serve", "-h", HOST, "-p", str(port), "--no-access-log"]
    proc = Proc(name, cmd, repo, logdir)
    try:
        wait_http_ok(proc, f"http://{HOST}:{port}/health", timeout, "feast serve")
    except BaseException:
        proc.stop()
        raise
    return Proxy(proc, port)


def run(cmd: Sequence[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], cwd=str(cwd), env=sub_env(), capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"command failed ({p.returncode}): {' '.join(map(str, cmd))}\n"
                             f"--- stdout ---\n{p.stdout[-4000:]}\n--- stderr ---\n{p.stderr[-8000:]}")
    return p


# --------------------------------------------------------------------------
# Feast repo
# --------------------------------------------------------------------------

FEATURE_STORE_YAML = """\
project: interop
registry: data/registry.db
provider: local
online_store:
  type: sqlite
  path: data/online.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""

# user_features: name -> dtype (proxy / FeatureView-YAML spelling)
USER_FEATURES = [
    ("f_int32", "int32"),
    ("f_int64", "int64"),
    ("f_float32", "float32"),
    ("f_float64", "float64"),
    ("f_string", "string"),
    ("f_bytes", "bytes"),
    ("f_bool", "bool"),
    ("f_ts", "unix_timestamp"),
    ("f_int64_list", "array<int64>"),
    ("f_string_list", "array<string>"),
    ("f_float64_list", "array<float64>"),
    ("f_int32_list", "array<int32>"),
    ("f_bool_list", "array<bool>"),
    ("f_float32_list", "array<float32>"),
    ("f_bytes_list", "array<bytes>"),
    ("f_ts_list", "array<unix_timestamp>"),
]
USER_FEATURE_NAMES = [n for n, _ in USER_FEATURES]
UM_FEATURES = ["spend", "visits"]
GLOBAL_FEATURES = ["total_users", "note"]

DUMMY_KEY_HEX = "01000000" "02000000" "0a000000" + "__dummy_id".encode().hex() + "02000000" "00000000"


def feature_refs(view: str, names: Iterable[str]) -> List[str]:
    return [f"{view}:{n}" for n in names]


def ts_utc(s: str):
    import pandas as pd

    return pd.Timestamp(s, tz="UTC")


def base_user_rows() -> List[Dict[str, Any]]:
    """Rows Feast writes into user_features (one write call per row, so
    pandas never widens a column with nulls into float)."""
    import numpy as np

    t = ts_utc
    return [
        # every dtype, ordinary values; sub-second event time (stored truncated)
        dict(user_id=1001, f_int32=-7, f_int64=9007199254740993, f_float32=np.float32(0.1), f_float64=0.1,
             f_string="héllo \"q\" \\ 😀", f_bytes=b"\x00\x01\xff", f_bool=True, f_ts=t("2023-01-02 03:04:05"),
             f_int64_list=[1, 2, 3], f_string_list=["a", "b"], f_float64_list=[1.5, -0.25],
             f_int32_list=[1, -2], f_bool_list=[True, False], f_float32_list=[0.5, 0.1],
             f_bytes_list=[b"\x01", b""], f_ts_list=[t("2023-01-02 03:04:05"), t("1970-01-01 00:00:01")],
             event_timestamp=t("2024-05-01 12:34:56.789123")),
        # a row with nulls (partly null: an all-null row is skipped by Feast)
        dict(user_id=1002, f_int32=5, f_int64=None, f_float32=None, f_float64=None, f_string=None, f_bytes=None,
             f_bool=None, f_ts=None, f_int64_list=None, f_string_list=[" "], f_float64_list=None,
             f_int32_list=None, f_bool_list=None, f_float32_list=None, f_bytes_list=None, f_ts_list=None,
             event_timestamp=t("2024-05-02 00:00:01")),
        # zero / empty / false values, empty lists
        dict(user_id=1003, f_int32=0, f_int64=-9223372036854775808, f_float32=np.float32(-0.0), f_float64=-0.0,
             f_string="", f_bytes=b"", f_bool=False, f_ts=t("1970-01-01 00:00:01"),
             f_int64_list=[], f_string_list=[], f_float64_list=[], f_int32_list=[], f_bool_list=[],
             f_float32_list=[], f_bytes_list=[], f_ts_list=[],
             event_timestamp=t("2023-12-31 23:59:59")),
        # extreme floats (non-finite values are sent as strings by feast serve)
        dict(user_id=1004, f_int32=2147483647, f_int64=9223372036854775807, f_float32=np.float32(3.4e38),
             f_float64=float("inf"), f_string="日本語", f_bytes=bytes(range(256)), f_bool=True,
             f_ts=t("2038-01-19 03:14:08"), f_int64_list=[9223372036854775807, -9223372036854775808],
             f_string_list=["x" * 300], f_float64_list=[1e20, -1e-07, 123456789.125, float("-inf"), float("nan")],
             f_int32_list=[-2147483648], f_bool_list=[False], f_float32_list=[1e-45, float("inf")],
             f_bytes_list=[b"\xff" * 40], f_ts_list=[t("2024-02-29 00:00:00")],
             event_timestamp=t("2024-06-30 23:59:59")),
    ]


def base_um_rows() -> List[Dict[str, Any]]:
    t = ts_utc
    return [
        dict(user_id=1001, merchant_id="m-1", spend=10.5, visits=3, event_timestamp=t("2024-05-01 10:00:00")),
        dict(user_id=1001, merchant_id="m-2", spend=20.0, visits=4, event_timestamp=t("2024-05-01 11:00:00")),
        dict(user_id=1002, merchant_id="m-1", spend=-1.25, visits=0, event_timestamp=t("2024-05-03 09:08:07")),
    ]


GLOBAL_TS = "2024-05-01 12:00:00"


def write_rows(fs, view: str, rows: Iterable[Dict[str, Any]]) -> None:
    import pandas as pd

    for row in rows:
        fs.write_to_online_store(view, pd.DataFrame([row]))


def make_base_repo(repo: Path, store_yaml: str = FEATURE_STORE_YAML, fill: bool = True) -> None:
    """Feast repo: template definitions, `feast apply`, rows written by Feast
    (the base rows, and global_stats materialized) when `fill`.
    `store_yaml` is the feature_store.yaml text (default: project interop on
    SQLite)."""
    import pandas as pd
    from datetime import datetime, timezone
    from feast import FeatureStore

    repo.mkdir(parents=True, exist_ok=True)
    (repo / "data").mkdir(exist_ok=True)
    (repo / "feature_store.yaml").write_text(store_yaml)
    shutil.copy(TEMPLATE / "features.py", repo / "features.py")
    # Batch sources. Only the entityless view is materialized from its file.
    empty_ts = pd.Series([], dtype="datetime64[ns, UTC]")
    pd.DataFrame({"user_id": pd.Series([], dtype="int64"), "event_timestamp": empty_ts}).to_parquet(
        repo / "data" / "users.parquet")
    pd.DataFrame({"user_id": pd.Series([], dtype="int64"), "merchant_id": pd.Series([], dtype="object"),
                  "spend": pd.Series([], dtype="float64"), "visits": pd.Series([], dtype="int32"),
                  "event_timestamp": empty_ts}).to_parquet(repo / "data" / "user_merchant.parquet")
    pd.DataFrame({"total_users": [42], "note": ["hi"], "event_timestamp": [ts_utc(GLOBAL_TS)]}).to_parquet(
        repo / "data" / "global.parquet")
    run([FEAST_CLI, "apply"], cwd=repo)
    if not fill:
        return
    fs = FeatureStore(repo_path=str(repo))
    write_rows(fs, "user_features", base_user_rows())
    write_rows(fs, "user_merchant", base_um_rows())
    # write_to_online_store stores entityless rows under the wrong key
    # (no join keys), so the entityless view is materialized.
    fs.materialize(start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
                   end_date=datetime(2024, 6, 1, tzinfo=timezone.utc), feature_views=["global_stats"])


def clone_repo(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def feature_store(repo: Path):
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo))


# --------------------------------------------------------------------------
# responses
# --------------------------------------------------------------------------


def sdk_json(fs, features, entities: Dict[str, list], full_feature_names: bool = False) -> Dict[str, Any]:
    """What `feast serve` would answer: the SDK response through Feast's
    own JSON conversion (feature_server_utils.convert_response_to_dict)."""
    from feast.feature_server_utils import convert_response_to_dict

    keys = list(entities)
    n = len(entities[keys[0]]) if keys else 0
    rows = [{k: entities[k][i] for k in keys} for i in range(n)]
    resp = fs.get_online_features(features=features, entity_rows=rows, full_feature_names=full_feature_names)
    return json.loads(json.dumps(convert_response_to_dict(resp.proto), allow_nan=False))


def columns(body: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    names = body["metadata"]["feature_names"]
    assert len(names) == len(body["results"]), f"{len(names)} names vs {len(body['results'])} results: {body}"
    assert len(set(names)) == len(names), f"duplicate feature names {names}"
    return dict(zip(names, body["results"]))


def diff_json(a: Any, b: Any, path: str = "$") -> Optional[str]:
    """First difference between two parsed JSON values; numbers compare by
    value (1 == 1.0), bools only equal bools."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None if (type(a) is type(b) and a == b) else f"{path}: {a!r} != {b!r}"
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
            return None
        return f"{path}: {a!r} != {b!r}"
    if type(a) is not type(b):
        return f"{path}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff_json(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    if isinstance(a, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            d = diff_json(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def assert_same_response(actual: Dict[str, Any], expected: Dict[str, Any], what: str = "",
                         keys=("values", "statuses", "event_timestamps")) -> None:
    """Same feature names (any order) and, per name, equal columns."""
    ca, ce = columns(actual), columns(expected)
    assert sorted(ca) == sorted(ce), f"{what}: feature names differ:\n actual   {actual['metadata']['feature_names']}\n expected {expected['metadata']['feature_names']}"
    for name in ce:
        for k in keys:
            d = diff_json(ca[name].get(k), ce[name].get(k), f"{name}.{k}")
            assert d is None, f"{what}: {d}\n actual   {ca[name]}\n expected {ce[name]}"
    extra = set(actual) - {"results", "metadata"}
    extra_e = set(expected) - {"results", "metadata"}
    assert extra == extra_e, f"{what}: top-level keys {sorted(actual)} vs {sorted(expected)}"
    d = diff_json({k: v for k, v in actual["metadata"].items() if k != "feature_names"},
                  {k: v for k, v in expected["metadata"].items() if k != "feature_names"}, "metadata")
    assert d is None, f"{what}: {d}"


def feast_error(resp: requests.Response) -> Dict[str, Any]:
    """Parses a Feast-shaped error body: a JSON string holding
    {"module","class","message"}."""
    try:
        outer = resp.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON (HTTP {resp.status_code}): {resp.text[:500]!r}")
    assert isinstance(outer, str), f"error body is not a JSON string (HTTP {resp.status_code}): {resp.text[:500]}"
    inner = json.loads(outer)
    assert isinstance(inner, dict) and {"module", "class", "message"} <= set(inner), \
        f"error body lacks module/class/message: {outer[:500]}"
    return inner


def decode_value(v: Any, dtype: str) -> Any:
    """A proxy JSON value decoded to what Feast's OnlineResponse.to_dict()
    returns for `dtype`."""
    from datetime import datetime, timezone

    if v is None:
        return None
    if dtype.startswith("array<"):
        inner = dtype[len("array<"):-1]
        return [decode_value(x, inner) for x in v]
    if dtype == "bytes":
        return base64.b64decode(v, validate=True)
    if dtype == "unix_timestamp":
        if v == -9223372036854775808:
            return None
        return datetime.fromtimestamp(v, tz=timezone.utc)
    if dtype in ("float32", "float64") and isinstance(v, str):
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[v]
    return v


def py_equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(py_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


# --------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------


def table_rows(db: Path, table: str, entity_keys: Optional[Iterable[bytes]] = None):
    """{(entity_key, feature_name): (value, event_ts, typeof(event_ts))}."""
    con = sqlite3.connect(str(db))
    try:
        rows = con.execute(
            f'SELECT entity_key, feature_name, value, event_ts, typeof(event_ts), typeof(value) FROM "{table}"'
        ).fetchall()
    finally:
        con.close()
    keys = set(entity_keys) if entity_keys is not None else None
    out = {}
    for ek, fname, value, ets, ets_type, vtype in rows:
        ek = bytes(ek)
        if keys is not None and ek not in keys:
            continue
        out[(ek, fname)] = (bytes(value) if value is not None else None, ets, ets_type, vtype)
    return out


def tables(db: Path) -> List[str]:
    con = sqlite3.connect(str(db))
    try:
        return sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    finally:
        con.close()


def entity_key_bytes(pairs: Dict[str, Any]) -> bytes:
    """Feast's v3 key bytes for {join_key: python value} (int -> INT64, str -> STRING)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    vals = []
    for v in pairs.values():
        vals.append(Value(int64_val=v) if isinstance(v, int) else Value(string_val=v))
    return serialize_entity_key(EntityKey(join_keys=list(pairs), entity_values=vals), 3)


def create_feast_table(con: sqlite3.Connection, table: str) -> None:
    """The table Feast's SqliteTable.update() creates."""
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {table} (entity_key BLOB, feature_name TEXT, value BLOB, value_text TEXT,
            vector_value BLOB, event_ts timestamp, created_ts timestamp, PRIMARY KEY(entity_key, feature_name))"""
    )
    con.execute(f"CREATE INDEX IF NOT EXISTS {table}_ek ON {table} (entity_key)")


def metric_value(text: str, name: str, labels: Dict[str, str]) -> float:
    """Value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, val = line.rpartition(" ")
        if head == name and not labels:
            return float(val)
        if head.startswith(name + "{") and head.endswith("}"):
            got = {}
            for part in head[len(name) + 1:-1].split(","):
                if "=" in part:
                    k, _, v = part.partition("=")
                    got[k.strip()] = v.strip().strip('"')
            if all(got.get(k) == v for k, v in labels.items()):
                return float(val)
    return 0.0


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection to the proxy (reopened after an error)."""

    def __init__(self, port: int, timeout: float = 30):
        self.port = port
        self.timeout = timeout
        self.conn: Optional[http.client.HTTPConnection] = None

    def post(self, path: str, body: Any) -> Tuple[int, bytes]:
        data = json.dumps(body).encode()
        if self.conn is not None and self._closed_by_server():
            # The proxy closes idle keep-alive connections
            # (--idle-timeout-seconds); like urllib3, check before reuse.
            self.close()
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        try:
            self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            out = resp.read()
            if resp.will_close:
                self.close()
            return resp.status, out
        except BaseException:
            self.close()
            raise

    def _closed_by_server(self) -> bool:
        sock = self.conn.sock if self.conn is not None else None
        if sock is None:
            return False
        readable, _, _ = select.select([sock], [], [], 0)
        # An idle connection is readable only when the peer closed it.
        return bool(readable)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None
