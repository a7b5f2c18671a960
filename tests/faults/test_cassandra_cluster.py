"""Node loss on a real 3-node Cassandra cluster, replication factor 3 (issue [N]).

The cluster is tests/scripts/cassandra-cluster-up.sh's (127.0.0.1, .2, .3,
one native port; CASSANDRA_CLUSTER_HOSTS / CASSANDRA_CLUSTER_PORT, state in
$HOS_TEST_STATE/cassandra-cluster); without those variables the test is
skipped. One proxy (`serve --apply`) serves a hybrid store with two
backends: cc_cassandra (the cluster: hosts = the three nodes, a fresh
keyspace made by the test with SimpleStrategy and replication factor 3,
read_consistency and write_consistency QUORUM) and cc_sqlite (SQLite), one
view on each (cs_view, sq_view: user_id -> val string, n int64). Five load
threads, each at FAULTS_RATE requests/s (default 50): a read of each view
alone (two preloaded ids and one id an earlier write of the load had
acknowledged), a write of each view (two new ids per request, never written
before), and a mixed read of both views (full feature names). Phases:

  baseline    all three nodes up;
  stop1       node 1 (the driver's first contact point) stopped with SIGTERM
              by tests/scripts/cassandra-cluster-node.sh (returns once its
              JVM has exited);
  one_down    two replicas of three left: QUORUM (2) still reachable;
              from the first request of the baseline to the last of this
              phase, every request of every kind must succeed: 0 failed
              requests, every read PRESENT with the values written;
  stop2       node 2 stopped too;
  two_down    one replica left: cs_view alone answers 503 whose message
              names the backend cc_cassandra, and so does every write of
              cs_view; the mixed read answers 200 with cs_view's columns
              INVALID and null and metadata.errors naming cs_view and
              cc_cassandra; sq_view's reads and writes all succeed;
  restart     both nodes started again in place (their own data) by the node
              script, which returns once every node sees every node;
  recovering  the same proxy process (same pid, never restarted) serves
              cs_view's reads and writes again within RECOVER_WITHIN s of
              the nodes being back (measured: the first request of the
              unbroken run of successes of each cs kind);
  recovered   every request of every kind succeeds for a whole phase.

In every phase sq_view's requests all succeed and every request is answered
within the backend timeout plus a margin (nothing hangs). Afterwards every
write that was acknowledged (HTTP 200) is read back through the proxy with
its value. Figures (start/stop times of the nodes, p50/p99 per kind and
phase, the 503 message, recovery times, acknowledged writes) go to the
"fault drill figures" section; FAULTS_DUMP_DIR keeps every request as JSON
lines.
"""

import itertools
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import backendutil as B
import faultutil as F
from test_fault_drills import ready_detail

PHASE = float(os.environ.get("FAULTS_PHASE_SECONDS", "8"))
RATE = float(os.environ.get("FAULTS_RATE", "50"))  # requests/s per request kind
CONSISTENCY = "QUORUM"
BACKEND_TIMEOUT = 5.0  # --backend-timeout-ms (the proxy's default)
MARGIN = 1.0  # allowed on top of it (debug build, Python client, shared CPU)
RECOVER_WITHIN = 30.0  # seconds after the node script says the nodes are back
RECOVERED_RUN = 10  # consecutive successes of each cs kind that count as recovered
WARMUP = 1.0
FIRST, SECOND = 1, 2  # the nodes stopped, in this order (node 3 stays up)
CS, SQ = "cc_cassandra", "cc_sqlite"
VIEWS = {"cs_view": (CS, 1), "sq_view": (SQ, 2)}  # view -> (backend, k of its values)
FEATS = [("val", "string"), ("n", "int64")]
USER = [("user", "user_id", "int64")]
PRELOAD = list(range(1, 41))
WRITE_IDS = {"cs_view": 1_000_000, "sq_view": 2_000_000}  # first id each view's writer writes
ROWS_PER_WRITE = 2
TS = "2024-05-01T00:00:00Z"
READBACK_CHUNK = 50

STORE = """\
project: {project}
provider: local
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - type: cassandra
      name: {cs}
      conf:
        hosts: [{hosts}]
        port: {port}
        keyspace: {keyspace}
        read_consistency: {consistency}
        write_consistency: {consistency}
    - type: sqlite
      name: {sq}
      conf:
        path: {db}
entity_key_serialization_version: 3
"""

# Phases in which every request of every kind must succeed.
ALL_OK = ["baseline", "stop1", "one_down", "recovered"]


