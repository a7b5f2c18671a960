"""Feast's own `remote` online store, pointed at hos-proxy, reads and writes
the same data as Feast reading the SQLite file directly.

Known limits of Feast 0.67's remote client (not the server's): it ignores
`event_timestamps`, converts values without a type hint (bytes stay base64
strings, timestamps ints, int32 becomes int64; an empty list or a list mixing
numbers and "NaN" strings raises on the client), and cannot send Bytes
features. So: values and statuses are compared through Feast's JSON
conversion, for rows the client can represent, and writes go to views
without Bytes.
"""

import pandas as pd

import hosutil as H

REMOTE_YAML = """\
project: interop
registry: {registry}
provider: local
online_store:
  type: remote
  path: {url}
entity_key_serialization_version: 3
"""

# Rows 1003 (empty lists) and 1004 (NaN inside a list) cannot be parsed by
# Feast's remote client whatever the server sends.
READS = [
    (H.feature_refs("user_features", H.USER_FEATURE_NAMES), {"user_id": [1001, 1002, 999]}, False),
    (H.feature_refs("user_features", ["f_int64", "f_float32", "f_ts"]), {"user_id": [1003, 1004]}, True),
    (H.feature_refs("user_merchant", H.UM_FEATURES),
     {"user_id": [1001, 1001, 1002, 999], "merchant_id": ["m-1", "m-2", "m-1", "m-1"]}, True),
    (["global_stats:total_users", "global_stats:note", "user_merchant:spend"],
     {"user_id": [1001, 1002], "merchant_id": ["m-2", "m-1"]}, False),
]


def same_values_and_statuses(remote_json, direct_json, what):
    cr, cd = H.columns(remote_json), H.columns(direct_json)
    assert sorted(cr) == sorted(cd), f"{what}: names {list(cr)} != {list(cd)}"
    for name in cd:
        for k in ("values", "statuses"):
            d = H.diff_json(cr[name][k], cd[name][k], f"{name}.{k}")
            assert d is None, f"{what}: remote != direct: {d}\n remote {cr[name]}\n direct {cd[name]}"


def test_remote_store(clone, procs, tmp_path):
    repo = clone()
    proxy = procs.proxy(["--repo", str(repo)])
    remote_dir = tmp_path / "remote_repo"
    (remote_dir / "data").mkdir(parents=True)
    (remote_dir / "data" / "registry.db").write_bytes((repo / "data" / "registry.db").read_bytes())
    (remote_dir / "feature_store.yaml").write_text(
        REMOTE_YAML.format(registry=remote_dir / "data" / "registry.db", url=proxy.url))
    remote = H.feature_store(remote_dir)
    direct = H.feature_store(repo)
    assert type(remote._get_provider().online_store).__name__ == "RemoteOnlineStore"

    # --- reads ---
    for features, entities, full in READS:
        what = f"get_online_features {features[:3]}... {entities} full={full}"
        same_values_and_statuses(H.sdk_json(remote, features, entities, full),
                                 H.sdk_json(direct, features, entities, full), what)
    svc = remote.get_feature_service("svc")
    ents = {"user_id": [1001, 999], "merchant_id": ["m-1", "m-1"]}
    same_values_and_statuses(H.sdk_json(remote, svc, ents, True),
                             H.sdk_json(direct, direct.get_feature_service("svc"), ents, True), "feature service svc")

    # --- writes through the remote store (two entities, and entityless) ---
    ts = pd.Timestamp("2024-05-07 08:09:10.123456", tz="UTC")
    remote.write_to_online_store("user_merchant", pd.DataFrame(
        {"user_id": [7001, 7002], "merchant_id": ["r-1", "r-2"], "spend": [3.5, -4.25], "visits": [1, 2],
         "event_timestamp": [ts, ts]}))
    # Feast's own write_to_online_store stores entityless rows under a key no
    # read finds; through the proxy they must land under `__dummy_id`="".
    remote.write_to_online_store("global_stats", pd.DataFrame(
        {"total_users": [99], "note": ["via remote"], "event_timestamp": [ts]}))

    checks = [
        (H.feature_refs("user_merchant", H.UM_FEATURES), {"user_id": [7001, 7002, 7001], "merchant_id": ["r-1", "r-2", "r-2"]}),
        (H.feature_refs("global_stats", H.GLOBAL_FEATURES), {"user_id": [1]}),
    ]
    for features, entities in checks:
        d = H.sdk_json(direct, features, entities)
        same_values_and_statuses(H.sdk_json(remote, features, entities), d, f"after remote write {features}")
        cols = H.columns(d)
        if "spend" in cols:
            assert cols["spend"]["values"] == [3.5, -4.25, None]
            assert cols["spend"]["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
            assert cols["visits"]["event_timestamps"][:2] == ["2024-05-07T08:09:10Z"] * 2
        else:
            assert cols["total_users"]["values"] == [99], f"entityless write via remote not read back: {cols}"
            assert cols["note"]["values"] == ["via remote"]
            assert cols["note"]["event_timestamps"] == ["2024-05-07T08:09:10Z"]
    # the proxy wrote what Feast itself would write for these rows
    ref = clone("feast_ref")
    H.feature_store(ref).write_to_online_store("user_merchant", pd.DataFrame(
        {"user_id": [7001, 7002], "merchant_id": ["r-1", "r-2"], "spend": [3.5, -4.25], "visits": [1, 2],
         "event_timestamp": [ts, ts]}))
    keys = [H.entity_key_bytes({"user_id": 7001, "merchant_id": "r-1"}),
            H.entity_key_bytes({"user_id": 7002, "merchant_id": "r-2"})]
    mine = H.table_rows(repo / "data" / "online.db", "interop_user_merchant", keys)
    theirs = H.table_rows(ref / "data" / "online.db", "interop_user_merchant", keys)
    assert {k: v[:3] for k, v in mine.items()} == {k: v[:3] for k, v in theirs.items()}
