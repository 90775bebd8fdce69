"""Stateful commands on leased links: transactions, WATCH, blocking calls,
other databases. A lease goes back clean (RESET) and never leaks state to
its next holder."""
import socket
import time

import pytest
import redis

from helpers import SLOW, Load, Relay, resp_cmd, resp_read, wait_until


def test_transaction_and_watch_conflict(env, master):
    sc = env.sidecar(master)
    r = sc.client()
    p = r.pipeline(transaction=True)
    p.set("tx", 1).incr("tx").get("tx")
    assert p.execute() == [True, 2, b"2"]
    other = sc.client()
    with r.pipeline() as pipe:
        pipe.watch("w")
        v = int(pipe.get("w") or 0)
        other.set("w", 100)                      # a conflicting write
        pipe.multi()
        pipe.set("w", v + 1)
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get("w") == b"100"
    with r.pipeline() as pipe:                   # no conflict: it runs
        pipe.watch("w")
        v = int(pipe.get("w"))
        pipe.multi()
        pipe.set("w", v + 1)
        assert pipe.execute() == [True]
    assert r.get("w") == b"101"
    assert len(master.links("sidecar-lease")) == 1         # one lease, reused


def test_discard(env, master):
    sc = env.sidecar(master)
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("MULTI") + resp_cmd("SET", "d", "1") + resp_cmd("DISCARD") +
              resp_cmd("GET", "d") + resp_cmd("SET", "d", "2"))
    assert [resp_read(f) for _ in range(5)] == [b"OK", b"QUEUED", b"OK", None, b"OK"]


def test_client_killed_mid_multi_leaves_nothing_for_the_next_holder(env, master):
    sc = env.sidecar(master)
    a = sc.raw()
    a.sendall(b"MULTI\r\nSET leaked 1\r\n")
    assert a.recv(100).startswith(b"+OK")
    a.close()                                    # gone mid-transaction
    wait_until(lambda: sc.info()["connected_clients"] == "1", what="client gone")
    b = sc.client()
    assert b.execute_command("MULTI") in (True, b"OK")   # a fresh lease, or the reset one
    assert b.execute_command("INCR", "n") == b"QUEUED"
    assert b.execute_command("EXEC") == [1]      # only its own command ran
    assert b.get("leaked") is None
    info = sc.info()
    assert int(info["leases_reset_and_reused"]) + int(info["leases_closed"]) >= 1


def test_200_blocked_clients_do_not_disturb_200_others(env, master):
    sc = env.sidecar(master, pool={"max_leased": "250"})
    blocked = Load(lambda c, i, _: c.blpop(f"queue:{i}", 20), n=200, port=sc.port,
                   iterations=1, socket_timeout=30).start()
    wait_until(lambda: len(master.links("sidecar-lease")) >= 200, timeout=10, what="200 leases")

    def set_get(c, i, j):
        assert c.set(f"k{i}", j) is True
        assert c.get(f"k{i}") == str(j).encode()

    workers = Load(set_get, n=200, port=sc.port, iterations=10).start()
    assert workers.join(60)
    assert workers.error_texts() == []
    assert workers.slowest() < 2 * SLOW
    pusher = master.client()
    for i in range(200):
        pusher.rpush(f"queue:{i}", "x")
    assert blocked.join(30)
    results = [c.value for c in blocked.all()]
    assert len(results) == 200 and all(r and r[1] == b"x" for r in results)


def test_lease_pool_exhausted_waits_then_is_a_clear_error(env, master):
    sc = env.sidecar(master, pool={"max_leased": "2", "connect_timeout": "300ms"})
    holders = [sc.client() for _ in range(2)]
    for h in holders:
        assert h.execute_command("MULTI") in (True, b"OK")
    third = sc.client()
    t0 = time.monotonic()
    with pytest.raises(redis.ResponseError, match="max_leased 2 reached"):
        third.execute_command("MULTI")
    waited = time.monotonic() - t0
    assert 0.25 < waited < 1.5 * SLOW, waited          # bounded wait, then the error
    assert third.set("still", "works") is True
    # a lease freed during the wait is taken: no error
    third.client_setname("third")
    got = Load(lambda c, *_: c.execute_command("MULTI"), connect=lambda _: third,
               iterations=1).start()
    # parsed, and kept in its query buffer until a lease is free
    wait_until(lambda: any(c["name"] == "third" and c["cmd"] == "multi" and c["qbuf"] != "0"
                           for c in sc.clients()), what="MULTI waiting for a lease")
    holders[0].execute_command("DISCARD")
    assert got.join(10)
    assert [c.value for c in got.all()] in ([True], [b"OK"])
    third.execute_command("DISCARD")


