"""The seed's hybrid configuration on real servers.

1. api/tests/data/seed/feature_store.yaml (hybrid store, routing_tag team,
   a bigtable and a cassandra backend) with its values pointed at the local
   servers, plus a third backend `cache` of type redis; three FeatureView
   YAML files tagged team: bigtable, team: cassandra, team: cache, each with
   the same entity and feature names (so a mis-routed row would collide).
   `hos-proxy serve --apply`; rows written and read through the proxy; the
   servers' own clients show each view's rows only in its backend, in
   Feast's layout.
2. Two Cassandra backends (team_a -> keyspace team_a_ks, team_b ->
   team_b_ks) in one proxy: each view's rows land only in its keyspace.
"""

import pytest
import yaml

import backendutil as B
import hosutil as H

pytestmark = pytest.mark.filterwarnings("ignore:Connecting to Bigtable emulator:RuntimeWarning")

SEED = H.ROOT / "api" / "tests" / "data" / "seed" / "feature_store.yaml"
FEATURES = [("val", "string"), ("n", "int64"), ("score", "float64"), ("tags", "array<string>")]
USER = [("user", "user_id", "int64")]
TS = "2024-05-01T00:00:00Z"
TS_US = "2024-05-01T00:00:00.123456Z"


def seed_config(project, instance, keyspace):
    cfg = yaml.safe_load(SEED.read_text())
    stores = cfg["online_store"]["online_stores"]
    assert [s["type"] for s in stores] == ["bigtable", "cassandra"], f"the seed changed: {stores}"
    cfg["project"] = project
    bt = stores[0]["conf"]
    bt["project_id"] = B.BT_PROJECT
    bt["instance"] = instance
    cs = stores[1]["conf"]
    host, port = B.cassandra_addr()
    cs["hosts"] = [host]
    cs["port"] = port
    cs["keyspace"] = keyspace
    creds = B.cassandra_creds()
    if creds:
        cs["username"], cs["password"] = creds
    else:
        # The test server runs without authentication.
        cs.pop("username", None)
        cs.pop("password", None)
    stores.append({"name": "cache", "type": "redis", "conf": {"connection_string": B.redis_connection_string()}})
    return cfg


def rows_for(view, k, uids, ts):
    return {"user_id": uids, "val": [f"{view}-{u}" for u in uids], "n": [100 * k + u for u in uids],
            "score": [k + u / 4 for u in uids], "tags": [[view, str(u)] for u in uids], "event_timestamp": [ts] * len(uids)}


def value_bytes(fname, v):
    from feast.protos.feast.types.Value_pb2 import StringList, Value

    if fname == "val":
        return Value(string_val=v).SerializeToString()
    if fname == "n":
        return Value(int64_val=v).SerializeToString()
    if fname == "score":
        return Value(double_val=v).SerializeToString()
    return Value(string_list_val=StringList(val=v)).SerializeToString()


def test_seed_hybrid_three_backends(procs, tmp_path):
    B.bigtable_host()
    B.cassandra_addr()
    B.redis_addr()
    project = B.uniq("seed_")
    instance = B.uniq("seed-")
    keyspace = B.uniq("seed_ks_")
    cleanup = B.Cleanup()
    try:
        B.create_keyspace(keyspace)
        cleanup.keyspace(keyspace)
        cleanup.bigtable(instance)
        cleanup.redis(project)
        repo = tmp_path / "seed"
        (repo / "feature_views").mkdir(parents=True)
        (repo / "feature_store.yaml").write_text(yaml.safe_dump(seed_config(project, instance, keyspace),
                                                                sort_keys=False))
        views = {"seed_bt": "bigtable", "seed_cs": "cassandra", "seed_cache": "cache"}
        for name, team in views.items():
            B.write_yaml_view(repo / "feature_views" / f"{name}.yaml", name, team, USER, FEATURES)
        proxy = procs.proxy(["--repo", str(repo), "--feature-views", str(repo / "feature_views"), "--apply"])

        # --- write every view through the proxy ---
        written = {}
        for k, view in enumerate(views, start=1):
            for uids, ts in (([1, 2], TS), ([3], TS_US)):
                df = rows_for(view, k, uids, ts)
                r = proxy.post("/write-to-online-store", {"feature_view_name": view, "df": df})
                assert r.status_code == 200, f"write {view} {df} -> {r.status_code} {r.text[:1000]}"
                for i, u in enumerate(uids):
                    written[(view, u)] = ({f: df[f][i] for f, _ in FEATURES}, ts)

        # --- read them back through the proxy ---
        feats = [f"{v}:{f}" for v in views for f, _ in FEATURES]
        body = {"features": feats, "entities": {"user_id": [1, 2, 3, 999]}, "full_feature_names": True}
        r = proxy.post("/get-online-features", body)
        assert r.status_code == 200, f"{body} -> {r.status_code} {r.text[:1000]}"
        cols = H.columns(r.json())
        for view in views:
            for f, _ in FEATURES:
                col = cols[f"{view}__{f}"]
                assert col["values"] == [written[(view, u)][0][f] for u in (1, 2, 3)] + [None], (view, f, col)
                assert col["statuses"] == ["PRESENT"] * 3 + ["NOT_FOUND"], (view, f, col)
            ets = cols[f"{view}__val"]["event_timestamps"]
            frac = "2024-05-01T00:00:00.123Z" if view == "seed_cs" else "2024-05-01T00:00:00.123456Z"
            assert ets == [TS, TS, frac, "1970-01-01T00:00:00Z"], (view, ets)

        keys = {u: H.entity_key_bytes({"user_id": u}) for u in (1, 2, 3)}

        # --- Bigtable: only seed_bt, in the table of entity `user` ---
        tables = B.bigtable_tables(instance)
        assert tables == [f"{project}.user"], f"Bigtable tables of instance {instance}: {tables}"
        assert B.bigtable_families(instance, tables[0]) == {"features": 2}, "column family `features`, max 2 versions"
        bt_rows = B.bigtable_rows(instance, tables[0])
        want_keys = {B.bigtable_row_key(keys[u], "seed_bt"): u for u in keys}
        assert set(bt_rows) == set(want_keys), f"Bigtable row keys: {sorted(bt_rows)} (want {sorted(want_keys)})"
        for rk, u in want_keys.items():
            vals, ts = written[("seed_bt", u)]
            want = {("features", f.encode()): [value_bytes(f, vals[f])] for f, _ in FEATURES}
            want[("features", b"event_ts")] = [
                (b"2024-05-01T00:00:00.123456+00:00" if ts == TS_US else b"2024-05-01T00:00:00+00:00")]
            assert bt_rows[rk] == want, f"Bigtable row {rk!r}: {bt_rows[rk]}"

        # --- Cassandra: only seed_cs ---
        tables = B.cassandra_tables(keyspace)
        assert tables == [f"{project}_seed_cs"], f"Cassandra tables of {keyspace}: {tables}"
        cs_rows = B.cassandra_rows(keyspace, tables[0])
        want = {}
        for u, ek in keys.items():
            vals, ts = written[("seed_cs", u)]
            ms = 1714521600000 + (123 if ts == TS_US else 0)
            for f, _ in FEATURES:
                want[(ek.hex(), f)] = (value_bytes(f, vals[f]), ms, None, None)
        assert cs_rows == want, f"Cassandra rows of {tables[0]}:\n got  {cs_rows}\n want {want}"

        # --- Redis: only seed_cache ---
        from google.protobuf.timestamp_pb2 import Timestamp

        rkeys = B.redis_keys(project)
        assert rkeys == sorted(B.redis_key(ek, project) for ek in keys.values()), f"Redis keys: {rkeys}"
        for u, ek in keys.items():
            vals, ts = written[("seed_cache", u)]
            want = {B.redis_field("seed_cache", f): value_bytes(f, vals[f]) for f, _ in FEATURES}
            want[b"_ts:seed_cache"] = Timestamp(seconds=1714521600,
                                                nanos=123456000 if ts == TS_US else 0).SerializeToString()
            got = B.redis_hash(B.redis_key(ek, project))
            assert got == want, f"Redis hash of user {u}:\n got  {got}\n want {want}"
    finally:
        cleanup.run()


