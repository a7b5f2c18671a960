"""Helpers for the tests that need real servers: Redis, the Bigtable
emulator and Cassandra (started by tests/scripts/*-up.sh, which export
REDIS_URL, BIGTABLE_EMULATOR_HOST, CASSANDRA_HOST/CASSANDRA_PORT), and a
Redis Cluster and a Redis Sentinel group (redis-cluster-up.sh and
redis-sentinel-up.sh: REDIS_CLUSTER_NODES; REDIS_SENTINELS and
REDIS_SENTINEL_MASTER).

A test that needs a server whose variable is missing fails (it does not
skip) with a message saying how to start it. Every test names what it
creates after a fresh random id, so runs never see each other's data.
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlparse

import pytest

import hosutil as H

KINDS = ["redis", "bigtable", "cassandra"]
BT_PROJECT = "hos-test"


def uniq(prefix: str) -> str:
    """A fresh lowercase name: PREFIX + 8 hex chars."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def _need(var: str, script: str) -> str:
    v = os.environ.get(var)
    if not v:
        pytest.fail(
            f"{var} is not set: this test needs a real server. Start it with "
            f"`eval \"$(tests/scripts/{script} STATE_DIR)\"` (or run the project's test command, "
            f"which starts it and exports {var})", pytrace=False)
    return v


# --------------------------------------------------------------------------
# server addresses
# --------------------------------------------------------------------------


def redis_addr() -> Tuple[str, int, Optional[str]]:
    """(host, port, password) from REDIS_URL."""
    url = urlparse(_need("REDIS_URL", "redis-up.sh"))
    assert url.scheme == "redis" and url.hostname and url.port, f"REDIS_URL not redis://host:port: {url.geturl()}"
    return url.hostname, url.port, url.password


def redis_connection_string() -> str:
    host, port, password = redis_addr()
    s = f"{host}:{port}"
    if password:
        s += f",password={password}"
    return s


# Redis Cluster and Redis Sentinel: the `redis_type` values of Feast's Redis
# store, as the interop tests name the two topologies.
REDIS_HA_KINDS = ["redis_cluster", "redis_sentinel"]

# For each topology: its variables, its scripts' name, its state dir under
# $HOS_TEST_STATE (tests/run.sh) and the env file its up script writes there.
_REDIS_HA = {
    "redis_cluster": dict(vars=["REDIS_CLUSTER_NODES"], script="redis-cluster", env_file="cluster.env"),
    "redis_sentinel": dict(vars=["REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"], script="redis-sentinel",
                           env_file="sentinel.env"),
}


def _host_ports(csv: str, var: str) -> List[Tuple[str, int]]:
    out = []
    for part in csv.split(","):
        m = re.fullmatch(r"([^:,]+):(\d+)", part.strip())
        assert m, f"{var} is not a comma-separated list of host:port: {csv!r}"
        out.append((m.group(1), int(m.group(2))))
    return out


def redis_cluster_nodes() -> List[Tuple[str, int]]:
    """The cluster's nodes from REDIS_CLUSTER_NODES."""
    return _host_ports(_need("REDIS_CLUSTER_NODES", "redis-cluster-up.sh"), "REDIS_CLUSTER_NODES")


def redis_sentinels() -> Tuple[List[Tuple[str, int]], str]:
    """(the sentinels, the monitored master's name) from REDIS_SENTINELS and
    REDIS_SENTINEL_MASTER."""
    hosts = _host_ports(_need("REDIS_SENTINELS", "redis-sentinel-up.sh"), "REDIS_SENTINELS")
    return hosts, _need("REDIS_SENTINEL_MASTER", "redis-sentinel-up.sh")


def redis_ha_password(kind: str) -> Optional[str]:
    """The data nodes' password: REDIS_PASSWORD (the up scripts' input), else
    the one the up script recorded in its state dir, if any."""
    if os.environ.get("REDIS_PASSWORD"):
        return os.environ["REDIS_PASSWORD"]
    root = os.environ.get("HOS_TEST_STATE")
    if root:
        conf = _REDIS_HA[kind]
        return read_env_file(Path(root) / conf["script"] / conf["env_file"]).get("REDIS_PASSWORD") or None
    return None


def redis_ha_connection_string(kind: str) -> str:
    """Feast's connection_string for KIND: the cluster's nodes, or the
    sentinels (the password is the data nodes', as Feast passes it on)."""
    hosts = redis_cluster_nodes() if kind == "redis_cluster" else redis_sentinels()[0]
    s = ",".join(f"{h}:{p}" for h, p in hosts)
    password = redis_ha_password(kind)
    if password:
        s += f",password={password}"
    return s