def cluster():
    """(hosts, native port, state dir) of the running cluster; skips when
    the variables are not set."""
    hosts, port = os.environ.get("CASSANDRA_CLUSTER_HOSTS"), os.environ.get("CASSANDRA_CLUSTER_PORT")
    root = os.environ.get("HOS_TEST_STATE")
    if not hosts or not port or not root:
        pytest.skip("needs the 3-node Cassandra cluster: CASSANDRA_CLUSTER_HOSTS, CASSANDRA_CLUSTER_PORT and "
                    "HOS_TEST_STATE are not all set (start it with `eval \"$(tests/scripts/cassandra-cluster-up.sh "
                    "$HOS_TEST_STATE/cassandra-cluster)\"`; tests/run.sh does)")
    d = Path(root) / "cassandra-cluster"
    env = F.read_env_file(d / "cluster.env")
    if env.get("CASSANDRA_CLUSTER_HOSTS") != hosts or env.get("CASSANDRA_CLUSTER_PORT") != port:
        pytest.fail(f"{d / 'cluster.env'} does not describe the cluster CASSANDRA_CLUSTER_HOSTS={hosts} "
                    f"CASSANDRA_CLUSTER_PORT={port} names (file: {env or 'missing'}): is HOS_TEST_STATE the state "
                    "dir of tests/run.sh?", pytrace=False)
    return hosts.split(","), int(port), d


def node_script(d, action, *nodes, timeout=300.0):
    """tests/scripts/cassandra-cluster-node.sh D ACTION NODES...; returns
    the seconds it took."""
    script = F.SCRIPTS / "cassandra-cluster-node.sh"
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(script), str(d), action, *map(str, nodes)], env=dict(os.environ),
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"{script.name} {action} {' '.join(map(str, nodes))} failed ({p.returncode}):\n"
                             f"{p.stderr[-6000:]}")
    return time.monotonic() - t0


