"""Authentication, authorization and TLS of hos-proxy.

- Bearer tokens from an auth file (`--auth-config`): no or unknown token ->
  401 (gRPC UNAUTHENTICATED); a team-A token touching team B's view -> 403
  (gRPC PERMISSION_DENIED) naming the view; a read-only token cannot write;
  the file is re-read on change.
- Feast's own `remote` online store with `auth: {type: kubernetes,
  user_token: ...}` reads and writes through the proxy; without a token it
  is refused.
- TLS (`--tls-cert/--tls-key`, rustls): a client trusting the test CA
  succeeds (HTTP and gRPC), a client that does not fails, plain HTTP to the
  TLS port fails, and replacing the certificate files is picked up by new
  connections without a restart.
"""

import json
import os
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

import grpc
import pandas as pd
import pytest
import requests
from feast.protos.feast.serving import ServingService_pb2 as S
from feast.protos.feast.serving import ServingService_pb2_grpc as G
from feast.protos.feast.types import Value_pb2 as V

import hosutil as H

STORE = """\
project: demo
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - {name: team_a, type: sqlite, conf: {path: a.db}}
    - {name: team_b, type: sqlite, conf: {path: b.db}}
"""

VIEWS = """\
name: a_view
entities: [{name: user, join_keys: [user_id], dtype: int64}]
schema: [{name: score, dtype: float64}]
tags: {team: team_a}
---
name: b_view
entities: [{name: user, join_keys: [user_id], dtype: int64}]
schema: [{name: score, dtype: float64}]
tags: {team: team_b}
"""

AUTH = """\
principals:
  - {name: team-a, token: tok-a, teams: [team_a], access: [read, write]}
  - {name: reader, token: tok-reader, access: [read]}
"""


def write_body(view, user, score):
    return {"feature_view_name": view,
            "df": {"user_id": [user], "score": [score], "event_timestamp": ["2024-05-01T00:00:00Z"]}}


def read_body(*views):
    return {"features": [f"{v}:score" for v in views], "entities": {"user_id": [1]}, "full_feature_names": True}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def hybrid_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "hybrid"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(STORE)
    (repo / "views.yaml").write_text(VIEWS)
    (repo / "auth.yaml").write_text(AUTH)
    return repo


def grpc_read(port, views, token=None, creds=None):
    target = f"{H.HOST}:{port}"
    ch = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
    try:
        stub = G.ServingServiceStub(ch)
        req = S.GetOnlineFeaturesRequest(
            features=S.FeatureList(val=[f"{v}:score" for v in views]),
            entities={"user_id": V.RepeatedValue(val=[V.Value(int64_val=1)])})
        md = [("authorization", f"Bearer {token}")] if token else None
        return stub.GetOnlineFeatures(req, metadata=md, timeout=10)
    finally:
        ch.close()


