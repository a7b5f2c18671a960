"""Fixtures for the gRPC client tests (tests/grpc, run by tests/grpc/run.sh).

The interop tests' helpers (tests/interop: hosutil, backendutil) and their
conftest (TZ=UTC for the in-process Feast SDK, stderr tails of live
processes in a failing test's report) are reused as they are.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INTEROP = HERE.parent / "interop"
sys.path.insert(0, str(INTEROP))

# The interop conftest under another module name (both files are "conftest").
_spec = importlib.util.spec_from_file_location("interop_conftest", INTEROP / "conftest.py")
_interop = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_interop)

import pytest  # noqa: E402

pytest_runtest_makereport = _interop.pytest_runtest_makereport
proxy_bin = _interop.proxy_bin


@pytest.fixture(scope="session")
def clients():
    """{"go": path, "java": path}: the client commands, from
    HOS_GRPC_GO_CLIENT / HOS_GRPC_JAVA_CLIENT (tests/grpc/run.sh sets them)
    or else built (or reused from the cache) by tests/grpc/build.sh."""
    go, java = os.environ.get("HOS_GRPC_GO_CLIENT"), os.environ.get("HOS_GRPC_JAVA_CLIENT")
    if not (go and java):
        p = subprocess.run(["bash", str(HERE / "build.sh")], capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            pytest.fail(f"tests/grpc/build.sh failed ({p.returncode}):\n{p.stderr[-6000:]}", pytrace=False)
        go, java = p.stdout.strip().splitlines()[-2:]
    for c in (go, java):
        assert os.access(c, os.X_OK), f"client command {c} is missing or not executable"
    return {"go": go, "java": java}
