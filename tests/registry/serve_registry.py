"""Runs Feast's own `feast serve_registry` CLI (the gRPC RegistryServer) with
its listener on 127.0.0.1 instead of every interface.

Feast 0.67's feast.registry_server.start_server binds "[::]:<port>" with no
option to change it (--host only applies to the REST server), and the tests
bind every server to loopback. This wrapper replaces grpc.server, which
start_server calls, by one whose add_insecure_port / add_secure_port turn
"[::]:<port>" into "127.0.0.1:<port>"; everything else is the real CLI.

Usage (with the Feast venv's python):
    python tests/registry/serve_registry.py -c REPO serve_registry -p PORT
"""

import sys

import grpc

from feast.cli.cli import cli

_grpc_server = grpc.server


def _loopback(address: str) -> str:
    if address.startswith("[::]:"):
        return "127.0.0.1:" + address[len("[::]:"):]
    return address


def _loopback_server(*args, **kwargs):
    server = _grpc_server(*args, **kwargs)
    add_insecure, add_secure = server.add_insecure_port, server.add_secure_port
    server.add_insecure_port = lambda address: add_insecure(_loopback(address))
    server.add_secure_port = lambda address, credentials: add_secure(_loopback(address), credentials)
    return server


grpc.server = _loopback_server

if __name__ == "__main__":
    sys.exit(cli.main(args=sys.argv[1:], prog_name="feast"))
