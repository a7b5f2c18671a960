"""Fixtures for the hos-proxy <-> Feast interop tests.

Run with tests/interop/run.sh (it makes the Feast venv and sets TZ=UTC).
The proxy binary is $HOS_PROXY_BIN (default target/debug/hos-proxy); when it
is missing every test that needs it fails with a message saying so.
"""

import os
import time

# Feast's SQLite store converts timestamps through the local time zone: the
# in-process SDK must run in UTC like every subprocess.
os.environ["TZ"] = "UTC"
time.tzset()

import pytest  # noqa: E402

import hosutil  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for p in list(hosutil.LIVE_PROCS):
            try:
                rep.sections.append((f"{p.name} (pid {p.pid}) stderr, last lines", p.tail(80)))
            except OSError:
                pass


def pytest_terminal_summary(terminalreporter):
    # Figures the tests measured (hosutil.report), printed whether they
    # passed or not, so that they are in the log of every run.
    if hosutil.REPORT:
        terminalreporter.section("interop figures")
        for line in hosutil.REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def proxy_bin():
    return hosutil.require_proxy_bin()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("interop")


@pytest.fixture(scope="session")
def base_repo(workdir):
    """Feast repo (project interop, sqlite, key v3) applied and filled by
    Feast: user_features (every dtype), user_merchant (two entities),
    global_stats (entityless, materialized), services svc and svc_alias.
    Tests that write go to a clone (see `clone`)."""
    repo = workdir / "base_repo"
    hosutil.make_base_repo(repo)
    return repo


@pytest.fixture(scope="session")
def base_fs(base_repo):
    return hosutil.feature_store(base_repo)


@pytest.fixture(scope="session")
def proxy(proxy_bin, base_repo, workdir):
    """hos-proxy serving the base repo (read-only use)."""
    p = hosutil.start_proxy(["--repo", str(base_repo)], workdir / "logs", name="hos-proxy-base")
    yield p
    p.stop()


@pytest.fixture
def clone(base_repo, tmp_path):
    """Returns a function making a private copy of the base repo."""
    counter = [0]

    def make(name=None):
        counter[0] += 1
        return hosutil.clone_repo(base_repo, tmp_path / (name or f"repo{counter[0]}"))

    return make


@pytest.fixture
def procs(tmp_path):
    """Starts proxies / feast servers for one test and stops them (by pid)."""
    started = []

    class Starter:
        logdir = tmp_path / "logs"

        def proxy(self, args, name="hos-proxy", **kw):
            p = hosutil.start_proxy(args, self.logdir, name=name, **kw)
            started.append(p)
            return p

        def feast_serve(self, repo, name="feast-serve"):
            p = hosutil.start_feast_serve(repo, self.logdir, name=name)
            started.append(p)
            return p

        def raw(self, name, cmd, cwd):
            p = hosutil.Proc(name, cmd, cwd, self.logdir)
            started.append(p)
            return p

    yield Starter()
    for p in reversed(started):
        p.stop()
