"""[I] items 3 and 5: bounded resources per request and per connection, and
authorization before disclosure. A real hos-proxy serves a routing table of
two SQLite backends (two teams); each test abuses one bound as an anonymous
client or a client with a token, and asserts the refusal (status, message,
Retry-After) and the absence of harm (RSS, other clients' latency, the
process alive)."""

from __future__ import annotations

import concurrent.futures as cf
import gc
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

import hosutil as H
import loadutil
import secutil

READ = "/get-online-features"
PROJECT = "sec"
WIDE = 50  # features per view


def routing_table(data_dir: Path) -> dict:
    def view(name: str, team: str) -> dict:
        return {
            "name": name,
            "entities": [{"name": "user", "join_keys": [{"name": "user_id", "dtype": "int64"}]}],
            "features": [{"name": f"f{i}", "dtype": "float64"} for i in range(WIDE)],
            "online": True,
            "tags": {"team": team},
            "backend": team,
        }

    return {
        "schema_version": 1,
        "project": PROJECT,
        "entity_key_serialization_version": 3,
        "routing_tag": "team",
        "backends": [
            {"name": "team_a", "type": "sqlite", "conf": {"path": "team_a.db"}},
            {"name": "team_b", "type": "sqlite", "conf": {"path": "team_b.db"}},
        ],
        "feature_views": [view("wide_a", "team_a"), view("wide_b", "team_b")],
        "feature_services": [{"name": "everything", "projections": [
            {"feature_view": "wide_a"}, {"feature_view": "wide_b"}]}],
    }


AUTH = """
principals:
  - name: team-a
    token: tok-a
    teams: [team_a]
    access: [read, write]
  - name: team-b
    token: tok-b
    teams: [team_b]
    access: [read, write]
  - name: elsewhere
    token: tok-other
    projects: [other_project]
    access: [read, write]
"""


def start(tmp_path: Path, *extra: str, name: str = "hos-proxy-sec", auth: bool = False, rows: int = 200):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    table = tmp_path / "routing.yaml"
    table.write_text(json.dumps(routing_table(data)))
    args = ["--routing-table", str(table), "--base-dir", str(data), "--apply", *extra]
    if auth:
        (tmp_path / "auth.yaml").write_text(AUTH)
        args += ["--auth-config", str(tmp_path / "auth.yaml")]
    proxy = H.start_proxy(args, tmp_path / "logs", name=name)
    try:
        # Rows 0..rows-1 in both views, written through the proxy.
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for view, token in (("wide_a", "tok-a"), ("wide_b", "tok-b")):
            df = {"user_id": list(range(rows)), "event_timestamp": [now] * rows}
            for i in range(WIDE):
                df[f"f{i}"] = [float(r) + i / 100 for r in range(rows)]
            headers = {"Authorization": f"Bearer {token}"} if auth else {}
            r = proxy.post("/write-to-online-store", {"feature_view_name": view, "df": df}, headers=headers)
            assert r.status_code == 200, r.text
    except BaseException:
        # The caller's try/finally is not reached yet: stop it here.
        proxy.stop()
        raise
    return proxy


def read_body(view: str, rows: int, features: int = WIDE) -> dict:
    return {"features": [f"{view}:f{i}" for i in range(features)],
            "entities": {"user_id": list(range(rows))}}


def message(r: requests.Response) -> str:
    return H.feast_error(r)["message"]


def rss_kib(proxy) -> int:
    return secutil.proc_status_kib(proxy.proc.pid, "VmRSS")


def hwm_kib(proxy) -> int:
    return secutil.proc_status_kib(proxy.proc.pid, "VmHWM")


def raw_post(port: int, body_len: int, chunked: bool) -> tuple[int, str]:
    """Streams a `body_len`-byte body (declared, or chunked) until the proxy
    answers or closes; returns (status, response head+body text)."""
    s = socket.create_connection((H.HOST, port), timeout=30)
    try:
        head = f"POST {READ} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {body_len}\r\n\r\n"
        s.sendall(head.encode())
        chunk = b" " * (256 * 1024)
        sent = 0
        s.settimeout(0.0)
        got = b""
        while sent < body_len:
            piece = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") if chunked else chunk
            try:
                s.settimeout(5)
                s.sendall(piece)
            except OSError:
                break
            sent += len(chunk)
            s.settimeout(0.0)
            try:
                got += s.recv(65536)
                if got:
                    break
            except (BlockingIOError, OSError):
                pass
        s.settimeout(10)
        try:
            while b"\r\n\r\n" not in got:
                d = s.recv(65536)
                if not d:
                    break
                got += d
        except OSError:
            pass
        text = got.decode(errors="replace")
        status = int(text.split()[1]) if text.startswith("HTTP/1.1") else 0
        return status, text
    finally:
        s.close()


