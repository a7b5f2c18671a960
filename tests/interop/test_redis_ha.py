"""Feast and hos-proxy on a Redis Cluster and on Redis Sentinel (issue [N]).

For each topology (tests/scripts/redis-cluster-up.sh: 3 masters + 3
replicas; redis-sentinel-up.sh: master, replica, 3 sentinels), a Feast repo
(the repo_template definitions) whose online_store is
`type: redis` with `redis_type: redis_cluster` (connection_string: the
nodes) or `redis_type: redis_sentinel` (connection_string: the sentinels,
`sentinel_master`), under a fresh project name, and `hos-proxy serve --repo`
on the same repo:

1. Interop both ways. Feast 0.67's SDK writes (write_to_online_store;
   materialize for the entityless view); the proxy answers
   /get-online-features exactly as Feast's own get_online_features (values,
   statuses, event timestamps; Feast's Redis quirk for a missing entity,
   PRESENT + null + epoch, normalised to NOT_FOUND as in
   test_backends_interop.py). Then the proxy writes
   (POST /write-to-online-store) other rows; Feast's SDK reads them as it
   reads the same rows written by Feast itself, the values are asserted,
   and the stored hashes are byte for byte Feast's.
2. Failover under load. Through the proxy, about 200 requests/s for 12 s
   over keep-alive connections (4 writer threads writing distinct entity
   ids with increasing event times, 4 reader threads reading ids whose
   writes were acknowledged); after 3 s the current master (cluster: the
   master owning the slot of the first written key) is stopped by its pid
   with the node script (SIGTERM: Redis 7 lets its replica catch up before
   it exits). Then: every acknowledged write (HTTP 200) is read back with
   its value and event time through the proxy and through Feast's SDK (0
   lost, asserted); every read answered 200 under load carried the value
   written; the failed requests all fall inside one window after the stop,
   shorter than 15 s, and the last second of the load had no failure. The
   figures go to the "interop figures" section. The stopped node is
   restarted with the node script, which returns once the topology is
   healthy again (other tests share these servers).

Needs REDIS_CLUSTER_NODES, or REDIS_SENTINELS and REDIS_SENTINEL_MASTER
(and for the failover HOS_TEST_STATE, the state root of tests/run.sh); the
tests fail, with a message saying how to start the servers, when they are
missing.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import backendutil as B
import hosutil as H
from test_backends_interop import REF_OFFSET, UM_KEYS, USER_IDS, shifted, strip_columns
from test_feast_writes_proxy_reads import CASES
from test_proxy_writes_feast_reads import UM_WRITES, USER_WRITES, columnar, feast_df

EPOCH = "1970-01-01T00:00:00Z"

# The failover load.
RATE = 200  # requests per second, all threads together
DURATION = 12.0  # seconds of load
STOP_AT = 3.0  # seconds into the load the master is stopped
WRITERS = 4
READERS = 4
PERIOD = (WRITERS + READERS) / RATE  # seconds between two requests of one thread
PER_THREAD = int(DURATION / PERIOD)
MAX_ERROR_WINDOW = 15.0  # seconds
LOAD_VIEW = "user_merchant"
LOAD_FEATURES = [f"{LOAD_VIEW}:spend", f"{LOAD_VIEW}:visits"]
LOAD_MERCHANT = "ha-load"
LOAD_TS0 = 1_719_792_000  # 2024-07-01T00:00:00Z
ID_STRIDE = 1_000_000  # writer w writes user ids w * ID_STRIDE + 1 + i


class Env:
    def __init__(self, kind: str):
        self.kind = kind
        self.missing: Optional[str] = None
        self.proxy = None
        self.fs = None
        self.repo = None
        self.project = ""


@pytest.fixture(scope="module", params=B.REDIS_HA_KINDS)
def env(request, tmp_path_factory):
    """A filled Feast repo on one Redis topology and a proxy on it."""
    kind = request.param
    e = Env(kind)
    try:
        store_yaml = B.online_store_yaml(kind)  # checks the topology's variables
    except pytest.fail.Exception as exc:
        # The tests fail (rather than error out here) with this message.
        e.missing = str(exc)
        yield e
        return
    H.require_proxy_bin()
    cleanup = B.Cleanup()
    e.project = B.uniq("hacl" if kind == "redis_cluster" else "hase")
    cleanup.redis(e.project, B.redis_ha_client(kind))
    try:
        work = tmp_path_factory.mktemp(f"redis_ha_{kind}")
        e.repo = work / "repo"
        H.make_base_repo(e.repo, B.feature_store_yaml(e.project, store_yaml))
        e.fs = H.feature_store(e.repo)
        e.proxy = H.start_proxy(["--repo", str(e.repo)], work / "logs", name=f"hos-proxy-{kind}")
        yield e
    finally:
        if e.proxy is not None:
            e.proxy.stop()
        cleanup.run()


def ready(env: Env) -> Env:
    if env.missing:
        pytest.fail(env.missing, pytrace=False)
    return env


def feast_expected(env: Env, features, entities, full=False) -> Dict[str, Any]:
    """Feast's answer, with its Redis store's missing-entity quirk (PRESENT,
    null, epoch) normalised to the proxy's NOT_FOUND."""
    want = H.sdk_json(env.fs, features, entities, full)
    keys = set(entities)
    for name, col in zip(want["metadata"]["feature_names"], want["results"]):
        if name in keys:
            continue
        for i, (v, s, t) in enumerate(zip(col["values"], col["statuses"], col["event_timestamps"])):
            if s == "PRESENT" and v is None and t == EPOCH:
                col["statuses"][i] = "NOT_FOUND"
    return want


