"""Feast and hos-proxy share data on Redis, Bigtable and Cassandra.

For each store type, a Feast repo (the repo_template definitions: every
dtype, a two-entity view, an entityless view) whose `online_store` is that
single store, pointed at the local server under a fresh project name (and a
fresh Bigtable instance / Cassandra keyspace):

1. Feast writes (write_to_online_store; materialize for the entityless
   view); the proxy, started on the same repo, answers exactly what Feast's
   own get_online_features answers (values, statuses, event timestamps),
   except where Feast's Redis store reports a missing entity as PRESENT +
   null + epoch: the proxy says NOT_FOUND on every backend, so Feast's
   answer is normalised to that before comparing. Cassandra's millisecond
   event times are compared as Feast itself reads them back.
2. The proxy writes (POST /write-to-online-store: every dtype, two-entity,
   entityless); Feast's SDK reads them back as it reads the same rows
   written by Feast itself (under other entity ids, same project), and the
   stored bytes equal the bytes Feast stored.
"""

import copy
from datetime import datetime, timedelta, timezone

import pytest

import backendutil as B
import hosutil as H
from test_feast_writes_proxy_reads import CASES
from test_proxy_writes_feast_reads import UM_WRITES, USER_WRITES, columnar, feast_df

pytestmark = pytest.mark.filterwarnings("ignore:Connecting to Bigtable emulator:RuntimeWarning")

EPOCH = "1970-01-01T00:00:00Z"
REF_OFFSET = 1000  # Feast's reference rows: same rows, user_id + 1000


class Env:
    def __init__(self, kind):
        self.kind = kind
        self.missing = None
        self.proxy = None
        self.fs = None


@pytest.fixture(scope="module", params=B.KINDS)
def env(request, tmp_path_factory):
    """A filled Feast repo on the server of one store type and a proxy on it."""
    kind = request.param
    e = Env(kind)
    try:
        B.online_store_yaml(kind, instance="x", keyspace="x")  # checks the server's env vars
    except pytest.fail.Exception as exc:
        # The tests fail (rather than error out here) with this message.
        e.missing = str(exc)
        yield e
        return
    H.require_proxy_bin()
    cleanup = B.Cleanup()
    e.project = B.uniq(f"hx{kind[:2]}")
    e.instance = B.uniq("hos-")
    e.keyspace = B.uniq("hos_ks_")
    try:
        if kind == "cassandra":
            B.create_keyspace(e.keyspace)
            cleanup.keyspace(e.keyspace)
        elif kind == "bigtable":
            cleanup.bigtable(e.instance)
        else:
            cleanup.redis(e.project)
        work = tmp_path_factory.mktemp(f"backend_{kind}")
        e.repo = work / "repo"
        H.make_base_repo(e.repo, B.feature_store_yaml(
            e.project, B.online_store_yaml(kind, instance=e.instance, keyspace=e.keyspace)))
        e.fs = H.feature_store(e.repo)
        e.proxy = H.start_proxy(["--repo", str(e.repo)], work / "logs", name=f"hos-proxy-{kind}")
        yield e
    finally:
        if e.proxy is not None:
            e.proxy.stop()
        cleanup.run()


def ready(env):
    if env.missing:
        pytest.fail(env.missing, pytrace=False)
    return env


def feast_expected(env, features, entities, full=False):
    """Feast's answer, with Redis's missing-entity quirk normalised."""
    want = H.sdk_json(env.fs, features, entities, full)
    if env.kind == "redis":
        keys = set(entities)
        for name, col in zip(want["metadata"]["feature_names"], want["results"]):
            if name in keys:
                continue
            for i, (v, s, t) in enumerate(zip(col["values"], col["statuses"], col["event_timestamps"])):
                if s == "PRESENT" and v is None and t == EPOCH:
                    col["statuses"][i] = "NOT_FOUND"
    return want


READ_CASES = dict(CASES)


@pytest.mark.parametrize("full", [False, True], ids=["short", "full"])
def test_feast_writes_proxy_reads(env, full):
    env = ready(env)
    for case, (features, entities, _) in READ_CASES.items():
        body = {"features": features, "entities": entities, "full_feature_names": full}
        r = env.proxy.post("/get-online-features", body)
        assert r.status_code == 200, f"[{env.kind}] POST /get-online-features {body} -> {r.status_code} {r.text[:1000]}"
        H.assert_same_response(r.json(), feast_expected(env, features, entities, full),
                               f"[{env.kind}] {case} full={full}")
    # a feature service
    entities = {"user_id": [1001, 1002, 999], "merchant_id": ["m-1", "m-2", "m-1"]}
    r = env.proxy.post("/get-online-features", {"feature_service": "svc", "entities": entities,
                                                "full_feature_names": full})
    assert r.status_code == 200, r.text[:1000]
    H.assert_same_response(r.json(), feast_expected(env, env.fs.get_feature_service("svc"), entities, full),
                           f"[{env.kind}] svc full={full}")


