"""The CLIENT family through the sidecar (issue 17): redis 7.0.15's
subcommands, filters, fields and error texts, with the sidecar's own client
ids; server-wide ones go to the master; an app sees and acts on its own
ACL user's connections, admins on all."""
import select
import socket
import time

import pytest
import redis

from helpers import resp_cmd, resp_read, wait_until


class Conn:
    """A raw RESP2 connection: send a command, read its reply."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.s.makefile("rb")

    def __call__(self, *cmd):
        self.s.sendall(resp_cmd(*cmd))
        return self.read()

    def send(self, *cmd):
        self.s.sendall(resp_cmd(*cmd))

    def read(self):
        got = resp_read(self.f)
        return str(got) if isinstance(got, Exception) else got

    def closed(self):
        try:
            self.s.settimeout(5)
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split())


def lines(raw):
    return [fields(x) for x in raw.decode().splitlines() if x]


def test_client_list_and_info_fields(env, master):
    sc = env.sidecar(master, admin={"allow": None})
    direct = fields(master.client().execute_command("CLIENT", "INFO").decode())
    c = Conn(sc.port)
    assert c("CLIENT", "SETNAME", "app1") == b"OK"
    me = fields(c("CLIENT", "INFO").decode())
    assert set(direct) <= set(me), set(direct) - set(me)
    assert me["id"] == str(c("CLIENT", "ID")) and me["name"] == "app1"
    assert me["user"] == "default" and me["resp"] == "2" and me["multi"] == "-1"
    assert me["flags"] == "N" and me["db"] == "0" and me["sub"] == "0"
    # as redis shows the connection running it: its own request in qbuf
    assert me["qbuf"] == "26" and me["cmd"] == "client|info"
    assert me["laddr"] == f"127.0.0.1:{sc.port}"
    # another database, MULTI with queued commands: as redis shows them
    assert c("SELECT", "3") == b"OK"
    assert c("MULTI") == b"OK"
    assert c("SET", "k", "v") == b"QUEUED"
    other = Conn(sc.port)
    row = [x for x in lines(other("CLIENT", "LIST")) if x["name"] == "app1"][0]
    assert row["db"] == "3" and row["multi"] == "1" and "x" in row["flags"]
    assert c("CLIENT", "ID") == b"QUEUED"            # queued inside MULTI, as redis does
    assert len(c("EXEC")) == 2
    # subscriptions: counted, flag P, TYPE pubsub
    s = Conn(sc.port)
    s.send("SUBSCRIBE", "c1", "c2")
    s.read(), s.read()
    assert s("PSUBSCRIBE", "p*")[2] == 3
    sid = fields(other("CLIENT", "LIST", "TYPE", "pubsub").decode())
    assert sid["sub"] == "2" and sid["psub"] == "1" and "P" in sid["flags"]
    normal = lines(other("CLIENT", "LIST", "TYPE", "normal"))
    assert sid["id"] not in {x["id"] for x in normal} and len(normal) == 2
    assert other("CLIENT", "LIST", "TYPE", "bogus") == "ERR Unknown client type 'bogus'"
    ids = lines(other("CLIENT", "LIST", "ID", me["id"], sid["id"], "99999"))
    assert [x["id"] for x in ids] == [me["id"], sid["id"]]
    assert other("CLIENT", "LIST", "ID", "x") == "ERR Invalid client ID"
    assert other("CLIENT", "LIST", "foo") == "ERR syntax error"
    assert other("CLIENT", "NO-EVICT", "on") == b"OK"
    assert "e" in fields(other("CLIENT", "INFO").decode())["flags"]
    assert other("CLIENT", "NO-EVICT", "maybe") == "ERR syntax error"
    assert other("CLIENT", "BOGUS").startswith("ERR unknown subcommand")


def test_client_kill_filters(env, master):
    master.client().execute_command("ACL", "SETUSER", "alice", "on", ">pw", "~*", "+@all")
    sc = env.sidecar(master, admin={"allow": None, "password": "adm"})

    def conns(n):
        return [Conn(sc.port) for _ in range(n)]
    me, a, b = conns(3)
    assert me("AUTH", "adm") == b"OK"             # an admin: it may act on alice's too
    ida = a("CLIENT", "ID")
    assert me("CLIENT", "KILL", "ID", str(ida)) == 1
    assert a.closed() and b("PING") == b"PONG"
    assert me("CLIENT", "KILL", "ID", str(ida)) == 0
    assert me("CLIENT", "KILL", "ID", "0") == "ERR client-id should be greater than 0"
    addr = fields(b("CLIENT", "INFO").decode())["addr"]
    assert me("CLIENT", "KILL", "ADDR", addr) == 1 and b.closed()
    # the old form: +OK, or redis's error
    c = Conn(sc.port)
    addr = fields(c("CLIENT", "INFO").decode())["addr"]
    assert me("CLIENT", "KILL", addr) == b"OK" and c.closed()
    assert me("CLIENT", "KILL", addr) == "ERR No such client"
    # USER, TYPE
    al = Conn(sc.port)
    assert al("AUTH", "alice", "pw") == b"OK"
    d = Conn(sc.port)
    assert me("CLIENT", "KILL", "USER", "alice") == 1 and al.closed()
    sub = Conn(sc.port)
    sub("SUBSCRIBE", "ch")
    assert me("CLIENT", "KILL", "TYPE", "pubsub") == 1 and sub.closed()
    assert me("CLIENT", "KILL", "TYPE", "x") == "ERR Unknown client type 'x'"
    assert me("CLIENT", "KILL", "USER", "nosuch") == "ERR No such user 'nosuch'"
    assert me("CLIENT", "KILL", "ID", "1", "SKIPME") == "ERR syntax error"
    assert me("CLIENT", "KILL", "FOO", "1") == "ERR syntax error"
    # LADDR with SKIPME yes: every other one; SKIPME no: itself too, after its reply
    e = Conn(sc.port)
    assert me("CLIENT", "KILL", "LADDR", f"127.0.0.1:{sc.port}", "SKIPME", "yes") == 2
    assert d.closed() and e.closed() and me("PING") == b"PONG"
    assert me("CLIENT", "KILL", "LADDR", f"127.0.0.1:{sc.port}", "SKIPME", "no") == 1
    assert me.closed()


def test_an_app_sees_and_kills_only_its_own_users_connections(env, master):
    master.client().execute_command("ACL", "SETUSER", "alice", "on", ">pw", "~*", "+@all")
    sc = env.sidecar(master, admin={"allow": None, "password": "adm"})
    a1, a2, d = Conn(sc.port), Conn(sc.port), Conn(sc.port)
    assert a1("AUTH", "alice", "pw") == b"OK" and a2("AUTH", "alice", "pw") == b"OK"
    seen = lines(a1("CLIENT", "LIST"))
    assert {x["user"] for x in seen} == {"alice"} and len(seen) == 2
    assert len(lines(d("CLIENT", "LIST"))) == 1                # only itself: default
    assert d("CLIENT", "KILL", "ID", str(a1("CLIENT", "ID"))) == 0
    assert d("CLIENT", "UNBLOCK", str(a1("CLIENT", "ID"))) == 0
    adm = Conn(sc.port)
    assert adm("AUTH", "adm") == b"OK"
    assert len(lines(adm("CLIENT", "LIST"))) == 4              # admins see every one
    assert adm("CLIENT", "KILL", "USER", "alice") == 2


def test_client_unblock(env, master):
    sc = env.sidecar(master)
    x, y = Conn(sc.port), Conn(sc.port)
    xid = x("CLIENT", "ID")
    x.send("BLPOP", "nothing", "0")
    wait_until(lambda: master.client().info("clients")["blocked_clients"] == 1, what="blocked")
    assert y("CLIENT", "UNBLOCK", str(xid)) == 1
    assert x.read() is None                                   # as a timeout
    x.send("BLPOP", "nothing", "0")
    wait_until(lambda: master.client().info("clients")["blocked_clients"] == 1, what="blocked")
    assert y("CLIENT", "UNBLOCK", str(xid), "ERROR") == 1
    assert x.read() == "UNBLOCKED client unblocked via CLIENT UNBLOCK"
    assert y("CLIENT", "UNBLOCK", str(xid)) == 0              # not blocked now
    assert y("CLIENT", "UNBLOCK", "424242") == 0
    assert y("CLIENT", "UNBLOCK", str(xid), "NOW") == ("ERR CLIENT UNBLOCK reason should "
                                                         "be TIMEOUT or ERROR")
    assert y("CLIENT", "UNBLOCK", "abc") == "ERR value is not an integer or out of range"


def test_tracking_redirect_to_another_app_connection(env, master):
    sc = env.sidecar(master, pool={"min_idle_leases": "2"})
    inv, t, w = Conn(sc.port), Conn(sc.port), Conn(sc.port)
    inv_id = inv("CLIENT", "ID")
    assert inv("SUBSCRIBE", "__redis__:invalidate")[2] == 1
    assert t("CLIENT", "TRACKING", "ON", "REDIRECT", str(inv_id)) == b"OK"
    assert t("CLIENT", "GETREDIR") == inv_id
    info = t("CLIENT", "TRACKINGINFO")
    assert info[0] == b"flags" and b"on" in info[1] and info[3] == inv_id
    # pipelined behind other replies, only GETREDIR's own is translated
    # (an INCR answering a number that is also a lease's id stays as it is)
    lease_id = [c for c in master.client().client_list()
                if c["name"] == "sidecar-lease" and c["cmd"] == "subscribe"][0]["id"]
    t.s.sendall(resp_cmd("SET", "n", str(int(lease_id) - 1)) + resp_cmd("INCR", "n") +
                resp_cmd("CLIENT", "GETREDIR") + resp_cmd("CLIENT", "TRACKINGINFO"))
    got = [t.read() for _ in range(4)]
    assert got[:3] == [b"OK", int(lease_id), inv_id] and got[3][3] == inv_id, got
    assert t("GET", "tk") is None
    assert w("SET", "tk", "1") == b"OK"
    msg = inv.read()
    assert msg[0] == b"message" and msg[1] == b"__redis__:invalidate" and msg[2] == [b"tk"]
    row = [x for x in lines(w("CLIENT", "LIST")) if x["id"] == str(t("CLIENT", "ID"))]
    assert t("CLIENT", "TRACKING", "ON", "REDIRECT", "987654") == ("ERR The client ID you "
                                                                  "want redirect to does not exist")
    # its ids are app connections': not on a lease, where redis would read them as its own
    assert t("CLIENT", "KILL", "ID", str(inv_id)).startswith("ERR CLIENT KILL and CLIENT UNBLOCK")
    assert inv("PING") == [b"pong", b""]                      # still there
    # redirected to a connection that holds no lease yet: it gets one
    n2, t2 = Conn(sc.port), Conn(sc.port)
    n2_id = n2("CLIENT", "ID")
    assert t2("CLIENT", "TRACKING", "ON", "REDIRECT", str(n2_id)) == b"OK"
    assert t2("CLIENT", "GETREDIR") == n2_id
    assert n2("SUBSCRIBE", "__redis__:invalidate")[2] == 1   # on that lease
    assert t2("GET", "tk2") is None
    assert w("SET", "tk2", "1") == b"OK"
    assert n2.read() == [b"message", b"__redis__:invalidate", [b"tk2"]]
    # a RESP3 target: its lease switches, and the invalidations reach it as pushes
    n3, t3 = Conn(sc.port), Conn(sc.port)
    n3.s.sendall(resp_cmd("HELLO", "3"))
    assert n3.read()[b"proto"] == 3
    n3_id = n3("CLIENT", "ID")
    assert t3("CLIENT", "TRACKING", "ON", "REDIRECT", str(n3_id)) == b"OK"
    assert t3("GET", "tk3") is None
    assert w("SET", "tk3", "1") == b"OK"
    assert n3.read() == [b"invalidate", [b"tk3"]]
    assert n3("PING") == b"PONG"                  # and it goes on as it was
    info = t3("CLIENT", "TRACKINGINFO")
    assert info[3] == n3_id
    # a stream that owes nothing answers CLIENT itself (its ids, its list)
    assert t2("CLIENT", "REPLY", "ON") == b"OK"
    assert t2("CLIENT", "ID") == int(fields(t2("CLIENT", "INFO").decode())["id"])
    # a connection that never tracked: redis's answers for one
    n = Conn(sc.port)
    assert n("CLIENT", "GETREDIR") == -1
    assert n("CLIENT", "TRACKINGINFO") == [b"flags", [b"off"], b"redirect", -1, b"prefixes", []]
    del row


def test_client_pause_and_unpause(env, master):
    sc = env.sidecar(master, health={"check_interval": "100ms", "down_after": "2"})
    p, wr, rd = Conn(sc.port), Conn(sc.port), Conn(sc.port)
    assert p("CLIENT", "PAUSE", "20000", "WRITE") == b"OK"
    wr.send("SET", "pk", "1")
    assert rd("GET", "pk") is None                            # reads go on
    # the held write waits on a connection of its own: the others' requests
    # (whichever shared link they take) go on, and see it blocked
    wait_until(lambda: b"blocked_clients:1" in Conn(sc.port)("INFO", "clients"),
               what="the write held, seen through the proxy")
    assert select.select([wr.s], [], [], 0.5)[0] == []       # the write is held
    assert p("CLIENT", "UNPAUSE") == b"OK"
    assert wr.read() == b"OK"
    # ALL: even the health checks wait; the master is not marked down,
    # requests wait and then succeed, as directly
    assert p("CLIENT", "PAUSE", "1500", "ALL") == b"OK"
    t0 = time.monotonic()
    rd.send("GET", "pk")
    # its checks go unanswered past down_after: still up for the proxy
    wait_until(lambda: "during a CLIENT PAUSE" in sc.log(), what="checks unanswered")
    assert sc.info()["master_state"] == "up"
    assert rd.read() == b"1"
    assert time.monotonic() - t0 > 1.0
    assert sc.counter("errors_node_down") == 0 and sc.info()["master_state"] == "up"
    assert p("CLIENT", "PAUSE", "x") == "ERR timeout is not an integer or out of range"


def test_client_kill_inside_multi_fails_the_transaction(env, master):
    sc = env.sidecar(master)
    a, b = Conn(sc.port), Conn(sc.port)
    assert a("MULTI") == b"OK" and a("SET", "mk", "1") == b"QUEUED"
    assert a("CLIENT", "KILL", "ID", str(b("CLIENT", "ID"))).startswith("ERR CLIENT KILL")
    assert a("EXEC").startswith("EXECABORT")
    assert b("PING") == b"PONG" and master.client().get("mk") is None
