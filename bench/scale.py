"""Cost curves (run by bench/scale.sh): how hos-proxy's memory, reload time,
read latency and start-up time grow with the routing table.

For every (views, backends) pair asked for (by default {1k, 10k, 100k} x
{1, 10, 100}; a pair with fewer views than backends is skipped) it:

1. writes a routing table with that many views spread round-robin over that
   many SQLite backends (data/bNNN.db under the pair's work directory).
   Every view has the schema of bench/feast_repo's `user_stats`: entity
   `user` (user_id, int64) and 50 features f00..f49 (float64/int64
   alternating). View 0 is `user_stats` itself on backend b000, the
   measured view; the others are v000001, v000002, ...
2. provisions every view's table with `hos-proxy apply --routing-table`
   (only the measured view's when a file would hold more than
   --max-tables-per-file tables: SQLite re-reads its whole schema table
   after every CREATE, so one file's provisioning is quadratic in its
   table count; results.json says which),
3. starts `hos-proxy serve --routing-table` and times process start to the
   first 200 from /ready (polled every 10 ms); VmRSS then, VmHWM (the peak)
   of the start-up; then --idle-seconds with no requests: the proxy's CPU
   and its VmRSS every 20 ms (the median: RSS at rest, which the verdicts
   use),
4. writes the 10,000 users' rows of `user_stats` through the proxy's
   /write-to-online-store (100 rows a request),
5. runs the load generator: `read_1x50` (harness.write_bodies) open loop at
   --rate requests/s, --duration s after --warmup s (harness.run_load: the
   machine's CPU split, repeated like the main bench when other processes
   took more than --max-other-cpu %),
6. reloads --reloads times: the other variant of the table (every view's
   ttl_seconds and `rev` tag changed) is written in a staging directory
   beside the table's, then renamed over it (as an atomic ConfigMap
   update); the reload time is from the rename to the increment of
   hos_proxy_reload_total{result="success"} on /metrics (polled every
   10 ms; the proxy's 100 ms debounce is inside it). VmHWM is reset before
   each reload (/proc/PID/clear_refs) and read after it: the peak RSS of
   that reload.

and writes results.json, results.md and rss.png, reload.png, p99.png,
startup.png into --results. `--report-only` redraws them from an existing
results.json.

Everything listens on 127.0.0.1; every process started is stopped by its
pid; a proxy whose RSS passes --max-rss-mib is killed and the pair is
reported as too big.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402  (bench/harness.py, next to this file)
    CLK_TCK,
    HOST,
    LOADED_TS,
    N_ENTITIES,
    PROJECT,
    Proc,
    Sampler,
    cpu_seconds,
    free_port,
    http,
    log,
    machine_cpu,
    rss_kib,
    run_load,
    sub_env,
    write_bodies,
)

MEASURED = "user_stats"
N_FEATURES = 50
TTL_SECONDS = 36500 * 86400  # bench/feast_repo's TTL; variant 1 adds a day


# ---------------------------------------------------------------------------
# the routing table
# ---------------------------------------------------------------------------

def routing_table(views: int, backends: int, variant: int) -> str:
    """The routing-table document (block YAML, the layout `hos-proxy
    routing-table` writes). The two variants differ in every view's
    ttl_seconds and `rev` tag, so a reload from one to the other replaces
    every view."""
    features = "".join(f"      - name: f{i:02d}\n        dtype: {'float64' if i % 2 == 0 else 'int64'}\n"
                       for i in range(N_FEATURES))
    entity = ("    entities:\n      - name: user\n        join_keys:\n          - name: user_id\n"
              "            dtype: int64\n")
    parts = [f"schema_version: 1\nproject: {PROJECT}\nentity_key_serialization_version: 3\nrouting_tag: team\n"
             "backends:\n"]
    for b in range(backends):
        parts.append(f"  - name: b{b:03d}\n    type: sqlite\n    conf:\n      path: data/b{b:03d}.db\n")
    parts.append("feature_views:\n")
    ttl = TTL_SECONDS + 86400 * variant
    for i in range(views):
        name = MEASURED if i == 0 else f"v{i:06d}"
        b = f"b{i % backends:03d}"
        parts.append(f"  - name: {name}\n{entity}    features:\n{features}    ttl_seconds: {ttl}\n"
                     f"    online: true\n    tags:\n      rev: r{variant}\n      team: {b}\n    backend: {b}\n")
    return "".join(parts)


def measured_only(text: str) -> str:
    """The same document cut after its first view (the measured one)."""
    head, rest = text.split("feature_views:\n", 1)
    second = rest.find("\n  - name: ", 1)
    return head + "feature_views:\n" + (rest if second < 0 else rest[:second + 1])


# ---------------------------------------------------------------------------
# /proc and /metrics
# ---------------------------------------------------------------------------

def status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak(pid: int) -> bool:
    """Resets VmHWM to the current VmRSS (Linux >= 4.0)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def metric(url: str, name: str, labels: str = "") -> Optional[float]:
    try:
        st, text = http("GET", url + "/metrics", timeout=10)
    except OSError:
        return None
    if st != 200:
        return None
    total, seen = 0.0, False
    for line in text.decode(errors="replace").splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " ") and (not labels or labels in line):
            try:
                total += float(line.rsplit(" ", 1)[1])
                seen = True
            except ValueError:
                pass
    return total if seen else 0.0