def test_tokens_teams_and_access(procs, tmp_path):
    repo = hybrid_repo(tmp_path)
    gport = H.free_port()
    proxy = procs.proxy(["--repo", str(repo), "--feature-views", str(repo / "views.yaml"), "--apply",
                         "--auth-config", str(repo / "auth.yaml"), "--poll-seconds", "0.2",
                         "--grpc-listen", f"{H.HOST}:{gport}"], cwd=repo)
    # probes stay open
    assert proxy.get("/health").status_code == 200
    assert proxy.get("/ready").status_code == 200
    # With auth on, the client listener's /ready says only whether it is
    # ready and which routing table it serves (a digest naming no backend:
    # the operator reads it); details are on the admin listener and
    # /metrics needs a token.
    body = proxy.get("/ready").json()
    assert set(body) == {"ready", "routing_digest"}, body
    assert body["ready"] is True
    assert re.fullmatch(r"[0-9a-f]{16}", body["routing_digest"]), body
    assert proxy.get("/metrics").status_code == 401

    # 401: no token, a malformed header, an unknown token
    for headers, msg in [({}, "missing `Authorization: Bearer <token>`"),
                         ({"Authorization": "Basic dG9rLWE="}, "not `Bearer <token>`"),
                         (bearer("nope"), "unknown bearer token")]:
        for path, body in [("/get-online-features", read_body("a_view")),
                           ("/write-to-online-store", write_body("a_view", 1, 1.0)),
                           ("/push", {"push_source_name": "x", "df": {}})]:
            r = proxy.post(path, body, headers=headers)
            assert r.status_code == 401, f"{path} {headers}: {r.status_code} {r.text[:300]}"
            assert msg in H.feast_error(r)["message"], r.text

    # team A writes and reads its own view
    r = proxy.post("/write-to-online-store", write_body("a_view", 1, 1.5), headers=bearer("tok-a"))
    assert r.status_code == 200, r.text
    r = proxy.post("/get-online-features", read_body("a_view"), headers=bearer("tok-a"))
    assert r.status_code == 200, r.text
    assert H.columns(r.json())["a_view__score"]["values"] == [1.5]

    # 403: team A writing or reading team B's view; the message names the view
    for path, body in [("/write-to-online-store", write_body("b_view", 1, 9.0)),
                       ("/get-online-features", read_body("a_view", "b_view"))]:
        r = proxy.post(path, body, headers=bearer("tok-a"))
        assert r.status_code == 403, f"{path}: {r.status_code} {r.text[:300]}"
        e = H.feast_error(r)
        assert "feature view `b_view` of team `team_b`" in e["message"], e
    # ... and nothing was written to team B's store
    assert H.table_rows(repo / "b.db", "demo_b_view") == {}

    # a read-only token reads every team but cannot write
    r = proxy.post("/get-online-features", read_body("a_view", "b_view"), headers=bearer("tok-reader"))
    assert r.status_code == 200, r.text
    r = proxy.post("/write-to-online-store", write_body("a_view", 2, 2.0), headers=bearer("tok-reader"))
    assert r.status_code == 403 and "may not write" in H.feast_error(r)["message"], r.text

    # gRPC: the same rules
    with pytest.raises(grpc.RpcError) as e:
        grpc_read(gport, ["a_view"])
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, e.value
    with pytest.raises(grpc.RpcError) as e:
        grpc_read(gport, ["b_view"], token="tok-a")
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and "b_view" in e.value.details(), e.value
    resp = grpc_read(gport, ["a_view"], token="tok-a")
    assert list(resp.metadata.feature_names.val) == ["user_id", "score"]
    assert resp.results[1].values[0].double_val == 1.5

    # the auth file is re-read on change; a broken edit keeps the last good one
    (repo / "auth.yaml").write_text("principals: [{name: broken}]\n")
    time.sleep(1.0)
    r = proxy.post("/get-online-features", read_body("a_view"), headers=bearer("tok-a"))
    assert r.status_code == 200, "a rejected auth file must keep the previous principals"
    (repo / "auth.yaml").write_text(AUTH + "  - {name: team-b, token: tok-b, teams: [team_b], access: [read, write]}\n")
    deadline = time.monotonic() + 10
    while True:
        r = proxy.post("/write-to-online-store", write_body("b_view", 1, 9.0), headers=bearer("tok-b"))
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, f"new token not picked up: {r.status_code} {r.text[:300]}"
    m = requests.get(proxy.url + "/metrics", headers=bearer("tok-a"), timeout=10).text
    assert H.metric_value(m, "hos_proxy_auth_failures_total", {"status": "401"}) >= 9


REMOTE_YAML = """\
project: interop
registry: {registry}
provider: local
online_store:
  type: remote
  path: {url}
entity_key_serialization_version: 3
"""


def test_feast_remote_store_with_auth(clone, procs, tmp_path):
    repo = clone()
    auth = tmp_path / "auth.yaml"
    auth.write_text("principals:\n"
                    "  - {name: ml, token: remote-token, access: [read, write]}\n"
                    "  - {name: ro, token: ro-token}\n")
    proxy = procs.proxy(["--repo", str(repo), "--auth-config", str(auth)])
    direct = H.feature_store(repo)

    def remote_store(name, auth_yaml):
        d = tmp_path / name
        (d / "data").mkdir(parents=True)
        (d / "data" / "registry.db").write_bytes((repo / "data" / "registry.db").read_bytes())
        (d / "feature_store.yaml").write_text(
            REMOTE_YAML.format(registry=d / "data" / "registry.db", url=proxy.url) + auth_yaml)
        return H.feature_store(d)

    with_token = remote_store("remote_auth", "auth:\n  type: kubernetes\n  user_token: remote-token\n")
    features = H.feature_refs("user_features", ["f_int64", "f_string"])
    ents = {"user_id": [1001, 999]}
    got = H.columns(H.sdk_json(with_token, features, ents))
    want = H.columns(H.sdk_json(direct, features, ents))
    for name in want:
        assert got[name]["values"] == want[name]["values"], (name, got[name], want[name])
        assert got[name]["statuses"] == want[name]["statuses"], (name, got[name], want[name])
    ts = pd.Timestamp("2024-05-07 08:09:10", tz="UTC")
    with_token.write_to_online_store("user_merchant", pd.DataFrame(
        {"user_id": [8001], "merchant_id": ["z-1"], "spend": [1.25], "visits": [3], "event_timestamp": [ts]}))
    cols = H.columns(H.sdk_json(direct, ["user_merchant:spend"], {"user_id": [8001], "merchant_id": ["z-1"]}))
    assert cols["spend"]["values"] == [1.25], cols

    # a read-only token: reads work, writes are refused (nothing written)
    read_only = remote_store("remote_ro", "auth:\n  type: kubernetes\n  user_token: ro-token\n")
    assert H.columns(H.sdk_json(read_only, features, ents))["f_int64"]["values"] == want["f_int64"]["values"]
    with pytest.raises(Exception):
        read_only.write_to_online_store("user_merchant", pd.DataFrame(
            {"user_id": [8002], "merchant_id": ["z-2"], "spend": [2.5], "visits": [1], "event_timestamp": [ts]}))
    cols = H.columns(H.sdk_json(direct, ["user_merchant:spend"], {"user_id": [8002], "merchant_id": ["z-2"]}))
    assert cols["spend"]["statuses"] == ["NOT_FOUND"], cols

    # no auth section: the proxy answers 401 and Feast's client gets no values
    no_auth = remote_store("remote_none", "")
    with pytest.raises(Exception):
        no_auth.get_online_features(features=features, entity_rows=[{"user_id": 1001}]).to_dict()
    r = proxy.post("/get-online-features", {"features": features, "entities": ents})
    assert r.status_code == 401


