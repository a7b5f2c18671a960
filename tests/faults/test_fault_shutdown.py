"""Shutdown durability: SIGTERM under write load loses no acknowledged write.

A proxy (`--shutdown-grace-seconds 5`) on one store (SQLite; Redis) takes
writes of unique entities from four threads (/write-to-online-store, ten
rows per request, each thread on its own keep-alive connection). Mid-load,
a large write (tens of thousands of rows, sized so that it takes at least
0.3 s) is sent on a fresh connection, and while the proxy is still working
on it, SIGTERM goes to the proxy's pid. Then:

- the proxy exits with code 0 within its grace period (plus 1 s);
- the large in-flight write completes: HTTP 200, answered after SIGTERM;
- nothing hangs: every request of the writers gets an answer or a
  connection error (no client timeout), every answer is a 2xx, every write
  sent more than 50 ms before SIGTERM is answered (a write sent just before
  it may meet a connection the proxy closes as idle: not acknowledged, so
  not counted), and fresh connections opened after SIGTERM are refused or
  answered;
- a new proxy on the same store reads back every acknowledged write (every
  row of every 2xx answer) with its written values; the count is printed.
"""

import json
import os
import signal
import socket
import threading
import time

import pytest

import backendutil as B
import faultutil as F
import hosutil as H

GRACE = 5.0
WRITERS = 4
ROWS = 10
LOAD_BEFORE = 2.0  # seconds of write load before SIGTERM
CLIENT_TIMEOUT = GRACE + 5  # an answer later than this is a hang
BIG_MIN_SECONDS = 0.3
EARLY = 0.05  # a write sent this long before SIGTERM has reached the proxy
BIG_MAX_ROWS = 200_000
TS = "2024-05-01T00:00:00Z"
FEATS = [("val", "string"), ("n", "int64")]
USER = [("user", "user_id", "int64")]
VIEW = "w_view"

SQLITE_STORE = """\
project: {project}
provider: local
online_store:
  type: sqlite
  path: data/online.db
entity_key_serialization_version: 3
"""

REDIS_STORE = """\
project: {project}
provider: local
online_store:
  type: redis
  connection_string: "{redis}"
entity_key_serialization_version: 3
"""


def write_body(ids):
    return {"feature_view_name": VIEW, "df": {"user_id": list(ids), "val": [f"w{u}" for u in ids],
                                              "n": [u * 7 for u in ids], "event_timestamp": [TS] * len(ids)}}