def read_env_file(path: Path) -> Dict[str, str]:
    """KEY=VALUE lines of an up script's env file (quotes removed); {} when
    the file is missing."""
    out = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k.strip()):
            out[k.strip()] = v.strip().strip('"')
    return out


def redis_ha_state(kind: str) -> Tuple[Path, Dict[str, str]]:
    """($HOS_TEST_STATE/redis-cluster or .../redis-sentinel, its env file),
    checked to describe the servers the variables name, so that a node
    script run by a test can only touch those. Fails when HOS_TEST_STATE is
    not set (tests/run.sh sets it)."""
    conf = _REDIS_HA[kind]
    for var in conf["vars"]:
        _need(var, f"{conf['script']}-up.sh")
    root = os.environ.get("HOS_TEST_STATE")
    if not root:
        pytest.fail(
            f"HOS_TEST_STATE is not set: this test stops and restarts nodes of the servers that "
            f"{conf['script']}-up.sh started in $HOS_TEST_STATE/{conf['script']} (tests/run.sh sets it)",
            pytrace=False)
    d = Path(root) / conf["script"]
    env = read_env_file(d / conf["env_file"])
    for var in conf["vars"]:
        if env.get(var) != os.environ[var]:
            pytest.fail(f"{d / conf['env_file']} does not describe the servers {var}={os.environ[var]} names "
                        f"(file: {env or 'missing'}): is HOS_TEST_STATE the state dir of tests/run.sh?",
                        pytrace=False)
    return d, env


def redis_ha_node(kind: str, action: str, who: Any, timeout: float = 150) -> str:
    """tests/scripts/redis-{cluster,sentinel}-node.sh STATE_DIR ACTION WHO;
    returns its stderr (its log), fails with it when the script fails."""
    d, _ = redis_ha_state(kind)
    script = H.ROOT / "tests" / "scripts" / f"{_REDIS_HA[kind]['script']}-node.sh"
    p = subprocess.run(["bash", str(script), str(d), action, str(who)], env=dict(os.environ),
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"{script.name} {d} {action} {who} failed ({p.returncode}):\n{p.stderr[-6000:]}")
    return p.stderr


def bigtable_host() -> str:
    v = _need("BIGTABLE_EMULATOR_HOST", "bigtable-up.sh")
    assert re.fullmatch(r"[^:]+:\d+", v), f"BIGTABLE_EMULATOR_HOST is not host:port: {v!r}"
    return v


def cassandra_addr() -> Tuple[str, int]:
    host = _need("CASSANDRA_HOST", "cassandra-up.sh")
    port = _need("CASSANDRA_PORT", "cassandra-up.sh")
    return host, int(port)


def cassandra_creds() -> Optional[Tuple[str, str]]:
    u, p = os.environ.get("CASSANDRA_USERNAME"), os.environ.get("CASSANDRA_PASSWORD")
    return (u, p) if u and p else None


# --------------------------------------------------------------------------
# clients (cached per process, closed at exit)
# --------------------------------------------------------------------------

_CLIENTS: Dict[str, Any] = {}


def redis_client():
    if "redis" not in _CLIENTS:
        import redis

        host, port, password = redis_addr()
        _CLIENTS["redis"] = redis.Redis(host=host, port=port, password=password, socket_timeout=10)
    return _CLIENTS["redis"]


def redis_ha_client(kind: str):
    """A redis-py client of the topology, made as Feast makes its own
    (RedisCluster over the nodes; Sentinel(...).master_for(master))."""
    if kind not in _CLIENTS:
        from redis.cluster import ClusterNode, RedisCluster
        from redis.sentinel import Sentinel

        password = redis_ha_password(kind)
        if kind == "redis_cluster":
            _CLIENTS[kind] = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in redis_cluster_nodes()],
                                          password=password, socket_timeout=10)
        elif kind == "redis_sentinel":
            hosts, master = redis_sentinels()
            _CLIENTS[kind] = Sentinel(hosts, password=password, socket_timeout=10).master_for(master)
        else:
            raise ValueError(kind)
    return _CLIENTS[kind]


def cql():
    """A cassandra-driver session (no keyspace)."""
    if "cql" not in _CLIENTS:
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import Cluster

        host, port = cassandra_addr()
        creds = cassandra_creds()
        cluster = Cluster([host], port=port, connect_timeout=20,
                          auth_provider=PlainTextAuthProvider(*creds) if creds else None)
        session = cluster.connect()
        session.default_timeout = 60
        _CLIENTS["cql_cluster"] = cluster
        _CLIENTS["cql"] = session
    return _CLIENTS["cql"]


