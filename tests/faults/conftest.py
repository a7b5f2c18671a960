"""Fixtures for the fault drills and shutdown tests (tests/faults, run by
tests/faults/run.sh).

The interop tests' helpers (tests/interop: hosutil, backendutil) and their
conftest (TZ=UTC, the `procs` fixture that starts and stops proxies by pid,
stderr tails of live processes in a failing test's report) are reused as
they are. The figures the tests measure are printed again at the end of the
run ("fault drill figures").
"""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INTEROP = HERE.parent / "interop"
sys.path.insert(0, str(INTEROP))
sys.path.insert(0, str(HERE))

# The interop conftest under another module name (both files are "conftest").
_spec = importlib.util.spec_from_file_location("interop_conftest", INTEROP / "conftest.py")
_interop = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_interop)

import faultutil  # noqa: E402

pytest_runtest_makereport = _interop.pytest_runtest_makereport
proxy_bin = _interop.proxy_bin
procs = _interop.procs


def pytest_terminal_summary(terminalreporter):
    if faultutil.REPORT:
        terminalreporter.section("fault drill figures")
        for line in faultutil.REPORT:
            terminalreporter.write_line(line)