def test_feast_event_times_as_stored(env):
    """The sub-second event time of user 1001 (12:34:56.789123), as each
    store keeps it: microseconds in Redis and Bigtable, milliseconds in
    Cassandra (the proxy must not add back or drop precision)."""
    env = ready(env)
    r = env.proxy.post("/get-online-features", {"features": ["user_features:f_int64"], "entities": {"user_id": [1001]}})
    assert r.status_code == 200, r.text
    want = {"cassandra": "2024-05-01T12:34:56.789Z"}.get(env.kind, "2024-05-01T12:34:56.789123Z")
    assert H.columns(r.json())["f_int64"]["event_timestamps"] == [want]


# ---------------------------------------------------------------------------
# proxy writes, Feast reads
# ---------------------------------------------------------------------------


def shifted(rows):
    out = copy.deepcopy(rows)
    for r in out:
        r["user_id"] += REF_OFFSET
    return out


def strip_columns(body, names):
    body = copy.deepcopy(body)
    keep = [i for i, n in enumerate(body["metadata"]["feature_names"]) if n not in names]
    body["metadata"]["feature_names"] = [body["metadata"]["feature_names"][i] for i in keep]
    body["results"] = [body["results"][i] for i in keep]
    return body


USER_IDS = [5001, 5002, 5003, 5004, 5005, 5006, 999]
UM_KEYS = {"user_id": [5001, 5001, 5002, 5001], "merchant_id": ["w-1", "w-2", "é", "nope"]}


def storage_of(env, view, entity_key):
    """What the store holds for one entity of VIEW, in a comparable form;
    None when it holds nothing."""
    if env.kind == "redis":
        key = B.redis_key(entity_key, env.project)
        h = B.redis_hash(key)
        if not h:
            return None
        return {"fields": h, "ttl": B.redis_client().ttl(key)}
    if env.kind == "cassandra":
        rows = B.cassandra_rows(env.keyspace, f"{env.project}_{view}")
        got = {f: v for (ek, f), v in rows.items() if ek == entity_key.hex()}
        return got or None
    table = {"user_features": "user", "user_merchant": "merchant-user", "global_stats": "__dummy"}[view]
    rows = B.bigtable_rows(env.instance, f"{env.project}.{table}")
    return rows.get(B.bigtable_row_key(entity_key, view))