def test_select_another_database(env, master):
    sc = env.sidecar(master)
    r = sc.client()
    assert r.execute_command("SELECT", "3") in (True, b"OK")
    assert r.set("db3key", "here") is True
    assert r.get("db3key") == b"here"
    assert redis.Redis(port=master.port, db=3).get("db3key") == b"here"
    assert redis.Redis(port=master.port, db=0).get("db3key") is None
    assert r.execute_command("SELECT", "0") in (True, b"OK")
    assert r.get("db3key") is None
    other = sc.client()
    assert other.get("db3key") is None           # no state leaked to the shared links


@pytest.mark.parametrize("cmd", [
    ("BLPOP", "nothing", "1.5"), ("BZMPOP", "1.5", "1", "z", "MIN"),
    ("BLMOVE", "a", "b", "LEFT", "RIGHT", "1.5"),
    ("XREAD", "COUNT", "1", "BLOCK", "1500", "STREAMS", "s", "$"),
    ("XREADGROUP", "GROUP", "g", "c", "BLOCK", "1500", "STREAMS", "gs", ">"),
    ("XREADGROUP", "GROUP", "block", "streams", "BLOCK", "1500", "STREAMS", "gs", ">"),
    ("WAIT", "1", "1500")], ids=lambda c: c[0])
def test_blocking_calls_wait_as_long_as_they_ask(env, master, cmd):
    """Past reply_timeout, each for its own timeout (XREAD's BLOCK was cut at
    reply_timeout once: it is not in the blocking table, only leased)."""
    sc = env.sidecar(master, pool={"reply_timeout": "500ms"})
    master.client().xgroup_create("gs", "g", mkstream=True)
    master.client().xgroup_create("gs", "block")        # GROUP's names are no options
    r = sc.client(socket_timeout=10)
    t0 = time.monotonic()
    assert r.execute_command(*cmd) in (None, [], 0)
    assert time.monotonic() - t0 >= 1.4
    assert sc.counter("links_lost_reply_timeout") == 0


def test_blocking_call_on_a_silent_lease_ends_after_its_timeout(env, master):
    """A lease whose server falls silent (a relay drops its flow): a BLPOP
    with a timeout gets an error once its timeout plus reply_timeout has
    passed (here the client is closed: its WATCH went with the lease),
    instead of waiting for ever; BLPOP 0 waits for ever, as redis would (TCP
    keepalive is what ends that one)."""
    relay = Relay(master.port)
    try:
        sc = env.sidecar(relay.port, pool={"reply_timeout": "500ms"})
        r = sc.client(socket_timeout=20)
        forever = sc.client(socket_timeout=3)
        assert r.ping() and forever.ping()
        p = forever.connection_pool.get_connection("BLPOP")
        p.send_command("BLPOP", "never", "0")
        assert r.execute_command("WATCH", "w")      # r holds its lease from now
        wait_until(lambda: len(master.links("sidecar-lease")) == 2, what="two leases")
        relay.blackhole()
        t0 = time.monotonic()
        with pytest.raises(redis.ConnectionError):   # its WATCH is gone: closed
            r.blpop("nothing", 1)
        took = time.monotonic() - t0
        assert 1.4 <= took < 1.5 + 2 * SLOW, took
        with pytest.raises(redis.TimeoutError):
            p.read_response()            # still blocked, 3 s later
        assert sc.counter("links_lost_reply_timeout") == 1
    finally:
        relay.close()


