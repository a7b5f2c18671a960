"""[L] The newest event wins, on every backend (issue 18's acceptance tests).

For each of SQLite, Redis, the Bigtable emulator and Cassandra: a Feast repo
(the repo_template definitions, `feast apply`, no rows) whose online store is
that backend alone, and a proxy started on it. Everything is written and read
through the proxy's HTTP API, on the two-entity view `user_merchant`
(user_id, merchant_id -> spend float64, visits int32):

1. out of order: T2 written, then T1 < T2 (two requests, and both rows in
   one request): reads give T2's values and T2's event time. Two event times
   in the same second: SQLite stores whole seconds, so there they are a tie
   and the later write wins, whole; the other backends keep the newer. An
   exact tie written twice: the later write wins. A retried write changes
   nothing.
2. 20 concurrent writers (threads, each its own keep-alive HTTP connection)
   write one fresh key with 20 distinct event times (whole seconds, which
   every backend keeps), each row's values naming its time, in a random
   arrival order; read back after every round: the greatest time's values
   and time. 50 rounds; the count of rounds and violations is reported
   ("interop figures" at the end of the run).
3. Feast 0.67's own SDK (FeatureStore.get_online_features on the same repo)
   answers what the proxy answers for every key the tests wrote (values,
   statuses, event times), and both give the newest row.
4. Invalid event and created timestamps (year 200000, 1e300, i64 max, 1969,
   NaN-ish strings, now + 2 days with the default skew of 1 day) get 422 with
   a ValidationError naming `df.<column>` and the row; nothing of the request
   is written; a normal write afterwards is visible, also to a key that a
   too-far-future write was refused for (on Redis such a write used to block
   every later one).

Every event time the proxy answers must be RFC 3339 in UTC (`...Z`).

Last, a partial failure: one proxy over a SQLite backend and a Redis server
of the test's own (tests/scripts/redis-up.sh, stopped by its pid with
redis-down.sh, so no other test's server is touched); a push source feeds one
view on each. With Redis stopped, a /push answers 503 BackendUnavailable
naming the view and backend not written (`not_written`, `written` in the
inner JSON) and the SQLite view holds the push; after Redis is back, the same
request retried gives the complete state on both, and a late retry of an
older push changes nothing.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple

import pytest

import backendutil as B
import hosutil as H

pytestmark = pytest.mark.filterwarnings("ignore:Connecting to Bigtable emulator:RuntimeWarning")

KINDS = ["sqlite", *B.KINDS]
VIEW = "user_merchant"
FEATURES = [f"{VIEW}:spend", f"{VIEW}:visits"]
WRITERS = 20
ROUNDS = 50
# RFC 3339 in UTC as the proxy (and Feast's server) print it: a fraction
# only when non-zero, in ms, us or ns.
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.(\d{3}|\d{6}|\d{9}))?Z")

Key = Tuple[int, str]
# (status, spend, visits, event time) as read back
State = Tuple[str, Any, Any, str]


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_plus(delta: timedelta) -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) + delta


class Env:
    def __init__(self, kind: str):
        self.kind = kind
        self.missing: Optional[str] = None
        self.proxy = None
        self.fs = None
        # every key a test wrote -> the state it must read back
        self.expected: Dict[Key, State] = {}


@pytest.fixture(scope="module", params=KINDS)
def env(request, tmp_path_factory):
    """A Feast repo on one backend (nothing written) and a proxy on it."""
    kind = request.param
    e = Env(kind)
    if kind != "sqlite":
        try:
            B.online_store_yaml(kind, instance="x", keyspace="x")  # checks the server's variables
        except pytest.fail.Exception as exc:
            # The tests fail (rather than error out here) with this message.
            e.missing = str(exc)
            yield e
            return
    H.require_proxy_bin()
    cleanup = B.Cleanup()
    work = tmp_path_factory.mktemp(f"newest_{kind}")
    repo = work / "repo"
    try:
        if kind == "sqlite":
            store_yaml = H.FEATURE_STORE_YAML
        else:
            project = B.uniq(f"nw{kind[:2]}")
            instance, keyspace = B.uniq("hos-"), B.uniq("hos_ks_")
            if kind == "cassandra":
                B.create_keyspace(keyspace)
                cleanup.keyspace(keyspace)
            elif kind == "bigtable":
                cleanup.bigtable(instance)
            else:
                cleanup.redis(project)
            store_yaml = B.feature_store_yaml(project, B.online_store_yaml(kind, instance=instance,
                                                                            keyspace=keyspace))
        H.make_base_repo(repo, store_yaml, fill=False)
        e.fs = H.feature_store(repo)
        e.proxy = H.start_proxy(["--repo", str(repo)], work / "logs", name=f"hos-proxy-newest-{kind}")
        yield e
    finally:
        if e.proxy is not None:
            e.proxy.stop()
        cleanup.run()


def ready(env: Env) -> Env:
    if env.missing:
        pytest.fail(env.missing, pytrace=False)
    return env


# --------------------------------------------------------------------------
# writes and reads through the proxy
# --------------------------------------------------------------------------


def write_body(rows, **extra_columns) -> Dict[str, Any]:
    """rows: [(user_id, merchant_id, spend, visits, event time)]."""
    df = {"user_id": [r[0] for r in rows], "merchant_id": [r[1] for r in rows],
          "spend": [r[2] for r in rows], "visits": [r[3] for r in rows],
          "event_timestamp": [r[4] for r in rows]}
    df.update(extra_columns)
    return {"feature_view_name": VIEW, "df": df}


def must_write(env: Env, rows, what: str = "") -> None:
    body = write_body(rows)
    r = env.proxy.post("/write-to-online-store", body)
    assert r.status_code == 200, (f"[{env.kind}] {what} POST /write-to-online-store {json.dumps(body)} -> "
                                  f"{r.status_code} {r.text[:1000]}")


def read_body(keys) -> Dict[str, Any]:
    return {"features": FEATURES, "entities": {"user_id": [k[0] for k in keys],
                                               "merchant_id": [k[1] for k in keys]}}


def check_rfc3339(kind: str, body: Dict[str, Any]) -> None:
    for name, col in zip(body["metadata"]["feature_names"], body["results"]):
        for t in col.get("event_timestamps", []):
            assert isinstance(t, str) and RFC3339.fullmatch(t), \
                f"[{kind}] column {name}: event timestamp {t!r} is not RFC 3339 (YYYY-MM-DDTHH:MM:SS[.fff]Z)"


def states(kind: str, body: Dict[str, Any]) -> List[State]:
    """Per key: (status, spend, visits, event time); both features of a row
    must agree on status and event time (a row is never a mix of writes)."""
    check_rfc3339(kind, body)
    cols = H.columns(body)
    sp, vi = cols["spend"], cols["visits"]
    out = []
    for i in range(len(sp["values"])):
        assert sp["statuses"][i] == vi["statuses"][i] and sp["event_timestamps"][i] == vi["event_timestamps"][i], (
            f"[{kind}] key #{i}: spend and visits differ in status or event time: "
            f"{sp['statuses'][i]}/{vi['statuses'][i]} {sp['event_timestamps'][i]}/{vi['event_timestamps'][i]}")
        out.append((sp["statuses"][i], sp["values"][i], vi["values"][i], sp["event_timestamps"][i]))
    return out


def read_states(env: Env, keys) -> List[State]:
    body = read_body(keys)
    r = env.proxy.post("/get-online-features", body)
    assert r.status_code == 200, f"[{env.kind}] POST /get-online-features {body} -> {r.status_code} {r.text[:1000]}"
    return states(env.kind, r.json())


def assert_states(env: Env, want: Dict[Key, State], what: str) -> None:
    keys = list(want)
    got = dict(zip(keys, read_states(env, keys)))
    bad = [f"  {k}: read {got[k]}, want {want[k]}" for k in keys if got[k] != want[k]]
    assert not bad, f"[{env.kind}] {what}:\n" + "\n".join(bad)


def present(spend, visits, ts: str) -> State:
    return ("PRESENT", spend, visits, ts)


NOT_FOUND: State = ("NOT_FOUND", None, None, "1970-01-01T00:00:00Z")


# --------------------------------------------------------------------------
# 1. out of order
# --------------------------------------------------------------------------


def test_older_event_never_replaces_newer(env):
    env = ready(env)
    t1, t2 = "2024-06-01T00:00:05Z", "2024-06-01T00:00:10Z"
    m = "order"
    # T2, then T1 < T2 in a second request
    must_write(env, [(1, m, 2.0, 2, t2)], "T2")
    must_write(env, [(1, m, 1.0, 1, t1)], "T1 < T2 after T2")
    # both in one request, the newer row first, and the older first
    must_write(env, [(2, m, 2.5, 22, t2), (2, m, 1.5, 11, t1)], "T2 and T1 in one request")
    must_write(env, [(3, m, 1.5, 11, t1), (3, m, 2.5, 22, t2)], "T1 and T2 in one request")
    # an older write to one key of a batch does not stop the batch's other rows
    must_write(env, [(6, m, 6.0, 6, t2)], "T2")
    must_write(env, [(6, m, 0.5, 5, t1), (7, m, 7.0, 7, t1)], "T1 for a newer key and a fresh one")
    # two event times within one second: a tie at SQLite's whole seconds,
    # where the later write wins; the others keep the newer
    s1, s2 = "2024-06-01T00:00:20.250Z", "2024-06-01T00:00:20.500Z"
    must_write(env, [(4, m, 4.5, 45, s2)], "T2 with ms")
    must_write(env, [(4, m, 4.25, 42, s1)], "T1 with ms, same second")
    sub = present(4.25, 42, "2024-06-01T00:00:20Z") if env.kind == "sqlite" else present(4.5, 45, s2)
    # an exact tie: the later write wins, whole. (Cassandra resolves an equal
    # write timestamp per cell, the greater value winning: these values are
    # greater in both cells, so it too must read the later write.)
    must_write(env, [(5, m, 5.0, 50, t2)], "T2")
    must_write(env, [(5, m, 5.5, 55, t2)], "T2 again, other values")
    want = {
        (1, m): present(2.0, 2, t2),
        (2, m): present(2.5, 22, t2),
        (3, m): present(2.5, 22, t2),
        (4, m): sub,
        (5, m): present(5.5, 55, t2),
        (6, m): present(6.0, 6, t2),
        (7, m): present(7.0, 7, t1),
    }
    assert_states(env, want, "newest event after out-of-order writes")
    # a retried write changes nothing
    must_write(env, [(1, m, 2.0, 2, t2)], "T2 retried")
    must_write(env, [(1, m, 1.0, 1, t1)], "T1 retried")
    assert_states(env, {(1, m): want[(1, m)]}, "after retries")
    env.expected.update(want)


# --------------------------------------------------------------------------
# 2. concurrent writers
# --------------------------------------------------------------------------


def concurrent_round(conns: List[H.KeepAliveClient], key: Key, base: int, rng: random.Random) -> List[Tuple[int, Any]]:
    """WRITERS threads write KEY at once, writer i with event time
    base + offsets[i] (a random permutation of 0..WRITERS-1), values
    spend = that time in seconds, visits = its offset. Returns per writer
    (offset, HTTP status or the exception)."""
    offsets = list(range(WRITERS))
    rng.shuffle(offsets)
    # a random start delay per writer (0..3 ms) on top of the shuffle, so the
    # arrival order differs from the thread start order
    delays = [rng.random() * 0.003 for _ in offsets]
    barrier = threading.Barrier(WRITERS)
    results: List[Tuple[int, Any]] = [(o, None) for o in offsets]

    def work(i: int) -> None:
        o = offsets[i]
        body = write_body([(key[0], key[1], float(base + o), o, iso(base + o))])
        try:
            barrier.wait(timeout=30)
            time.sleep(delays[i])
            status, raw = conns[i].post("/write-to-online-store", body)
            results[i] = (o, status if status == 200 else f"HTTP {status}: {raw[:300]!r}")
        except Exception as e:  # reported, not lost with the thread
            results[i] = (o, repr(e))

    threads = [threading.Thread(target=work, args=(i,), name=f"writer-{i}") for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_writers_newest_wins(env):
    env = ready(env)
    rng = random.Random(int(os.environ.get("NEWEST_WINS_SEED", "18")))
    conns = [H.KeepAliveClient(env.proxy.port) for _ in range(WRITERS)]
    violations: List[str] = []
    failed_writes: List[str] = []
    t0 = time.monotonic()
    try:
        for rnd in range(ROUNDS):
            key = (20000 + rnd, "conc")
            base = 1717200000 + rnd * 100  # 2024-06-01, distinct whole seconds per round
            for o, res in concurrent_round(conns, key, base, rng):
                if res != 200:
                    failed_writes.append(f"round {rnd} writer offset {o}: {res}")
            newest = base + WRITERS - 1
            want = present(float(newest), WRITERS - 1, iso(newest))
            got = read_states(env, [key])[0]
            if got != want:
                violations.append(f"round {rnd} key {key}: read {got}, want {want}")
            env.expected[key] = want
    finally:
        for c in conns:
            c.close()
    took = time.monotonic() - t0
    H.report(f"[newest wins] {env.kind}: {ROUNDS} rounds x {WRITERS} concurrent writers, "
             f"{len(violations)} violations, {len(failed_writes)} failed writes ({took:.1f} s)")
    assert not failed_writes, f"[{env.kind}] {len(failed_writes)} concurrent writes failed; first ones:\n" + \
        "\n".join(failed_writes[:5])
    assert not violations, (f"[{env.kind}] {len(violations)} of {ROUNDS} rounds did not read the newest write; "
                            "first ones:\n" + "\n".join(violations[:10]))


# --------------------------------------------------------------------------
# 3. Feast's SDK reads what the proxy reads
# --------------------------------------------------------------------------


def test_feast_sdk_reads_the_same_newest_rows(env):
    env = ready(env)
    m = "sdk"
    # keys of its own (the earlier tests' keys join them when they ran):
    # newer first, then older
    own = {}
    for i in range(5):
        key = (30000 + i, m)
        newer, older = 1717300000 + 10 * i + 5, 1717300000 + 10 * i
        must_write(env, [(key[0], m, float(newer), i + 100, iso(newer))], "newer")
        must_write(env, [(key[0], m, float(older), i, iso(older))], "older")
        own[key] = present(float(newer), i + 100, iso(newer))
    env.expected.update(own)
    keys = sorted(env.expected)
    entities = {"user_id": [k[0] for k in keys], "merchant_id": [k[1] for k in keys]}
    r = env.proxy.post("/get-online-features", {"features": FEATURES, "entities": entities})
    assert r.status_code == 200, r.text[:1000]
    got = r.json()
    feast = H.sdk_json(env.fs, FEATURES, entities)
    H.assert_same_response(got, feast, f"[{env.kind}] proxy vs Feast SDK on {len(keys)} keys")
    # and both are the newest rows (Feast's answer checked on its own)
    bad = [f"  {k}: Feast read {s}, want {env.expected[k]}"
           for k, s in zip(keys, states(env.kind, feast)) if s != env.expected[k]]
    assert not bad, f"[{env.kind}] Feast's SDK does not read the newest rows:\n" + "\n".join(bad[:10])
    H.report(f"[newest wins] {env.kind}: Feast 0.67 SDK and the proxy agree on {len(keys)} keys")


# --------------------------------------------------------------------------
# 4. invalid timestamps
# --------------------------------------------------------------------------


def bad_event_times():
    return [
        ("year 200000", "200000-01-01T00:00:00Z"),
        ("1e300", 1e300),
        ("i64 max", 9223372036854775807),
        ("-i64 max", -9223372036854775807),
        ("1969", "1969-12-31T23:59:59Z"),
        ("-1 s", -1),
        ("NaN", "NaN"),
        ("nan", "nan"),
        ("Infinity", "Infinity"),
        ("-inf", "-inf"),
        ("empty", ""),
        ("year 9999", "9999-12-31T23:59:59Z"),
        ("now + 2 days", now_plus(timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")),
    ]


def assert_refused(env: Env, r, column: str, row: int, what: str) -> None:
    assert r.status_code == 422, (f"[{env.kind}] {what}: HTTP {r.status_code} (want 422) {r.text[:500]}")
    e = H.feast_error(r)
    assert e["class"] == "ValidationError", f"[{env.kind}] {what}: error class {e}"
    assert f"`df.{column}` row {row}" in e["message"], \
        f"[{env.kind}] {what}: the message does not name `df.{column}` row {row}: {e['message']!r}"


def test_invalid_event_times_refused(env):
    env = ready(env)
    m = "bad"
    ok_ts = "2024-06-02T00:00:00Z"
    cases = [("event_timestamp", label, v) for label, v in bad_event_times()]
    # created timestamps likewise (column `created`, as Feast's remote store sends it)
    cases += [("created", "created year 200000", "200000-01-01T00:00:00Z"), ("created", "created 1e300", 1e300),
              ("created", "created NaN", "NaN"), ("created", "created 1969", "1969-12-31T23:59:59Z")]
    for i, (column, label, v) in enumerate(cases):
        k0, kb, k2 = [(40000 + 10 * i + j, m) for j in range(3)]
        rows = [(k0[0], m, 1.0, 1, ok_ts), (kb[0], m, 2.0, 2, ok_ts), (k2[0], m, 3.0, 3, ok_ts)]
        extra = {}
        if column == "event_timestamp":
            rows[1] = (kb[0], m, 2.0, 2, v)
        else:
            extra["created"] = [ok_ts, v, ok_ts]
        r = env.proxy.post("/write-to-online-store", write_body(rows, **extra))
        assert_refused(env, r, column, 1, f"{column} = {label} ({v!r})")
        # nothing of the request was written
        assert_states(env, {k0: NOT_FOUND, kb: NOT_FOUND, k2: NOT_FOUND},
                      f"after the refused write of {label}: nothing of it may be written")
        # a normal write to the refused row's key is visible
        must_write(env, [(kb[0], m, 9.0, 9, ok_ts)], f"after {label}")
        assert_states(env, {kb: present(9.0, 9, ok_ts)}, f"the normal write after {label}")
        env.expected[kb] = present(9.0, 9, ok_ts)
    # /push validates alike (um_push feeds user_merchant)
    kp = (40999, m)
    body = {"push_source_name": "um_push", "to": "online",
            "df": write_body([(kp[0], m, 1.0, 1, ok_ts), (kp[0], m, 2.0, 2, 1e300)])["df"]}
    r = env.proxy.post("/push", body)
    assert_refused(env, r, "event_timestamp", 1, "/push with event_timestamp = 1e300")
    assert_states(env, {kp: NOT_FOUND}, "after the refused push: nothing of it may be written")


def test_far_future_does_not_block_next_write(env):
    """A too-far-future write is refused, so it cannot be stored as the
    newest and shadow every later normal write (Redis's bug)."""
    env = ready(env)
    m = "future"
    key = (41000, m)
    ta, tb = "2024-06-03T00:00:00Z", "2024-06-03T01:00:00Z"
    must_write(env, [(key[0], m, 1.0, 1, ta)], "Ta")
    for label, v in [("year 200000", "200000-01-01T00:00:00Z"), ("1e300", 1e300),
                     ("i64 max", 9223372036854775807),
                     ("now + 2 days", now_plus(timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"))]:
        r = env.proxy.post("/write-to-online-store", write_body([(key[0], m, 666.0, 666, v)]))
        assert_refused(env, r, "event_timestamp", 0, f"far future {label}")
        assert_states(env, {key: present(1.0, 1, ta)}, f"after the refused far-future write ({label})")
    must_write(env, [(key[0], m, 2.0, 2, tb)], "Tb > Ta after far-future writes")
    assert_states(env, {key: present(2.0, 2, tb)}, "the next normal write after far-future writes")
    # a write of the present is visible too
    now = now_plus(timedelta(seconds=-60))
    must_write(env, [(key[0], m, 3.0, 3, now.strftime("%Y-%m-%dT%H:%M:%SZ"))], "now")
    want = present(3.0, 3, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert_states(env, {key: want}, "a write of the present after far-future writes")
    env.expected[key] = want
    # within the skew (now + 1 hour): accepted and read back as written
    soon = now_plus(timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    must_write(env, [(41001, m, 4.0, 4, soon)], "now + 1 hour (within the default skew)")
    assert_states(env, {(41001, m): present(4.0, 4, soon)}, "a write within the skew")
    env.expected[(41001, m)] = present(4.0, 4, soon)


# --------------------------------------------------------------------------
# partial failure: one of two backends down during a /push
# --------------------------------------------------------------------------

SCRIPTS = H.ROOT / "tests" / "scripts"

PF_STORE = """\
project: pf
provider: local
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - type: sqlite
      name: pf_sqlite
      conf:
        path: pf.db
    - type: redis
      name: pf_redis
      conf:
        connection_string: "127.0.0.1:{port}"
entity_key_serialization_version: 3
"""

PF_VIEW = """\
name: {name}
entities:
  - name: user
    join_keys: [user_id]
    dtype: int64
ttl: 36500d
schema:
  - name: val
    dtype: string
  - name: n
    dtype: int64
source:
  name: pf_push
  type: push
online: true
tags:
  team: {team}
"""

PF_VIEWS = {"pf_sq": "pf_sqlite", "pf_rd": "pf_redis"}


class OwnRedis:
    """A redis-server of this test's own (redis-up.sh in a private state
    dir), stopped and started again in place by its pid (redis-down.sh)."""

    def __init__(self, state):
        self.state = state
        self.port: Optional[int] = None

    def _env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_PASSWORD", "REDIS_FIXED_PORT")}
        if self.port is not None:
            env["REDIS_FIXED_PORT"] = str(self.port)
        return env

    def up(self) -> None:
        p = subprocess.run(["bash", str(SCRIPTS / "redis-up.sh"), str(self.state)], env=self._env(),
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, f"redis-up.sh {self.state} failed ({p.returncode}):\n{p.stderr[-3000:]}"
        url = p.stdout.strip().splitlines()[-1]
        m = re.fullmatch(r"export REDIS_URL=redis://127\.0\.0\.1:(\d+)", url)
        assert m, f"redis-up.sh printed {url!r}"
        port = int(m.group(1))
        assert self.port in (None, port), f"own Redis restarted on port {port}, not {self.port}"
        self.port = port

    def down(self) -> None:
        p = subprocess.run(["bash", str(SCRIPTS / "redis-down.sh"), str(self.state)], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, f"redis-down.sh {self.state} failed ({p.returncode}):\n{p.stderr[-3000:]}"


@pytest.fixture
def own_redis(tmp_path):
    r = OwnRedis(tmp_path / "own_redis")
    try:
        r.up()
        yield r
    finally:
        r.down()


PF_N = {"one": 1000, "two": 2000}


def push_body(users, ts, tag):
    return {"push_source_name": "pf_push", "to": "online",
            "df": {"user_id": list(users), "val": [f"{tag}-{u}" for u in users], "n": [PF_N[tag] + u for u in users],
                   "event_timestamp": [ts] * len(users)}}


def pf_read(proxy, view, users):
    return proxy.post("/get-online-features", {"features": [f"{view}:val", f"{view}:n"],
                                               "entities": {"user_id": list(users)}})


def pf_state(proxy, view, users):
    r = pf_read(proxy, view, users)
    assert r.status_code == 200, f"read {view}: {r.status_code} {r.text[:500]}"
    body = r.json()
    check_rfc3339("partial failure", body)
    cols = H.columns(body)
    return [(cols["val"]["statuses"][i], cols["val"]["values"][i], cols["n"]["values"][i],
             cols["val"]["event_timestamps"][i]) for i in range(len(users))]


def pf_want(users, ts, tag):
    return [("PRESENT", f"{tag}-{u}", PF_N[tag] + u, ts) for u in users]


def backend_ready(proxy, name) -> bool:
    try:
        r = proxy.get("/ready", timeout=5)
        return bool(r.json().get("backends", {}).get(name, {}).get("ready"))
    except (ValueError, AttributeError, OSError):
        return False


def test_push_partial_failure_then_retry_converges(procs, tmp_path, own_redis):
    repo = tmp_path / "pf"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(PF_STORE.format(port=own_redis.port))
    for name, team in PF_VIEWS.items():
        (repo / f"{name}.yaml").write_text(PF_VIEW.format(name=name, team=team))
    proxy = procs.proxy(["--repo", str(repo), "--feature-views", str(repo / "pf_sq.yaml"),
                         "--feature-views", str(repo / "pf_rd.yaml"), "--apply"], name="hos-proxy-pf")
    users = [1, 2, 3]
    p1, p2 = "2024-07-01T00:00:00Z", "2024-07-01T01:00:00Z"
    first, second = push_body(users, p1, "one"), push_body(users, p2, "two")

    r = proxy.post("/push", first)
    assert r.status_code == 200, f"push with both backends up: {r.status_code} {r.text[:500]}"
    for view in PF_VIEWS:
        assert pf_state(proxy, view, users) == pf_want(users, p1, "one"), view

    own_redis.down()
    r = proxy.post("/push", second)
    assert r.status_code == 503, f"push with pf_redis down: {r.status_code} (want 503) {r.text[:800]}"
    e = H.feast_error(r)
    assert e["class"] == "BackendUnavailable", e
    assert "pf_rd" in e["message"] and "pf_redis" in e["message"], \
        f"the 503 message does not name the view and backend not written: {e['message']!r}"
    nw = e.get("not_written")
    assert isinstance(nw, list) and len(nw) == 1 and isinstance(nw[0], dict), f"not_written: {nw!r} in {e}"
    assert (nw[0].get("feature_view"), nw[0].get("backend")) == ("pf_rd", "pf_redis"), f"not_written: {nw}"
    assert isinstance(nw[0].get("error"), str) and nw[0]["error"].strip(), f"not_written without an error: {nw}"
    written = e.get("written")
    assert isinstance(written, list) and [(w.get("feature_view"), w.get("backend")) for w in written] == [
        ("pf_sq", "pf_sqlite")], f"written: {written!r} in {e}"
    # the other view IS written; the Redis view cannot be read while down
    assert pf_state(proxy, "pf_sq", users) == pf_want(users, p2, "two"), "pf_sq after the partial push"
    r = pf_read(proxy, "pf_rd", users)
    assert r.status_code == 503, f"read of pf_rd while its backend is down: {r.status_code} {r.text[:300]}"

    # recovery: same port, empty (redis-up.sh keeps no data); the same
    # request retried once the proxy sees the backend again
    own_redis.up()
    t0 = time.monotonic()
    while not backend_ready(proxy, "pf_redis") and time.monotonic() - t0 < 30:
        time.sleep(0.2)
    attempts, last = 0, None
    while attempts < 10:
        attempts += 1
        last = proxy.post("/push", second)
        if last.status_code == 200:
            break
        time.sleep(0.5)
    assert last.status_code == 200, (f"the retried push after recovery: {last.status_code} {last.text[:500]} "
                                     f"({attempts} attempts, {time.monotonic() - t0:.1f} s after restart)")
    for view in PF_VIEWS:
        assert pf_state(proxy, view, users) == pf_want(users, p2, "two"), f"{view} after the retried push"
    # a late retry of the older push changes nothing, on either backend
    r = proxy.post("/push", first)
    assert r.status_code == 200, f"late retry of the older push: {r.status_code} {r.text[:500]}"
    for view in PF_VIEWS:
        assert pf_state(proxy, view, users) == pf_want(users, p2, "two"), f"{view} after a late older push"
    H.report(f"[newest wins] partial failure: 503 not_written={[(x['feature_view'], x['backend']) for x in nw]}, "
             f"retried push converged after {attempts} attempt(s), "
             f"{time.monotonic() - t0:.1f} s after the restart")
