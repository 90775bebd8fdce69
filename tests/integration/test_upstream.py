"""The master down at start, killed while idle, and killed under load:
clear errors within connect_timeout, no hang, recovery once it is back."""
import os
import signal
import threading
import time

import pytest
import redis

from helpers import SLOW, Load, Relay, resp_cmd, resp_read, wait_until

MB = 1024 * 1024
POOL = {"connect_timeout": "300ms", "reply_timeout": "2s"}


def timed_error(r, *cmd):
    t0 = time.monotonic()
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command(*cmd)
    return str(e.value), time.monotonic() - t0


def test_master_down_at_start(env):
    m = env.redis("master", start=False)
    # the health check must not mark the master down during these requests
    # (3 failed checks, 2 s, would; then the replies say "is down")
    sc = env.sidecar(m.port, pool=POOL, health={"down_after": "100"})
    r = sc.client()
    msg, took = timed_error(r, "GET", "k")
    assert msg.startswith(f"upstream 127.0.0.1:{m.port} unavailable: connect: Connection refused")
    assert took < 0.3 * 3 * SLOW
    for _ in range(3):        # stays fast and clear, no backlog builds up
        msg, took = timed_error(r, "SET", "k", "v")
        assert "unavailable" in msg and took < 0.9 * SLOW
    m.start()
    wait_until(lambda: r.set("k", "v"), timeout=5, what="service to resume")
    assert r.get("k") == b"v"
    assert int(sc.info()["errors_upstream_unavailable"]) >= 4


def test_master_killed_while_idle(env, master):
    sc = env.sidecar(master, pool=POOL)
    r = sc.client()
    assert r.set("k", "v") is True
    master.stop()
    msg, took = timed_error(r, "GET", "k")
    assert "unavailable" in msg and took < 0.9 * SLOW
    master.start()
    wait_until(lambda: r.ping(), timeout=5, what="service to resume")
    assert r.set("k2", "v2") is True and r.get("k2") == b"v2"


def set_or_get(c, i, n):
    """SET on odd calls, GET on even ones: writes and reads alike."""
    return c.set(f"w{i}", n) if n % 2 == 0 else c.get(f"w{i}")


def test_master_killed_under_load(env, master):
    sc = env.sidecar(master, pool=POOL)
    load = Load(set_or_get, n=20, port=sc.port, pause_after_error=0.01).start()
    load.wait_ok(5, each=True)
    master.stop()
    # every client meets the outage
    wait_until(lambda: all(load.errors(i) for i in range(20)), what="an error for each client")
    before_restart = {i: len(load.ok(i)) for i in range(20)}
    master.start()
    wait_until(lambda: all(len(load.ok(i)) > before_restart[i] for i in range(20)),
               what="every client served again")
    load.stop()          # asserts no client hung
    for i in range(20):
        errors = load.error_texts(i)
        assert errors, f"client {i} saw no error while the master was down"
        for e in errors:
            assert e.startswith("upstream "), e
            assert "unavailable" in e or "may or may not have been applied" in e, e
        assert len(load.ok(i)) > before_restart[i], f"client {i} did not recover"
        assert load.slowest(i) < 3 * SLOW, f"client {i} waited {load.slowest(i):.1f}s"


def test_pipelined_requests_behind_a_dead_link_are_answered(env, master):
    sc = env.sidecar(master, pool=POOL)
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("SET", "a", "1"))
    assert resp_read(f) == b"OK"
    master.stop()
    s.sendall(b"".join(resp_cmd("GET", "a") for _ in range(100)))
    replies = [resp_read(f) for _ in range(100)]
    assert all(isinstance(x, redis.ResponseError) and "unavailable" in str(x) for x in replies)
    master.start()
    wait_until(lambda: sc.client().ping(), what="service to resume")
    s.sendall(resp_cmd("GET", "a"))
    assert resp_read(f) is None    # no persistence: the restarted master is empty


def test_a_busy_link_is_slow_not_dead(env, master):
    """reply_timeout is the server's silence while a reply is awaited, not
    a request's age: behind 5 MB of replies streaming at 5 MB/s on the one
    link, the last GETs wait far longer than reply_timeout and still get
    their replies (found by the protocol fuzzer under ASan, where a
    congested link was cut and a canary's SET came back 'may or may not
    have been applied')."""
    relay = Relay(master.port, rate=5 * MB)
    try:
        sc = env.sidecar(relay.port, pool={"connections": "1", "reply_timeout": "300ms",
                                           "validate_after": "0"})
        size, n = MB // 4, 20
        master.client().set("big", b"b" * size)
        r = sc.client()
        assert r.ping()
        t0 = time.monotonic()
        p = r.pipeline(transaction=False)
        for _ in range(n):
            p.get("big")
        assert p.execute() == [b"b" * size] * n
        took = time.monotonic() - t0
        assert took > 0.6, took                 # the last replies came after reply_timeout
        assert sc.counter("links_lost_reply_timeout") == 0
    finally:
        relay.close()


def test_a_stopped_server_is_silent_though_later_requests_still_go_out(env, master):
    """Later requests' bytes still fit in a stopped server's socket buffers:
    writing them says nothing of the server, and the awaited reply's
    reply_timeout runs all the same (only the awaited request's own bytes
    going out count, as a large one is taken in)."""
    sc = env.sidecar(master, pool={"connections": "1", "reply_timeout": "1s",
                                   "validate_after": "0"})
    a = sc.client(socket_timeout=20)
    assert a.ping()
    trickle = sc.raw(timeout=20)
    os.kill(master.proc.pid, signal.SIGSTOP)
    out = {}

    def first():
        t0 = time.monotonic()
        try:
            out["reply"] = a.set("x", "1")
        except redis.RedisError as e:
            out["reply"] = e
        out["took"] = time.monotonic() - t0
    try:
        t = threading.Thread(target=first)
        t.start()
        deadline = time.monotonic() + 5
        while t.is_alive() and time.monotonic() < deadline:
            trickle.sendall(resp_cmd("GET", "y"))    # other requests, on the same link
            time.sleep(0.05)
        t.join(10)
    finally:
        os.kill(master.proc.pid, signal.SIGCONT)
    assert "may or may not have been applied" in str(out["reply"]), out
    assert out["took"] < 3, out
    assert sc.counter("links_lost_reply_timeout") >= 1