def test_xread_block_and_wait_take_a_lease(env, master):
    sc = env.sidecar(master)
    r = sc.client()
    assert r.execute_command("XREAD", "BLOCK", "100", "STREAMS", "s", "$") in (None, [])
    assert r.execute_command("WAIT", "0", "100") == 0


def test_pubsub_with_redis_py(env, master):
    sc = env.sidecar(master)
    r = sc.client()
    ps = r.pubsub()
    ps.subscribe("news")
    ps.psubscribe("ev:*")
    got = []
    deadline = time.monotonic() + 5 * SLOW
    pub = sc.client()
    while len(got) < 4 and time.monotonic() < deadline:
        m = ps.get_message(timeout=0.2)
        if m is None and len(got) >= 2:
            pub.publish("news", "hello")
            pub.publish("ev:1", "world")
        if m:
            got.append((m["type"], m["channel"], m["data"]))
    assert ("subscribe", b"news", 1) in got and ("psubscribe", b"ev:*", 2) in got
    # the messages may have come with the confirmations already
    msgs = [(t, c, d) for t, c, d in got if t in ("message", "pmessage")]
    while len(msgs) < 2 and time.monotonic() < deadline:
        m = ps.get_message(timeout=0.2)
        if m and m["type"] in ("message", "pmessage"):
            msgs.append((m["type"], m["channel"], m["data"]))
    assert ("message", b"news", b"hello") in msgs and ("pmessage", b"ev:1", b"world") in msgs
    ps.ping()                                     # PING in subscribed mode
    ps.unsubscribe("news")
    ps.punsubscribe("ev:*")
    # back to normal commands on the same connection
    conn = ps.connection
    while ps.get_message(timeout=0.2) is not None:
        pass
    conn.send_command("SET", "after", "sub")
    assert conn.read_response() == b"OK"
    conn.send_command("GET", "after")
    assert conn.read_response() == b"sub"
    ps.close()


def test_subscriber_messages_do_not_reach_other_clients(env, master):
    sc = env.sidecar(master)
    sub = sc.raw()
    f = sub.makefile("rb")
    sub.sendall(resp_cmd("SUBSCRIBE", "c1", "c2"))
    assert resp_read(f) == [b"subscribe", b"c1", 1]
    assert resp_read(f) == [b"subscribe", b"c2", 2]
    other = sc.client()
    for i in range(50):
        other.publish("c1", f"m{i}")
        assert other.get("x") is None             # shared links stay aligned
    for i in range(50):
        assert resp_read(f) == [b"message", b"c1", f"m{i}".encode()]
    sub.sendall(resp_cmd("PING"))
    assert resp_read(f) == [b"pong", b""]


def test_client_reply_off_and_tracking_take_a_streaming_lease(env, master):
    sc = env.sidecar(master)
    s = sc.raw()
    f = s.makefile("rb")
    # REPLY OFF: no replies until ON; the shared links never see it
    s.sendall(resp_cmd("CLIENT", "REPLY", "OFF") + resp_cmd("SET", "quiet", "1") +
              resp_cmd("CLIENT", "REPLY", "ON") + resp_cmd("GET", "quiet"))
    assert resp_read(f) == b"OK"                  # the reply to REPLY ON
    assert resp_read(f) == b"1"
    assert sc.client().get("quiet") == b"1"      # others unaffected
    # TRACKING with BCAST on the same lease (RESP2 needs a REDIRECT target:
    # the invalidation channel is read on this very connection)
    s.sendall(resp_cmd("CLIENT", "TRACKING", "on", "BCAST") + resp_cmd("GET", "quiet"))
    assert resp_read(f) == b"OK"
    assert resp_read(f) == b"1"


def test_lease_lost_mid_transaction_closes_the_client(env, master):
    """Its MULTI died with the connection: carrying on would run its next
    commands outside the transaction. The client is disconnected instead."""
    sc = env.sidecar(master)
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("SELECT", "4") + resp_cmd("MULTI"))
    assert resp_read(f) == b"OK" and resp_read(f) == b"OK"
    killed = [c for c in master.client().client_list() if c.get("name") == "sidecar-lease"]
    assert len(killed) == 1
    master.client().client_kill_filter(_id=killed[0]["id"])
    assert f.read() == b""                        # closed, not carried on in db 0
    assert sc.client().set("k", "v") is True      # everyone else fine