TEAMS_YAML = """\
project: {project}
provider: local
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - type: cassandra
      name: team_a
      conf:
        hosts: [{host}]
        port: {port}
        keyspace: team_a_ks
{creds}    - type: cassandra
      name: team_b
      conf:
        hosts: [{host}]
        port: {port}
        keyspace: team_b_ks
{creds}entity_key_serialization_version: 3
"""


def test_two_cassandra_teams(procs, tmp_path):
    host, port = B.cassandra_addr()
    creds = B.cassandra_creds()
    creds_yaml = f"        username: {creds[0]}\n        password: {creds[1]}\n" if creds else ""
    project = B.uniq("teams_")
    cleanup = B.Cleanup()
    try:
        for ks in ("team_a_ks", "team_b_ks"):
            B.create_keyspace(ks, drop_first=True)
            cleanup.keyspace(ks)
        repo = tmp_path / "teams"
        repo.mkdir()
        (repo / "feature_store.yaml").write_text(TEAMS_YAML.format(project=project, host=host, port=port,
                                                                   creds=creds_yaml))
        B.write_yaml_view(repo / "va.yaml", "va", "team_a", USER, FEATURES)
        B.write_yaml_view(repo / "vb.yaml", "vb", "team_b", USER + [("merchant", "merchant_id", "string")], FEATURES)
        proxy = procs.proxy(["--repo", str(repo), "--feature-views", str(repo / "va.yaml"),
                             "--feature-views", str(repo / "vb.yaml"), "--apply"])
        a = rows_for("va", 1, [1, 2], TS)
        b = dict(rows_for("vb", 2, [1, 2], TS), merchant_id=["m", "m"])
        for view, df in (("va", a), ("vb", b)):
            r = proxy.post("/write-to-online-store", {"feature_view_name": view, "df": df})
            assert r.status_code == 200, f"write {view} -> {r.status_code} {r.text[:1000]}"
        r = proxy.post("/get-online-features", {"features": ["va:val", "vb:val", "vb:n"], "full_feature_names": True,
                                                "entities": {"user_id": [1, 2, 3], "merchant_id": ["m", "m", "m"]}})
        assert r.status_code == 200, r.text
        cols = H.columns(r.json())
        assert cols["va__val"]["values"] == ["va-1", "va-2", None]
        assert cols["vb__val"]["values"] == ["vb-1", "vb-2", None]
        assert cols["vb__n"]["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND"]

        ta, tb = B.cassandra_tables("team_a_ks"), B.cassandra_tables("team_b_ks")
        assert ta == [f"{project}_va"], f"team_a_ks tables: {ta}"
        assert tb == [f"{project}_vb"], f"team_b_ks tables: {tb}"
        for ks, view, df, extra in (("team_a_ks", "va", a, {}), ("team_b_ks", "vb", b, {"merchant_id": "m"})):
            got = B.cassandra_rows(ks, f"{project}_{view}")
            want = {}
            for i, u in enumerate(df["user_id"]):
                ek = H.entity_key_bytes({"user_id": u, **extra})
                for f, _ in FEATURES:
                    want[(ek.hex(), f)] = (value_bytes(f, df[f][i]), 1714521600000, None, None)
            assert got == want, f"{ks}.{project}_{view}:\n got  {got}\n want {want}"
    finally:
        cleanup.run()
