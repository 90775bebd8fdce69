"""RESP3: HELLO 3 as redis answers it, RESP3 links beside the RESP2 ones,
every reply in the client's own protocol, pushes in order on a lease."""
import subprocess


from helpers import Load, Push, Resp3Set, resp_cmd, resp_read, resp_type, wait_until


class Conn:
    """A raw connection: send commands, read typed RESP2/RESP3 replies."""

    def __init__(self, sidecar):
        self.s = sidecar.raw()
        self.f = self.s.makefile("rb")

    def call(self, *args):
        self.s.sendall(resp_cmd(*args))
        return resp_read(self.f)

    def close(self):
        self.f.close()
        self.s.close()

    def typed(self, *args):
        """(type byte, value) of the reply."""
        self.s.sendall(resp_cmd(*args))
        t = resp_type(self.f)
        return t, resp_read(self.f)


def links_by_protocol(master):
    out = {}
    for c in master.client().client_list():
        if c.get("name") == "sidecar-data":
            out[c["resp"]] = out.get(c["resp"], 0) + 1
    return out


def test_hello_3_and_back(sidecar, master):
    # the master's version is known once the health check's INFO has said it,
    # which may be after the links are up
    wait_until(lambda: sidecar.info()["master_links_ready"] == "2", what="links ready")
    wait_until(lambda: sidecar.info()["upstream_redis_version"] != "unknown",
               what="the master's version learnt")
    c = Conn(sidecar)
    t, h = c.typed("HELLO", "3")
    assert t == b"%"
    assert h[b"proto"] == 3 and h[b"server"] == b"redis" and h[b"role"] == b"master"
    assert h[b"version"] == master.client().info("server")["redis_version"].encode()
    assert isinstance(h[b"id"], int) and h[b"modules"] == []
    # HELLO without a version keeps the protocol; HELLO 2 goes back.
    t, h = c.typed("HELLO")
    assert t == b"%" and h[b"proto"] == 3
    t, h = c.typed("HELLO", "2", "SETNAME", "back")
    assert t == b"*" and dict(zip(h[::2], h[1::2]))[b"proto"] == 2
    assert c.typed("CLIENT", "GETNAME") == (b"$", b"back")
    t, err = c.typed("HELLO", "4")
    assert t == b"-" and str(err).startswith("NOPROTO")
    t, err = c.typed("HELLO", "x")
    assert str(err) == "ERR Protocol version is not an integer or out of range"


