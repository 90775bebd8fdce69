"""PROXY PAUSE / RESUME: requests wait, without an error, while Redis
restarts; a pause with a timeout resumes by itself."""
import threading
import time

import redis

from helpers import SLOW, resp_cmd, resp_read, wait_until


class Getter:
    """A client reading in a loop, recording latency and errors."""

    def __init__(self, port):
        self.c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30 * SLOW)
        self.lat, self.errors = [], []
        self.stop_flag = threading.Event()
        self.t = threading.Thread(target=self.run)

    def run(self):
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            try:
                self.c.incr("n")
                self.lat.append(time.monotonic() - t0)
            except redis.RedisError as e:
                self.errors.append(repr(e))
            time.sleep(0.01)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.t.join(60)


def test_pause_while_redis_restarts_then_resume(env, master):
    sc = env.sidecar(master)
    admin = sc.client()
    with Getter(sc.port) as g:
        time.sleep(0.3)
        assert admin.execute_command("PROXY", "PAUSE") == b"OK"
        assert sc.info()["requests_paused"] == "1"
        master.stop()
        master.start()
        time.sleep(0.5)
        assert admin.execute_command("PROXY", "RESUME") == b"OK"
        time.sleep(0.5)
    assert not g.errors, g.errors[:3]
    assert max(g.lat) > 0.5                         # it waited, it did not fail
    assert int(master.client().get("n")) >= 1       # and ran on the restarted Redis
    assert "requests paused" in sc.log() and "requests resumed (PROXY RESUME)" in sc.log()


def test_pause_with_a_timeout_resumes_by_itself(env, master):
    sc = env.sidecar(master)
    admin = sc.client()
    assert admin.execute_command("PROXY", "PAUSE", "300ms") == b"OK"
    c = sc.client()
    t0 = time.monotonic()
    assert c.set("k", "v")
    assert 0.2 < time.monotonic() - t0 < 3 * SLOW
    wait_until(lambda: "requests resumed (PROXY PAUSE timeout)" in sc.log(), what="log")
    # admin commands are never held
    assert admin.execute_command("PROXY", "PAUSE", "1") == b"OK"
    assert b"requests_paused:1" in admin.execute_command("PROXY", "INFO")
    assert admin.execute_command("PROXY", "RESUME") == b"OK"
    try:
        admin.execute_command("PROXY", "PAUSE", "soon")
        raise AssertionError("bad timeout accepted")
    except redis.ResponseError as e:
        assert "PROXY PAUSE [timeout]" in str(e)


def test_pause_answers_once_the_requests_in_flight_are_answered(env, master):
    sc = env.sidecar(master)
    slow = sc.raw()
    busy = "local i = 0 while i < 100000000 do i = i + 1 end return 1"   # ~1 s
    slow.sendall(resp_cmd("EVAL", busy, "0"))
    time.sleep(0.05)
    admin = sc.client()
    t0 = time.monotonic()
    assert admin.execute_command("PROXY", "PAUSE") == b"OK"
    waited = time.monotonic() - t0
    f = slow.makefile("rb")
    assert resp_read(f) == 1                        # it finished, and was answered first
    assert waited > 0.3, waited
    # a PAUSE whose client leaves before it is answered costs nothing
    admin.execute_command("PROXY", "RESUME")
    slow.sendall(resp_cmd("EVAL", busy, "0"))
    time.sleep(0.05)
    gone = sc.raw()
    gone.sendall(resp_cmd("PROXY", "PAUSE"))
    gone.close()
    assert resp_read(f) == 1
    time.sleep(0.1)
    assert admin.execute_command("PROXY", "RESUME") == b"OK"
    assert sc.alive() and admin.ping()
