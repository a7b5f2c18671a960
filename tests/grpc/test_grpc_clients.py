"""Java and Go gRPC clients read every backend, reading values written by
Feast Python.

The clients (tests/grpc/go, tests/grpc/java; built by tests/grpc/build.sh
with stubs generated from api/proto by protoc) call Feast's
feast.serving.ServingService (GetFeastServingInfo, GetOnlineFeatures) and
print a canonical JSON: {"feature_names", "results": [{"values",
"statuses", "event_timestamps"}]}, values rendered as Feast's
convert_response_to_dict renders them.

For each backend (SQLite always; Redis, Bigtable, Cassandra when tests/run.sh
started them and exported REDIS_URL, BIGTABLE_EMULATOR_HOST,
CASSANDRA_HOST/PORT), a Feast repo whose online store is that backend is
filled by Feast itself (write_to_online_store: every dtype, a two-entity view;
materialize: an entityless view), hos-proxy serves it with --grpc-listen, and
both clients read it. Each answer must equal what Feast's own SDK
get_online_features returns (values, statuses, event timestamps; Feast's
Redis store's missing-entity quirk normalised as in the interop tests), and
equal the proxy's own HTTP answer, columns in the same order. Also: a missing
entity (NOT_FOUND statuses), and an unknown feature view (a gRPC error,
NOT_FOUND or INVALID_ARGUMENT, whose message names the view).

The same checks against feast_reference_server.py (Feast's own generated
protos and servicer answering with the SDK's response) show that the
clients speak Feast's real wire format, independently of the proxy.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import backendutil as B
import hosutil as H
from test_backends_interop import feast_expected
from test_feast_writes_proxy_reads import CASES

pytestmark = pytest.mark.filterwarnings("ignore:Connecting to Bigtable emulator:RuntimeWarning")

HERE = Path(__file__).resolve().parent
KINDS = ["sqlite", *B.KINDS]
CLIENTS = ["go", "java"]
SERVER_ENV = {"redis": ["REDIS_URL"], "bigtable": ["BIGTABLE_EMULATOR_HOST"],
              "cassandra": ["CASSANDRA_HOST", "CASSANDRA_PORT"]}
# Cases also read with full feature names (every case is read with short ones).
FULL_NAME_CASES = ["user_features_all_dtypes", "several_views"]
SVC_ENTITIES = {"user_id": [1001, 1002, 999], "merchant_id": ["m-1", "m-2", "m-1"]}
MISSING = (H.feature_refs("user_features", ["f_int64", "f_string", "f_float32_list", "f_bytes"]),
           {"user_id": [999, 424242]})
UNKNOWN_VIEW = "no_such_view_x"


# --------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------


class Client:
    """One client command (Go or Java) against one server address."""

    def __init__(self, name, cmd, addr, tmp):
        self.name, self.cmd, self.addr, self.tmp = name, cmd, addr, Path(tmp)
        self.n = 0

    def call(self, body):
        """(exit code, stdout, stderr) of one request."""
        self.n += 1
        req = self.tmp / f"{self.name}-request-{self.n}.json"
        req.write_text(json.dumps(body))
        p = subprocess.run([self.cmd, "-addr", self.addr, "-request", str(req), "-timeout", "60s"],
                           env=H.sub_env(), capture_output=True, text=True, timeout=180)
        return p.returncode, p.stdout, p.stderr

    @staticmethod
    def check_shape(got, what):
        assert isinstance(got, dict) and set(got) == {"feature_names", "results"}, f"{what}: {got}"
        assert len(got["feature_names"]) == len(got["results"]), f"{what}: {got}"
        for col in got["results"]:
            assert len(col["values"]) == len(col["statuses"]) == len(col["event_timestamps"]), f"{what}: {col}"
        return got

    def read(self, body, what=""):
        """The canonical answer to BODY (a request object), or to each of
        BODY's requests (a list: one client run, a batch); fails on any error."""
        rc, out, err = self.call(body)
        assert rc == 0, (f"[{self.name}] {what}: client exited {rc}\nrequest {json.dumps(body)}\n"
                         f"--- stdout ---\n{out[-3000:]}\n--- stderr ---\n{err[-3000:]}")
        m = re.search(r"^serving-info version: (\S.*)$", err, re.M)
        assert m, f"[{self.name}] no GetFeastServingInfo version on stderr:\n{err[-2000:]}"
        assert "grpc error:" not in err, f"[{self.name}] {what}: {err[-3000:]}"
        got = json.loads(out)
        if isinstance(body, list):
            assert isinstance(got, list) and len(got) == len(body), f"[{self.name}] {what}: {out[:2000]}"
            return [self.check_shape(g, f"[{self.name}] {what}[{i}]") for i, g in enumerate(got)]
        return self.check_shape(got, f"[{self.name}] {what}")

    def fail(self, body):
        """The gRPC error of BODY: {"rpc", "code", "message"} (exit code 3)."""
        rc, out, err = self.call(body)
        assert rc == 3, (f"[{self.name}] expected a gRPC error (exit 3), got exit {rc}\nrequest {json.dumps(body)}\n"
                         f"--- stdout ---\n{out[-3000:]}\n--- stderr ---\n{err[-3000:]}")
        e = json.loads(out)["error"]
        assert f"grpc error: {e['rpc']} code={e['code']}" in err, err
        return e


