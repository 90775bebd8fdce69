"""Fixtures: real redis-server processes and the sidecar on spare loopback
ports, started per test and killed by PID at teardown. Logs are printed
when a test fails. The classes and helpers are in helpers.py; the TLS
test certificates (the session's `certs`) come from tls_certs.py."""
import pytest

from helpers import Env
from tls_certs import make_certs


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def env(request, tmp_path):
    e = Env(tmp_path)
    yield e
    problems = []
    for s in e.sidecars:
        if s.proc is not None and s.proc.poll() is not None:
            problems.append(f"sidecar exited by itself with {s.proc.returncode}")
        rc = s.stop()
        if rc not in (0, None):
            problems.append(f"sidecar stop returned {rc}")
    for s in e.sentinels:
        s.stop()
    for r in e.redises:
        r.stop()
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed or problems:
        for s in e.sidecars:
            print(f"----- sidecar {s.port} log (last 80 lines) -----")
            print("\n".join(s.log().splitlines()[-80:]))
    assert not problems, "; ".join(problems)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """The TLS test certificates (tls_certs.py), made once a session."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def master(env):
    return env.redis("master")


@pytest.fixture
def sidecar(env, master):
    return env.sidecar(master)
