"""Feast's registry server (`feast serve_registry`, gRPC RegistryServer) and
`registry_type: remote`: a client repo applies through the server, and both
the client (over gRPC) and the server's own file registry list the views."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from regutil import assert_registry_contents, feast, make_repo, project_name, sub_env

SERVE_REGISTRY = Path(__file__).resolve().parent / "serve_registry.py"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listeners(port: int) -> set:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) of the sockets
    listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                addr, hexport = fields[1].rsplit(":", 1)
                if int(hexport, 16) == port and fields[3] == "0A":  # TCP_LISTEN
                    found.add(addr)
    return found


@pytest.fixture
def registry_server(tmp_path):
    """`feast serve_registry` on a repo with a local file registry; yields
    (server repo, port). Stopped by its pid."""
    project = project_name("remote")
    repo = make_repo(
        tmp_path / "server",
        project,
        f"""
  path: {tmp_path / "server" / "data" / "registry.db"}
  cache_ttl_seconds: 0
""",
    )
    port = free_port()
    log = (tmp_path / "serve_registry.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(SERVE_REGISTRY), "-c", str(repo), "serve_registry", "-p", str(port)],
        cwd=str(repo), env=sub_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                assert proc.poll() is None, (tmp_path / "serve_registry.log").read_text()
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, "registry server not SERVING after 90 s"
                time.sleep(0.3)
        yield project, repo, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_remote_registry_through_serve_registry(tmp_path, registry_server):
    project, server_repo, port = registry_server
    # Loopback only. gRPC may listen on an IPv6 socket with 127.0.0.1 as a
    # v4-mapped address; both spell 127.0.0.1 in /proc/net/tcp's byte order.
    found = listeners(port)
    assert found and found <= {"0100007F", "0000000000000000FFFF00000100007F"}, found

    client = make_repo(
        tmp_path / "client",
        project,
        f"""
  registry_type: remote
  path: 127.0.0.1:{port}
""",
    )
    out = feast(client, "apply")
    assert "Created feature view driver_stats" in out, out
    # Read back over gRPC, and straight from the file the server keeps.
    assert_registry_contents(client)
    assert_registry_contents(server_repo)