def own_cpu() -> float:
    """CPU seconds of this process and its waited-for children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class Window:
    """Where the machine's CPU went over a phase: the proxy, this driver
    (and the children it waited for), and everything else."""

    def __init__(self, proc: Optional[Proc] = None):
        self.proc = proc
        self.t0, (self.busy0, _) = time.monotonic(), machine_cpu()
        self.own0 = own_cpu()
        self.srv0 = self._srv()

    def _srv(self) -> float:
        return sum(cpu_seconds(p) for p in self.proc.pids()) if self.proc else 0.0

    def done(self, proc: Optional[Proc] = None) -> dict:
        if proc is not None and self.proc is None:  # started inside the window: all its CPU counts
            self.proc = proc
        wall = time.monotonic() - self.t0
        busy = (machine_cpu()[0] - self.busy0) / CLK_TCK
        server = self._srv() - self.srv0
        own = own_cpu() - self.own0
        other = max(0.0, busy - server - own)
        return {"wall_s": round(wall, 3), "server_cpu_s": round(server, 3), "driver_cpu_s": round(own, 3),
                "other_cpu_s": round(other, 2),
                "other_cpu_pct": round(100 * other / max(1e-9, wall * (os.cpu_count() or 1)), 1),
                "loadavg_1m_end": float(Path("/proc/loadavg").read_text().split()[0])}


class RssCap:
    """Kills the proxy (by its pid) when its VmRSS passes `cap_kib`."""

    def __init__(self, proc: Proc, cap_kib: int):
        self.proc, self.cap_kib = proc, cap_kib
        self.tripped_kib = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            r = rss_kib(self.proc.pid)
            if r > self.cap_kib and self.proc.alive():
                self.tripped_kib = r
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


class TooBig(RuntimeError):
    pass


# ---------------------------------------------------------------------------
# one (views, backends) pair
# ---------------------------------------------------------------------------

def write_rows(url: str, seed: int = 7) -> dict:
    """The 10,000 users' rows of user_stats, 100 a request, through the
    proxy (the values follow harness.frames' distributions)."""
    rnd = random.Random(seed)
    t0, requests = time.monotonic(), 0
    for start in range(1, N_ENTITIES + 1, 100):
        ids = list(range(start, min(start + 100, N_ENTITIES + 1)))
        df: Dict[str, list] = {"user_id": ids}
        for i in range(N_FEATURES):
            df[f"f{i:02d}"] = ([round(rnd.gauss(100.0, 50.0), 6) for _ in ids] if i % 2 == 0
                               else [rnd.randint(-1_000_000, 1_000_000) for _ in ids])
        df["event_timestamp"] = [LOADED_TS] * len(ids)
        body = json.dumps({"feature_view_name": MEASURED, "df": df}, separators=(",", ":")).encode()
        st, b = http("POST", url + "/write-to-online-store", body, timeout=60)
        if st != 200:
            raise RuntimeError(f"write of users {ids[0]}..{ids[-1]} answered {st}: {b[:300]!r}")
        requests += 1
    return {"rows": N_ENTITIES, "requests": requests, "seconds": round(time.monotonic() - t0, 2)}


def check_read(url: str, body: bytes) -> str:
    st, b = http("POST", url + "/get-online-features", body)
    if st != 200:
        return f"HTTP {st}: {b[:300]!r}"
    j = json.loads(b)
    statuses = [s for r in j["results"] for s in r["statuses"]]
    bad = [s for s in statuses if s != "PRESENT"]
    return "ok" if len(statuses) == N_FEATURES + 1 and not bad else f"statuses {sorted(set(bad))}"


def provision(args, rt: Path, views: int, backends: int, text: str, deadline: float) -> dict:
    per_file = math.ceil(views / backends)
    only_measured = per_file > args.max_tables_per_file
    src = rt
    if only_measured:
        src = rt.parent / "staging" / "measured-only.yaml"
        src.write_text(measured_only(text))
    state = rt.parent / "staging" / "applied.yaml"
    t0 = time.monotonic()
    timeout = max(30.0, deadline - time.monotonic())
    p = subprocess.run([str(args.proxy), "apply", "--routing-table", str(src), "--data-dir", str(rt.parent),
                        "--state", str(state)],
                       capture_output=True, text=True, env=sub_env(RUST_LOG="warn"), timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"hos-proxy apply failed:\n{p.stderr[-3000:]}")
    secs = time.monotonic() - t0
    files = sorted((rt.parent / "data").iterdir())  # with each file's -wal and -shm
    return {"tables": "measured view only" if only_measured else "every view",
            "views_provisioned": 1 if only_measured else views, "views_per_file": per_file,
            "apply_s": round(secs, 2), "db_bytes": sum(f.stat().st_size for f in files),
            "db_files": len(list((rt.parent / "data").glob("*.db")))}


def measure_pair(args, views: int, backends: int, bodies: Dict[str, Path], deadline: float) -> dict:
    out: dict = {"views": views, "backends": backends}
    pdir = args.work / f"v{views}-b{backends}"
    shutil.rmtree(pdir, ignore_errors=True)
    (pdir / "data").mkdir(parents=True)
    (pdir / "staging").mkdir()
    rt = pdir / "routing-table.yaml"
    t0 = time.monotonic()
    texts = [routing_table(views, backends, 0), routing_table(views, backends, 1)]
    rt.write_text(texts[0])
    out["file_bytes"] = len(texts[0])
    out["generate_s"] = round(time.monotonic() - t0, 2)
    log(f"{views} views / {backends} backends: routing table {len(texts[0]) / 2**20:.1f} MiB; provisioning")
    out["provision"] = provision(args, rt, views, backends, texts[0], deadline)
    log(f"  provisioned ({out['provision']['tables']}) in {out['provision']['apply_s']} s, "
        f"{out['provision']['db_bytes'] / 2**20:.0f} MiB of SQLite files")

    # Start-up: process start to the first 200 from /ready.
    port = free_port()
    url = f"http://{HOST}:{port}"
    win = Window()
    t0 = time.monotonic()
    proc = Proc(f"hos-proxy-v{views}-b{backends}", [args.proxy, "serve", "--routing-table", rt,
                                                      "--listen", f"{HOST}:{port}"],
                pdir, args.logdir, env=sub_env(RUST_LOG="warn,proxy::state=info"))
    try:
        with RssCap(proc, args.max_rss_mib * 1024) as cap:
            start_deadline = t0 + args.startup_timeout
            while True:
                if not proc.alive():
                    if cap.tripped_kib:
                        raise TooBig(f"start-up: RSS passed {cap.tripped_kib / 1024:.0f} MiB (cap "
                                     f"{args.max_rss_mib} MiB); killed")
                    raise RuntimeError(f"hos-proxy exited during start-up ({proc.popen.returncode}):\n{proc.tail()}")
                try:
                    st, _ = http("GET", url + "/ready", timeout=5)
                    if st == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > start_deadline:
                    raise RuntimeError(f"/ready not 200 within {args.startup_timeout} s\n{proc.tail()}")
                time.sleep(0.01)
            startup = time.monotonic() - t0
            out["startup"] = {"seconds": round(startup, 3), "rss_kib": status_kib(proc.pid, "VmRSS"),
                              "peak_rss_kib": status_kib(proc.pid, "VmHWM"), "machine": win.done(proc)}
            out["threads"] = status_kib(proc.pid, "Threads")
            log(f"  ready in {startup:.3f} s, RSS {out['startup']['rss_kib'] / 1024:.1f} MiB "
                f"(peak {out['startup']['peak_rss_kib'] / 1024:.1f} MiB)")
            out["feature_views_metric"] = metric(url, "hos_proxy_feature_views")
            # The proxy's own CPU while nothing is asked of it (a watcher or
            # poller that grows with the table shows here).
            # Its VmRSS over the same window, every 20 ms: the median is the
            # RSS at rest (one sample can catch a transient buffer).
            c0, t0 = sum(cpu_seconds(p) for p in proc.pids()), time.monotonic()
            with Sampler(proc, period=0.02) as smp:
                time.sleep(args.idle_seconds)
            idle = sum(cpu_seconds(p) for p in proc.pids()) - c0
            rs = sorted(smp.samples)
            out["idle"] = {"seconds": round(time.monotonic() - t0, 2), "cpu_s": round(idle, 2),
                           "cpu_pct_of_one_core": round(100 * idle / (time.monotonic() - t0), 1),
                           "rss_kib_median": rs[len(rs) // 2], "rss_kib_min": rs[0], "rss_kib_max": rs[-1],
                           "rss_samples": len(rs)}
            log(f"  idle: {out['idle']['cpu_pct_of_one_core']}% of a core over {args.idle_seconds:g} s, RSS median "
                f"{out['idle']['rss_kib_median'] / 1024:.1f} MiB ({out['idle']['rss_kib_min'] / 1024:.1f}–"
                f"{out['idle']['rss_kib_max'] / 1024:.1f})")

            out["write"] = write_rows(url)
            body = bodies["read_1x50"].read_text().splitlines()[0].encode()
            out["check_read"] = check_read(url, body)
            if out["check_read"] != "ok":
                log(f"  CHECK FAILED: {out['check_read']}")
            out["rss_after_write_kib"] = status_kib(proc.pid, "VmRSS")

            # p99 of a 1x50 read, open loop.
            ns = SimpleNamespace(loadgen=args.loadgen, warmup=args.warmup, redis_pid=0)
            load = {"concurrency": args.concurrency, "rate": args.rate}
            attempts = []
            while True:
                res = run_load(ns, f"scale read_1x50 v{views} b{backends}", bodies["read_1x50"],
                               {"kind": "http", "url": url}, load, proc, args.duration)
                attempts.append(res)
                if res["machine"]["other_cpu_pct"] <= args.max_other_cpu or len(attempts) >= 3:
                    break
                log(f"  other processes used {res['machine']['other_cpu_pct']}% of the CPU; repeating the run")
                time.sleep(3)
            res = min(attempts, key=lambda a: a["machine"]["other_cpu_pct"])
            res["attempts_other_cpu_pct"] = [a["machine"]["other_cpu_pct"] for a in attempts]
            out["read"] = res
            lat = res["latency_us"]
            log(f"  read 1x50 at {args.rate} rps: p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, "
                f"errors {res['errors']}, unsent {res['unsent']}, other CPU {res['machine']['other_cpu_pct']}%")

            # Reloads, each replacing every view.
            reloads = []
            out["reload_peak_reset"] = True
            n_reloads = args.reloads
            for k in range(args.reloads):
                if k >= n_reloads:
                    break
                variant = (k + 1) % 2
                staged = pdir / "staging" / f"routing-table.yaml.{k}"
                staged.write_text(texts[variant])
                time.sleep(0.2)
                ok0 = metric(url, "hos_proxy_reload_total", 'result="success"')
                err0 = metric(url, "hos_proxy_reload_total", 'result="error"')
                out["reload_peak_reset"] &= reset_peak(proc.pid)
                rss0 = status_kib(proc.pid, "VmRSS")
                win = Window(proc)
                with Sampler(proc, period=0.02) as smp:
                    t0 = time.monotonic()
                    os.replace(staged, rt)
                    result = "timeout"
                    while time.monotonic() - t0 < args.reload_timeout:
                        if not proc.alive():
                            result = "died"
                            break
                        ok, err = (metric(url, "hos_proxy_reload_total", 'result="success"'),
                                   metric(url, "hos_proxy_reload_total", 'result="error"'))
                        if ok is not None and ok > ok0:
                            result = "success"
                            break
                        if err is not None and err > err0:
                            result = "error"
                            break
                        time.sleep(0.01)
                    secs = time.monotonic() - t0
                if result == "died":
                    if cap.tripped_kib:
                        raise TooBig(f"reload {k + 1}: RSS passed {cap.tripped_kib / 1024:.0f} MiB (cap "
                                     f"{args.max_rss_mib} MiB); killed")
                    raise RuntimeError(f"hos-proxy died during reload {k + 1}:\n{proc.tail()}")
                r = {"variant": variant, "result": result, "seconds": round(secs, 3),
                     "rss_before_kib": rss0, "peak_rss_kib": status_kib(proc.pid, "VmHWM"),
                     "sampled_max_rss_kib": max(smp.samples or [0]),
                     "routing_version": metric(url, "hos_proxy_routing_version"),
                     "machine": win.done()}
                reloads.append(r)
                log(f"  reload {k + 1}/{args.reloads}: {result} in {secs:.3f} s "
                    f"(proxy CPU {r['machine']['server_cpu_s']:.2f} s), peak RSS {r['peak_rss_kib'] / 1024:.1f} MiB")
                if result != "success":
                    break
                if k == 0 and secs > args.slow_reload_seconds:
                    n_reloads = min(args.reloads, 3)  # bounded time: the median of 3 slow reloads
                time.sleep(1.0)
            out["reloads"] = reloads
            time.sleep(2.0)
            out["rss_after_reloads_kib"] = status_kib(proc.pid, "VmRSS")
            out["feature_views_metric_end"] = metric(url, "hos_proxy_feature_views")
            ok_secs = [r["seconds"] for r in reloads if r["result"] == "success"]
            if ok_secs:
                out["reload_median_s"] = round(statistics.median(ok_secs), 3)
                out["reload_cpu_median_s"] = round(statistics.median(
                    r["machine"]["server_cpu_s"] for r in reloads if r["result"] == "success"), 3)
                out["reload_peak_rss_kib"] = max(r["peak_rss_kib"] for r in reloads)
            out["log_warn_lines"] = sum(1 for line in proc.tail(100000).splitlines()
                                        if " WARN " in line or " ERROR " in line)
            out["log_tail"] = proc.tail(6)
    finally:
        proc.stop()
        shutil.rmtree(pdir, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------
# report: results.md and plots
# ---------------------------------------------------------------------------

def kviews(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else f"{n:,}"


def mib(kib) -> str:
    return "n/a" if not kib else f"{kib / 1024:.1f}"


def slope_check(points: List[tuple]) -> Optional[dict]:
    """points: (views, value), views ascending, at least two. The cost per
    view of each step, and whether it stays at most linear: no step costs
    more per added view than 1.25x the step before (or than the first
    point's average per view, for a single step)."""
    if len(points) < 2:
        return None
    steps = []
    for (n0, y0), (n1, y1) in zip(points, points[1:]):
        steps.append({"from": n0, "to": n1, "per_view": (y1 - y0) / (n1 - n0), "ratio": y1 / y0 if y0 else None})
    ref = [points[0][1] / points[0][0]] + [s["per_view"] for s in steps]
    ok = all(s["per_view"] <= 1.25 * max(ref[i], 0.0) + 1e-12 for i, s in enumerate(steps))
    return {"steps": steps, "linear_or_less": ok,
            "ratio_last_first": points[-1][1] / points[0][1] if points[0][1] else None,
            "views_ratio": points[-1][0] / points[0][0]}


def report(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [p for p in results["pairs"] if "error" not in p and "skipped" not in p]
    failed = [p for p in results["pairs"] if "error" in p or "skipped" in p]
    by_b: Dict[int, List[dict]] = {}
    for p in pairs:
        by_b.setdefault(p["backends"], []).append(p)
    for v in by_b.values():
        v.sort(key=lambda p: p["views"])
    cfg = results["config"]

    def series(b, f):
        return [(p["views"], f(p)) for p in by_b[b] if f(p) is not None]

    rss_start = lambda p: p["idle"]["rss_kib_median"] / 1024  # noqa: E731
    rss_reload = lambda p: p.get("reload_peak_rss_kib", 0) / 1024 or None  # noqa: E731
    reload_s = lambda p: p.get("reload_median_s")  # noqa: E731
    reload_cpu = lambda p: p.get("reload_cpu_median_s")  # noqa: E731
    p99 = lambda p: p["read"]["latency_us"]["p99"] / 1000  # noqa: E731
    p50 = lambda p: p["read"]["latency_us"]["p50"] / 1000  # noqa: E731
    startup = lambda p: p["startup"]["seconds"]  # noqa: E731

    verdicts = {}
    lines = ["# Cost curves: hos-proxy against the size of its routing table", ""]
    lines += [f"Run {results['started_utc']}, {results.get('seconds', 0):.0f} s in all. Command: "
              f"`{results.get('command', '').strip()}` (`command.txt`).", "",
              "Issue [N]'s goal: RSS and reload time grow at most linearly with the number of views, the p99 of a "
              "1x50 read stays flat (within 1.2x from 1k to 100k views).", ""]

    # Verdicts per backend count.
    vrows = []
    for b in sorted(by_b):
        rs, rl, p9 = series(b, rss_start), series(b, reload_s), series(b, p99)
        rp, rc = series(b, rss_reload), series(b, reload_cpu)
        c_rs, c_rl, c_rp, c_rc = slope_check(rs), slope_check(rl), slope_check(rp), slope_check(rc)
        p99_ratio = p9[-1][1] / p9[0][1] if len(p9) >= 2 else None
        verdicts[b] = {"rss": c_rs, "reload_peak_rss": c_rp, "reload": c_rl, "reload_cpu": c_rc, "p99_ratio": p99_ratio,
                       "p99_views": [p9[0][0], p9[-1][0]] if len(p9) >= 2 else None}

        def yes(c):
            return "n/a" if c is None else ("**met**" if c["linear_or_less"] else "**not met**")

        def per_view(c, unit, scale):
            if c is None:
                return "n/a"
            return ", ".join(f"{kviews(s['from'])}→{kviews(s['to'])}: {s['per_view'] * scale:.3g} {unit}"
                             for s in c["steps"])

        vrows.append(f"| {b} | {yes(c_rs)}: {per_view(c_rs, 'KiB/view', 1024)}; x{c_rs['ratio_last_first']:.1f} "
                     f"for x{c_rs['views_ratio']:.0f} views |" if c_rs else f"| {b} | n/a |")
        vrows[-1] += (f" {yes(c_rp)}: {per_view(c_rp, 'KiB/view', 1024)}; x{c_rp['ratio_last_first']:.1f} |"
                      if c_rp else " n/a |")
        vrows[-1] += (f" {yes(c_rl)}: {per_view(c_rl, 'ms/view', 1000)}; x{c_rl['ratio_last_first']:.1f} |"
                      if c_rl else " n/a |")
        vrows[-1] += (f" {yes(c_rc)}: {per_view(c_rc, 'ms/view', 1000)}; x{c_rc['ratio_last_first']:.1f} |"
                      if c_rc else " n/a |")
        if p99_ratio is not None:
            met = "**met**" if p99_ratio <= 1.2 else "**not met**"
            vrows[-1] += (f" {met}: {p9[0][1]:.3f} → {p9[-1][1]:.3f} ms, x{p99_ratio:.2f} "
                          f"({kviews(p9[0][0])} → {kviews(p9[-1][0])} views) |")
        else:
            vrows[-1] += " n/a |"
    lines += ["## Verdicts", "",
              "Per backend count, from the same run. *At most linear*: no step from one size to the next costs more "
              "per added view than 1.25x the step before (the first step: than the smallest table's whole RSS or "
              "reload time per view), so a constant per-view cost passes and a growing one fails.", "",
              "| backends | RSS at rest after start-up (per added view) | peak RSS during a reload | reload time (median) "
              "| the proxy's CPU time per reload (median) | p99 of a 1x50 read, smallest → largest table |",
              "|---|---|---|---|---|---|", *vrows, ""]

    lines += ["## Every pair", "",
              f"Read: `read_1x50` (1 user, the 50 features of `user_stats`), open loop at {cfg['rate']} requests/s "
              f"over {cfg['concurrency']} connections, {cfg['duration_s']:g} s after {cfg['warmup_s']:g} s of "
              f"warm-up, latency from each request's scheduled send time. Reload: median of {cfg['reloads']} (3 when the "
              f"first took over {cfg.get('slow_reload_s', 5):g} s) "
              "(rename to `hos_proxy_reload_total{result=\"success\"}` + 1, the proxy's 100 ms debounce "
              "included), every view changed each time; its proxy CPU time alongside. RSS: VmRSS; peaks: VmHWM; "
              f"RSS at rest: the median of VmRSS sampled every 20 ms over {cfg.get('idle_s', 5):g} s with no "
              "requests right after start-up (the verdicts use it). "
              "CPU per read: the proxy's CPU time over the measured read run divided by its requests (everything "
              f"the proxy did meanwhile included). Idle CPU: the proxy's CPU over {cfg.get('idle_s', 5):g} s with no "
              "requests after start-up, % of one core. Other CPU: what other processes on the machine used during "
              "the read run (% of both cores).", "",
              "| views | backends | table file | tables | apply | start-up | RSS at /ready (peak) | RSS at rest (min–max) "
              "| RSS after "
              "writes | RSS under reads | reload median (min–max) | reload CPU | peak RSS in reloads | RSS after "
              "reloads | p50 / p99 read | CPU per read | idle CPU | errors | other CPU |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in sorted(pairs, key=lambda p: (p["views"], p["backends"])):
        rl = [r["seconds"] for r in p.get("reloads", []) if r["result"] == "success"]
        rd = p["read"]
        lines.append(
            f"| {p['views']:,} | {p['backends']} | {p['file_bytes'] / 2**20:.1f} MiB | "
            f"{p['provision']['tables']} ({p['provision']['views_per_file']:,}/file) | {p['provision']['apply_s']} s | "
            f"{p['startup']['seconds']:.3f} s | {mib(p['startup']['rss_kib'])} ({mib(p['startup']['peak_rss_kib'])}) MiB | "
            f"{mib(p['idle']['rss_kib_median'])} ({mib(p['idle']['rss_kib_min'])}–{mib(p['idle']['rss_kib_max'])}) MiB | "
            f"{mib(p['rss_after_write_kib'])} MiB | {mib(rd['server'].get('rss_kib_max'))} MiB | "
            + (f"{p['reload_median_s']:.3f} s ({min(rl):.3f}–{max(rl):.3f}) | {p['reload_cpu_median_s']:.2f} s | "
               f"{mib(p['reload_peak_rss_kib'])} MiB | " if rl else "n/a | n/a | n/a | ")
            + f"{mib(p['rss_after_reloads_kib'])} MiB | "
            f"{rd['latency_us']['p50'] / 1000:.3f} / {rd['latency_us']['p99'] / 1000:.3f} ms | "
            f"{(rd.get('server_cpu') or {}).get('us_per_request', 'n/a')} µs | "
            f"{p.get('idle', {}).get('cpu_pct_of_one_core', 'n/a')}% | {rd['errors']} (+{rd['unsent']} unsent) | {rd['machine']['other_cpu_pct']}% |")
    lines.append("")
    if failed:
        lines += ["## Not measured", ""]
        for p in failed:
            lines.append(f"- {p['views']:,} views / {p['backends']} backends: {p.get('error') or p.get('skipped')}")
        lines.append("")
    partial = [p for p in pairs if p["provision"]["tables"] != "every view"]
    if partial:
        lines += ["## Pairs measured without every view's table", ""]
        for p in partial:
            lines.append(f"- {p['views']:,} views / {p['backends']} backends: {p['provision']['views_per_file']:,} "
                         f"views per file is over --max-tables-per-file {cfg['max_tables_per_file']:,}; only "
                         "`user_stats`'s table was created (the proxy opens no table at start-up or reload, so "
                         "these figures are the routing table's cost; a file with every table also costs each "
                         "SQLite connection its parsed schema).")
        lines.append("")
    lines += ["## The machine during the run", "",
              f"{results['machine']['nproc']} cores, {results['machine']['mem_total_mib']:,} MiB; load average "
              f"{' '.join(results['machine']['loadavg_start'])} at the start, "
              f"{' '.join(results['machine'].get('loadavg_end', ['?']))} at the end. Other CPU per phase (other processes' share of both cores, from /proc/stat minus the "
              "proxy's and this driver's CPU):", "",
              "| views | backends | start-up | read run (tries) | reloads (max) |", "|---|---|---|---|---|"]
    for p in sorted(pairs, key=lambda p: (p["views"], p["backends"])):
        rl = [r["machine"]["other_cpu_pct"] for r in p.get("reloads", [])]
        lines.append(f"| {p['views']:,} | {p['backends']} | {p['startup']['machine']['other_cpu_pct']}% | "
                     f"{p['read']['machine']['other_cpu_pct']}% ({', '.join(map(str, p['read']['attempts_other_cpu_pct']))}) | "
                     f"{max(rl) if rl else 'n/a'}% |")
    lines += ["", f"hos-proxy: `{results['machine'].get('proxy_version', '?')}`, binary modified "
              f"{results['machine'].get('proxy_modified_utc', '?')}; git `{results['machine'].get('git', '?')}` at "
              "the run.", ""]
    if (out / "notes.md").exists():
        lines += ["## Notes", "", "Findings from this run, written by hand: [notes.md](notes.md).", ""]
    (out / "results.md").write_text("\n".join(lines))
    results["verdicts"] = verdicts

    colors = {1: "#1b9e77", 10: "#d95f02", 100: "#7570b3"}

    def plot(name, title, ylabel, curves, linear_ref=True):
        fig, ax = plt.subplots(figsize=(7.5, 5))
        for b in sorted(by_b):
            for label, f, style in curves:
                pts = series(b, f)
                if not pts:
                    continue
                ax.plot([x for x, _ in pts], [y for _, y in pts], style, color=colors.get(b, "black"),
                        marker="o", label=f"{b} backend{'s' if b > 1 else ''}{label}")
                if linear_ref and style == "-" and len(pts) >= 2:
                    x0, y0 = pts[0]
                    xs = [x for x, _ in pts]
                    ax.plot(xs, [y0 * x / x0 for x in xs], ":", color=colors.get(b, "black"), linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("feature views in the routing table (50 features each)")
        ax.set_ylabel(ylabel)
        ax.set_title(title + (" (dotted: linear from the smallest table)" if linear_ref else ""), fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)

    plot("rss.png", "hos-proxy VmRSS", "MiB",
         [(", at rest after start-up", rss_start, "-"), (", peak during a reload", rss_reload, "--")])
    plot("reload.png", "Reload time (median; rename to reload counted)", "seconds", [("", reload_s, "-")])
    plot("p99.png", f"1x50 read at {cfg['rate']} rps, open loop", "ms",
         [(", p99", p99, "-"), (", p50", p50, "--")], linear_ref=False)
    plot("startup.png", "Start-up: process start to /ready 200", "seconds", [("", startup, "-")])


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxy", type=Path)
    ap.add_argument("--loadgen", type=Path)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--views", default="1000,10000,100000")
    ap.add_argument("--backends", default="1,10,100")
    ap.add_argument("--rate", type=int, default=500, help="requests/s of the open-loop 1x50 read")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--idle-seconds", type=float, default=5.0,
                    help="seconds of the proxy's CPU measured with no requests, after start-up")
    ap.add_argument("--slow-reload-seconds", type=float, default=5.0,
                    help="when the first reload takes longer, do 3 reloads instead of --reloads")
    ap.add_argument("--reload-timeout", type=float, default=300.0)
    ap.add_argument("--startup-timeout", type=float, default=600.0)
    ap.add_argument("--max-tables-per-file", type=int, default=2_000,
                    help="above this many views per SQLite file, create only the measured view's table")
    ap.add_argument("--max-rss-mib", type=int, default=0,
                    help="kill the proxy above this RSS (default: 60%% of MemAvailable at the start)")
    ap.add_argument("--max-other-cpu", type=float, default=10.0)
    ap.add_argument("--budget-seconds", type=float, default=1500.0,
                    help="start no new pair after this long; pairs left are reported as not measured")
    ap.add_argument("--command", default="")
    ap.add_argument("--report-only", action="store_true", help="redraw results.md and the plots from results.json")
    args = ap.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        results = json.loads((args.results / "results.json").read_text())
        report(results, args.results)
        return 0
    for name in ("proxy", "loadgen", "work"):
        if getattr(args, name) is None:
            ap.error(f"--{name} is required")

    t_start = time.monotonic()
    meminfo = {line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()}
    if not args.max_rss_mib:
        args.max_rss_mib = int(meminfo["MemAvailable"] * 0.6 / 1024)
    args.logdir = args.work / "logs"
    args.logdir.mkdir(parents=True, exist_ok=True)
    version = subprocess.run([str(args.proxy), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    git = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, timeout=30).stdout.strip()
    views = [int(v) for v in args.views.split(",") if v]
    backends = [int(b) for b in args.backends.split(",") if b]
    results = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": args.command,
               "config": {"views": views, "backends": backends, "rate": args.rate, "concurrency": args.concurrency,
                          "duration_s": args.duration, "warmup_s": args.warmup, "reloads": args.reloads,
                          "max_tables_per_file": args.max_tables_per_file, "idle_s": args.idle_seconds,
                          "slow_reload_s": args.slow_reload_seconds,
                          "max_rss_mib": args.max_rss_mib,
                          "max_other_cpu_pct": args.max_other_cpu, "budget_s": args.budget_seconds,
                          "features_per_view": N_FEATURES, "entities": N_ENTITIES},
               "machine": {"nproc": os.cpu_count(), "mem_total_mib": meminfo["MemTotal"] // 1024,
                           "mem_available_mib_start": meminfo["MemAvailable"] // 1024,
                           "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
                           "proxy": str(args.proxy), "proxy_version": version, "git": git,
                           "proxy_modified_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime(args.proxy.stat().st_mtime))},
               "pairs": []}
    bodies = write_bodies(args.work)
    try:
        for v in views:
            for b in backends:
                if v < b:
                    continue
                if time.monotonic() - t_start > args.budget_seconds:
                    results["pairs"].append({"views": v, "backends": b,
                                             "skipped": f"time budget ({args.budget_seconds:g} s) spent"})
                    continue
                try:
                    results["pairs"].append(measure_pair(args, v, b, bodies, t_start + args.budget_seconds))
                except (TooBig, RuntimeError, subprocess.TimeoutExpired) as e:
                    log(f"{v} views / {b} backends: {e}")
                    results["pairs"].append({"views": v, "backends": b, "error": str(e)[-1500:]})
    finally:
        for p in list(Proc.ALL):
            p.stop()
        results["seconds"] = round(time.monotonic() - t_start, 1)
        results["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        (args.results / "results.json").write_text(json.dumps(results, indent=1, default=str))
    report(results, args.results)
    (args.results / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