def test_select_and_local_commands_in_stream_mode(env, master):
    sc = env.sidecar(master)
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("SUBSCRIBE", "c") + resp_cmd("UNSUBSCRIBE") + resp_cmd("SELECT", "2") +
              resp_cmd("SET", "k", "v2") + resp_cmd("CLIENT", "SETNAME", "sub") +
              resp_cmd("GET", "k"))
    assert resp_read(f) == [b"subscribe", b"c", 1]
    assert resp_read(f) == [b"unsubscribe", b"c", 0]
    assert [resp_read(f) for _ in range(4)] == [b"OK", b"OK", b"OK", b"v2"]
    assert redis.Redis(port=master.port, db=2).get("k") == b"v2"


def test_idle_timeout_spares_subscribers(env, master):
    sc = env.sidecar(master, clients={"idle_timeout": "300ms"})
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("SUBSCRIBE", "quiet"))
    assert resp_read(f) == [b"subscribe", b"quiet", 1]
    # a plain client opened after it is closed for idling: the subscriber
    # has idled longer, through the same checks
    plain = sc.raw()
    plain.settimeout(5 * SLOW)
    assert plain.recv(10) == b""
    assert sc.counter("clients_closed_idle") == 1
    sc.client().publish("quiet", "still here")
    assert resp_read(f) == [b"message", b"quiet", b"still here"]


def test_lease_lost_with_many_requests_behind_a_blocking_call(env, master):
    """The errors for everything queued on a dying lease overflow the
    client's output limit: the client is closed while the lease is being
    failed, and the proxy survives it (no double free)."""
    sc = env.sidecar(master, clients={"max_output_buffer": "1kb"})
    s = sc.raw()
    s.sendall(resp_cmd("BLPOP", "nothing", "0") + resp_cmd("GET", "x") * 50)
    wait_until(lambda: len(master.links("sidecar-lease")) == 1, what="lease in use")
    lease = master.links("sidecar-lease")[0]
    master.client().client_kill_filter(_id=lease["id"])
    s.settimeout(5)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    assert data == b"" or data.startswith(b"-ERR dedicated connection")
    assert sc.alive()
    assert sc.client().set("k", "v") is True


def test_taking_a_lease_without_file_descriptors(env, master):
    """socket() fails at once (EMFILE) when a lease is opened: the client
    gets a clear error after the bounded wait, the proxy keeps running."""
    sc = env.sidecar(master, start=False, pool={"connect_timeout": "300ms"})
    sc.start(prefix=["prlimit", "--nofile=40:40"])
    r = sc.client()
    assert r.ping() is True                   # connected before the fds run out
    fillers = []
    for _ in range(60):                       # use up the descriptors
        try:
            fillers.append(socket.create_connection(("127.0.0.1", sc.port), timeout=1))
        except OSError:
            break
    sc.wait_log("pausing accepts")            # the proxy met EMFILE
    t0 = time.monotonic()
    with pytest.raises(redis.ResponseError, match="cannot open a dedicated connection"):
        r.execute_command("MULTI")
    assert time.monotonic() - t0 < 2 * SLOW
    for f in fillers:
        f.close()
    wait_until(lambda: sc.client().ping(), what="serving again")
    assert sc.alive()
    r2 = sc.client()
    assert r2.execute_command("MULTI") in (True, b"OK")
    assert r2.execute_command("DISCARD") in (True, b"OK")


