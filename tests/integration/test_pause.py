"""PROXY PAUSE / RESUME: requests wait, without an error, while Redis
restarts; a pause with a timeout resumes by itself."""
import time

import redis

from helpers import SLOW, Load, resp_cmd, resp_read, wait_until


def test_pause_while_redis_restarts_then_resume(env, master):
    sc = env.sidecar(master)
    admin = sc.client()
    # a client INCRing in a loop, 100 a second
    with Load(lambda c, *_: c.incr("n"), port=sc.port, rate=100, socket_timeout=30) as g:
        g.wait_ok(10)
        assert admin.execute_command("PROXY", "PAUSE") == b"OK"
        assert sc.info()["requests_paused"] == "1"
        master.stop()
        master.start()
        # No condition: held requests change nothing while they wait, and the
        # test wants them to wait over 0.5 s.
        time.sleep(0.5)
        assert admin.execute_command("PROXY", "RESUME") == b"OK"
        resumed = time.monotonic()
        g.wait_ok(10, after=resumed)
    assert not g.errors(), g.error_texts()[:3]
    assert max(c.t1 - c.t0 for c in g.ok()) > 0.5   # it waited, it did not fail
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
    for bad in ("soon", "1e300m", "2d", "-1s"):          # a day at most, in any unit
        try:
            admin.execute_command("PROXY", "PAUSE", bad)
            raise AssertionError(f"bad timeout {bad} accepted")
        except redis.ResponseError as e:
            assert "PROXY PAUSE [timeout]" in str(e)
    assert b"requests_paused:0" in admin.execute_command("PROXY", "INFO")


def test_pause_answers_once_the_requests_in_flight_are_answered(env, master):
    sc = env.sidecar(master)
    slow = sc.raw()
    busy = "local i = 0 while i < 100000000 do i = i + 1 end return 1"   # ~1 s
    slow.sendall(resp_cmd("EVAL", busy, "0"))
    admin = sc.client()
    wait_until(lambda: any(sc.pending()), what="the EVAL in flight")
    t0 = time.monotonic()
    assert admin.execute_command("PROXY", "PAUSE") == b"OK"
    waited = time.monotonic() - t0
    f = slow.makefile("rb")
    assert resp_read(f) == 1                        # it finished, and was answered first
    assert waited > 0.3, waited
    # a PAUSE whose client leaves before it is answered costs nothing
    admin.execute_command("PROXY", "RESUME")
    slow.sendall(resp_cmd("EVAL", busy, "0"))
    wait_until(lambda: any(sc.pending()), what="the EVAL in flight")
    gone = sc.raw()
    gone.sendall(resp_cmd("PROXY", "PAUSE"))
    gone.close()
    assert resp_read(f) == 1
    sc.wait_log("requests paused", count=2)        # the proxy has that PAUSE
    # No condition: its answer is dropped (the client left) at the next quiet
    # check, every 5 ms, which shows nowhere; let that come while paused.
    time.sleep(0.1)
    assert admin.execute_command("PROXY", "RESUME") == b"OK"
    assert sc.alive() and admin.ping()
