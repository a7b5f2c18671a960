"""Fixtures for the security suite (tests/security, run by
tests/security/run.sh).

The interop tests' helpers (tests/interop: hosutil, backendutil) and their
conftest (TZ=UTC, the `procs` fixture that starts and stops proxies by pid,
stderr tails of live processes in a failing test's report) are reused as
they are. Figures the tests measure are printed at the end of the run
("security figures").
"""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INTEROP = HERE.parent / "interop"
sys.path.insert(0, str(INTEROP))
sys.path.insert(0, str(HERE))

_spec = importlib.util.spec_from_file_location("interop_conftest", INTEROP / "conftest.py")
_interop = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_interop)

import secutil  # noqa: E402

pytest_runtest_makereport = _interop.pytest_runtest_makereport
proxy_bin = _interop.proxy_bin
procs = _interop.procs


def pytest_terminal_summary(terminalreporter):
    if secutil.REPORT:
        terminalreporter.section("security figures")
        for line in secutil.REPORT:
            terminalreporter.write_line(line)