@pytest.mark.parametrize("after", [
    b"*1\r\n+bad\r\n",                           # a protocol error: closing, reads stopped
    resp_cmd("QUIT"),                             # closing after its last reply
    resp_cmd("SUBSCRIBE", "ch"),                  # paused until the BLPOP answers
], ids=["protocol_error", "quit", "subscribe"])
def test_app_hanging_up_behind_a_request_blocked_for_good(env, master, after):
    """Found by the protocol fuzzer: a BLPOP 0 on the lease, then input
    the proxy stops reading behind; the app hangs up. Redis frees a blocked
    client at EOF: the proxy notices the hang-up within a sweep and closes
    the client and its lease (the BLPOP leaves the server)."""
    sc = env.sidecar(master)
    s = sc.raw()
    s.sendall(resp_cmd("BLPOP", "never", "0") + after)
    wait_until(lambda: [c for c in master.links("sidecar-lease") if c["cmd"] == "blpop"],
               what="BLPOP blocked on a lease")
    me = f"127.0.0.1:{s.getsockname()[1]}"
    flags = [c["flags"] for c in sc.clients() if c["addr"] == me]
    assert flags and "l" in flags[0] and ("c" in flags[0] or "p" in flags[0]), flags
    s.close()
    sc.wait_log("hung up while its requests waited")
    wait_until(lambda: not [c for c in master.links("sidecar-lease") if c["cmd"] == "blpop"],
               what="the blocked lease closed")
    assert not [c for c in sc.clients() if c["addr"] == me]
    assert sc.client().set("k", "v") is True


def test_reset_as_redis_does_it(env, master):
    """RESET leaves MULTI, WATCH, another database, pub/sub and RESP3, drops
    the name, gives the lease back, and answers +RESET, after what the
    connection had in flight (issue 17)."""
    sc = env.sidecar(master)
    s = sc.raw()
    f = s.makefile("rb")

    def send(*cmds):
        s.sendall(b"".join(resp_cmd(*c) for c in cmds))
        return [resp_read(f) for _ in cmds]
    assert send(("CLIENT", "SETNAME", "app"), ("SELECT", "3"), ("SET", "db3", "x"),
                ("WATCH", "w"), ("MULTI",), ("SET", "tx", "1"), ("RESET",)) == \
        [b"OK", b"OK", b"OK", b"OK", b"OK", b"QUEUED", b"RESET"]
    err = send(("EXEC",))[0]
    assert isinstance(err, redis.ResponseError) and "EXEC without MULTI" in str(err), err
    assert send(("GET", "db3"), ("GET", "tx"), ("CLIENT", "GETNAME")) == [None, None, None]
    wait_until(lambda: master.links("sidecar-lease") and
               all(c.get("cmd") in ("reset", "client|setname") for c in
                   master.client().client_list() if c.get("name") == "sidecar-lease"),
               what="the lease back in the pool")
    # pub/sub: after +RESET no message, and normal commands again
    assert send(("SUBSCRIBE", "ch"))[0] == [b"subscribe", b"ch", 1]
    assert send(("RESET",)) == [b"RESET"]
    assert master.client().publish("ch", "late") == 0
    assert send(("PING",)) == [b"PONG"]
    # RESP3 back to RESP2
    s.sendall(resp_cmd("HELLO", "3"))
    assert f.readline().startswith(b"%")
    resp_read_rest = [resp_read(f) for _ in range(14)]      # the map's 7 pairs
    assert b"proto" in resp_read_rest
    assert send(("RESET",), ("HGETALL", "nohash")) == [b"RESET", []]
    s.sendall(resp_cmd("HGETALL", "nohash"))
    assert f.readline() == b"*0\r\n"                        # RESP3 would say %0


def test_reset_takes_back_authentication(env, master):
    sc = env.sidecar(master, proxy={"password": "pw"})
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("RESET") + resp_cmd("AUTH", "pw") + resp_cmd("SET", "k", "v") +
              resp_cmd("RESET") + resp_cmd("GET", "k"))
    assert [resp_read(f) for _ in range(4)] == [b"RESET", b"OK", b"OK", b"RESET"]
    err = resp_read(f)
    assert isinstance(err, redis.ResponseError) and str(err).startswith("NOAUTH"), err