# ---------------------------------------------------------------------------
# 1. interop both ways
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("full", [False, True], ids=["short", "full"])
def test_feast_writes_proxy_reads(env, full):
    env = ready(env)
    for case, (features, entities, _) in CASES.items():
        body = {"features": features, "entities": entities, "full_feature_names": full}
        r = env.proxy.post("/get-online-features", body)
        assert r.status_code == 200, f"[{env.kind}] POST /get-online-features {body} -> {r.status_code} {r.text[:1000]}"
        H.assert_same_response(r.json(), feast_expected(env, features, entities, full),
                               f"[{env.kind}] {case} full={full}")
    entities = {"user_id": [1001, 1002, 999], "merchant_id": ["m-1", "m-2", "m-1"]}
    r = env.proxy.post("/get-online-features", {"feature_service": "svc", "entities": entities,
                                                "full_feature_names": full})
    assert r.status_code == 200, r.text[:1000]
    H.assert_same_response(r.json(), feast_expected(env, env.fs.get_feature_service("svc"), entities, full),
                           f"[{env.kind}] svc full={full}")

    # The values themselves, as Feast wrote them (not only "equal to Feast").
    r = env.proxy.post("/get-online-features", {
        "features": ["user_features:f_int64", "user_features:f_string", "user_merchant:spend",
                     "global_stats:total_users"],
        "entities": {"user_id": [1001, 1002, 999], "merchant_id": ["m-1", "m-1", "m-1"]}})
    assert r.status_code == 200, r.text[:1000]
    got = H.columns(r.json())
    assert got["f_int64"]["values"] == [9007199254740993, None, None], got["f_int64"]
    # a null value of a stored row is PRESENT + null, as Feast answers it
    assert got["f_int64"]["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND"], got["f_int64"]
    assert got["f_int64"]["event_timestamps"][:2] == ["2024-05-01T12:34:56.789123Z", "2024-05-02T00:00:01Z"]
    assert got["f_string"]["values"][0] == "héllo \"q\" \\ 😀"
    assert got["spend"]["values"] == [10.5, -1.25, None], got["spend"]
    assert got["total_users"]["values"] == [42, 42, 42], got["total_users"]


