"""Issue [K]: OpenTelemetry traces in a real Jaeger (tests/scripts/jaeger-up.sh).

A request carrying a W3C `traceparent` produces, in Jaeger's query API, the
proxy's request span as a child of the client's span and one child span per
backend called; a failing backend's span is marked failed; an unsampled or
malformed parent produces no trace (and never fails the request)."""

import os
import secrets
import sqlite3
import time

import grpc
import pytest
import requests
from feast.protos.feast.serving import ServingService_pb2 as S
from feast.protos.feast.serving import ServingService_pb2_grpc as G
from feast.protos.feast.types import Value_pb2 as V

import hosutil as H
from test_hybrid_routing import make_repo


def env(var):
    v = os.environ.get(var)
    if not v:
        pytest.fail(f"{var} is not set: start Jaeger with tests/scripts/jaeger-up.sh (tests/run.sh does)")
    return v


def trace(query, trace_id, timeout=20.0, want_spans=1):
    """The trace's spans from Jaeger's query API, waiting until it has
    `want_spans` spans; None when it never appears."""
    deadline = time.monotonic() + timeout
    spans = None
    while time.monotonic() < deadline:
        r = requests.get(f"{query}/api/traces/{trace_id}", timeout=5)
        if r.status_code == 200:
            data = r.json().get("data") or []
            spans = [s for t in data for s in t["spans"]]
            if len(spans) >= want_spans:
                return spans
        time.sleep(0.2)
    return spans


def tags(span):
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def parent_of(span):
    refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def new_ids():
    return secrets.token_hex(16), secrets.token_hex(8)


