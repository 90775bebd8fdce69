"""One test per bad input. Each asserts the reply or the close, that the
proxy's RSS grew by less than 64 MB, and that another client kept working.
Buffer limits are set small (8 MB) so the memory bound means something."""
import os
import random
import socket

import pytest
import redis

from helpers import resp_cmd, resp_read, wait_until

LIMITS = {"max_query_buffer": "8mb", "max_output_buffer": "8mb"}
MB = 1024


@pytest.fixture
def sc(env, master):
    s = env.sidecar(master, clients=LIMITS)
    s.client().set("warm", "x")
    s.rss0 = s.rss_kb()
    return s


def others_fine(sc):
    r = sc.client()
    assert r.set("other", "still-here") is True
    assert r.get("other") == b"still-here"
    assert sc.alive()
    grew = sc.rss_kb() - sc.rss0
    assert grew < 64 * MB, f"RSS grew by {grew} kB"


def expect_error_then_close(s, pattern):
    f = s.makefile("rb")
    err = resp_read(f)
    assert isinstance(err, redis.ResponseError), err
    assert pattern in str(err)
    assert f.read() == b""


def closed(s, timeout=5):
    """True once the peer closed (EOF or reset), draining what came first."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


@pytest.mark.parametrize("seed", range(12))
def test_random_bytes(sc, seed):
    rnd = random.Random(seed)
    s = sc.raw()
    s.sendall(bytes(rnd.getrandbits(8) for _ in range(4096)))
    s.settimeout(0.5)   # replies come at once; half a second of silence ends it
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        got += b"-reset"
    # Garbage is either answered with errors (as unknown inline commands)
    # or refused with a protocol error and a close; never silence.
    assert got, "no reply and no close"
    assert got[:1] in (b"-", b"+", b":", b"$", b"*")
    others_fine(sc)


def test_negative_multibulk_is_ignored(sc):
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(b"*-1\r\n*0\r\n" + resp_cmd("PING"))
    assert resp_read(f) == b"PONG"
    others_fine(sc)


def test_huge_multibulk_count(sc):
    s = sc.raw()
    s.sendall(b"*99999999999\r\n")
    expect_error_then_close(s, "Protocol error: invalid multibulk length")
    others_fine(sc)


def test_negative_bulk_length(sc):
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(b"$-5\r\n")                   # inline form: an unknown command
    err = resp_read(f)
    assert isinstance(err, redis.ResponseError) and "unknown command" in str(err)
    s.sendall(b"*1\r\n$-5\r\n")             # in a multibulk: a protocol error
    expect_error_then_close(s, "Protocol error: invalid bulk length")
    others_fine(sc)


def test_declared_600mb_bulk(sc):
    s = sc.raw()
    s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\n" + b"x" * 1000)
    expect_error_then_close(s, "Protocol error: invalid bulk length")
    others_fine(sc)


def test_100000_nested_arrays(sc):
    s = sc.raw()
    s.sendall(b"*1\r\n" * 100000)
    # The proxy answers at the second header; the rest may hit a closed socket.
    f = s.makefile("rb")
    err = resp_read(f)
    assert "Protocol error: expected '$', got '*'" in str(err)
    assert closed(s)
    others_fine(sc)


def test_128mb_inline_line_without_newline(sc):
    s = sc.raw()
    chunk = b"A" * (1024 * 1024)
    sent = 0
    try:
        for _ in range(128):
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent < 128 * 1024 * 1024 or closed(s)
    assert closed(s)
    assert int(sc.info()["errors_protocol"]) >= 1
    others_fine(sc)


def test_half_requests_then_close_no_fd_leak(sc):
    fds = lambda: len(os.listdir(f"/proc/{sc.proc.pid}/fd"))  # noqa: E731
    before = fds()
    for _ in range(200):
        s = sc.raw()
        s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nabc")
        s.close()
    info = sc.client()
    # Accepted late or closed late: wait until only this INFO client is left.
    wait_until(lambda: int(info.execute_command("PROXY", "INFO").split(b"connected_clients:")[1]
                           .split(b"\r")[0]) == 1, timeout=5, what="closed clients to go")
    assert int(sc.info()["total_connections_received"]) >= 200
    assert fds() <= before + 2    # the two redis-py clients of this check
    others_fine(sc)


def test_10000_pipelined_left_unread_then_read(sc):
    sc.client().set("pv", "v" * 100)
    replies0 = sc.counter("forwarded_replies")
    s = sc.raw(timeout=30)
    s.sendall(b"".join(resp_cmd("GET", "pv") if i % 2 else resp_cmd("INCR", "pn")
                       for i in range(10000)))
    # every reply is in (the proxy's buffer or the socket), none read yet
    wait_until(lambda: sc.counter("forwarded_replies") - replies0 >= 10000, timeout=10,
               what="10,000 replies")
    f = s.makefile("rb")
    n = 0
    for i in range(10000):
        v = resp_read(f)
        if i % 2:
            assert v == b"v" * 100
        else:
            n += 1
            assert v == n
    others_fine(sc)


def test_300_gets_of_1mb_never_read(sc):
    sc.client().set("big", b"x" * (1024 * 1024))
    s = sc.raw()
    s.sendall(resp_cmd("GET", "big") * 300)
    wait_until(lambda: int(sc.info()["errors_output_buffer"]) >= 1, timeout=10,
               what="the client to be closed over max_output_buffer")
    # (Draining what the kernel still holds for s would only time TCP.)
    others_fine(sc)


def test_query_buffer_limit(sc):
    s = sc.raw()
    # Many arguments each under the bulk limit, together over the buffer limit.
    arg = b"$1048576\r\n" + b"y" * 1048576 + b"\r\n"
    try:
        s.sendall(b"*20\r\n$4\r\nMSET\r\n" + arg * 12)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert closed(s)
    assert int(sc.info()["errors_query_buffer"]) == 1
    others_fine(sc)


def test_inline_over_the_bulk_limit_gets_its_error_not_silence(env, master):
    # Rewritten as RESP, the inline SET's value is over max_query_buffer:
    # it gets the multibulk form's error, never no reply (which would hand
    # the next caller this request's reply).
    sc = env.sidecar(master, clients={"max_query_buffer": "1kb"})
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(b"SET k " + b"x" * 2000 + b"\r\nPING\r\n")
    first = resp_read(f)
    assert isinstance(first, redis.ResponseError), first
    assert "Protocol error: invalid bulk length" in str(first)
    assert f.read() == b""                        # closed: no +PONG after it
    others_fine_small(sc)


def others_fine_small(sc):
    r = sc.client()
    assert r.set("other", "still-here") is True and r.get("other") == b"still-here"


def test_inline_tokens_split_as_redis_splits_them(env, master):
    # A vertical tab inside a bare token does not split it (redis 7's
    # sdssplitargs ends a token at space, tab, CR, LF and NUL only).
    sc = env.sidecar(master)
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(b"SET k a\x0bb\r\nGET k\r\n\x0cGET\x0bk\r\n")
    assert resp_read(f) == b"OK"
    assert resp_read(f) == b"a\x0bb"
    err = resp_read(f)                            # one token: "GET\vk", unknown
    assert isinstance(err, redis.ResponseError) and "unknown command" in str(err), err
    assert master.client().get("k") == b"a\x0bb"


def test_inline_line_with_a_nul_gets_an_error_not_forwarded(env, master):
    # redis would never see this line end (it finds it with strchr): it is
    # not forwarded, and gets a clear error and a close.
    sc = env.sidecar(master)
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(b"PING\r\nSET k\x00v\r\nPING\r\n")
    assert resp_read(f) == b"PONG"
    err = resp_read(f)
    assert isinstance(err, redis.ResponseError) and "NUL byte in an inline request" in str(err)
    assert f.read() == b""
    assert master.client().exists("k") == 0
