"""The same requests to `feast serve` and to hos-proxy give the same status
and the same parsed JSON (feature columns matched by metadata.feature_names;
numbers compared as numbers). Only cases where Feast answers something other
than a 500 are compared: the proxy answers Feast's 500s with 4xx on purpose
(see test_malformed_inputs)."""

import json

import pytest

import hosutil as H

BOTH = {"user_id": [1001, 1002, 999], "merchant_id": ["m-1", "m-1", "m-2"]}
ALL_USER = H.feature_refs("user_features", H.USER_FEATURE_NAMES)

READS = {
    "hit_full_names": {"features": ["user_features:f_int64", "user_features:f_string"],
                       "entities": {"user_id": [1001]}, "full_feature_names": True},
    "all_dtypes_hits_misses_nulls": {"features": ALL_USER, "entities": {"user_id": [1001, 1002, 1003, 1004, 999]}},
    "all_dtypes_full_names": {"features": ALL_USER, "entities": {"user_id": [1004, 1003]}, "full_feature_names": True},
    "only_misses": {"features": ["user_features:f_bool", "user_features:f_ts"], "entities": {"user_id": [5, 6]},
                    "full_feature_names": False},
    "two_entities": {"features": ["user_merchant:visits", "user_merchant:spend"],
                     "entities": {"user_id": [1001, 1001, 1002, 1002], "merchant_id": ["m-1", "m-2", "m-1", "m-2"]}},
    "two_entities_keys_reversed": {"features": ["user_merchant:spend"],
                                   "entities": {"merchant_id": ["m-2", "m-1"], "user_id": [1001, 1002]}},
    "entityless_with_an_entity": {"features": ["global_stats:total_users", "global_stats:note"],
                                  "entities": {"user_id": [1001, 1002]}},
    "several_views": {"features": ["user_features:f_int64", "user_merchant:spend", "global_stats:total_users",
                                   "user_features:f_float32_list"], "entities": BOTH},
    "several_views_full_names": {"features": ["global_stats:note", "user_merchant:spend", "user_features:f_bytes"],
                                 "entities": BOTH, "full_feature_names": True},
    "unused_join_key_is_echoed": {"features": ["user_features:f_int32"],
                                  "entities": {"user_id": [1001], "merchant_id": ["q"]}},
    "unknown_entity_key_is_dropped": {"features": ["user_features:f_int32"],
                                      "entities": {"user_id": [1001], "zzz": ["q"]}},
    "feature_service": {"feature_service": "svc", "entities": BOTH},
    "feature_service_full_names": {"feature_service": "svc", "entities": BOTH, "full_feature_names": True},
    "feature_service_alias_full_names": {"feature_service": "svc_alias", "entities": BOTH,
                                         "full_feature_names": True},
    "feature_service_alias_short_names": {"feature_service": "svc_alias", "entities": BOTH},
    "feature_service_ignores_features": {"feature_service": "svc", "features": ["user_features:f_bool"],
                                         "entities": BOTH},
    "unknown_fields_ignored": {"features": ["user_features:f_int32"], "entities": {"user_id": [1001]},
                               "allow_registry_cache": False, "whatever": 1},
    "version_metadata": {"features": ["user_features:f_int32", "user_merchant:spend"], "entities": BOTH,
                         "include_feature_view_version_metadata": True},
    "unknown_view_404": {"features": ["nope:f_int64"], "entities": {"user_id": [1001]}},
    "unknown_service_404": {"feature_service": "nope", "entities": {"user_id": [1001]}},
}


@pytest.fixture(scope="module")
def servers(base_repo, tmp_path_factory, proxy_bin):
    """feast serve and hos-proxy on one private copy of the base repo."""
    d = tmp_path_factory.mktemp("same_json")
    repo = H.clone_repo(base_repo, d / "repo")
    feast = H.start_feast_serve(repo, d / "logs")
    try:
        proxy = H.start_proxy(["--repo", str(repo)], d / "logs", name="hos-proxy-same-json")
    except BaseException:
        feast.stop()
        raise
    yield feast, proxy
    proxy.stop()
    feast.stop()


def exchange(server, path, body):
    return server.post(path, body)


@pytest.mark.parametrize("case", list(READS))
def test_same_json_as_feast_serve(case, servers):
    feast, proxy = servers
    body = READS[case]
    rf = exchange(feast, "/get-online-features", body)
    rp = exchange(proxy, "/get-online-features", body)
    req = json.dumps(body)
    assert rf.status_code != 500, f"test bug: feast serve answered 500 for {req}: {rf.text[:300]}"
    assert rp.status_code == rf.status_code, (
        f"POST /get-online-features {req}\n proxy {rp.status_code} {rp.text[:1000]}\n feast {rf.status_code} {rf.text[:1000]}")
    if rf.status_code != 200:
        assert H.feast_error(rp) == H.feast_error(rf), f"{req}: error bodies differ:\n proxy {rp.text}\n feast {rf.text}"
        return
    assert rp.headers.get("content-type", "").startswith("application/json"), rp.headers
    H.assert_same_response(rp.json(), rf.json(), f"POST /get-online-features {req}")


def test_writes_answer_like_feast_serve(servers):
    """/write-to-online-store and /push: same status and body, and each
    server then reads what the other wrote."""
    feast, proxy = servers
    cases = [
        ("/write-to-online-store", lambda uid: {"feature_view_name": "user_merchant", "df": {
            "user_id": [uid], "merchant_id": ["s-1"], "spend": [0.5], "visits": [5],
            "event_timestamp": ["2024-05-01T12:00:00Z"]}}),
        ("/push", lambda uid: {"push_source_name": "um_push", "to": "online", "df": {
            "user_id": [uid], "merchant_id": ["s-1"], "spend": [1.5], "visits": [6],
            "event_timestamp": ["2024-05-01T13:00:00Z"]}}),
    ]
    for path, make in cases:
        rf = exchange(feast, path, make(8001))
        rp = exchange(proxy, path, make(8002))
        assert (rp.status_code, rp.content) == (rf.status_code, rf.content), (
            f"POST {path}\n proxy {rp.status_code} {rp.content[:300]!r}\n feast {rf.status_code} {rf.content[:300]!r}")
        read = {"features": ["user_merchant:spend", "user_merchant:visits"],
                "entities": {"user_id": [8001, 8002], "merchant_id": ["s-1", "s-1"]}}
        a, b = exchange(feast, "/get-online-features", read), exchange(proxy, "/get-online-features", read)
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        H.assert_same_response(b.json(), a.json(), f"read after {path}")
        assert H.columns(a.json())["visits"]["statuses"] == ["PRESENT", "PRESENT"]


ERRORS = {
    "write_unknown_view_404": ("/write-to-online-store", {"feature_view_name": "nope", "df": {"user_id": [1]}}),
    "push_unknown_source_422": ("/push", {"push_source_name": "nope", "df": {"user_id": [1]}, "to": "online"}),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_write_errors_like_feast_serve(case, servers):
    feast, proxy = servers
    path, body = ERRORS[case]
    rf, rp = exchange(feast, path, body), exchange(proxy, path, body)
    assert rf.status_code != 500, f"test bug: feast serve answered 500: {rf.text[:300]}"
    assert rp.status_code == rf.status_code, (
        f"POST {path} {json.dumps(body)}\n proxy {rp.status_code} {rp.text[:500]}\n feast {rf.status_code} {rf.text[:500]}")
    assert H.feast_error(rp) == H.feast_error(rf), f"POST {path}: error bodies differ:\n proxy {rp.text}\n feast {rf.text}"