def test_proxy_writes_feast_reads(env):
    env = ready(env)
    fs = env.fs
    for view, batches in (("user_features", USER_WRITES), ("user_merchant", UM_WRITES)):
        for rows in batches:
            body = {"feature_view_name": view, "df": columnar(rows)}
            r = env.proxy.post("/write-to-online-store", body)
            assert r.status_code == 200, f"[{env.kind}] POST /write-to-online-store {body} -> {r.status_code} {r.text[:1000]}"
            assert r.json() is None, r.text
            fs.write_to_online_store(view, feast_df(columnar(shifted(rows))))

    # --- Feast's SDK reads the proxy's rows as it reads its own ---
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
    got = H.columns(H.sdk_json(fs, ["user_features:f_int64", "user_features:f_int32", "user_features:f_bytes",
                                    "user_features:f_float32", "user_features:f_string"], {"user_id": [5001, 5003]}))
    assert got["f_int64"]["values"] == [9007199254740993, -9223372036854775808]
    # 5001 was rewritten with a newer event time: every store holds it.
    assert got["f_int32"]["values"] == [99, 2147483647]
    assert got["f_int32"]["event_timestamps"] == ["2024-06-01T00:00:00Z", "2024-05-01T12:34:56Z"]
    assert got["f_bytes"]["values"][0] == "AAH/"
    assert got["f_float32"]["values"][0] == 0.10000000149011612
    assert got["f_string"]["values"] == ["héllo \"q\" \\ 😀", "日本語"]
    frac = H.columns(H.sdk_json(fs, ["user_features:f_bool"], {"user_id": [5005]}))["f_bool"]
    want_ts = "2024-05-01T12:34:56.789Z" if env.kind == "cassandra" else "2024-05-01T12:34:56.789123Z"
    assert frac["event_timestamps"] == [want_ts], f"[{env.kind}] sub-second event time written by the proxy: {frac}"

    # --- the stored bytes are Feast's bytes ---
    pairs = [("user_features", {"user_id": u}, {"user_id": u + REF_OFFSET}) for u in USER_IDS if u != 999]
    pairs += [("user_merchant", {"user_id": u, "merchant_id": m}, {"user_id": u + REF_OFFSET, "merchant_id": m})
              for u, m in zip(*UM_KEYS.values()) if m != "nope"]
    for view, mine, theirs in pairs:
        a = storage_of(env, view, H.entity_key_bytes(mine))
        b = storage_of(env, view, H.entity_key_bytes(theirs))
        assert b is not None, f"test bug: Feast stored nothing for {view} {theirs}"
        if env.kind == "bigtable" and a is not None:
            # Feast stores `datetime.isoformat()` of the event time as the
            # DataFrame holds it: UTC for UTC input ("+00:00"), but an input
            # string with another offset ("+02:00") is kept in that offset.
            # Compare the instant, and require Feast's UTC spelling from the
            # proxy (what Feast writes for UTC times).
            qa, qb = a.get(("features", b"event_ts"), []), b.get(("features", b"event_ts"), [])
            for t in qa:
                assert B.BIGTABLE_TS_RE.fullmatch(t.decode()), f"[bigtable] {view} {mine}: event_ts text {t!r}"
            assert [datetime.fromisoformat(t.decode()) for t in qa] == [datetime.fromisoformat(t.decode()) for t in qb], (
                f"[bigtable] {view}: event_ts of proxy-written {mine} {qa} != Feast-written {theirs} {qb}")
            a = {k: v for k, v in a.items() if k != ("features", b"event_ts")}
            b = {k: v for k, v in b.items() if k != ("features", b"event_ts")}
        assert a == b, (f"[{env.kind}] {view}: storage of proxy-written {mine} differs from Feast-written {theirs}\n"
                        f" proxy {a}\n Feast {b}")


def test_proxy_writes_entityless(env):
    """Entityless rows written by the proxy land under Feast's `__dummy_id`
    key (never the zero-join-key key), and Feast reads them."""
    env = ready(env)
    from feast.protos.feast.types.Value_pb2 import Value

    dummy = bytes.fromhex(H.DUMMY_KEY_HEX)
    zero = bytes.fromhex("00000000")
    # Event times after the moment Feast materialized the row: Cassandra
    # keeps the cell with the newest write timestamp, which is the event
    # time for the proxy's writes and the wall clock for Feast's (README,
    # "Write semantics").
    soon = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0)
    t1, t2 = soon, soon + timedelta(hours=1, milliseconds=250)
    z = lambda t, frac="": t.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"
    for df, want, want_ts in [
        ({"total_users": [7], "note": ["x"], "event_timestamp": [z(t1)]}, 7, z(t1)),
        ({"__dummy_id": [""], "total_users": [8], "note": ["y"], "event_timestamp": [z(t2, ".25")]}, 8,
         z(t2, ".250")),
    ]:
        body = {"feature_view_name": "global_stats", "df": df}
        r = env.proxy.post("/write-to-online-store", body)
        assert r.status_code == 200, f"[{env.kind}] {body} -> {r.status_code} {r.text[:1000]}"
        got = H.columns(H.sdk_json(env.fs, H.feature_refs("global_stats", H.GLOBAL_FEATURES), {"user_id": [1]}))
        assert got["total_users"]["values"] == [want], f"[{env.kind}] Feast read {got} after the proxy wrote {df}"
        assert got["note"]["event_timestamps"] == [want_ts], got
        # and the proxy reads it too
        r = env.proxy.post("/get-online-features", {"features": ["global_stats:total_users"],
                                                    "entities": {"user_id": [1]}})
        assert r.status_code == 200 and H.columns(r.json())["total_users"]["values"] == [want], r.text
    stored = storage_of(env, "global_stats", dummy)
    v8 = Value(int64_val=8).SerializeToString()
    if env.kind == "redis":
        assert stored["fields"][B.redis_field("global_stats", "total_users")] == v8, stored
    elif env.kind == "cassandra":
        assert stored["total_users"][0] == v8, stored
    else:
        assert stored[("features", b"total_users")][0] == v8, stored
    assert storage_of(env, "global_stats", zero) is None, f"[{env.kind}] the proxy wrote under the zero-join-key key"
