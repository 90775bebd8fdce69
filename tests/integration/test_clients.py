"""Today's Node.js clients, ioredis and node-redis (pinned in
tests/clients/package-lock.json, installed by `make deps`), through the
sidecar with their default options, then with RESP2 and RESP3 forced.
The scenarios are in tests/clients/suite.mjs."""
import os
import pathlib
import shutil
import subprocess
import threading

import pytest

from helpers import SLOW

CLIENTS = pathlib.Path(__file__).resolve().parents[1] / "clients"


def node_major():
    node = shutil.which("node")
    if not node:
        return 0
    out = subprocess.run([node, "-p", "process.versions.node.split('.')[0]"],
                         capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


pytestmark = pytest.mark.skipif(
    node_major() < 20 or not (CLIENTS / "node_modules").is_dir(),
    reason="SKIPPED: needs Node >= 20 (and `make deps` to install the clients)")

MODES = [(c, m) for c in ("ioredis", "redis") for m in ("default", "resp2", "resp3")]


@pytest.fixture
def pair(env, master):
    """A sidecar without a password and one that wants one."""
    open_ = env.sidecar(master)
    locked = env.sidecar(master, proxy={"password": "pw"})
    return open_, locked


@pytest.mark.parametrize("client,mode", MODES)
def test_client_scenarios(pair, master, client, mode):
    open_, locked = pair
    p = subprocess.run(["node", "suite.mjs", client, mode, str(open_.port),
                        str(locked.port), "pw"], cwd=CLIENTS, capture_output=True,
                       text=True, timeout=120 * SLOW)
    lines = p.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL")]
    assert not failed and p.returncode == 0, "\n".join(failed) + p.stderr[-2000:]
    assert len([line for line in lines if line.startswith("ok ")]) == 12, p.stdout
    assert open_.alive() and locked.alive()


@pytest.mark.parametrize("client,mode", MODES)
def test_client_reconnects_after_the_sidecar_restarts(env, master, client, mode):
    sc = env.sidecar(master)
    p = subprocess.Popen(["node", "suite.mjs", client, mode, str(sc.port)], cwd=CLIENTS,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, SCENARIO="reconnect"))
    try:
        first = []
        reader = threading.Thread(target=lambda: first.append(p.stdout.readline()))
        reader.start()
        reader.join(30 * SLOW)          # a client that cannot connect never says it
        assert first and first[0].strip() == "READY", "the client did not connect"
        sc.stop()
        sc.start()
        p.stdin.write("go\n")
        p.stdin.flush()
        out = p.stdout.read()
        assert p.wait(30 * SLOW) == 0, out
        assert "ok reconnect" in out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