def as_feast(got):
    """The canonical answer in the shape of Feast's JSON (hosutil compares those)."""
    return {"metadata": {"feature_names": got["feature_names"]}, "results": got["results"]}


def wait_port(addr, proc, timeout=30.0):
    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited ({proc.popen.returncode}) before {addr} accepted "
                                 f"connections\ncommand: {' '.join(proc.cmd)}\n--- stderr ---\n{proc.tail(80)}")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{proc.name}: nothing accepts connections on {addr} after {timeout}s\n{proc.tail(80)}")


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------


class Env:
    def __init__(self, kind):
        self.kind = kind
        self.fs = None
        self.proxy = None
        self.addr = None


@pytest.fixture(scope="module")
def sqlite_repo(tmp_path_factory):
    """Feast repo on SQLite (project interop), filled by Feast."""
    repo = tmp_path_factory.mktemp("grpc_sqlite") / "repo"
    H.make_base_repo(repo)
    return repo


@pytest.fixture(scope="module", params=KINDS)
def backend(request, tmp_path_factory, proxy_bin):
    """A Feast repo on one backend, filled by Feast, and hos-proxy serving it
    with --grpc-listen."""
    kind = request.param
    missing = [v for v in SERVER_ENV.get(kind, []) if not os.environ.get(v)]
    if missing:
        pytest.skip(f"{kind}: {', '.join(missing)} not set (tests/run.sh starts the server and exports it)")
    e = Env(kind)
    cleanup = B.Cleanup()
    work = tmp_path_factory.mktemp(f"grpc_{kind}")
    try:
        if kind == "sqlite":
            e.repo = request.getfixturevalue("sqlite_repo")
        else:
            e.project = B.uniq(f"hg{kind[:2]}")
            instance, keyspace = B.uniq("hos-"), B.uniq("hos_ks_")
            if kind == "cassandra":
                B.create_keyspace(keyspace)
                cleanup.keyspace(keyspace)
            elif kind == "bigtable":
                cleanup.bigtable(instance)
            else:
                cleanup.redis(e.project)
            e.repo = work / "repo"
            H.make_base_repo(e.repo, B.feature_store_yaml(
                e.project, B.online_store_yaml(kind, instance=instance, keyspace=keyspace)))
        e.fs = H.feature_store(e.repo)
        e.addr = f"{H.HOST}:{H.free_port()}"
        e.proxy = H.start_proxy(["--repo", str(e.repo), "--grpc-listen", e.addr], work / "logs",
                                name=f"hos-proxy-{kind}")
        wait_port(e.addr, e.proxy.proc)
        yield e
    finally:
        if e.proxy is not None:
            e.proxy.stop()
        cleanup.run()


@pytest.fixture(scope="module")
def reference(sqlite_repo, tmp_path_factory):
    """feast_reference_server.py on the SQLite repo (Feast's own protos)."""
    e = Env("sqlite")
    e.fs = H.feature_store(sqlite_repo)
    e.addr = f"{H.HOST}:{H.free_port()}"
    proc = H.Proc("feast-reference-grpc", [sys.executable, HERE / "feast_reference_server.py", "--repo", sqlite_repo,
                                           "--port", e.addr.rsplit(":", 1)[1]],
                  sqlite_repo, tmp_path_factory.mktemp("grpc_reference") / "logs")
    try:
        wait_port(e.addr, proc, timeout=60)
        yield e
    finally:
        proc.stop()


@pytest.fixture(params=CLIENTS)
def client_name(request):
    return request.param


# --------------------------------------------------------------------------
# the checks (shared by the proxy and the reference server)
# --------------------------------------------------------------------------