def stored(env: Env, entity: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The entity's hash (every field) and its TTL, read with redis-py from
    the topology; None when there is no such hash."""
    client = B.redis_ha_client(env.kind)
    key = B.redis_key(H.entity_key_bytes(entity), env.project)
    h = B.redis_hash(key, client)
    return {"fields": h, "ttl": client.ttl(key)} if h else None


def test_proxy_writes_feast_reads(env):
    env = ready(env)
    fs = env.fs
    for view, batches in (("user_features", USER_WRITES), ("user_merchant", UM_WRITES)):
        for rows in batches:
            body = {"feature_view_name": view, "df": columnar(rows)}
            r = env.proxy.post("/write-to-online-store", body)
            assert r.status_code == 200, f"[{env.kind}] POST /write-to-online-store {body} -> {r.status_code} {r.text[:1000]}"
            assert r.json() is None, r.text
            # the same rows, 1000 ids further, written by Feast itself
            fs.write_to_online_store(view, feast_df(columnar(shifted(rows))))

    # Feast's SDK reads the proxy's rows as it reads its own.
    ref_ids = [u + REF_OFFSET if u != 999 else 999 for u in USER_IDS]
    ref_um = {"user_id": [u + REF_OFFSET for u in UM_KEYS["user_id"]], "merchant_id": UM_KEYS["merchant_id"]}
    for features, mine, theirs in [
        (H.feature_refs("user_features", H.USER_FEATURE_NAMES), {"user_id": USER_IDS}, {"user_id": ref_ids}),
        (H.feature_refs("user_merchant", H.UM_FEATURES), UM_KEYS, ref_um),
    ]:
        got = strip_columns(H.sdk_json(fs, features, mine), set(mine))
        want = strip_columns(H.sdk_json(fs, features, theirs), set(theirs))
        H.assert_same_response(got, want, f"[{env.kind}] Feast reading proxy-written {features[0].split(':')[0]}")
    # and the proxy reads its own rows as Feast does
    for features, entities in [(H.feature_refs("user_features", H.USER_FEATURE_NAMES), {"user_id": USER_IDS}),
                               (H.feature_refs("user_merchant", H.UM_FEATURES), UM_KEYS)]:
        r = env.proxy.post("/get-online-features", {"features": features, "entities": entities})
        assert r.status_code == 200, f"[{env.kind}] read after proxy writes: {r.status_code} {r.text[:1000]}"
        H.assert_same_response(r.json(), feast_expected(env, features, entities),
                               f"[{env.kind}] proxy reading proxy-written {features[0].split(':')[0]}")

    # The values Feast's SDK reads from the proxy's writes.
    got = H.columns(H.sdk_json(fs, ["user_features:f_int64", "user_features:f_int32", "user_features:f_bytes",
                                    "user_features:f_float32", "user_features:f_string"], {"user_id": [5001, 5003]}))
    assert got["f_int64"]["values"] == [9007199254740993, -9223372036854775808]
    # 5001 was rewritten with a newer event time
    assert got["f_int32"]["values"] == [99, 2147483647]
    assert got["f_int32"]["event_timestamps"] == ["2024-06-01T00:00:00Z", "2024-05-01T12:34:56Z"]
    assert got["f_bytes"]["values"][0] == "AAH/"
    assert got["f_float32"]["values"][0] == 0.10000000149011612
    assert got["f_string"]["values"] == ["héllo \"q\" \\ 😀", "日本語"]
    frac = H.columns(H.sdk_json(fs, ["user_features:f_bool"], {"user_id": [5005]}))["f_bool"]
    assert frac["event_timestamps"] == ["2024-05-01T12:34:56.789123Z"], frac
    um = H.columns(H.sdk_json(fs, H.feature_refs("user_merchant", H.UM_FEATURES),
                              {"user_id": [5001, 5001, 5002], "merchant_id": ["w-1", "w-2", "é"]}))
    assert um["spend"]["values"] == [1.5, 2.5, None], um["spend"]
    assert um["visits"]["values"] == [1, 2, 7], um["visits"]

    # The stored hashes are Feast's, byte for byte.
    pairs = [({"user_id": u}, {"user_id": u + REF_OFFSET}) for u in USER_IDS if u != 999]
    pairs += [({"user_id": u, "merchant_id": m}, {"user_id": u + REF_OFFSET, "merchant_id": m})
              for u, m in zip(*UM_KEYS.values()) if m != "nope"]
    for mine, theirs in pairs:
        a, b = stored(env, mine), stored(env, theirs)
        assert b is not None, f"test bug: Feast stored nothing for {theirs}"
        assert a == b, (f"[{env.kind}] storage of proxy-written {mine} differs from Feast-written {theirs}\n"
                        f" proxy {a}\n Feast {b}")


# ---------------------------------------------------------------------------
# 2. failover under load
# ---------------------------------------------------------------------------


def _node(port: int, password: Optional[str]) -> redis.Redis:
    # No retries: redis-py's default retries a refused connection 3 times
    # with a backoff of up to seconds, which would make a stopped node slow
    # every look at the topology (and the promotion time measured late).
    return redis.Redis(host=H.HOST, port=port, password=password, socket_timeout=2, socket_connect_timeout=2,
                       retry=Retry(NoBackoff(), 0))


def _ask(port: int, password: Optional[str], *cmd) -> Any:
    """One command to one node (a fresh connection); None when it cannot
    be reached."""
    r = _node(port, password)
    try:
        return r.execute_command(*cmd)
    except redis.RedisError:
        return None
    finally:
        r.close()


class Topology:
    """The nodes of one topology, as its up script recorded them, and what
    they say about who is master."""

    def __init__(self, kind: str):
        self.kind = kind
        _, self.env = B.redis_ha_state(kind)
        self.password = B.redis_ha_password(kind)
        if kind == "redis_cluster":
            self.ports = [int(p) for p in self.env["REDIS_CLUSTER_PORTS"].split()]
            assert len(self.ports) == 6, self.env
        else:
            self.sentinel_ports = [int(p) for p in self.env["REDIS_SENTINEL_PORTS"].split()]
            self.master_name = self.env["REDIS_SENTINEL_MASTER"]
            # the node script's names for the two data nodes (original roles)
            self.data_nodes = {int(self.env["REDIS_MASTER_PORT"]): "master",
                               int(self.env["REDIS_REPLICA_PORT"]): "replica"}

    # --- cluster ---

    def slot_master(self, slot: int) -> Optional[int]:
        """The port of the master owning SLOT, as a majority of the live
        nodes report it (CLUSTER SLOTS); None without a majority."""
        votes: Counter = Counter()
        for p in self.ports:
            ranges = _ask(p, self.password, "CLUSTER", "SLOTS")
            if not ranges:
                continue
            for r in ranges:
                if int(r[0]) <= slot <= int(r[1]):
                    votes[int(r[2][1])] += 1
        if not votes:
            return None
        port, n = votes.most_common(1)[0]
        return port if n * 2 > sum(votes.values()) else None

    def keyslot(self, key: bytes) -> int:
        for p in self.ports:
            slot = _ask(p, self.password, "CLUSTER", "KEYSLOT", key)
            if slot is not None:
                return int(slot)
        raise AssertionError(f"no cluster node answers CLUSTER KEYSLOT (ports {self.ports})")

    def cluster_problem(self) -> Optional[str]:
        """None when every node is up with cluster_state:ok and all 16384
        slots served, and 3 masters each have a replica; else what is wrong."""
        for p in self.ports:
            info = _ask(p, self.password, "CLUSTER", "INFO")
            if info is None:
                return f"node 127.0.0.1:{p} does not answer"
            text = info.decode() if isinstance(info, bytes) else str(info)
            fields = dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)
            if fields.get("cluster_state") != "ok" or fields.get("cluster_slots_ok") != "16384":
                return f"node 127.0.0.1:{p}: cluster_state {fields.get('cluster_state')}, " \
                       f"slots ok {fields.get('cluster_slots_ok')}"
        ranges = _ask(self.ports[0], self.password, "CLUSTER", "SLOTS") or []
        masters = {int(r[2][1]) for r in ranges}
        if len(masters) != 3 or any(len(r) < 4 for r in ranges):
            return f"CLUSTER SLOTS: masters {sorted(masters)}, ranges without a replica: " \
                   f"{[r[:2] for r in ranges if len(r) < 4]}"
        return None

    # --- sentinel ---

    def sentinel_master(self) -> Optional[int]:
        """The port of the master a majority of the sentinels name."""
        votes: Counter = Counter()
        for p in self.sentinel_ports:
            addr = _ask(p, None, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
            if addr:
                votes[int(addr[1])] += 1
        if not votes:
            return None
        port, n = votes.most_common(1)[0]
        return port if n * 2 > len(self.sentinel_ports) else None

    def sentinel_problem(self) -> Optional[str]:
        port = self.sentinel_master()
        if port is None:
            return "no majority of sentinels names a master"
        r = _node(port, self.password)
        try:
            info = r.info("replication")
        except redis.RedisError as e:
            return f"the master the sentinels name (127.0.0.1:{port}) does not answer: {e}"
        finally:
            r.close()
        if info.get("role") != "master" or int(info.get("connected_slaves", 0)) != 1:
            return f"127.0.0.1:{port}: role {info.get('role')}, {info.get('connected_slaves')} replicas"
        return None

    # --- both ---

    def problem(self) -> Optional[str]:
        return self.cluster_problem() if self.kind == "redis_cluster" else self.sentinel_problem()

    def wait_healthy(self, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while (p := self.problem()) is not None:
            assert time.monotonic() < deadline, f"[{self.kind}] {what}: not healthy after {timeout} s: {p}"
            time.sleep(0.2)

    def master_of(self, key: bytes) -> Optional[int]:
        """The port of the master holding KEY now, None when unsure."""
        return self.slot_master(self.keyslot(key)) if self.kind == "redis_cluster" else self.sentinel_master()

    def node_name(self, port: int) -> str:
        """The node script's name of the process on PORT."""
        if self.kind == "redis_cluster":
            return str(self.ports.index(port))
        return self.data_nodes[port]


@dataclass
class Req:
    op: str  # "write" or "read"
    start: float  # seconds since the load began
    end: float
    status: int  # HTTP status; 0 for no answer (connection error, timeout)
    detail: str = ""


@dataclass
class Load:
    """What the load threads share."""

    t0: float
    proxy_port: int
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reqs: List[Req] = field(default_factory=list)
    acked: Dict[int, int] = field(default_factory=dict)  # user id -> event time (s)
    acked_ids: List[int] = field(default_factory=list)
    wrong_reads: List[str] = field(default_factory=list)


def load_values(uid: int) -> Tuple[float, int]:
    """(spend, visits) written for user UID: both name the id."""
    return uid + 0.25, uid % 2_000_000_000


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_body(uid: int, ets: int) -> Dict[str, Any]:
    spend, visits = load_values(uid)
    return {"feature_view_name": LOAD_VIEW,
            "df": {"user_id": [uid], "merchant_id": [LOAD_MERCHANT], "spend": [spend], "visits": [visits],
                   "event_timestamp": [iso(ets)]}}


def read_body(uids: List[int]) -> Dict[str, Any]:
    return {"features": LOAD_FEATURES,
            "entities": {"user_id": list(uids), "merchant_id": [LOAD_MERCHANT] * len(uids)}}


def mismatches(body: Dict[str, Any], uids: List[int], acked: Dict[int, int]) -> List[str]:
    """Ids whose answer is not exactly what was written: PRESENT, the two
    values, the event time."""
    cols = H.columns(body)
    out = []
    for i, uid in enumerate(uids):
        spend, visits = load_values(uid)
        got = [(cols[f]["statuses"][i], cols[f]["values"][i], cols[f]["event_timestamps"][i])
               for f in ("spend", "visits")]
        want = [("PRESENT", spend, iso(acked[uid])), ("PRESENT", visits, iso(acked[uid]))]
        if got != want:
            out.append(f"user {uid}: got {got}, want {want}")
    return out


def _pace(load: Load, i: int, offset: float) -> bool:
    """Waits for request I's slot; False when the load was called off."""
    delay = load.t0 + offset + i * PERIOD - time.monotonic()
    if delay > 0:
        return not load.done.wait(delay)
    return not load.done.is_set()


def _post(client: H.KeepAliveClient, path: str, body: Dict[str, Any]) -> Tuple[int, bytes, str]:
    try:
        status, out = client.post(path, body)
        return status, out, "" if status == 200 else out[:2000].decode(errors="replace")
    except Exception as e:  # no answer: counts as a failed request
        return 0, b"", repr(e)[:300]


def writer(load: Load, w: int) -> None:
    client = H.KeepAliveClient(load.proxy_port, timeout=30)
    try:
        for i in range(PER_THREAD):
            if not _pace(load, i, w * PERIOD / (WRITERS + READERS)):
                return
            uid = w * ID_STRIDE + 1 + i
            ets = LOAD_TS0 + i * WRITERS + w  # increasing over the whole load
            start = time.monotonic() - load.t0
            status, _, detail = _post(client, "/write-to-online-store", write_body(uid, ets))
            end = time.monotonic() - load.t0
            with load.lock:
                load.reqs.append(Req("write", start, end, status, detail))
                if status == 200:
                    load.acked[uid] = ets
                    load.acked_ids.append(uid)
    finally:
        client.close()


def reader(load: Load, r: int) -> None:
    client = H.KeepAliveClient(load.proxy_port, timeout=30)
    rnd = random.Random(r)
    try:
        for i in range(PER_THREAD):
            if not _pace(load, i, (WRITERS + r) * PERIOD / (WRITERS + READERS)):
                return
            with load.lock:
                if not load.acked_ids:
                    continue
                # mostly recent writes, some older ones
                n = len(load.acked_ids)
                uid = load.acked_ids[rnd.randrange(max(0, n - 50), n) if rnd.random() < 0.5 else rnd.randrange(n)]
                acked = {uid: load.acked[uid]}
            start = time.monotonic() - load.t0
            status, out, detail = _post(client, "/get-online-features", read_body([uid]))
            end = time.monotonic() - load.t0
            wrong = []
            if status == 200:
                wrong = mismatches(json.loads(out), [uid], acked)
            with load.lock:
                load.reqs.append(Req("read", start, end, status, detail))
                if wrong:
                    load.wrong_reads.append(f"at +{start:.2f} s: {wrong[0]}")
    finally:
        client.close()


def error_kind(detail: str) -> str:
    """A failed request's message for grouping: the inner `message` of a
    Feast-shaped error body without what names the view, numbers left out
    ("next probe in 843 ms")."""
    m = re.search(r'\\"message\\":\\"(.*?)\\"', detail)
    text = m.group(1).split("; not written")[0] if m else detail[:200]
    return re.sub(r"[0-9]+", "N", text)


def check_acked(env: Env, acked: Dict[int, int]) -> Tuple[List[str], List[str]]:
    """Reads every acknowledged id through the proxy and through a fresh
    Feast SDK client; returns (proxy mismatches, Feast mismatches)."""
    uids = sorted(acked)
    lost_proxy, lost_feast = [], []
    fs = H.feature_store(env.repo)  # a new client, as a new Feast process would
    for i in range(0, len(uids), 200):
        chunk = uids[i:i + 200]
        r = env.proxy.post("/get-online-features", read_body(chunk))
        assert r.status_code == 200, f"[{env.kind}] reading acknowledged writes: {r.status_code} {r.text[:1000]}"
        lost_proxy += mismatches(r.json(), chunk, acked)
        lost_feast += mismatches(H.sdk_json(fs, LOAD_FEATURES, read_body(chunk)["entities"]), chunk, acked)
    return lost_proxy, lost_feast


def test_failover_under_load(env):
    env = ready(env)
    topo = Topology(env.kind)
    topo.wait_healthy(60, "before the failover")
    first_key = B.redis_key(H.entity_key_bytes({"user_id": 1, "merchant_id": LOAD_MERCHANT}), env.project)
    victim_port = topo.master_of(first_key)
    assert victim_port is not None, f"[{env.kind}] no master found for the first key"
    victim = topo.node_name(victim_port)

    load = Load(t0=time.monotonic() + 0.2, proxy_port=env.proxy.port)
    threads = [threading.Thread(target=writer, args=(load, w), name=f"writer{w}") for w in range(WRITERS)]
    threads += [threading.Thread(target=reader, args=(load, r), name=f"reader{r}") for r in range(READERS)]
    stopped = False
    t_stop = t_stopped = t_promoted = None
    new_master = None
    try:
        for t in threads:
            t.start()
        time.sleep(max(0.0, load.t0 + STOP_AT - time.monotonic()))
        t_stop = time.monotonic() - load.t0
        B.redis_ha_node(env.kind, "stop", victim)
        stopped = True
        t_stopped = time.monotonic() - load.t0
        # When the topology names another master for the key.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            port = topo.master_of(first_key)
            if port is not None and port != victim_port:
                t_promoted, new_master = time.monotonic() - load.t0, port
                break
            time.sleep(0.1)
        for t in threads:
            t.join(timeout=DURATION + 120)
        assert not any(t.is_alive() for t in threads), "load threads still running 2 minutes after the load's end"
        assert load.reqs, "the load sent no request"
        t_end = max(r.end for r in load.reqs)

        lost_proxy, lost_feast = check_acked(env, load.acked)

        reqs = load.reqs
        errors = [r for r in reqs if r.status != 200]
        window = (max(r.end for r in errors) - min(r.start for r in errors)) if errors else 0.0
        codes = Counter(r.status for r in errors)
        last = [r for r in reqs if r.start >= DURATION - 1.0]
        writes = sum(r.op == "write" for r in reqs)
        lat = sorted(r.end - r.start for r in reqs)
        promo = f"{t_promoted - t_stop:.1f} s after the stop began" if t_promoted is not None else "NOT within 30 s"
        H.report(
            f"redis-ha [{env.kind}] failover under load: {len(reqs)} requests ({writes} writes, "
            f"{len(reqs) - writes} reads) in {t_end:.1f} s ({len(reqs) / t_end:.0f}/s); stopped master "
            f"127.0.0.1:{victim_port} (node {victim}) at +{t_stop:.1f} s (gone at +{t_stopped:.1f} s), new master "
            f"{promo}; {len(errors)} errors {dict(codes)}"
            + (f" from +{min(r.start for r in errors):.2f} s to +{max(r.end for r in errors):.2f} s "
               f"(window {window:.2f} s)" if errors else "")
            + f"; latency p50 {lat[len(lat) // 2] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms; "
            f"{len(load.acked)} acknowledged writes checked: {len(lost_proxy)} lost via the proxy, "
            f"{len(lost_feast)} via Feast's SDK; {len(load.wrong_reads)} wrong reads under load")
        if errors:
            samples = Counter(f"{r.op} {r.status} {error_kind(r.detail)}" for r in errors)
            H.report(f"redis-ha [{env.kind}] errors by kind: "
                     + "; ".join(f"{n} x {s}" for s, n in samples.most_common(6)))

        assert t_promoted is not None, f"[{env.kind}] no new master within 30 s of stopping node {victim}"
        assert not lost_proxy, (f"[{env.kind}] {len(lost_proxy)} of {len(load.acked)} acknowledged writes are not "
                                f"read back through the proxy, e.g.\n  " + "\n  ".join(lost_proxy[:10]))
        assert not lost_feast, (f"[{env.kind}] {len(lost_feast)} of {len(load.acked)} acknowledged writes are not "
                                f"read back by Feast's SDK, e.g.\n  " + "\n  ".join(lost_feast[:10]))
        assert not load.wrong_reads, (f"[{env.kind}] reads answered 200 with other values than the acknowledged "
                                      f"write's:\n  " + "\n  ".join(load.wrong_reads[:10]))
        assert len(load.acked) >= PER_THREAD * WRITERS // 2, \
            f"[{env.kind}] only {len(load.acked)} of {PER_THREAD * WRITERS} writes acknowledged"
        if errors:
            first = min(r.end for r in errors)
            assert first >= t_stop, (f"[{env.kind}] a request failed at +{first:.2f} s, before the master was "
                                     f"stopped (+{t_stop:.2f} s): {[r for r in errors if r.end < t_stop][:3]}")
            assert window < MAX_ERROR_WINDOW, (
                f"[{env.kind}] failed requests spread over {window:.1f} s (limit {MAX_ERROR_WINDOW} s): "
                f"{dict(codes)}")
        assert len(last) >= RATE // 2 and all(r.status == 200 for r in last), (
            f"[{env.kind}] the load's last second: {len(last)} requests, "
            f"{sum(r.status != 200 for r in last)} failed: {[r for r in last if r.status != 200][:3]}")
    finally:
        load.done.set()
        for t in threads:
            if t.ident is not None:
                t.join(timeout=60)
        if stopped:
            restore(topo, victim, victim_port, first_key)


def restore(topo: Topology, victim: str, victim_port: int, key: bytes) -> None:
    """Restarts the stopped node once another master serves its data (KEY's
    slot in a cluster: a replica's promotion takes all of its master's
    slots; a master restarted before that would come back empty and keep
    its role), and waits until the topology is healthy again."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and topo.master_of(key) in (None, victim_port):
        time.sleep(0.2)
    B.redis_ha_node(topo.kind, "start", victim)
    topo.wait_healthy(60, f"after restarting node {victim}")