def test_big_bodies_are_refused_while_streaming_with_bounded_rss(tmp_path):
    proxy = start(tmp_path)
    try:
        before = rss_kib(proxy)
        size = 16 * 1024 * 1024
        for chunked in (False, True):
            with cf.ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(lambda _: raw_post(proxy.port, size, chunked), range(6)))
            for status, text in answers:
                assert status == 413, f"chunked={chunked}: {text[:300]!r}"
                assert "--max-body-bytes" in text, text[:300]
        grown = (rss_kib(proxy) - before) / 1024
        secutil.report(f"6 concurrent 16 MiB bodies (declared, then chunked): all 413; RSS growth {grown:.1f} MiB "
                       f"(VmHWM {hwm_kib(proxy) / 1024:.1f} MiB)")
        assert grown < 50, f"RSS grew {grown:.1f} MiB"
        assert proxy.get("/health").status_code == 200
    finally:
        proxy.stop()


def test_cell_cap_names_the_limit_and_no_request_exceeds_200_mib(tmp_path):
    proxy = start(tmp_path, rows=4000)
    try:
        # 10,000 rows x 1,000 features: refused before any lookup.
        r = proxy.post(READ, {"features": [f"wide_a:f{i % WIDE}_{i}" for i in range(1000)],
                              "entities": {"user_id": list(range(10_000))}})
        assert r.status_code == 413, r.text[:300]
        assert "--max-cells" in message(r) and "10000000 cells" in message(r), message(r)
        # A feature service counts as all the features it selects: 3,000
        # rows x its 100 features is over the 200,000-cell default.
        r = proxy.post(READ, {"feature_service": "everything", "entities": {"user_id": list(range(3000))}})
        assert r.status_code == 413 and "3000 entity rows x 100 features" in message(r), r.text[:300]
        r = proxy.post(READ, {"feature_service": "everything", "entities": {"user_id": list(range(1000))},
                              "full_feature_names": True})
        assert r.status_code == 200, r.text[:300]
        # Writes are bounded the same way.
        df = {"user_id": list(range(5000)), "event_timestamp": ["2026-01-01T00:00:00Z"] * 5000}
        for i in range(WIDE):
            df[f"f{i}"] = [0.5] * 5000
        r = proxy.post("/write-to-online-store", {"feature_view_name": "wide_a", "df": df})
        assert r.status_code == 413 and "--max-cells" in message(r), r.text[:300]
        # The largest requests the defaults admit: 4,000 rows x 50 features
        # (200,000 cells) read, and a body just under the 4 MiB limit.
        r = proxy.post(READ, read_body("wide_a", 4000))
        assert r.status_code == 200, r.text[:300]
        cols = H.columns(r.json())
        assert cols["f49"]["values"][3999] == pytest.approx(3999.49)
        pad = "x" * (4 * 1024 * 1024 - 200)
        r = proxy.post(READ, {"features": ["wide_a:f0"], "entities": {"user_id": [1]}, "pad": pad})
        assert r.status_code == 200, r.text[:300]
        hwm = hwm_kib(proxy) / 1024
        secutil.report(f"largest admitted requests (200,000-cell read, 4 MiB body): peak RSS (VmHWM) {hwm:.1f} MiB")
        assert hwm < 200, f"VmHWM {hwm:.1f} MiB"
    finally:
        proxy.stop()