def stopped_nodes(d):
    out = []
    for n in (1, 2, 3):
        try:
            pid = int((d / f"node{n}" / "cassandra.pid").read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is None or not Path(f"/proc/{pid}").exists():
            out.append(n)
    return out


def cql(hosts, port, statements):
    """Runs STATEMENTS with a fresh cassandra-driver session on the cluster
    (the driver waits for schema agreement after schema changes)."""
    from cassandra.cluster import Cluster

    c = Cluster(hosts, port=port, connect_timeout=10)
    try:
        s = c.connect()
        s.default_timeout = 60
        for st in statements:
            s.execute(st)
    finally:
        c.shutdown()


def expected(view, u):
    k = VIEWS[view][1]
    return {"val": f"{view}-{u}", "n": 100_000_000 * k + u}


def write_body(view, ids):
    df = {"user_id": list(ids), "event_timestamp": [TS] * len(ids)}
    for f, _ in FEATS:
        df[f] = [expected(view, u)[f] for u in ids]
    return {"feature_view_name": view, "df": df}


def read_body(views, ids):
    return {"features": [f"{v}:{f}" for v in views for f, _ in FEATS], "entities": {"user_id": list(ids)},
            "full_feature_names": True}


def error_verdict(view, status, raw):
    """An error answer for VIEW: "503" when it is a 503 whose message names
    the view's backend, else `bad: why`."""
    msg = F.error_message(raw)
    if status == 503 and msg and VIEWS[view][0] in msg:
        return "503"
    return f"bad: HTTP {status} {msg!r}"


def check_read(status, raw, ctx):
    """Verdict per view: ok (PRESENT, the values written), invalid (INVALID
    and null, and a metadata.errors entry naming the view and its backend),
    503 (see error_verdict) or `bad: why`."""
    views, ids = ctx
    text = raw[:600].decode(errors="replace")
    if status != 200:
        return {v: error_verdict(v, status, raw) for v in views}, F.error_message(raw) or text
    try:
        body = json.loads(raw)
        cols = dict(zip(body["metadata"]["feature_names"], body["results"]))
        errors = {e["feature_view"]: e for e in body["metadata"].get("errors") or []}
    except Exception as e:
        return {v: f"bad: unreadable 200 body ({e!r})" for v in views}, text
    if cols.get("user_id", {}).get("values") != list(ids):
        return {v: f"bad: user_id column {cols.get('user_id')}" for v in views}, text
    out = {}
    for v in views:
        cs = [cols.get(f"{v}__{f}") for f, _ in FEATS]
        if any(c is None for c in cs):
            out[v] = f"bad: columns of {v} missing"
            continue
        statuses = {s for c in cs for s in c["statuses"]}
        if statuses == {"PRESENT"}:
            want = [[expected(v, u)[f] for u in ids] for f, _ in FEATS]
            got = [c["values"] for c in cs]
            good = got == want and v not in errors
            out[v] = "ok" if good else f"bad: PRESENT {got} (written {want}), errors {errors}"
        elif statuses == {"INVALID"}:
            e = errors.get(v, {})
            nulls = all(x is None for c in cs for x in c["values"])
            named = e.get("backend") == VIEWS[v][0] and VIEWS[v][0] in str(e.get("message"))
            out[v] = "invalid" if nulls and named else f"bad: INVALID, values null {nulls}, errors {errors}"
        else:
            out[v] = f"bad: statuses {[c['statuses'] for c in cs]}"
    return out, text


class Drill:
    def __init__(self, procs, tmp_path, hosts, port, d):
        self.procs = procs
        self.tmp = tmp_path
        self.hosts, self.port, self.state = hosts, port, d
        self.project = B.uniq("ccl_")
        self.keyspace = B.uniq("cc_ks_")
        self.repo = tmp_path / "repo"
        self.acked = {v: [] for v in VIEWS}  # ids whose write was answered 200
        self.failures = []

    def config(self):
        self.repo.mkdir(parents=True)
        (self.repo / "feature_store.yaml").write_text(STORE.format(
            project=self.project, cs=CS, sq=SQ, hosts=", ".join(self.hosts), port=self.port,
            keyspace=self.keyspace, consistency=CONSISTENCY, db=self.tmp / "online.db"))
        (self.repo / "views").mkdir()
        for v, (backend, _) in VIEWS.items():
            B.write_yaml_view(self.repo / "views" / f"{v}.yaml", v, backend, USER, FEATS)
        return ["--repo", str(self.repo), "--feature-views", str(self.repo / "views")]

    def kinds(self):
        def reader(v):
            def make(rng):
                ids = rng.sample(PRELOAD, 2)
                if self.acked[v]:
                    ids.append(rng.choice(self.acked[v]))
                return read_body([v], ids), ([v], ids)

            return F.Kind(f"{v}:read", make, check_read)

        def writer(v):
            ids = itertools.count(WRITE_IDS[v])

            def make(_rng):
                batch = [next(ids) for _ in range(ROWS_PER_WRITE)]
                return write_body(v, batch), batch

            def check(status, raw, batch):
                if status == 200:
                    self.acked[v].extend(batch)
                    return {v: "ok"}, ""
                return {v: error_verdict(v, status, raw)}, F.error_message(raw) or raw[:600].decode(errors="replace")

            return F.Kind(f"{v}:write", make, check, path="/write-to-online-store")

        def make_mixed(rng):
            ids = rng.sample(PRELOAD, 3)
            return read_body(list(VIEWS), ids), (list(VIEWS), ids)

        return [reader("cs_view"), writer("cs_view"), reader("sq_view"), writer("sq_view"),
                F.Kind("mixed:read", make_mixed, check_read)]

    def fail(self, msg):
        self.failures.append(msg)


def recovered_since(recs, t_from, run):
    """The start of the unbroken run of successes (at least RUN long, lasting
    to the last record) of records started after T_FROM, or None."""
    rs = sorted((r for r in recs if r.t0 >= t_from), key=lambda r: r.t0)
    streak = []
    for r in rs:
        if r.verdict and all(x == "ok" for x in r.verdict.values()):
            streak.append(r)
        else:
            streak = []
    return streak[0].t0 if len(streak) >= run else None


def test_cassandra_cluster_node_loss(procs, tmp_path):
    hosts, port, state = cluster()
    assert not stopped_nodes(state), f"cluster nodes {stopped_nodes(state)} are not running before the test"
    d = Drill(procs, tmp_path, hosts, port, state)
    load = None
    try:
        t0 = time.monotonic()
        cql(hosts, port, [f"CREATE KEYSPACE \"{d.keyspace}\" WITH replication = "
                          "{'class': 'SimpleStrategy', 'replication_factor': 3}"])
        keyspace_took = time.monotonic() - t0
        proxy = procs.proxy(d.config() + ["--apply", "--backend-timeout-ms", str(int(BACKEND_TIMEOUT * 1000))],
                            name="hos-proxy-cassandra-cluster")
        pid = proxy.proc.pid
        client = F.Client(proxy.port, timeout=30)
        for v in VIEWS:
            status, raw = client.post("/write-to-online-store", write_body(v, PRELOAD))
            assert status == 200, f"initial write of {v}: HTTP {status} {raw[:500]!r}"
            status, raw = client.post("/get-online-features", read_body([v], PRELOAD))
            verdict, text = check_read(status, raw, ([v], PRELOAD))
            assert verdict == {v: "ok"}, f"initial read of {v}: HTTP {status} {verdict} {text}"

        kinds = d.kinds()
        cs_kinds = [k.name for k in kinds if k.name.startswith("cs_view") or k.name.startswith("mixed")]
        load = F.Load(proxy.port, kinds, RATE, client_timeout=BACKEND_TIMEOUT + 10)
        load.mark("warmup")
        load.start()
        time.sleep(WARMUP)
        load.mark("baseline")
        time.sleep(PHASE)

        load.mark("stop1")
        stop1_took = node_script(state, "stop", FIRST)
        load.mark("one_down")
        time.sleep(PHASE / 2)
        ready_one_down = ready_detail(proxy, CS)
        time.sleep(PHASE / 2)

        load.mark("stop2")
        stop2_took = node_script(state, "stop", SECOND)
        load.mark("two_down")
        time.sleep(PHASE / 2)
        ready_two_down = ready_detail(proxy, CS)
        time.sleep(PHASE / 2)

        t_restart = load.mark("restart")
        restart_took = node_script(state, "start", FIRST, SECOND)
        t_back = load.mark("recovering")

        # The proxy recovers by itself: watch the load's own requests.
        recovered_at = {}
        while time.monotonic() < t_back + RECOVER_WITHIN:
            recs = list(load.records)  # a copy: the load threads append to it
            for k in cs_kinds:
                if k not in recovered_at:
                    at = recovered_since([r for r in recs if r.kind == k], t_restart, RECOVERED_RUN)
                    if at is not None:
                        recovered_at[k] = at
            if len(recovered_at) == len(cs_kinds):
                break
            time.sleep(0.2)
        recovered = len(recovered_at) == len(cs_kinds)
        if not recovered:
            d.fail(f"cs_view did not recover within {RECOVER_WITHIN:.0f} s of the nodes being back: "
                   f"kinds recovered {sorted(recovered_at)} of {cs_kinds}")
        load.mark("recovered")
        time.sleep(PHASE)
        load.stop()
        assert proxy.proc.alive() and proxy.proc.pid == pid, "the proxy exited during the drill"

        # --- judge the load ---
        phases = load.by_phase()
        F.dump_records(load, "cassandra-cluster")
        names = [k.name for k in kinds]
        bound = BACKEND_TIMEOUT + MARGIN

        def recs(pred_phase, k):
            return [r for (p, kk), rs in phases.items() if kk == k and pred_phase(p) for r in rs]

        def ok(r):
            return bool(r.verdict) and all(x == "ok" for x in r.verdict.values())

        # 0 failed requests from the first baseline request to the last one of one_down,
        # requests in flight across those marks included; and for a whole phase once recovered
        one_down_span = {"baseline", "stop1", "one_down", "baseline>stop1", "stop1>one_down", "baseline>one_down"}
        for k in names:
            for label, span in (("baseline..one_down (one node stopped)", one_down_span),
                                ("recovered", {"recovered"})):
                rs = recs(lambda p: p in span, k)
                bad = F.first_bad(rs, ok)
                if bad:
                    d.fail(f"{label}: {k}: {bad}")
            # A debug proxy, three JVMs and Python on 2 shared cores serve well
            # under RATE; a tenth of it still exercises every phase.
            for phase in ("baseline", "one_down", "two_down", "recovered"):
                n = len(recs(lambda p: p == phase, k))
                if n < max(20, PHASE * RATE * 0.1):
                    d.fail(f"{phase}/{k}: only {n} requests (load generator starved?)")
        # SQLite's view never notices
        for k in ("sq_view:read", "sq_view:write"):
            bad = F.first_bad(recs(lambda p: True, k), ok)
            if bad:
                d.fail(f"{k} (backend {SQ}, untouched) failed: {bad}")
        bad = F.first_bad(recs(lambda p: True, "mixed:read"), lambda r: r.verdict.get("sq_view") == "ok")
        if bad:
            d.fail(f"mixed:read: sq_view (backend {SQ}) not PRESENT with the written values: {bad}")
        # two nodes down: only cs_view fails, with a clear error
        two = {k: recs(lambda p: p == "two_down", k) for k in names}
        for k in ("cs_view:read", "cs_view:write"):
            bad = F.first_bad(two[k], lambda r: r.status == 503 and r.verdict == {"cs_view": "503"})
            if bad or not two[k]:
                d.fail(f"two_down: {k} must answer 503 naming {CS}: {bad or 'no requests'}")
        bad = F.first_bad(two["mixed:read"], lambda r: r.status == 200 and r.verdict.get("cs_view") == "invalid")
        if bad or not two["mixed:read"]:
            d.fail(f"two_down: the mixed read must answer 200 with cs_view INVALID and metadata.errors naming "
                   f"cs_view/{CS}: {bad or 'no requests'}")
        # /ready tells the two apart: with one node down QUORUM still has its
        # two replicas; with two down the backend is not ready, and says why.
        if not (isinstance(ready_one_down, dict) and ready_one_down.get("ready") is True):
            d.fail(f"one_down: /ready must list {CS} ready (2 of 3 replicas answer QUORUM): {ready_one_down}")
        reason = str((ready_two_down or {}).get("reason", "")) if isinstance(ready_two_down, dict) else ""
        if not (isinstance(ready_two_down, dict) and ready_two_down.get("ready") is False
                and "need 2 replica(s)" in reason and "1 node(s) connected" in reason):
            d.fail(f"two_down: /ready must list {CS} not ready, naming the replicas QUORUM needs: {ready_two_down}")
        # nothing hangs
        for (phase, k), rs in phases.items():
            bad = F.first_bad(rs, lambda r: isinstance(r.status, int) and r.latency <= bound)
            if bad:
                d.fail(f"{phase}/{k}: requests without an answer within {bound:.1f} s: {bad}")

        # --- every acknowledged write reads back with its value ---
        readback = {}
        for v in VIEWS:
            ids = sorted(set(d.acked[v]))
            missing = []
            for i in range(0, len(ids), READBACK_CHUNK):
                chunk = ids[i:i + READBACK_CHUNK]
                status, raw = client.post("/get-online-features", read_body([v], chunk))
                verdict, text = check_read(status, raw, ([v], chunk))
                if verdict != {v: "ok"}:
                    missing.append(f"ids {chunk[0]}..{chunk[-1]}: HTTP {status} {verdict} {text[:300]}")
            readback[v] = len(ids)
            if missing:
                d.fail(f"acknowledged writes of {v} not read back with their values ({len(missing)} chunks of "
                       f"{READBACK_CHUNK}): {missing[:2]}")
            if not ids:
                d.fail(f"no write of {v} was acknowledged")
        client.close()

        # --- figures ---
        def p99(phase, k):
            return F.percentile([r.latency for r in recs(lambda p: p == phase, k)], 99)

        sample = next((r.detail for r in two["cs_view:read"] if r.status == 503), "")  # the error's message
        F.report(f"[cassandra cluster] 3 nodes, RF 3, {CONSISTENCY} reads and writes, {RATE:g} req/s per kind; "
                 f"keyspace created in {keyspace_took:.1f} s; node {FIRST} stopped in {stop1_took:.1f} s, "
                 f"node {SECOND} in {stop2_took:.1f} s; both restarted (script until every node sees every node) "
                 f"in {restart_took:.1f} s; load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
        judged = ("baseline", "one_down", "two_down", "recovered")
        for k in names:
            counts = "/".join(str(len(recs(lambda p: p == ph, k))) for ph in judged)
            fails = sum(1 for r in recs(lambda p: p in one_down_span, k) if not ok(r))
            p99s = "  ".join(f"{ph.replace('_', ' ')} {F.ms(p99(ph, k)):>10s}" for ph in judged)
            F.report(f"    {k:14s} p99 {p99s}  (n={counts}; failed with one node down: {fails})")
        F.report(f"    two nodes down: cs_view alone {F.summarize(two['cs_view:read'])}, answer: {sample[:300]!r}")
        F.report(f"    /ready's {CS} with one node down: {ready_one_down}; with two: {ready_two_down}")
        rec = {k: f"{at - t_back:+.1f} s" for k, at in sorted(recovered_at.items())}
        first_ok = max(recovered_at.values()) if recovered else float("nan")
        F.report(f"    recovery without a proxy restart (same pid {pid}): {first_ok - t_restart:.1f} s after the "
                 f"restart began, {first_ok - t_back:+.1f} s after the node script returned; per kind, from the "
                 f"script's return: {rec}")
        F.report(f"    acknowledged writes read back with their values: cs_view {readback['cs_view']} rows, "
                 f"sq_view {readback['sq_view']} rows")
        assert not d.failures, "\n\n".join(d.failures)
    finally:
        if load is not None:
            load.stop()
        down = stopped_nodes(state)
        if down:
            node_script(state, "start", *down)
        try:
            cql(hosts, port, [f'DROP KEYSPACE IF EXISTS "{d.keyspace}"'])
        except Exception:
            pass