# --------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=str(cwd), check=True, capture_output=True, timeout=60)


def server_cert(pki: Path, name: str, serial: int):
    """A key and a certificate for 127.0.0.1 signed by the test CA."""
    (pki / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                     "extendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}", cwd=pki)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", str(serial),
            "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=pki)


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=hos test CA", cwd=d)
    server_cert(d, "first", 4097)
    server_cert(d, "second", 8193)
    return d


def peer_serial(port: int, ca: Path) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((H.HOST, port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return int(t.getpeercert()["serialNumber"], 16)


def test_tls_with_certificate_reload(procs, tmp_path, pki):
    repo = hybrid_repo(tmp_path)
    live = tmp_path / "live"
    live.mkdir()
    for ext in ("pem", "key"):
        (live / f"tls.{ext}").write_bytes((pki / f"first.{ext}").read_bytes())
    port, gport = H.free_port(), H.free_port()
    proc = procs.raw("hos-proxy-tls", [H.require_proxy_bin(), "serve", "--repo", str(repo), "--feature-views",
                                       str(repo / "views.yaml"), "--apply", "--listen", f"{H.HOST}:{port}",
                                       "--grpc-listen", f"{H.HOST}:{gport}",
                                       "--tls-cert", str(live / "tls.pem"), "--tls-key", str(live / "tls.key"),
                                       "--tls-check-seconds", "0.2"], repo)
    url = f"https://{H.HOST}:{port}"
    ca = str(pki / "ca.pem")
    deadline = time.monotonic() + 30
    while True:
        assert proc.alive(), proc.tail()
        try:
            if requests.get(url + "/ready", verify=ca, timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "TLS proxy never ready:\n" + proc.tail()
        time.sleep(0.1)

    # a client trusting the test CA: writes and reads
    r = requests.post(url + "/write-to-online-store", json=write_body("a_view", 1, 4.5), verify=ca, timeout=10)
    assert r.status_code == 200, r.text
    r = requests.post(url + "/get-online-features", json=read_body("a_view"), verify=ca, timeout=10)
    assert H.columns(r.json())["a_view__score"]["values"] == [4.5]
    creds = grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
    assert grpc_read(gport, ["a_view"], creds=creds).results[1].values[0].double_val == 4.5

    # a client that does not trust the CA fails the handshake
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url + "/ready", timeout=5)
    # plain HTTP to the TLS port gets no HTTP answer
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://{H.HOST}:{port}/ready", timeout=5)
    # plaintext gRPC to the TLS port fails too
    with pytest.raises(grpc.RpcError) as e:
        grpc_read(gport, ["a_view"])
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value

    # replace the files (key first, then the certificate, as a renewal would)
    assert peer_serial(port, pki / "ca.pem") == 4097
    os.replace(str(pki / "second.key"), str(live / "tls.key"))
    os.replace(str(pki / "second.pem"), str(live / "tls.pem"))
    deadline = time.monotonic() + 10
    while peer_serial(port, pki / "ca.pem") != 8193:
        assert time.monotonic() < deadline, "new certificate not served within 10 s:\n" + proc.tail()
        time.sleep(0.2)
    assert proc.alive()
    r = requests.post(url + "/get-online-features", json=read_body("a_view"), verify=ca, timeout=10)
    assert r.status_code == 200 and H.columns(r.json())["a_view__score"]["values"] == [4.5]
    assert "TLS certificate reloaded" in proc.stderr()