def test_monitor_on_its_own_lease(env, master):
    """MONITOR streams what the master runs, on a lease of its own, until
    RESET (or the client leaves); other clients are not disturbed (issue 17)."""
    sc = env.sidecar(master, pool={"min_idle_leases": "2", "validate_after": "100ms"},
                     health={"check_interval": "50ms"})
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("MONITOR"))
    assert resp_read(f) == b"OK"
    time.sleep(0.5)             # health checks, idle leases pinged and refilled meanwhile
    other = sc.client()
    assert other.set("watched", "v") is True
    # the proxy's own commands (handshakes, PINGs, health checks) are not
    # shown: the first line is the app's, as directly
    line = resp_read(f)
    assert b'"set" "watched" "v"' in line.lower(), line
    m = sc.raw()
    mf = m.makefile("rb")
    m.sendall(resp_cmd("MULTI") + resp_cmd("SET", "foo", "bar") + resp_cmd("EXEC"))
    assert [resp_read(mf) for _ in range(3)] == [b"OK", b"QUEUED", [b"OK"]]
    assert [resp_read(f).split(b"] ", 1)[1].lower() for _ in range(3)] == \
        [b'"multi"', b'"set" "foo" "bar"', b'"exec"']
    s.sendall(resp_cmd("RESET"))
    while resp_read(f) != b"RESET":              # monitor lines already on their way
        pass
    s.sendall(resp_cmd("PING"))
    assert resp_read(f) == b"PONG"
    wait_until(lambda: not any(b"monitor" in (c.get("flags", "") + c.get("cmd", "")).encode()
                               for c in master.client().client_list()
                               if c.get("name") == "sidecar-lease"),
               what="the monitoring lease closed")
    assert other.get("watched") == b"v"


def test_leases_ready_ahead_of_need(env, master):
    """min_idle_leases: the master keeps leases open and reset, refilled as
    they are taken, and pinged so none goes stale."""
    # an idle lease is pinged once idle for half validate_after, checked every
    # quarter: at 1 s a stalled proxy has 250 ms before a lease is found stale
    # (at 200 ms it had 50)
    sc = env.sidecar(master, pool={"min_idle_leases": "2", "validate_after": "1s"})
    wait_until(lambda: sc.nodes()["node"][0]["leases_idle"] == "2", what="two leases ahead")
    assert len(master.links("sidecar-lease")) == 2
    s = sc.raw()
    s.sendall(resp_cmd("BLPOP", "ahead", "0"))
    wait_until(lambda: master.client().info("clients")["blocked_clients"] == 1, what="blocked")
    # one taken: another is opened to keep two ready
    wait_until(lambda: len(master.links("sidecar-lease")) == 3, what="refilled")
    time.sleep(2.5)                              # past validate_after: pinged, not replaced
    opened = sc.counter("links_opened")
    r = sc.client()
    assert r.execute_command("MULTI") in (True, b"OK")
    assert r.execute_command("EXEC") == []
    assert sc.counter("leases_closed") == 0
    assert sc.counter("links_opened") == opened + 1  # only the refill of the one MULTI took


def test_blocked_clients_served_in_arrival_order(env, master):
    """Two BRPOPLPUSH from two connections, the first with a destination of
    the wrong type, then a push: as directly, the first blocked is served
    first (WRONGTYPE) and the second gets the element. 50 runs, each on a
    fresh sidecar (its leases opened ahead, min_idle_leases = 2)."""
    m = master.client()
    for run in range(50):
        m.delete("blist", "target")
        m.set("wrongdst", "string")
        sc = env.sidecar(master, pool={"min_idle_leases": "2"})
        wait_until(lambda: sc.nodes()["node"][0]["leases_idle"] == "2", what="leases ahead")
        a, b = sc.raw(), sc.raw()
        a.sendall(resp_cmd("BRPOPLPUSH", "blist", "wrongdst", "0"))
        b.sendall(resp_cmd("BRPOPLPUSH", "blist", "target", "0"))
        wait_until(lambda: m.info("clients")["blocked_clients"] == 2, what="both blocked")
        assert sc.client().rpush("blist", "foo") == 1
        got_a = resp_read(a.makefile("rb"))
        got_b = resp_read(b.makefile("rb"))
        assert isinstance(got_a, Exception) and str(got_a).startswith("WRONGTYPE"), (run, got_a)
        assert got_b == b"foo", (run, got_b)
        a.close()
        b.close()
        assert sc.stop() == 0
        env.sidecars.remove(sc)