def test_a_traced_request_has_one_child_span_per_backend(procs, tmp_path, monkeypatch):
    otlp, query = env("HOS_JAEGER_OTLP_GRPC"), env("HOS_JAEGER_QUERY")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    service = f"hos-proxy-test-{secrets.token_hex(4)}"
    repo = make_repo(tmp_path / "traced")
    gport = H.free_port()
    proxy = procs.proxy(["--repo", str(repo), "--feature-views", str(repo / "scores_a.yaml"),
                         "--feature-views", str(repo / "spend_b.yaml"), "--apply",
                         "--grpc-listen", f"{H.HOST}:{gport}",
                         "--otlp-endpoint", otlp, "--otlp-service-name", service, "--otlp-sample-ratio", "0"])
    for body in (
        {"feature_view_name": "scores_a", "df": {"user_id": [1], "score": [0.5], "label": ["x"],
                                                 "event_timestamp": ["2024-05-01T00:00:00Z"]}},
        {"feature_view_name": "spend_b", "df": {"user_id": [1], "merchant_id": ["m"], "total": [9.25],
                                                "tags_seen": [["p"]], "event_timestamp": ["2024-05-02T00:00:00Z"]}},
    ):
        r = proxy.post("/write-to-online-store", body)
        assert r.status_code == 200, r.text
    read = {"features": ["scores_a:score", "spend_b:total"], "entities": {"user_id": [1], "merchant_id": ["m"]}}

    # Not sampled by the client, ratio 0: no trace. Malformed: a new root
    # trace (ratio 0: not sampled), and the request is served.
    quiet_trace, quiet_span = new_ids()
    r = proxy.post("/get-online-features", read, headers={"traceparent": f"00-{quiet_trace}-{quiet_span}-00"})
    assert r.status_code == 200, r.text
    bad_trace = "4bf92f3577b34da6a3ce929d0e0e473g"
    for bad in (f"00-{bad_trace}-00f067aa0ba902b7-01", "ff-" + "1" * 32 + "-" + "2" * 16 + "-01",
                "00-" + "1" * 32 + "-" + "2" * 16 + "-01-" + "x" * 2000):
        r = proxy.post("/get-online-features", read, headers={"traceparent": bad, "tracestate": "a=" + "b" * 4000})
        assert r.status_code == 200, f"{bad[:60]}: {r.status_code} {r.text[:300]}"

    trace_id, client_span = new_ids()
    r = proxy.post("/get-online-features", read, headers={"traceparent": f"00-{trace_id}-{client_span}-01"})
    assert r.status_code == 200, r.text
    request_id = r.headers["x-request-id"]
    cols = H.columns(r.json())
    assert cols["score"]["values"] == [0.5] and cols["total"]["values"] == [9.25]

    spans = trace(query, trace_id, want_spans=3)
    assert spans, f"trace {trace_id} never reached Jaeger; proxy stderr:\n{proxy.proc.tail()}"
    by_name = {s["operationName"]: s for s in spans}
    assert sorted(by_name) == ["POST /get-online-features", "read team_a", "read team_b"], sorted(by_name)
    root = by_name["POST /get-online-features"]
    assert parent_of(root) == client_span, root.get("references")
    rt = tags(root)
    assert str(rt["http.response.status_code"]) == "200" and rt["request_id"] == request_id, rt
    assert not any(k.startswith("code.") or k.startswith("thread.") or k.endswith("_ns") for k in rt), rt
    assert rt["span.kind"] == "server", rt
    for backend in ("team_a", "team_b"):
        s = by_name[f"read {backend}"]
        assert parent_of(s) == root["spanID"], (backend, s.get("references"))
        t = tags(s)
        assert t["backend"] == backend and t["op"] == "read" and t["span.kind"] == "client", t
        assert "error" not in t, t
        assert s["startTime"] >= root["startTime"]
        assert s["startTime"] + s["duration"] <= root["startTime"] + root["duration"]
    data = requests.get(f"{query}/api/traces/{trace_id}", timeout=5).json()["data"][0]
    assert {p["serviceName"] for p in data["processes"].values()} == {service}

    # The sampled trace arrived, so an exported unsampled one would have too.
    assert not trace(query, quiet_trace, timeout=1), "a request the client did not sample was exported"
    assert not trace(query, bad_trace.replace("g", "0"), timeout=0.5)

    # One backend fails: its span is marked failed, the other is not.
    b = sqlite3.connect(repo / "b.db")
    b.execute("DROP TABLE interop_spend_b")
    b.commit()
    b.close()
    trace_id, client_span = new_ids()
    r = proxy.post("/get-online-features", read, headers={"traceparent": f"00-{trace_id}-{client_span}-01"})
    assert r.status_code == 200, r.text
    assert H.columns(r.json())["score"]["values"] == [0.5]
    spans = trace(query, trace_id, want_spans=3)
    by_name = {s["operationName"]: s for s in spans or []}
    assert sorted(by_name) == ["POST /get-online-features", "read team_a", "read team_b"], sorted(by_name)
    failed = tags(by_name["read team_b"])
    assert failed.get("error") is True and failed.get("otel.status_code") == "ERROR", failed
    assert "interop_spend_b" in failed.get("error.message", ""), failed
    assert "error" not in tags(by_name["read team_a"])

    # Writes are traced the same way.
    trace_id, client_span = new_ids()
    r = proxy.post("/write-to-online-store", {"feature_view_name": "scores_a", "df": {
        "user_id": [2], "score": [1.5], "label": ["y"], "event_timestamp": ["2024-05-01T00:00:00Z"]}},
        headers={"traceparent": f"00-{trace_id}-{client_span}-01"})
    assert r.status_code == 200, r.text
    spans = trace(query, trace_id, want_spans=2)
    names = sorted(s["operationName"] for s in spans or [])
    assert names == ["POST /write-to-online-store", "write team_a"], names

    # gRPC carries traceparent as metadata, through the same middleware.
    trace_id, client_span = new_ids()
    ch = grpc.insecure_channel(f"{H.HOST}:{gport}")
    try:
        reply = G.ServingServiceStub(ch).GetOnlineFeatures(
            S.GetOnlineFeaturesRequest(features=S.FeatureList(val=["scores_a:score"]),
                                       entities={"user_id": V.RepeatedValue(val=[V.Value(int64_val=2)])}),
            metadata=[("traceparent", f"00-{trace_id}-{client_span}-01")], timeout=10)
    finally:
        ch.close()
    assert reply.results[1].values[0].double_val == 1.5  # results[0]: the join key
    spans = trace(query, trace_id, want_spans=2)
    by_name = {s["operationName"]: s for s in spans or []}
    grpc_root = "POST /feast.serving.ServingService/GetOnlineFeatures"
    assert sorted(by_name) == [grpc_root, "read team_a"], sorted(by_name)
    assert parent_of(by_name[grpc_root]) == client_span
    assert parent_of(by_name["read team_a"]) == by_name[grpc_root]["spanID"]