def test_hello_3_auth_with_the_proxy_password(env, master):
    sc = env.sidecar(master, proxy={"password": "s3cret"})
    c = Conn(sidecar=sc)
    t, err = c.typed("GET", "k")
    assert str(err).startswith("NOAUTH")
    t, err = c.typed("HELLO", "3", "AUTH", "default", "wrong")
    assert str(err).startswith("WRONGPASS")
    t, h = c.typed("HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "app")
    assert t == b"%" and h[b"proto"] == 3
    assert c.typed("CLIENT", "GETNAME") == (b"$", b"app")
    assert c.typed("SET", "k", "v") == (b"+", b"OK")


def test_replies_in_resp3_types(sidecar, master):
    m = master.client()
    m.hset("h", mapping={"a": "1", "b": "2"})
    m.sadd("s", "x", "y")
    m.zadd("z", {"m": 1.5})
    c = Conn(sidecar)
    c.call("HELLO", "3")
    t, v = c.typed("HGETALL", "h")
    assert t == b"%" and v == {b"a": b"1", b"b": b"2"}
    t, v = c.typed("SMEMBERS", "s")
    assert t == b"~" and isinstance(v, Resp3Set) and sorted(v) == [b"x", b"y"]
    assert c.typed("ZSCORE", "z", "m") == (b",", 1.5)
    assert c.typed("GET", "nokey") == (b"_", None)
    assert c.typed("EVAL", "redis.setresp(3); return true", "0") == (b"#", True)
    assert c.typed("EVAL", "redis.setresp(3); return false", "0") == (b"#", False)
    assert c.typed("EVAL", "return {double=3.5}", "0") == (b",", 3.5)
    # the proxy's own replies, in redis's RESP3 shapes
    assert c.typed("CLIENT", "GETNAME") == (b"_", None)
    t, v = c.typed("CLIENT", "INFO")
    assert t == b"=" and v.startswith(b"id=")
    t, v = c.typed("PROXY", "INFO")
    assert t == b"=" and b"# Proxy" in v
    t, v = c.typed("PROXY", "NODES")
    assert t == b"=" and b"# Topology" in v
    assert c.typed("PING") == (b"+", b"PONG")
    t, err = c.typed("SYNC")
    assert t == b"-"


def test_redis_cli_3(sidecar, master):
    master.client().hset("h", "f", "v")
    master.client().sadd("s", "m")
    master.client().zadd("z", {"m": 2.5})

    def cli(*args):
        return subprocess.run(["redis-cli", "-3", "-p", str(sidecar.port)] + list(args),
                              capture_output=True, text=True, timeout=10).stdout
    assert "proto\n3" in cli("HELLO", "3").replace(" ", "\n")
    assert cli("HGETALL", "h").split() == ["f", "v"]
    assert cli("SMEMBERS", "s").split() == ["m"]
    assert cli("ZSCORE", "z", "m").strip() == "2.5"
    assert cli("GET", "nokey").strip() == ""
    assert cli("EVAL", "redis.setresp(3); return true", "0").strip() == "(true)"
    assert cli("EVAL", "redis.setresp(3); return false", "0").strip() == "(false)"


def test_resp3_and_resp2_clients_interleaved(sidecar, master):
    master.client().hset("h", "f", "v")

    def connect(i):                          # client 0 speaks RESP2, client 1 RESP3
        c = Conn(sidecar)
        if i == 1:
            c.call("HELLO", "3")
        return c

    def run(c, i, n):
        proto = 3 if i else 2
        c.s.sendall(resp_cmd("SET", f"k{proto}:{n}", n) + resp_cmd("HGETALL", "h") +
                    resp_cmd("GET", f"k{proto}:{n}"))
        ok = resp_read(c.f)
        t = resp_type(c.f)
        h = resp_read(c.f)
        v = resp_read(c.f)
        want = (b"%", {b"f": b"v"}) if proto == 3 else (b"*", [b"f", b"v"])
        assert ok == b"OK" and (t, h) == want and v == str(n).encode(), (proto, n, ok, t, h, v)

    load = Load(run, n=2, connect=connect, iterations=1000, stop_on_error=True).start()
    assert load.join(60) and not load.crashed, load.crashed
    errors = load.error_texts()
    assert not errors, errors[:3]
    # the configured 2 links per protocol, no more
    assert links_by_protocol(master) == {"2": 2, "3": 2}
    info = sidecar.info()
    assert info["master_links_resp3_ready"] == "2"


def test_pubsub_in_resp3_on_the_same_connection(sidecar, master):
    c = Conn(sidecar)
    c.call("HELLO", "3")
    c.s.sendall(resp_cmd("SUBSCRIBE", "news") + resp_cmd("PSUBSCRIBE", "ev:*"))
    assert resp_read(c.f) == Push([b"subscribe", b"news", 1])
    assert resp_read(c.f) == Push([b"psubscribe", b"ev:*", 2])
    # normal commands on the same connection, replies among the pushes
    assert c.call("SET", "k", "v") == b"OK"
    master.client().publish("news", "hello")
    assert resp_read(c.f) == Push([b"message", b"news", b"hello"])
    master.client().publish("ev:1", "world")
    assert resp_read(c.f) == Push([b"pmessage", b"ev:*", b"ev:1", b"world"])
    assert c.typed("HGETALL", "nokey") == (b"%", {})
    assert c.call("GET", "k") == b"v"
    # the lease is a RESP3 link
    leases = [x for x in master.client().client_list() if x.get("name") == "sidecar-lease"]
    assert [x["resp"] for x in leases] == ["3"]


def test_leases_open_and_come_back_in_each_clients_protocol(sidecar, master):
    master.client().hset("h", "f", "v")
    for proto, want in ((3, b"%"), (2, b"*"), (3, b"%")):
        c = Conn(sidecar)
        if proto == 3:
            c.call("HELLO", "3")
        assert c.call("MULTI") == b"OK"
        assert c.call("HGETALL", "h") == b"QUEUED"
        c.s.sendall(resp_cmd("EXEC"))
        # EXEC's reply: one element, the HGETALL in the client's protocol
        line = c.f.readline()
        assert line == b"*1\r\n"
        assert resp_type(c.f) == want
        resp_read(c.f)
        c.close()
    wait_until(lambda: all(x.get("resp") in ("2", "3") for x in master.client().client_list()
                           if x.get("name") == "sidecar-lease"), what="leases")


def test_client_tracking_invalidations_arrive_as_pushes(sidecar, master):
    """CLIENT TRACKING takes a streaming lease: in RESP3 the invalidation
    pushes come on the same connection, in order with the replies."""
    c = Conn(sidecar)
    c.call("HELLO", "3")
    assert c.call("CLIENT", "TRACKING", "ON") == b"OK"
    master.client().set("tk", "1")
    assert c.call("GET", "tk") == b"1"
    master.client().set("tk", "2")
    assert resp_read(c.f) == Push([b"invalidate", [b"tk"]])
    assert c.call("GET", "tk") == b"2"
    leases = [x for x in master.client().client_list() if x.get("name") == "sidecar-lease"]
    assert [x["resp"] for x in leases] == ["3"]


def test_hello_3_while_holding_a_lease_switches_the_lease(sidecar, master):
    master.client().hset("h", "f", "v")
    c = Conn(sidecar)
    assert c.call("WATCH", "h") == b"OK"          # takes a lease (RESP2)
    c.call("HELLO", "3")
    assert c.typed("HGETALL", "h") == (b"%", {b"f": b"v"})
    assert c.call("MULTI") == b"OK"
    assert c.call("HGETALL", "h") == b"QUEUED"
    c.s.sendall(resp_cmd("EXEC"))
    assert c.f.readline() == b"*1\r\n" and resp_type(c.f) == b"%"
    resp_read(c.f)
    # the lease went back to the pool in RESP3; a RESP2 client gets RESP2
    d = Conn(sidecar)
    assert d.call("WATCH", "h") == b"OK"
    assert d.typed("HGETALL", "h") == (b"*", [b"f", b"v"])


def test_hello_that_cannot_switch_a_connection_upstream_is_refused(sidecar, master):
    c = Conn(sidecar)
    c.call("HELLO", "3")
    myid = c.call("CLIENT", "ID")
    assert c.call("MULTI") == b"OK"
    t, err = c.typed("HELLO", "2")
    assert t == b"-" and "inside MULTI" in str(err)
    assert c.call("DISCARD") == b"OK"
    assert c.typed("HGETALL", "nokey") == (b"%", {})
    c.s.sendall(resp_cmd("SUBSCRIBE", "ch"))
    assert resp_read(c.f) == Push([b"subscribe", b"ch", 1])
    # subscribed: HELLO goes to its lease, which switches with redis's answer
    t, h = c.typed("HELLO", "2")
    assert t == b"*" and h[h.index(b"proto") + 1] == 2
    # the proxy's id in it, not the lease's
    assert h[h.index(b"id") + 1] == myid
    t, err = c.typed("HELLO", "3")        # subscribed in RESP2: redis refuses, as directly
    assert t == b"-" and "allowed in this context" in str(err)
    t, v = c.typed("PROXY", "INFO")
    assert t == b"$"


def test_idle_leases_of_one_protocol_give_way_to_the_other(env, master):
    sc = env.sidecar(master, pool={"max_leased": "2"})
    held = []
    for _ in range(2):                     # two at once: two RESP3 leases
        c = Conn(sc)
        c.call("HELLO", "3")
        assert c.call("WATCH", "k") == b"OK"
        held.append(c)
    for c in held:
        c.close()
    wait_until(lambda: len([x for x in master.client().client_list()
                            if x.get("name") == "sidecar-lease"]) == 2, what="2 idle leases")
    d = Conn(sc)
    assert d.call("WATCH", "k") == b"OK"
    assert d.call("MULTI") == b"OK"
    assert d.call("SET", "k", "v") == b"QUEUED"
    assert d.call("EXEC") == [b"OK"]


def test_hello_3_when_the_upstream_refuses_it(env):
    m = env.redis("master", args=["--rename-command", "HELLO", ""])
    sc = env.sidecar(m)
    c = Conn(sc)
    c.call("HELLO", "3")                   # not known yet: the RESP3 links find out
    t, err = c.typed("GET", "k")
    assert t == b"-", err
    wait_until(lambda: "refuses HELLO 3" in sc.log(), what="log line")
    d = Conn(sc)
    t, err = d.typed("HELLO", "3")
    assert t == b"-" and str(err).startswith("NOPROTO"), err
    assert d.typed("HELLO", "2")[0] == b"*"
    assert d.call("SET", "k", "v") == b"OK"
