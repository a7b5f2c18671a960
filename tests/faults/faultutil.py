"""Helpers of the fault-drill and shutdown tests (tests/faults).

- the real servers that tests/run.sh started (Redis, the Bigtable emulator,
  Cassandra): found through the variables their up scripts export and their
  state dirs $HOS_TEST_STATE/<server>; stopped with their down scripts and
  restarted in place (same state dir, same port: *_FIXED_PORT) with their up
  scripts, so the rest of the suite still finds them;
- a paced read load over a keep-alive HTTP/1.1 connection per thread, with
  every request's timing and outcome recorded and labelled by phase;
- small HTTP and statistics helpers.

The interop helpers (tests/interop/hosutil.py, backendutil.py) are imported,
not copied (conftest puts tests/interop on sys.path).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest

import backendutil as B
import hosutil as H

SCRIPTS = H.ROOT / "tests" / "scripts"

# The cassandra driver's advice (protocol downgrade, no load-balancing policy) is noise here.
logging.getLogger("cassandra").setLevel(logging.ERROR)

# Lines the conftest prints at the end of the run ("fault drill figures").
REPORT: List[str] = []


def report(line: str) -> None:
    print(line, flush=True)
    REPORT.append(line)


# --------------------------------------------------------------------------
# the real servers, restarted in place
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    kind: str  # redis | bigtable | cassandra (also the state sub-directory)
    pid_file: str
    env_file: str
    env_port_key: str  # the port's key in env_file
    fixed_port_var: str  # the up script's variable for a restart in place


SERVERS = {
    "redis": Server("redis", "redis.pid", "redis.env", "REDIS_PORT", "REDIS_FIXED_PORT"),
    "bigtable": Server("bigtable", "cbtemulator.pid", "bigtable.env", "BIGTABLE_EMULATOR_PORT",
                       "BIGTABLE_FIXED_PORT"),
    "cassandra": Server("cassandra", "cassandra.pid", "cassandra.env", "CASSANDRA_PORT", "CASSANDRA_FIXED_PORT"),
}


def server_port(kind: str) -> int:
    """The port the suite's variables give for KIND (fails when unset)."""
    if kind == "redis":
        return B.redis_addr()[1]
    if kind == "bigtable":
        return int(B.bigtable_host().rsplit(":", 1)[1])
    if kind == "cassandra":
        return B.cassandra_addr()[1]
    raise ValueError(kind)


def state_dir(kind: str) -> Path:
    """$HOS_TEST_STATE/KIND, checked to be the state dir of the server the
    variables point at (its env file names the same port), so a stop can
    never hit another server."""
    root = os.environ.get("HOS_TEST_STATE")
    if not root:
        pytest.fail("HOS_TEST_STATE is not set: the fault drills stop and restart the servers that "
                    "tests/run.sh started under $HOS_TEST_STATE/<server> (see tests/faults/run.sh)", pytrace=False)
    srv = SERVERS[kind]
    d = Path(root) / kind
    port = server_port(kind)
    env = read_env_file(d / srv.env_file)
    if env.get(srv.env_port_key) != str(port):
        pytest.fail(f"{d / srv.env_file} does not describe the {kind} server the variables name (port {port}; "
                    f"file: {env or 'missing'}): is HOS_TEST_STATE the state dir of tests/run.sh?", pytrace=False)
    return d


