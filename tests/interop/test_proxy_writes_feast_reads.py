"""Rows written through hos-proxy (POST /write-to-online-store, /push) are
read by Feast's SDK exactly as the same rows written by Feast itself, and
the SQLite bytes are the same as Feast's.

The reference is `feast serve`'s own write path, run in-process:
`store.write_to_online_store(view, pd.DataFrame(request.df))`
(feature_server.py). Feast cannot take Bytes over HTTP at all; the proxy
takes them as base64 (the read encoding), and the reference gets the decoded
bytes.
"""

import base64
import copy

import pandas as pd

import hosutil as H

TS = "2024-05-01T12:34:56Z"


def user_row(uid, **over):
    row = dict(
        user_id=uid, f_int32=-7, f_int64=9007199254740993, f_float32=0.1, f_float64=0.1,
        f_string="héllo \"q\" \\ 😀", f_bytes="AAH/", f_bool=True, f_ts=1672628645,
        f_int64_list=[1, 2, 3], f_string_list=["a", "b"], f_float64_list=[1.5, -0.25],
        f_int32_list=[1, -2], f_bool_list=[True, False], f_float32_list=[0.5, 0.1],
        f_bytes_list=["AQ==", ""], f_ts_list=[1672628645, 1], event_timestamp=TS,
    )
    row.update(over)
    return row


def columnar(rows):
    return {k: [r[k] for r in rows] for k in rows[0]}


# (view, df) in write order. One row per request where a row has nulls, so
# pandas does not turn an int column with None into floats in the reference.
USER_WRITES = [
    [user_row(5001)],
    [user_row(5002, f_int64=None, f_float32=None, f_float64=None, f_string=None, f_bytes=None, f_bool=None,
              f_ts=None, f_int64_list=None, f_float64_list=None, f_int32_list=None, f_bool_list=None,
              f_float32_list=None, f_bytes_list=None, f_ts_list=None, event_timestamp="2024-05-02T00:00:01Z")],
    # two rows in one request, other timestamp spellings
    [user_row(5003, f_int32=2147483647, f_int64=-9223372036854775808, f_float64=1e20, f_string="日本語",
              f_bytes=base64.b64encode(bytes(range(256))).decode(), event_timestamp="2024-05-01T14:34:56+02:00"),
     user_row(5004, f_int32=0, f_int64=0, f_float32=-1.5, f_float64=-0.0, f_string="x" * 1000,
              f_bool=False, f_ts=0, event_timestamp="2024-05-01T12:34:57+02:00")],
    # empty values and lists; naive sub-second time (taken as UTC, truncated).
    # With a second row: Feast's SDK turns a column whose only value is b""
    # into null (its type sample skips empty values), an artifact of the
    # in-process reference, not of `feast serve`.
    [user_row(5005, f_string="", f_bytes="", f_bool=False, f_int64_list=[], f_string_list=[], f_float64_list=[],
              f_int32_list=[], f_bool_list=[], f_float32_list=[], f_bytes_list=[], f_ts_list=[],
              event_timestamp="2024-05-01 12:34:56.789123"),
     user_row(5006, event_timestamp="2024-05-01 12:34:58.000001")],
    # an overwrite of 5001 with a newer event time (an older one would be
    # skipped by the proxy, while Feast's SQLite store overwrites anyway:
    # tests/interop/test_newest_wins.py covers that)
    [user_row(5001, f_int32=99, event_timestamp="2024-06-01T00:00:00Z")],
]

UM_WRITES = [
    [dict(user_id=5001, merchant_id="w-1", spend=1.5, visits=1, event_timestamp=TS),
     dict(user_id=5001, merchant_id="w-2", spend=2.5, visits=2, event_timestamp="2024-05-01T12:35:00Z")],
    [dict(user_id=5002, merchant_id="é", spend=None, visits=7, event_timestamp=TS)],
]

PUSH = [dict(user_id=5009, merchant_id="p-1", spend=9.75, visits=9, event_timestamp=TS)]

BYTES_COLS = {"f_bytes": False, "f_bytes_list": True}


def feast_df(df):
    """The proxy's df with base64 bytes decoded, for Feast's SDK."""
    df = copy.deepcopy(df)
    for col, is_list in BYTES_COLS.items():
        if col in df:
            df[col] = [None if v is None else ([base64.b64decode(x) for x in v] if is_list else base64.b64decode(v))
                       for v in df[col]]
    return pd.DataFrame(df)


USER_IDS = [5001, 5002, 5003, 5004, 5005, 5006, 999]
UM_KEYS = {"user_id": [5001, 5001, 5002, 5009, 5001], "merchant_id": ["w-1", "w-2", "é", "p-1", "nope"]}