def bigtable_client():
    if "bigtable" not in _CLIENTS:
        bigtable_host()
        import warnings

        from google.cloud import bigtable

        with warnings.catch_warnings():
            # "Connecting to Bigtable emulator at ...": expected here.
            warnings.simplefilter("ignore", RuntimeWarning)
            _CLIENTS["bigtable"] = bigtable.Client(project=BT_PROJECT, admin=True)
            _CLIENTS["bigtable"].table_data_client
            _CLIENTS["bigtable"].table_admin_client
    return _CLIENTS["bigtable"]


@atexit.register
def _close_clients() -> None:
    c = _CLIENTS.pop("cql_cluster", None)
    if c is not None:
        try:
            c.shutdown()
        except Exception:
            pass
    for name in ["redis", *REDIS_HA_KINDS]:
        r = _CLIENTS.pop(name, None)
        if r is not None:
            try:
                r.close()
            except Exception:
                pass


# --------------------------------------------------------------------------
# Cassandra
# --------------------------------------------------------------------------


def create_keyspace(ks: str, drop_first: bool = False) -> None:
    s = cql()
    if drop_first:
        s.execute(f'DROP KEYSPACE IF EXISTS "{ks}"')
    s.execute(f"CREATE KEYSPACE IF NOT EXISTS \"{ks}\" WITH replication = "
              "{'class': 'SimpleStrategy', 'replication_factor': 1}")


def drop_keyspace(ks: str) -> None:
    try:
        cql().execute(f'DROP KEYSPACE IF EXISTS "{ks}"')
    except Exception:
        pass


