"""SIGTERM drains: no new connections or requests, every request in flight
gets its reply, transactions get until shutdown_timeout, exit 0; a second
signal stops at once."""
import signal
import socket
import time

import pytest

from helpers import resp_cmd, resp_read, unread_by_peer, wait_until

def exited(sc, timeout):
    """Its exit code, once it exits by itself."""
    sc.proc.wait(timeout)
    return sc.stop()


def conn(sc):
    s = sc.raw()
    return s, s.makefile("rb")


def test_sigterm_with_1000_pipelined_requests_in_flight(env, master):
    sc = env.sidecar(master, proxy={"shutdown_timeout": "10s"})
    s, f = conn(sc)
    # Redis holds the script and the 1,000 INCRs behind it unanswered
    master.hold_writes()
    s.sendall(resp_cmd("EVAL", "return 1", "0") +
              b"".join(resp_cmd("INCR", "n") for _ in range(1000)))
    wait_until(lambda: 1001 in sc.pending(), what="all 1,001 in flight")
    sc.proc.send_signal(signal.SIGTERM)
    sc.wait_log("draining")
    master.release_writes()
    assert resp_read(f) == 1
    assert [resp_read(f) for _ in range(1000)] == list(range(1, 1001))
    assert exited(sc, 10) == 0
    assert master.client().get("n") == b"1000"
    log = sc.log()
    assert "draining" in log and "drained: every client done" in log


def test_new_requests_while_draining_get_an_error_after_earlier_replies(env, master):
    sc = env.sidecar(master, proxy={"shutdown_timeout": "10s"})
    s, f = conn(sc)
    master.hold_writes()                        # the script stays unanswered
    s.sendall(resp_cmd("EVAL", "return 1", "0"))
    wait_until(lambda: 1 in sc.pending(), what="the EVAL in flight")
    sc.proc.send_signal(signal.SIGTERM)
    sc.wait_log("draining")
    s.sendall(resp_cmd("GET", "k"))             # while the EVAL is in flight
    wait_until(lambda: unread_by_peer(s) == 0, what="the proxy read the GET")
    # no new connections meanwhile
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", sc.port), timeout=1).recv(1)
    master.release_writes()
    assert resp_read(f) == 1
    err = resp_read(f)
    assert str(err) == "ERR proxy is shutting down"
    assert exited(sc, 10) == 0


def test_a_client_is_closed_with_its_last_reply_not_at_the_next_tick(env, master):
    """While draining, a client is closed as its last reply goes out, so a
    request it sends right after finds the connection closed (its app
    reconnects to the new process), never an error from this one. A second
    client in a transaction keeps the drain going. (Were the close left to
    the drain's 20 ms tick, the GET would get an error reply unless the tick
    fell between the reply and the GET.)"""
    sc = env.sidecar(master, proxy={"shutdown_timeout": "10s"})
    other, of = conn(sc)
    other.sendall(resp_cmd("MULTI"))
    assert resp_read(of) == b"OK"
    s, f = conn(sc)
    master.hold_writes()
    s.sendall(resp_cmd("EVAL", "return 1", "0"))
    wait_until(lambda: 1 in sc.pending(), what="the EVAL in flight")
    sc.proc.send_signal(signal.SIGTERM)
    sc.wait_log("draining")
    master.release_writes()
    assert resp_read(f) == 1
    try:
        s.sendall(resp_cmd("GET", "k"))
        rest = f.read()
    except (BrokenPipeError, ConnectionResetError):
        rest = b""
    assert rest == b""
    assert sc.proc.poll() is None                 # the transaction's client holds it
    of.close()
    other.close()
    assert exited(sc, 5) == 0


def test_a_transaction_gets_until_the_timeout_then_nothing_is_left_queued(env, master):
    sc = env.sidecar(master, proxy={"shutdown_timeout": "1s"})
    s, f = conn(sc)
    s.sendall(resp_cmd("MULTI") + resp_cmd("SET", "k", "v"))
    assert resp_read(f) == b"OK" and resp_read(f) == b"QUEUED"
    t0 = time.monotonic()
    sc.proc.send_signal(signal.SIGTERM)
    # it may still send commands: the transaction is under way
    s.sendall(resp_cmd("SET", "k2", "v2"))
    assert resp_read(f) == b"QUEUED"
    assert exited(sc, 10) == 0
    assert 0.9 < time.monotonic() - t0 < 3
    assert f.read() == b""                       # closed, no EXEC
    r = master.client()
    assert r.get("k") is None and r.get("k2") is None
    assert not [c for c in r.client_list() if "x" in c["flags"]]   # nothing in MULTI


def test_a_second_signal_stops_at_once(env, master):
    sc = env.sidecar(master, proxy={"shutdown_timeout": "30s"})
    s, f = conn(sc)
    s.sendall(resp_cmd("MULTI"))
    assert resp_read(f) == b"OK"
    sc.proc.send_signal(signal.SIGTERM)
    sc.wait_log("draining")
    s.sendall(resp_cmd("SET", "k", "v"))          # the transaction is still served
    assert resp_read(f) == b"QUEUED"
    assert sc.proc.poll() is None                 # waiting for the transaction
    t0 = time.monotonic()
    sc.proc.send_signal(signal.SIGTERM)
    assert exited(sc, 5) == 0
    assert time.monotonic() - t0 < 1