def read_cases(env, client, http=None):
    """Every read case: the client's answer equals Feast's SDK answer (and,
    with HTTP, the proxy's HTTP answer, same column order)."""
    bodies = []
    for case, (features, entities, _) in CASES.items():
        for full in (False, True) if case in FULL_NAME_CASES else (False,):
            bodies.append((f"{case} full={full}", features,
                           {"features": features, "entities": entities, "full_feature_names": full}))
    for full in (False, True):
        bodies.append((f"feature service svc full={full}", env.fs.get_feature_service("svc"),
                       {"feature_service": "svc", "entities": SVC_ENTITIES, "full_feature_names": full}))
    # One client run (a batch: one JVM start for Java) for all of them; every
    # case is checked and every difference reported.
    answers = client.read([b for _, _, b in bodies], f"[{env.kind}] read cases")
    errors = []
    for (what, features, body), got in zip(bodies, answers):
        what = f"[{env.kind}/{client.name}] {what}"
        try:
            want = feast_expected(env, features, body["entities"], body["full_feature_names"])
            H.assert_same_response(as_feast(got), want, f"{what} (vs Feast's SDK)")
            if http is not None:
                r = http.post("/get-online-features", body)
                assert r.status_code == 200, f"{what}: HTTP {r.status_code} {r.text[:1000]}"
                h = r.json()
                H.assert_same_response(as_feast(got), {"metadata": {"feature_names": h["metadata"]["feature_names"]},
                                                       "results": h["results"]}, f"{what} (vs the proxy's HTTP)")
                assert_same_order(got["feature_names"], h["metadata"]["feature_names"], body["entities"], what)
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, f"{len(errors)} of {len(bodies)} cases differ:\n\n" + "\n\n".join(errors)


def assert_same_order(grpc_names, http_names, entities, what):
    """Entity columns first, then the feature columns in the HTTP answer's
    order. The entity columns' own order is not compared: a gRPC request's
    `entities` is a protobuf map, which keeps no order."""
    keys = set(entities)
    n = len([x for x in http_names if x in keys])
    assert set(grpc_names[:n]) == set(http_names[:n]) and grpc_names[n:] == http_names[n:], \
        f"{what}: column order differs from HTTP:\n grpc {grpc_names}\n http {http_names}"


def missing_entity(env, client):
    features, entities = MISSING
    body = {"features": features, "entities": entities, "full_feature_names": False}
    got = client.read(body, "missing entity")
    cols = H.columns(as_feast(got))
    assert cols["user_id"]["values"] == entities["user_id"], cols["user_id"]
    for ref in features:
        name = ref.split(":")[1]
        assert cols[name]["statuses"] == ["NOT_FOUND", "NOT_FOUND"], f"[{env.kind}/{client.name}] {name}: {cols[name]}"
        assert cols[name]["values"] == [None, None], f"[{env.kind}/{client.name}] {name}: {cols[name]}"
    H.assert_same_response(as_feast(got), feast_expected(env, features, entities),
                           f"[{env.kind}/{client.name}] missing entity")


def unknown_view(env, client):
    body = {"features": [f"{UNKNOWN_VIEW}:f1", "user_features:f_int64"], "entities": {"user_id": [1001]}}
    e = client.fail(body)
    assert e["rpc"] == "GetOnlineFeatures", e
    assert e["code"] in ("NOT_FOUND", "INVALID_ARGUMENT"), f"[{env.kind}/{client.name}] {e}"
    assert UNKNOWN_VIEW in e["message"], f"[{env.kind}/{client.name}] message does not name the view: {e}"


# --------------------------------------------------------------------------
# hos-proxy
# --------------------------------------------------------------------------


def test_reads_what_feast_wrote(backend, clients, client_name, tmp_path):
    client = Client(client_name, clients[client_name], backend.addr, tmp_path)
    read_cases(backend, client, http=backend.proxy)


def test_missing_entity(backend, clients, client_name, tmp_path):
    missing_entity(backend, Client(client_name, clients[client_name], backend.addr, tmp_path))


def test_unknown_feature_view(backend, clients, client_name, tmp_path):
    unknown_view(backend, Client(client_name, clients[client_name], backend.addr, tmp_path))


def test_serving_info_and_bad_address(backend, clients, tmp_path):
    """Both clients report the same GetFeastServingInfo version; a port with
    no server is exit code 2 (UNAVAILABLE), not a test pass."""
    if backend.kind != "sqlite":
        pytest.skip("one backend is enough")
    versions = {}
    for name in CLIENTS:
        rc, out, err = Client(name, clients[name], backend.addr, tmp_path).call(
            {"features": ["user_features:f_int64"], "entities": {"user_id": [1001]}})
        assert rc == 0, err
        versions[name] = re.search(r"^serving-info version: (.*)$", err, re.M).group(1)
        rc, out, err = Client(name, clients[name], f"{H.HOST}:{H.free_port()}", tmp_path).call(
            {"features": ["user_features:f_int64"], "entities": {"user_id": [1001]}})
        assert rc == 2 and json.loads(out)["error"]["code"] == "UNAVAILABLE", (rc, out, err)
    assert versions["go"] == versions["java"] and versions["go"].strip(), versions


# --------------------------------------------------------------------------
# Feast's own protos (reference server)
# --------------------------------------------------------------------------


def test_reference_server(reference, clients, client_name, tmp_path):
    """The clients against Feast's generated servicer answering with the SDK's
    own response proto: same checks (no proxy involved)."""
    client = Client(client_name, clients[client_name], reference.addr, tmp_path)
    read_cases(reference, client)
    missing_entity(reference, client)
    unknown_view(reference, client)
