"""Rows written by Feast (write_to_online_store, materialize) read through
hos-proxy equal what Feast's own SDK reads: values, statuses and event
timestamps, for hits, misses and nulls, in every dtype."""

from datetime import datetime, timezone

import pytest

import hosutil as H

USER_DTYPES = dict(H.USER_FEATURES, user_id="int64")
UM_DTYPES = dict(user_id="int64", merchant_id="string", spend="float64", visits="int32")
GLOBAL_DTYPES = dict(total_users="int64", note="string", user_id="int64")

ALL_USER = H.feature_refs("user_features", H.USER_FEATURE_NAMES)

CASES = {
    "user_features_all_dtypes": (ALL_USER, {"user_id": [1001, 1002, 1003, 1004, 999]}, USER_DTYPES),
    "user_features_subset_reordered": (
        H.feature_refs("user_features", ["f_ts", "f_bytes", "f_int32", "f_float32_list", "f_string"]),
        {"user_id": [999, 1004, 1001, 1001]}, USER_DTYPES),
    "user_merchant_two_entities": (
        H.feature_refs("user_merchant", ["visits", "spend"]),
        {"user_id": [1001, 1001, 1002, 1002, 999], "merchant_id": ["m-1", "m-2", "m-1", "m-2", "m-1"]}, UM_DTYPES),
    "global_stats_entityless": (
        H.feature_refs("global_stats", ["total_users", "note"]), {"user_id": [1001, 999]}, GLOBAL_DTYPES),
    "several_views": (
        ["user_features:f_int64", "user_merchant:spend", "global_stats:total_users", "user_features:f_bytes"],
        {"user_id": [1001, 1002, 999], "merchant_id": ["m-1", "m-1", "m-1"]},
        {**USER_DTYPES, **UM_DTYPES, **GLOBAL_DTYPES}),
}


def expected_order(features, entities, full):
    """Join keys in request order, then views by first appearance, then
    features in request order (the proxy's documented order)."""
    views = []
    for ref in features:
        v = ref.split(":")[0]
        if v not in views:
            views.append(v)
    out = list(entities)
    for v in views:
        for ref in features:
            rv, f = ref.split(":")
            if rv == v:
                out.append(f"{v}__{f}" if full else f)
    return out


def parse_ts(s):
    return int(datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


@pytest.mark.parametrize("full", [False, True], ids=["short_names", "full_names"])
@pytest.mark.parametrize("case", list(CASES))
def test_feast_writes_proxy_reads(case, full, proxy, base_fs):
    features, entities, dtypes = CASES[case]
    body = {"features": features, "entities": entities, "full_feature_names": full}
    r = proxy.post("/get-online-features", body)
    assert r.status_code == 200, f"POST /get-online-features {body} -> {r.status_code} {r.text[:1000]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    got = r.json()

    # 1. Exactly what `feast serve` would send: Feast's SDK response through
    #    Feast's own JSON conversion (values, statuses, event timestamps).
    want = H.sdk_json(base_fs, features, entities, full)
    H.assert_same_response(got, want, f"{case} full={full}")

    # 2. Decoded values equal OnlineResponse.to_dict() (bytes from base64,
    #    float32 widened, timestamps as datetimes), and event timestamps equal
    #    to_dict(include_event_timestamps=True) seconds.
    rows = [{k: entities[k][i] for k in entities} for i in range(len(next(iter(entities.values()))))]
    sdk = base_fs.get_online_features(features=features, entity_rows=rows, full_feature_names=full).to_dict(
        include_event_timestamps=True)
    cols = H.columns(got)
    for name, col in cols.items():
        base = name.split("__", 1)[1] if full and "__" in name else name
        dtype = dtypes[base]
        decoded = [H.decode_value(v, dtype) for v in col["values"]]
        assert H.py_equal(decoded, sdk[name]), f"{name}: proxy {decoded!r} != Feast {sdk[name]!r}"
        secs = [parse_ts(t) for t in col["event_timestamps"]]
        assert secs == sdk[name + "__ts"], f"{name} event timestamps: proxy {col['event_timestamps']} != Feast {sdk[name + '__ts']}"

    # 3. Columns grouped by view as Feast groups them (views in order of first
    #    appearance), and within a view in request order (where Feast's order
    #    is random: the proxy's documented difference).
    assert got["metadata"]["feature_names"] == expected_order(features, entities, full)


def test_feature_service(proxy, base_fs):
    entities = {"user_id": [1001, 1002, 999], "merchant_id": ["m-1", "m-2", "m-1"]}
    for full in (False, True):
        body = {"feature_service": "svc", "entities": entities, "full_feature_names": full}
        r = proxy.post("/get-online-features", body)
        assert r.status_code == 200, f"{body} -> {r.status_code} {r.text[:1000]}"
        want = H.sdk_json(base_fs, base_fs.get_feature_service("svc"), entities, full)
        H.assert_same_response(r.json(), want, f"svc full={full}")