def cassandra_tables(ks: str) -> List[str]:
    rows = cql().execute("SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (ks,))
    return sorted(r.table_name for r in rows)


def cassandra_columns(ks: str, table: str) -> Dict[str, Tuple[str, str, int]]:
    """{column: (kind, type, position)} from system_schema.columns."""
    rows = cql().execute("SELECT column_name, kind, type, position FROM system_schema.columns "
                         "WHERE keyspace_name = %s AND table_name = %s", (ks, table))
    return {r.column_name: (r.kind, r.type, r.position) for r in rows}


def cassandra_rows(ks: str, table: str) -> Dict[Tuple[str, str], Tuple[bytes, Optional[int], Optional[int], Optional[int]]]:
    """{(entity_key hex text, feature_name): (value, event_ts ms, created_ts ms, ttl(value))}."""
    rows = cql().execute(
        f'SELECT entity_key, feature_name, value, CAST(event_ts AS bigint) AS ets, '
        f'CAST(created_ts AS bigint) AS cts, ttl(value) AS t FROM "{ks}"."{table}"')
    return {(r.entity_key, r.feature_name): (bytes(r.value) if r.value is not None else None, r.ets, r.cts, r.t)
            for r in rows}


# --------------------------------------------------------------------------
# Bigtable
# --------------------------------------------------------------------------


def bt_instance(instance: str):
    return bigtable_client().instance(instance)


def bigtable_tables(instance: str) -> List[str]:
    return sorted(t.table_id for t in bt_instance(instance).list_tables())


def bigtable_rows(instance: str, table: str) -> Dict[bytes, Dict[Tuple[str, bytes], List[bytes]]]:
    """{row key: {(family, qualifier): [cell values, newest first]}}."""
    out = {}
    for row in bt_instance(instance).table(table).read_rows():
        cells = {}
        for fam, cols in row.cells.items():
            for q, cl in cols.items():
                cells[(fam, bytes(q))] = [bytes(c.value) for c in cl]
        out[bytes(row.row_key)] = cells
    return out


def bigtable_families(instance: str, table: str) -> Dict[str, Any]:
    """{family: max_num_versions of its GC rule (None when not a max-versions rule)}."""
    fams = bt_instance(instance).table(table).list_column_families()
    return {name: getattr(cf.gc_rule, "max_num_versions", None) for name, cf in fams.items()}


def drop_bigtable_instance_tables(instance: str) -> None:
    try:
        for t in bt_instance(instance).list_tables():
            t.delete()
    except Exception:
        pass


# Feast's event_ts cell for a UTC time: isoformat(), no fraction or 6 digits.
BIGTABLE_TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00")


def bigtable_row_key(entity_key: bytes, view: str) -> bytes:
    """Feast's BigtableOnlineStore row key."""
    import mmh3

    return (mmh3.hash_bytes(entity_key).hex() + "#" + view).encode()


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


def redis_keys(project: str, client=None) -> List[bytes]:
    """Every key of PROJECT (Feast's keys end with the project name), on
    the single server or on CLIENT (a cluster's scan walks every master)."""
    suffix = project.encode()
    r = client if client is not None else redis_client()
    out = []
    for k in r.scan_iter(match=b"*" + suffix, count=1000):
        if k.endswith(suffix):
            out.append(bytes(k))
    return sorted(out)


def redis_hash(key: bytes, client=None) -> Dict[bytes, bytes]:
    r = client if client is not None else redis_client()
    return {bytes(k): bytes(v) for k, v in r.hgetall(key).items()}


def drop_redis_project(project: str, client=None) -> None:
    try:
        r = client if client is not None else redis_client()
        keys = redis_keys(project, r)
        if keys:
            # RedisCluster splits a DEL by slot itself.
            r.delete(*keys)
    except Exception:
        pass


def redis_key(entity_key: bytes, project: str) -> bytes:
    return entity_key + project.encode()


def redis_field(view: str, feature: str) -> bytes:
    from feast.infra.online_stores.helpers import _mmh3

    return _mmh3(f"{view}:{feature}")


# --------------------------------------------------------------------------
# Feast repos on a server backend
# --------------------------------------------------------------------------


def online_store_yaml(kind: str, *, instance: str = "", keyspace: str = "") -> str:
    """The `online_store:` block for a single Feast store of KIND (Feast's
    own config fields, so Feast and the proxy read the same file)."""
    if kind == "redis":
        return f"online_store:\n  type: redis\n  connection_string: \"{redis_connection_string()}\"\n"
    if kind == "redis_cluster":
        return (f"online_store:\n  type: redis\n  redis_type: redis_cluster\n"
                f"  connection_string: \"{redis_ha_connection_string(kind)}\"\n")
    if kind == "redis_sentinel":
        master = redis_sentinels()[1]
        return (f"online_store:\n  type: redis\n  redis_type: redis_sentinel\n  sentinel_master: {master}\n"
                f"  connection_string: \"{redis_ha_connection_string(kind)}\"\n")
    if kind == "bigtable":
        bigtable_host()
        return f"online_store:\n  type: bigtable\n  project_id: {BT_PROJECT}\n  instance: {instance}\n"
    if kind == "cassandra":
        host, port = cassandra_addr()
        s = f"online_store:\n  type: cassandra\n  hosts:\n    - {host}\n  port: {port}\n  keyspace: {keyspace}\n"
        creds = cassandra_creds()
        if creds:
            s += f"  username: {creds[0]}\n  password: {creds[1]}\n"
        return s
    raise ValueError(kind)


def feature_store_yaml(project: str, online_store: str) -> str:
    return (f"project: {project}\nregistry: data/registry.db\nprovider: local\n{online_store}"
            "offline_store:\n  type: file\nentity_key_serialization_version: 3\n")


def write_yaml_view(path: Path, name: str, team: str, entities: Iterable[Tuple[str, str, str]],
                    features: Iterable[Tuple[str, str]]) -> Path:
    """A FeatureView YAML file (name, entities [{name, join_keys, dtype}],
    schema [{name, dtype}], tags {team})."""
    lines = [f"name: {name}", "entities:"]
    ents = list(entities)
    if not ents:
        lines[-1] = "entities: []"
    for ename, jk, dtype in ents:
        lines += [f"  - name: {ename}", f"    join_keys: [{jk}]", f"    dtype: {dtype}"]
    lines += ["ttl: 36500d", "schema:"]
    for fname, dtype in features:
        lines += [f"  - name: {fname}", f"    dtype: {dtype}"]
    lines += ["online: true", "tags:", f"  team: {team}", ""]
    path.write_text("\n".join(lines))
    return path


class Cleanup:
    """Best-effort removal of what a test created on the servers."""

    def __init__(self):
        self.actions = []

    def keyspace(self, ks):
        self.actions.append(lambda: drop_keyspace(ks))

    def bigtable(self, instance):
        self.actions.append(lambda: drop_bigtable_instance_tables(instance))

    def redis(self, project, client=None):
        self.actions.append(lambda: drop_redis_project(project, client))

    def run(self):
        for a in reversed(self.actions):
            a()
        self.actions.clear()


def run_proxy_cmd(args: List[Any], cwd: Path, timeout: float = 120):
    """`hos-proxy ARGS`; returns the CompletedProcess (not checked)."""
    import subprocess

    binary = H.require_proxy_bin()
    return subprocess.run([str(binary), *map(str, args)], cwd=str(cwd), env=H.sub_env(), capture_output=True,
                          text=True, timeout=timeout)


def metric_sample(text: str, name: str, labels: Dict[str, str]) -> Optional[float]:
    """Value of one Prometheus sample, or None when there is no such sample."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name + "{"):
            continue
        head, _, val = line.rpartition(" ")
        if not head.endswith("}"):
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', head[len(name) + 1:-1]))
        if got == labels:
            return float(val)
    return None