def read_env_file(path: Path) -> Dict[str, str]:
    out = {}
    try:
        for line in path.read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep:
                out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def server_pid(kind: str, d: Path) -> Optional[int]:
    try:
        pid = int((d / SERVERS[kind].pid_file).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def _script_env(kind: str, port: int) -> Dict[str, str]:
    # Not hosutil.sub_env: the up scripts need HOS_CACHE (the Cassandra jars).
    env = dict(os.environ)
    env[SERVERS[kind].fixed_port_var] = str(port)
    if kind == "redis":
        password = B.redis_addr()[2]
        if password:
            env["REDIS_PASSWORD"] = password
    if kind == "cassandra" and B.cassandra_creds():
        env["CASSANDRA_AUTH"] = "password"
    return env


def _run_script(kind: str, what: str, d: Path, env: Dict[str, str], timeout: float) -> str:
    script = SCRIPTS / f"{kind}-{what}.sh"
    p = subprocess.run(["bash", str(script), str(d)], env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"{script.name} {d} failed ({p.returncode}):\n{p.stderr[-6000:]}")
    return p.stdout


def stop_server(kind: str) -> float:
    """Stops KIND with its down script; returns the seconds it took."""
    d = state_dir(kind)
    t0 = time.monotonic()
    _run_script(kind, "down", d, dict(os.environ), timeout=60)
    assert server_pid(kind, d) is None, f"{kind} still running after its down script"
    return time.monotonic() - t0


def start_server(kind: str, port: int) -> float:
    """Starts KIND again with its up script on the same state dir and PORT;
    returns the seconds it took (the script returns once the server answers)."""
    d = Path(os.environ["HOS_TEST_STATE"]) / kind
    t0 = time.monotonic()
    out = _run_script(kind, "up", d, _script_env(kind, port), timeout=240)
    took = time.monotonic() - t0
    # The last lines are the same exports as the first start's.
    exports = dict(ln[len("export "):].split("=", 1) for ln in out.splitlines() if ln.startswith("export "))
    for var in {"redis": ["REDIS_URL"], "bigtable": ["BIGTABLE_EMULATOR_HOST"],
                "cassandra": ["CASSANDRA_HOST", "CASSANDRA_PORT"]}[kind]:
        assert exports.get(var) == os.environ.get(var), \
            f"{kind} restarted with {var}={exports.get(var)} (the suite has {os.environ.get(var)})"
    return took


def server_running(kind: str) -> bool:
    return server_pid(kind, Path(os.environ["HOS_TEST_STATE"]) / kind) is not None


def ensure_server_up(kind: str, port: int) -> None:
    """Restarts KIND in place if it is not running (after a failed drill)."""
    if not server_running(kind):
        start_server(kind, port)


# --------------------------------------------------------------------------
# Cassandra sessions of our own (a server restart leaves a cached one stale)
# --------------------------------------------------------------------------


class CqlSession:
    """A fresh cassandra-driver session, closed on exit; connects with retries
    until `timeout` (the server may have just come back)."""

    def __init__(self, timeout: float = 60):
        self.timeout = timeout
        self.cluster = None
        self.session = None

    def __enter__(self):
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import Cluster

        host, port = B.cassandra_addr()
        creds = B.cassandra_creds()
        deadline = time.monotonic() + self.timeout
        last = None
        while time.monotonic() < deadline:
            cluster = Cluster([host], port=port, connect_timeout=10,
                              auth_provider=PlainTextAuthProvider(*creds) if creds else None)
            try:
                self.session = cluster.connect()
                self.session.default_timeout = 60
                self.cluster = cluster
                return self.session
            except Exception as e:  # NoHostAvailable while it starts
                last = e
                cluster.shutdown()
                time.sleep(1)
        raise AssertionError(f"cannot connect to Cassandra {host}:{port} within {self.timeout}s: {last!r}")

    def __exit__(self, *exc):
        if self.cluster is not None:
            self.cluster.shutdown()
        return False


def create_keyspace(ks: str) -> None:
    with CqlSession() as s:
        s.execute(f"CREATE KEYSPACE IF NOT EXISTS \"{ks}\" WITH replication = "
                  "{'class': 'SimpleStrategy', 'replication_factor': 1}")


def drop_keyspace(ks: str) -> None:
    try:
        with CqlSession(timeout=20) as s:
            s.execute(f'DROP KEYSPACE IF EXISTS "{ks}"')
    except Exception:
        pass


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


# One keep-alive HTTP/1.1 connection to the proxy: shared with the interop
# suite (hosutil.KeepAliveClient).
Client = H.KeepAliveClient


def error_message(raw: bytes) -> Optional[str]:
    """The message of a Feast-shaped error body (a JSON string holding
    {module, class, message}), or of a plain {"message"} object; None if neither."""
    try:
        outer = json.loads(raw)
        inner = json.loads(outer) if isinstance(outer, str) else outer
        m = inner.get("message") if isinstance(inner, dict) else None
        return m if isinstance(m, str) else None
    except (ValueError, TypeError):
        return None


# --------------------------------------------------------------------------
# paced load, recorded per request
# --------------------------------------------------------------------------


@dataclass
class Rec:
    kind: str
    t0: float  # monotonic start
    latency: float  # seconds
    status: Any  # HTTP status, or "timeout" / "error: ..." when no answer came
    verdict: Dict[str, str]  # per feature view: "ok" | "invalid" | "503" | "bad: why"
    detail: str = ""
    phase: str = ""


@dataclass
class Kind:
    """A request kind: its body maker and its checker (raw answer -> verdict per view),
    and the endpoint it posts to."""

    name: str
    make: Callable[[random.Random], Tuple[Dict[str, Any], Any]]  # -> (body, context for check)
    check: Callable[[int, bytes, Any], Tuple[Dict[str, str], str]]
    path: str = "/get-online-features"


class Load:
    """One thread per request kind, each at `rate` requests/s (a missed slot is
    skipped, so a slow answer does not cause a burst), until stop()."""

    def __init__(self, port: int, kinds: Sequence[Kind], rate: float, client_timeout: float, seed: int = 7):
        self.port = port
        self.kinds = list(kinds)
        self.interval = 1.0 / rate
        self.client_timeout = client_timeout
        self.records: List[Rec] = []
        self.marks: List[Tuple[str, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._seed = seed

    def mark(self, phase: str) -> float:
        t = time.monotonic()
        with self._lock:
            self.marks.append((phase, t))
        return t

    def phase_at(self, t: float) -> str:
        name = ""
        for p, tm in self.marks:
            if tm <= t:
                name = p
        return name

    def start(self) -> None:
        for i, k in enumerate(self.kinds):
            th = threading.Thread(target=self._run, args=(k, random.Random(self._seed + i)), daemon=True,
                                  name=f"load-{k.name}")
            th.start()
            self._threads.append(th)

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(self.client_timeout + 5)
        self._threads.clear()

    def _run(self, k: Kind, rng: random.Random) -> None:
        client = Client(self.port, self.client_timeout)
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now < next_t:
                    time.sleep(next_t - now)
                next_t += self.interval
                if time.monotonic() > next_t:  # behind: skip the missed slots
                    next_t = time.monotonic() + self.interval
                body, ctx = k.make(rng)
                t0 = time.monotonic()
                try:
                    status, raw = client.post(k.path, body)
                    lat = time.monotonic() - t0
                    try:
                        verdict, detail = k.check(status, raw, ctx)
                    except Exception as e:  # a checker bug must show, not kill the thread
                        verdict, detail = {"?": f"bad: checker raised {e!r}"}, raw[:300].decode(errors="replace")
                except socket.timeout:
                    lat, status, verdict, detail = time.monotonic() - t0, "timeout", {}, ""
                except Exception as e:
                    lat, status, verdict, detail = time.monotonic() - t0, f"error: {e!r}", {}, ""
                rec = Rec(k.name, t0, lat, status, verdict, detail)
                with self._lock:
                    self.records.append(rec)
        finally:
            client.close()

    def by_phase(self) -> Dict[Tuple[str, str], List[Rec]]:
        """{(phase, kind): records}: a request belongs to the phase it started
        and ended in; one that spans a mark (in flight when a server was
        stopped, say) belongs to "A>B", judged by no phase's rules."""
        out: Dict[Tuple[str, str], List[Rec]] = {}
        with self._lock:
            recs = list(self.records)
        for r in recs:
            p0, p1 = self.phase_at(r.t0), self.phase_at(r.t0 + r.latency)
            r.phase = p0 if p0 == p1 else f"{p0}>{p1}"
            out.setdefault((r.phase, r.kind), []).append(r)
        return out


def dump_records(load: "Load", name: str) -> Optional[Path]:
    """With FAULTS_DUMP_DIR set, writes every request of a drill there as JSON
    lines (phase, kind, start relative to the first mark, latency, status,
    verdict) for a closer look; returns the file."""
    d = os.environ.get("FAULTS_DUMP_DIR")
    if not d:
        return None
    Path(d).mkdir(parents=True, exist_ok=True)
    path = Path(d) / f"{name}.jsonl"
    t_first = load.marks[0][1] if load.marks else 0.0
    with open(path, "w") as f:
        for p, t in load.marks:
            f.write(json.dumps({"mark": p, "t": round(t - t_first, 4)}) + "\n")
        for r in sorted(load.records, key=lambda r: r.t0):
            f.write(json.dumps({"phase": r.phase, "kind": r.kind, "t": round(r.t0 - t_first, 4),
                                "latency_ms": round(r.latency * 1000, 3), "status": r.status,
                                "verdict": r.verdict}) + "\n")
    return path


# --------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(1, math.ceil(q / 100.0 * len(s)))
    return s[k - 1]


def ms(x: float) -> str:
    return "n/a" if x != x else f"{x * 1000:.2f} ms"


def summarize(recs: Sequence[Rec]) -> str:
    lats = [r.latency for r in recs]
    return (f"n={len(recs)} p50={ms(percentile(lats, 50))} p99={ms(percentile(lats, 99))} "
            f"max={ms(max(lats) if lats else float('nan'))}")


def first_bad(recs: Sequence[Rec], ok: Callable[[Rec], bool], limit: int = 2) -> str:
    bad = [r for r in recs if not ok(r)]
    if not bad:
        return ""
    lines = [f"{len(bad)} of {len(recs)} requests failed the check; first ones:"]
    for r in bad[:limit]:
        verdict = {k: (v if len(v) <= 240 else v[:240] + "...") for k, v in r.verdict.items()}
        lines.append(f"  status={r.status} latency={ms(r.latency)} verdict={verdict} body={r.detail[:300]}")
    return "\n".join(lines)


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Calls pred until it returns a truthy value or `timeout` passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