def test_proxy_writes_feast_reads(clone, procs):
    repo = clone("via_proxy")
    ref = clone("via_feast")
    proxy = procs.proxy(["--repo", str(repo)])
    fs = H.feature_store(repo)
    fs_ref = H.feature_store(ref)

    # --- write through the proxy and, identically, through Feast ---
    for rows in USER_WRITES:
        body = {"feature_view_name": "user_features", "df": columnar(rows)}
        r = proxy.post("/write-to-online-store", body)
        assert r.status_code == 200, f"POST /write-to-online-store {body} -> {r.status_code} {r.text[:1000]}"
        assert r.json() is None, r.text
        fs_ref.write_to_online_store("user_features", feast_df(body["df"]))
    for rows in UM_WRITES:
        body = {"feature_view_name": "user_merchant", "df": columnar(rows), "allow_registry_cache": True}
        r = proxy.post("/write-to-online-store", body)
        assert r.status_code == 200, f"{body} -> {r.status_code} {r.text[:1000]}"
        fs_ref.write_to_online_store("user_merchant", feast_df(body["df"]))
    body = {"push_source_name": "um_push", "df": columnar(PUSH), "to": "online"}
    r = proxy.post("/push", body)
    assert r.status_code == 200, f"POST /push {body} -> {r.status_code} {r.text[:1000]}"
    assert r.content == b"", f"/push answered a body: {r.text[:200]}"
    fs_ref.push("um_push", pd.DataFrame(PUSH))

    # --- Feast reads both stores the same (values, statuses, timestamps) ---
    for features, entities in [
        (H.feature_refs("user_features", H.USER_FEATURE_NAMES), {"user_id": USER_IDS}),
        (H.feature_refs("user_merchant", H.UM_FEATURES), UM_KEYS),
    ]:
        got = H.sdk_json(fs, features, entities)
        want = H.sdk_json(fs_ref, features, entities)
        H.assert_same_response(got, want, f"Feast reading proxy-written {features[0].split(':')[0]}")
    # spot checks against the literal values
    got = H.columns(H.sdk_json(fs, ["user_features:f_int64", "user_features:f_int32", "user_features:f_bytes",
                                    "user_features:f_float32"], {"user_id": [5001, 5003]}))
    assert got["f_int64"]["values"] == [9007199254740993, -9223372036854775808]
    assert got["f_int32"]["values"] == [99, 2147483647]
    assert got["f_bytes"]["values"][0] == "AAH/"
    assert got["f_float32"]["values"][0] == 0.10000000149011612
    assert got["f_int32"]["event_timestamps"] == ["2024-06-01T00:00:00Z", "2024-05-01T12:34:56Z"]

    # --- the SQLite bytes equal Feast's for every written row ---
    keys = [H.entity_key_bytes({"user_id": u}) for u in USER_IDS]
    keys += [H.entity_key_bytes({"user_id": u, "merchant_id": m}) for u, m in zip(*UM_KEYS.values())]
    for table in ("interop_user_features", "interop_user_merchant"):
        mine = H.table_rows(repo / "data" / "online.db", table, keys)
        theirs = H.table_rows(ref / "data" / "online.db", table, keys)
        assert mine, f"no rows written to {table}"
        assert sorted(mine) == sorted(theirs), (
            f"{table}: (entity_key, feature) sets differ\n only proxy: "
            f"{sorted((k.hex(), f) for k, f in set(mine) - set(theirs))}\n only Feast: "
            f"{sorted((k.hex(), f) for k, f in set(theirs) - set(mine))}")
        for k in sorted(theirs):
            (pv, pts, ptype, pvt), (fv, fts, ftype, fvt) = mine[k], theirs[k]
            where = f"{table} entity_key={k[0].hex()} feature={k[1]}"
            assert pv == fv, f"{where}: value proxy {pv.hex() if pv is not None else None} != Feast {fv.hex() if fv is not None else None}"
            assert (pts, ptype) == (fts, ftype), f"{where}: event_ts proxy {pts!r} ({ptype}) != Feast {fts!r} ({ftype})"
            assert pvt == fvt, f"{where}: typeof(value) proxy {pvt} != Feast {fvt}"
    # the documented literal bytes of one row (feast-facts.md section b)
    k1001 = H.entity_key_bytes({"user_id": 5001})
    assert k1001.hex() == "01000000" "02000000" "07000000" + b"user_id".hex() + "04000000" "08000000" + (5001).to_bytes(8, "little").hex()
    row = H.table_rows(repo / "data" / "online.db", "interop_user_features", [k1001])
    assert row[(k1001, "f_int64")][0].hex() == "208180808080808010"
    assert row[(k1001, "f_int64")][1:3] == (1717200000, "integer")


def test_proxy_writes_entityless(clone, procs):
    """Writes to an entityless view land under the `__dummy_id`="" key,
    with or without a `__dummy_id` column, and Feast reads them."""
    repo = clone()
    proxy = procs.proxy(["--repo", str(repo)])
    fs = H.feature_store(repo)
    db = repo / "data" / "online.db"
    dummy = bytes.fromhex(H.DUMMY_KEY_HEX)
    for df, want in [
        ({"total_users": [7], "note": ["x"], "event_timestamp": ["2024-05-05T00:00:00Z"]}, 7),
        ({"__dummy_id": [""], "total_users": [8], "note": ["y"], "event_timestamp": ["2024-05-06T00:00:00Z"]}, 8),
    ]:
        body = {"feature_view_name": "global_stats", "df": df}
        r = proxy.post("/write-to-online-store", body)
        assert r.status_code == 200, f"{body} -> {r.status_code} {r.text[:1000]}"
        got = H.columns(H.sdk_json(fs, H.feature_refs("global_stats", H.GLOBAL_FEATURES), {"user_id": [1]}))
        assert got["total_users"]["values"] == [want], f"Feast read {got} after proxy wrote {df}"
        assert got["note"]["event_timestamps"] == [df["event_timestamp"][0]]
        rows = H.table_rows(db, "interop_global_stats")
        assert {k for k, _ in rows} == {dummy}, f"entity keys in interop_global_stats: {[k.hex() for k, _ in rows]}"
        from feast.protos.feast.types.Value_pb2 import Value
        assert rows[(dummy, "total_users")][0] == Value(int64_val=want).SerializeToString()
        assert rows[(dummy, "total_users")][2] == "integer"