def test_slowloris_does_not_block_fresh_connections_and_idle_ones_close(tmp_path):
    help_text = subprocess.run([str(H.require_proxy_bin()), "serve", "--help"], capture_output=True,
                               text=True, check=True).stdout
    idle_default = float(help_text.split("--idle-timeout-seconds")[1].split("[default: ")[1].split("]")[0])
    assert idle_default <= 30, f"default idle timeout {idle_default} s"
    proxy = start(tmp_path, "--header-read-timeout-ms", "3000", "--idle-timeout-seconds", "2")
    held = []
    try:
        # 500 connections that trickle a request head and never finish it.
        for i in range(500):
            s = socket.create_connection((H.HOST, proxy.port), timeout=5)
            s.sendall(b"POST /get-online-features HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
        stop = threading.Event()

        def drip():
            while not stop.is_set():
                for s in held:
                    try:
                        s.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        pass
                stop.wait(0.5)

        t = threading.Thread(target=drip, daemon=True)
        t.start()
        lat = []
        for _ in range(100):
            t0 = time.monotonic()
            r = requests.get(proxy.url + "/health", timeout=5, headers={"Connection": "close"})
            lat.append((time.monotonic() - t0) * 1000)
            assert r.status_code == 200
        lat.sort()
        p99 = lat[98]
        # The trickling heads are cut at the header-read bound (3 s).
        t0 = time.monotonic()
        deadline = t0 + 10
        closed = 0
        while time.monotonic() < deadline and closed < len(held):
            closed = 0
            for s in held:
                s.settimeout(0.0)
                try:
                    if s.recv(1) == b"":
                        closed += 1
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
            time.sleep(0.2)
        stop.set()
        secutil.report(f"500 slowloris connections: /health on fresh connections p99 {p99:.1f} ms; "
                       f"{closed} of 500 cut by the 3 s header-read bound")
        assert p99 < 100, f"/health p99 {p99:.1f} ms with 500 slowloris connections"
        assert closed == len(held), f"only {closed} of {len(held)} slow connections were closed"
        # An idle keep-alive connection is closed at --idle-timeout-seconds.
        s = socket.create_connection((H.HOST, proxy.port), timeout=10)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        head = read_response(s)
        assert head.startswith(b"HTTP/1.1 200"), head
        t0 = time.monotonic()
        assert s.recv(100) == b""
        idle = time.monotonic() - t0
        secutil.report(f"idle keep-alive connection closed after {idle:.2f} s (--idle-timeout-seconds 2)")
        assert 1.9 <= idle <= 3.5, idle
        assert proxy.proc.alive()
    finally:
        for s in held:
            s.close()
        proxy.stop()


def read_response(s):
    """Reads one whole HTTP/1.1 response (headers and Content-Length body)."""
    got = b""
    while b"\r\n\r\n" not in got:
        d = s.recv(4096)
        assert d, f"connection closed mid-response: {got!r}"
        got += d
    head, _, body = got.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        d = s.recv(4096)
        assert d, "connection closed mid-body"
        body += d
    return got


def test_max_connections_closes_extra_connections_at_accept(tmp_path):
    admin = H.free_port()
    proxy = start(tmp_path, "--max-connections", "20", "--admin-listen", f"{H.HOST}:{admin}")
    held = []
    try:
        # Keep-alive connections the setup's client left open close first
        # (only this admin request's own connection stays open).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            gc.collect()
            m = requests.get(f"http://{H.HOST}:{admin}/metrics", timeout=5).text
            if H.metric_value(m, "hos_proxy_open_connections", {}) <= 1:
                break
            time.sleep(0.1)
        for i in range(20):
            s = socket.create_connection((H.HOST, proxy.port), timeout=5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s).startswith(b"HTTP/1.1 200"), i
            held.append(s)
        extra = socket.create_connection((H.HOST, proxy.port), timeout=5)
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            got = extra.recv(100)
        except ConnectionResetError:
            got = b""
        assert got == b"", "a 21st connection was served"
        extra.close()
        m = requests.get(f"http://{H.HOST}:{admin}/metrics", timeout=5).text
        assert H.metric_value(m, "hos_proxy_connections_refused_total", {}) >= 1
        # The 20 held ones, and this admin request's own connection.
        assert H.metric_value(m, "hos_proxy_open_connections", {}) == 21
        for s in held:
            s.close()
        held = []
        time.sleep(0.3)
        assert proxy.get("/health").status_code == 200
    finally:
        for s in held:
            s.close()
        proxy.stop()


def capacity(proxy, body: bytes, workers: int, token=None) -> float:
    # As many workers as the proxy admits at once.
    r = loadutil.run(proxy.port, READ, body, workers=workers, seconds=3, token=token)
    assert r.errors == 0 and r.ok() > 0, r.statuses
    return r.ok() / 3


# Latency bounds on a 2-core machine shared with the load generator (and,
# in CI, with other suites' leftovers) are noisy: a test whose only failure
# is its p99 or admission bound measures again, up to three times.
P99_TRIES = 3


def test_overload_sheds_with_503_and_keeps_admitted_latency(tmp_path):
    # One request in flight: on this 2-core machine the load generator and
    # the shedding need the other core, and admitted requests must not
    # queue behind each other.
    proxy = start(tmp_path, "--max-in-flight", "1", "--max-in-flight-per-principal", "1", rows=200)
    try:
        body = json.dumps(read_body("wide_a", 20)).encode()
        for attempt in range(P99_TRIES):
            cap = capacity(proxy, body, 1)
            calm = loadutil.run(proxy.port, READ, body, workers=4, seconds=6, rate=cap / 4)
            rss0 = rss_kib(proxy)
            flood = loadutil.run(proxy.port, READ, body, workers=16, seconds=6, rate=cap * 4)
            grown = (rss_kib(proxy) - rss0) / 1024
            shed = flood.statuses.get(503, 0) + flood.statuses.get(429, 0)
            secutil.report(
                f"overload (try {attempt + 1}): capacity {cap:.0f} rps (20x50 reads, --max-in-flight 1); "
                f"unloaded p99 {calm.p(0.99):.1f} ms; at 4x ({cap * 4:.0f} rps offered) {flood.ok()} admitted, "
                f"p99 {flood.p(0.99):.1f} ms, {shed} shed ({flood.statuses}), RSS growth {grown:.1f} MiB")
            assert flood.statuses.get(503, 0) > 0, flood.statuses
            assert flood.retry_after.get(503, 0) == flood.statuses.get(503, 0), "503 without Retry-After"
            assert flood.errors == 0, f"{flood.errors} connection errors"
            assert set(flood.statuses) <= {200, 503, 429}, flood.statuses
            assert grown < 50
            if flood.p(0.99) <= 2 * calm.p(0.99):
                break
        assert flood.p(0.99) <= 2 * calm.p(0.99), (flood.p(0.99), calm.p(0.99))
    finally:
        proxy.stop()


def flood_process(port: int, body: bytes, tmp_path: Path, rate: float, seconds: float, token: str):
    """Starts a flood in its own Python process, niced: on this 2-core
    machine the flooding client stands for another machine and must not
    take the measuring client's CPU. Returns (Popen, output file)."""
    body_file = tmp_path / "flood-body.json"
    body_file.write_bytes(body)
    out = tmp_path / "flood-out.json"
    here = Path(__file__).resolve().parent
    proc = subprocess.Popen([sys.executable, str(here / "loadutil.py"), str(port), READ, str(body_file), "16",
                             str(seconds), str(rate), token], stdout=open(out, "w"), cwd=str(here),
                            preexec_fn=lambda: os.nice(10))
    return proc, out


def test_one_teams_flood_does_not_starve_another(tmp_path):
    # Each team may hold one of the two slots.
    proxy = start(tmp_path, "--max-in-flight", "2", "--max-in-flight-per-principal", "1", auth=True)
    try:
        body_a = json.dumps(read_body("wide_a", 20)).encode()
        body_b = json.dumps(read_body("wide_b", 20)).encode()
        for attempt in range(P99_TRIES):
            cap = capacity(proxy, body_b, 1, token="tok-b")
            # Team B's own load is light (it rarely overlaps itself).
            alone = loadutil.run(proxy.port, READ, body_b, workers=2, seconds=8, rate=cap / 6, token="tok-b")
            flood, out = flood_process(proxy.port, body_a, tmp_path, cap * 4, 11, "tok-a")
            time.sleep(1.5)
            during = loadutil.run(proxy.port, READ, body_b, workers=2, seconds=8, rate=cap / 6, token="tok-b")
            assert flood.wait(60) == 0
            a = json.loads(out.read_text())
            a_429 = a["statuses"].get("429", 0)
            admitted_b = during.ok() / max(1, sum(during.statuses.values()))
            secutil.report(
                f"team flood (try {attempt + 1}): team B p99 alone {alone.p(0.99):.1f} ms, while team A floods "
                f"at 4x capacity ({cap * 4:.0f} rps) {during.p(0.99):.1f} ms, B admitted {admitted_b:.0%} "
                f"({during.statuses}); team A {a['statuses'].get('200', 0)} admitted, {a_429} got 429")
            assert a_429 > 0, a["statuses"]
            assert a["retry_after"].get("429", 0) == a_429
            # Admission and latency are measured on a shared 2-core machine:
            # a try disturbed by other work is repeated; starvation fails
            # every try.
            if admitted_b >= 0.9 and during.p(0.99) <= 2 * alone.p(0.99):
                break
        assert admitted_b >= 0.9, f"team B was starved: {during.statuses}"
        assert during.p(0.99) <= 2 * alone.p(0.99), (during.p(0.99), alone.p(0.99))
    finally:
        proxy.stop()


def test_authorization_before_disclosure_and_admin_surfaces(tmp_path):
    admin = H.free_port()
    proxy = start(tmp_path, "--admin-listen", f"{H.HOST}:{admin}", "--auth-failures-per-minute", "5", auth=True)
    try:
        other = {"Authorization": "Bearer tok-other"}
        existing = proxy.post(READ, read_body("wide_a", 1, 1), headers=other)
        missing = proxy.post(READ, {"features": ["no_such_view:f0"], "entities": {"user_id": [1]}}, headers=other)
        service = proxy.post(READ, {"feature_service": "no_such_service", "entities": {"user_id": [1]}},
                             headers=other)
        write = proxy.post("/write-to-online-store", {"feature_view_name": "no_such_view", "df": {}},
                           headers=other)
        for r in (existing, missing, service, write):
            assert r.status_code == 403, r.text[:300]
        assert message(existing) == message(missing) == message(service), (
            message(existing), message(missing), message(service))
        assert "no_such" not in message(missing) and "wide_a" not in message(existing)
        # Team A may read its own view, not team B's.
        r = proxy.post(READ, read_body("wide_b", 1, 1), headers={"Authorization": "Bearer tok-a"})
        assert r.status_code == 403 and "wide_b" in message(r)
        # The client listener says only whether it is ready; /metrics needs a token.
        # (and the routes' digest, which names no backend: the operator reads
        # which routing each replica serves from it).
        brief = proxy.get("/ready").json()
        assert set(brief) == {"ready", "routing_digest"} and brief["ready"] is True, brief
        assert re.fullmatch(r"[0-9a-f]{16}", brief["routing_digest"]), brief
        assert proxy.get("/metrics").status_code == 401
        assert requests.get(proxy.url + "/metrics", headers={"Authorization": "Bearer tok-a"},
                            timeout=5).status_code == 200
        detail = requests.get(f"http://{H.HOST}:{admin}/ready", timeout=5).json()
        assert set(detail["backends"]) == {"team_a", "team_b"}, detail
        assert requests.get(f"http://{H.HOST}:{admin}/metrics", timeout=5).status_code == 200
        # Failed authentications are bounded per client: 5 a minute (the
        # tokenless /metrics above was the first), then 429 without the token
        # being checked (a good token included).
        for i in range(4):
            r = proxy.post(READ, read_body("wide_a", 1, 1), headers={"Authorization": f"Bearer guess-{i}"})
            assert r.status_code == 401, r.text[:200]
        r = proxy.post(READ, read_body("wide_a", 1, 1), headers={"Authorization": "Bearer guess-6"})
        assert r.status_code == 429 and r.headers.get("Retry-After") == "1", r.text[:200]
        assert "--auth-failures-per-minute" in message(r)
        r = proxy.post(READ, read_body("wide_a", 1, 1), headers={"Authorization": "Bearer tok-a"})
        assert r.status_code == 429
        m = requests.get(f"http://{H.HOST}:{admin}/metrics", timeout=5).text
        assert H.metric_value(m, "hos_proxy_auth_failures_total", {"status": "429"}) >= 2
    finally:
        proxy.stop()


def test_grpc_gets_the_same_limits(tmp_path):
    import grpc
    from feast.protos.feast.serving import ServingService_pb2 as S
    from feast.protos.feast.serving import ServingService_pb2_grpc as G
    from feast.protos.feast.types import Value_pb2 as V

    gport = H.free_port()
    proxy = start(tmp_path, "--grpc-listen", f"{H.HOST}:{gport}", "--max-cells", "1000",
                  "--max-body-bytes", "65536", "--request-timeout-ms", "5000", rows=20)
    try:
        chan = grpc.insecure_channel(f"{H.HOST}:{gport}")
        stub = G.ServingServiceStub(chan)

        def req(rows: int, features: int, pad: int = 0):
            ids = V.RepeatedValue(val=[V.Value(int64_val=i) for i in range(rows)])
            r = S.GetOnlineFeaturesRequest(features=S.FeatureList(val=[f"wide_a:f{i}" for i in range(features)]))
            r.entities["user_id"].CopyFrom(ids)
            if pad:
                r.request_context["pad"].CopyFrom(V.RepeatedValue(val=[V.Value(string_val="x" * pad)]))
            return r

        resp = stub.GetOnlineFeatures(req(10, 50), timeout=10)
        assert resp.results[1].values[3].double_val == pytest.approx(3.0)
        with pytest.raises(grpc.RpcError) as e:
            stub.GetOnlineFeatures(req(100, 50), timeout=10)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-cells" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            stub.GetOnlineFeatures(req(1, 1, pad=200_000), timeout=10)
        # tonic's own refusal of an oversized message (before decoding it).
        assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE and "65536" in e.value.details(), e.value
        assert proxy.proc.alive()
    finally:
        proxy.stop()
