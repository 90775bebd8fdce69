"""[admin] metrics_listen: GET /healthz for probes, 200 while the master is
reachable, 503 otherwise; bad or slow HTTP clients are closed and cost
the loop nothing."""
import socket
import time

from helpers import SLOW, Load, free_port, http_get as get, readable, wait_until


def test_healthz_follows_the_master(env, master):
    port = free_port()
    sc = env.sidecar(master, admin={"metrics_listen": f"127.0.0.1:{port}"},
                     health={"check_interval": "100ms", "down_after": "3"})
    assert get(port, "/healthz") == (200, "ok\n")
    assert get(port, "/nope")[0] == 404
    master.stop()
    t0 = time.monotonic()
    wait_until(lambda: get(port, "/healthz")[0] == 503, timeout=1.5, what="503")
    # within down_after x check_interval (0.3 s), with a 3x margin
    assert time.monotonic() - t0 < 0.9 * SLOW + 0.3
    code, body = get(port, "/healthz")
    assert body.startswith(f"master 127.0.0.1:{master.port} down")
    master.start()
    wait_until(lambda: get(port, "/healthz")[0] == 200, timeout=3, what="200 again")


def test_bad_and_slow_http_clients_are_closed(env, master):
    port = free_port()
    sc = env.sidecar(master, admin={"metrics_listen": f"127.0.0.1:{port}"})
    # garbage: 400 and a close
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"\x00\xff garbage\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 400")
    # a 1 MB request line: closed, nothing grows
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b"GET /" + b"a" * (1 << 20))
        got = s.recv(100)
    except OSError:                            # reset: closed with bytes unread
        got = b""
    assert got == b""
    # one byte a second: closed at the 2 s deadline, while others are served
    slow = socket.create_connection(("127.0.0.1", port), timeout=10)
    line = b"GET /healthz HTTP/1.1\r\n"
    dribble = Load(lambda s, _, k: s.send(line[k:k + 1]), connect=lambda _: slow,
                   iterations=len(line), rate=1, stop_on_error=True).start()
    c = sc.client()
    worst, served = 0.0, 0
    started = time.monotonic()
    # served meanwhile, every 0.1 s, until the proxy closes the slow one
    while not readable(slow, 0.1):
        t0 = time.monotonic()
        assert get(port, "/healthz")[0] == 200
        c.set("k", "v")
        worst = max(worst, time.monotonic() - t0)
        served += 1
        assert time.monotonic() - started < 5, "the slow client is still open"
    assert served and worst < 0.5, (served, worst)
    t0 = time.monotonic()
    try:                                       # closed by the proxy: FIN, or a reset
        assert slow.recv(100) == b""           # when a dribbled byte was unread
    except ConnectionResetError:
        pass
    assert time.monotonic() - t0 < 3
    dribble.stop()
    assert sc.alive()