def raw_request(port, path, body):
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {H.HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
    return head + data


def read_status(sock):
    """Reads a whole HTTP/1.1 answer (Connection: close) and returns its status code."""
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    line = buf.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise AssertionError(f"not an HTTP answer: {buf[:200]!r}")
    return int(parts[1])


class Writer(threading.Thread):
    def __init__(self, i, port, stop):
        super().__init__(daemon=True, name=f"writer-{i}")
        self.i = i
        self.port = port
        self.stop_ev = stop
        self.acked = []  # ids of 2xx answers
        self.log = []  # (t0, t1, outcome)

    def run(self):
        client = F.Client(self.port, CLIENT_TIMEOUT)
        seq = 0
        try:
            while not self.stop_ev.is_set():
                ids = [(self.i + 1) * 10_000_000 + seq * ROWS + j for j in range(ROWS)]
                seq += 1
                t0 = time.monotonic()
                try:
                    status, raw = client.post("/write-to-online-store", write_body(ids))
                    outcome = status
                    if 200 <= status < 300:
                        self.acked.extend(ids)
                    else:
                        outcome = f"{status} {raw[:200]!r}"
                except socket.timeout:
                    outcome = "timeout"
                except OSError as e:  # refused, reset, closed: not acknowledged
                    outcome = f"error: {type(e).__name__}"
                except Exception as e:  # http.client.RemoteDisconnected and friends
                    outcome = f"error: {type(e).__name__}"
                self.log.append((t0, time.monotonic(), outcome))
                if not isinstance(outcome, int):
                    time.sleep(0.01)
        finally:
            client.close()


def make_repo(d, kind, project):
    d.mkdir(parents=True)
    (d / "data").mkdir()
    store = SQLITE_STORE if kind == "sqlite" else REDIS_STORE
    (d / "feature_store.yaml").write_text(store.format(project=project, redis=B.redis_connection_string()
                                                       if kind == "redis" else ""))
    (d / "views").mkdir()
    B.write_yaml_view(d / "views" / f"{VIEW}.yaml", VIEW, kind, USER, FEATS)
    return ["--repo", str(d), "--feature-views", str(d / "views")]


def sized_big_write(proxy, first_id):
    """Rows for a write that takes at least BIG_MIN_SECONDS (measured with a
    write of that size, which is acknowledged and checked like the others)."""
    client = F.Client(proxy.port, 120)
    rows = 20_000
    acked = []
    try:
        while True:
            ids = list(range(first_id, first_id + rows))
            first_id += rows
            t0 = time.monotonic()
            status, raw = client.post("/write-to-online-store", write_body(ids))
            took = time.monotonic() - t0
            assert status == 200, f"a {rows}-row write: HTTP {status} {raw[:300]!r}"
            acked.extend(ids)
            if took >= BIG_MIN_SECONDS or rows >= BIG_MAX_ROWS:
                return rows, took, acked, first_id
            rows = min(BIG_MAX_ROWS, rows * 2)
    finally:
        client.close()


def probe_new_connection(port):
    """A fresh connection after SIGTERM: refused, closed, or answered; never silent."""
    try:
        s = socket.create_connection((H.HOST, port), timeout=3)
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout (connect)"
    try:
        s.settimeout(3)
        s.sendall(f"GET /health HTTP/1.1\r\nHost: {H.HOST}:{port}\r\nConnection: close\r\n\r\n".encode())
        data = s.recv(4096)
        if not data:
            return "closed"
        return "answered " + data.split(b"\r\n", 1)[0].decode(errors="replace")
    except socket.timeout:
        return "timeout"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    finally:
        s.close()


def read_back(proxy, ids):
    """ids whose row reads back PRESENT with the written values, and the first misses."""
    client = F.Client(proxy.port, 60)
    good, bad = 0, []
    try:
        for i in range(0, len(ids), 1000):
            chunk = ids[i:i + 1000]
            status, raw = client.post("/get-online-features", {
                "features": [f"{VIEW}:val", f"{VIEW}:n"], "entities": {"user_id": chunk}})
            assert status == 200, f"read back: HTTP {status} {raw[:500]!r}"
            cols = H.columns(json.loads(raw))
            for j, u in enumerate(chunk):
                got = (cols["val"]["statuses"][j], cols["val"]["values"][j], cols["n"]["statuses"][j],
                       cols["n"]["values"][j])
                if got == ("PRESENT", f"w{u}", "PRESENT", u * 7):
                    good += 1
                elif len(bad) < 5:
                    bad.append((u, got))
                else:
                    bad.append(u)
    finally:
        client.close()
    return good, bad


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_sigterm_under_write_load_keeps_acknowledged_writes(kind, procs, tmp_path):
    project = B.uniq("shut_")
    cleanup = B.Cleanup()
    if kind == "redis":
        B.redis_addr()
        cleanup.redis(project)
    try:
        args = make_repo(tmp_path / "repo", kind, project)
        proxy = procs.proxy(args + ["--apply", "--shutdown-grace-seconds", str(GRACE),
                                    "--max-entity-rows", str(BIG_MAX_ROWS),
                                    # the big write goes past the default body and cell bounds
                                    "--max-body-bytes", str(256 << 20), "--max-cells", str(BIG_MAX_ROWS * 64),
                                    "--request-timeout-ms", "120000"], name=f"hos-proxy-shutdown-{kind}")
        big_rows, big_took, acked_pre, next_id = sized_big_write(proxy, 1)

        stop = threading.Event()
        writers = [Writer(i, proxy.port, stop) for i in range(WRITERS)]
        for w in writers:
            w.start()
        time.sleep(LOAD_BEFORE)

        # the large write, in flight when SIGTERM arrives
        big_ids = list(range(next_id, next_id + big_rows))
        big = socket.create_connection((H.HOST, proxy.port), timeout=CLIENT_TIMEOUT)
        big_result = {}

        def read_big():
            try:
                big_result["status"] = read_status(big)
            except Exception as e:
                big_result["error"] = repr(e)
            big_result["t"] = time.monotonic()

        big.sendall(raw_request(proxy.port, "/write-to-online-store", write_body(big_ids)))
        reader = threading.Thread(target=read_big, daemon=True)
        reader.start()
        time.sleep(0.03)
        t_sig = time.monotonic()
        os.kill(proxy.proc.pid, signal.SIGTERM)

        probes = []
        while proxy.proc.alive() and time.monotonic() < t_sig + GRACE + 5:
            time.sleep(0.1)
            probes.append(probe_new_connection(proxy.port))
        code = proxy.proc.wait_exit(max(0.0, t_sig + GRACE + 5 - time.monotonic()))
        t_exit = time.monotonic()
        time.sleep(0.3)  # the writers see the closed port too
        stop.set()
        for w in writers:
            w.join(CLIENT_TIMEOUT + 5)
        reader.join(CLIENT_TIMEOUT)
        big.close()

        failures = []
        if code is None:
            failures.append(f"the proxy did not exit within {GRACE + 5:.0f} s of SIGTERM")
        elif code != 0:
            failures.append(f"the proxy exited with code {code} after SIGTERM:\n{proxy.proc.tail(30)}")
        exit_after = t_exit - t_sig
        if code is not None and exit_after > GRACE + 1.0:
            failures.append(f"the proxy exited {exit_after:.2f} s after SIGTERM (grace {GRACE:g} s + 1 s)")
        if big_result.get("status") != 200:
            failures.append(f"the in-flight {big_rows}-row write did not complete: {big_result}")
        elif big_result["t"] <= t_sig:
            failures.append(f"the {big_rows}-row write was answered before SIGTERM: no request was in flight "
                            f"(it took {big_took:.2f} s when measured)")
        hung = [(w.name, o) for w in writers for (_, _, o) in w.log if o == "timeout"]
        if hung:
            failures.append(f"{len(hung)} writes got no answer within {CLIENT_TIMEOUT:g} s: {hung[:5]}")
        non2xx = [(w.name, o) for w in writers for (_, _, o) in w.log if isinstance(o, str) and o[:1].isdigit()]
        if non2xx:
            failures.append(f"{len(non2xx)} writes answered with an error status: {non2xx[:5]}")
        # requests sent well before SIGTERM were read by the proxy: they must complete
        early_lost = [(w.name, round(t0 - t_sig, 3), o) for w in writers for (t0, _, o) in w.log
                      if t0 <= t_sig - EARLY and not isinstance(o, int)]
        if early_lost:
            failures.append(f"{len(early_lost)} writes sent more than {EARLY * 1000:.0f} ms before SIGTERM got no "
                            f"answer (seconds relative to SIGTERM): {early_lost[:5]}")
        straddling = [o for w in writers for (t0, t1, o) in w.log if t0 < t_sig < t1]
        silent = [p for p in probes if p.startswith("timeout")]
        if silent:
            failures.append(f"{len(silent)} of {len(probes)} new connections after SIGTERM got no answer: {probes}")

        acked = acked_pre + [u for w in writers for u in w.acked]
        if big_result.get("status") == 200:
            acked += big_ids
        after_sig = sum(1 for w in writers for (t0, _, o) in w.log if isinstance(o, int) and t0 >= t_sig)
        errors = {}
        for w in writers:
            for _, _, o in w.log:
                if not isinstance(o, int):
                    errors[o] = errors.get(o, 0) + 1

        # a new proxy on the same store reads every acknowledged write back
        reader_proxy = procs.proxy(args, name=f"hos-proxy-readback-{kind}")
        good, bad = read_back(reader_proxy, acked)
        if bad:
            failures.append(f"{len(bad)} of {len(acked)} acknowledged rows are not readable with their values; "
                            f"first: {bad[:5]}")
        F.report(f"[shutdown {kind}] SIGTERM under load: exit code {code} {exit_after:.2f} s after SIGTERM "
                 f"(grace {GRACE:g} s); in-flight {big_rows}-row write: {big_result.get('status')} answered "
                 f"{big_result.get('t', t_sig) - t_sig:+.2f} s after SIGTERM")
        F.report(f"    acknowledged rows read back: {good} of {len(acked)} "
                 f"({sum(len(w.acked) for w in writers) // ROWS} acknowledged {ROWS}-row writes of the "
                 f"{WRITERS} writers, {after_sig} of them started after SIGTERM; {len(acked_pre)} rows of the "
                 f"sizing writes; {big_rows if big_result.get('status') == 200 else 0} of the in-flight write)")
        F.report(f"    writers' requests in flight at SIGTERM (sent before, answered after): "
                 f"{ {str(o): straddling.count(o) for o in set(straddling)} or 'none'}")
        F.report(f"    unacknowledged writes: {errors or 'none'}; new connections after SIGTERM: "
                 f"{ {p: probes.count(p) for p in sorted(set(probes))} }")
        assert not failures, "\n\n".join(failures)
    finally:
        cleanup.run()
