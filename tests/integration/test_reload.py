"""Live reload (PROXY RELOAD, SIGHUP): limits, lists, routing and log
level change without closing any app connection; an invalid file changes
nothing and says why; PROXY CONFIG shows the running values, passwords
masked."""
import signal
import socket
import time

import pytest
import redis

from helpers import (Load, free_port, http_get as get, nodes, resp_cmd, resp_read, unread_by_peer,
                     wait_until)


def config(sc):
    raw = sc.client().execute_command("PROXY", "CONFIG").decode()
    return dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)


def test_reload_while_50_clients_run(env, master):
    replica = env.redis("replica", args=["--replicaof", "127.0.0.1", str(master.port)])
    wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up",
               what="replica in sync")
    sc = env.sidecar(master, upstream={"replicas": f"127.0.0.1:{replica.port}"},
                     routing={"read_from": "master"},
                     admin={"password": "adm1n"})
    def run(c, i, n):
        if i == 0:                   # a reader: its GETs may go to the replica
            return c.get("readme")
        c.set(f"k{i}", n)
        assert c.get(f"k{i}") == str(n).encode()

    load = Load(run, n=50, port=sc.port, stop_on_error=True).start()
    load.wait_ok(1, each=True)       # all 50 connected
    sc.cfg.setdefault("clients", {}).update({"max_connections_per_ip": "10",
                                            "deny": "127.0.0.9"})
    sc.cfg["routing"]["read_from"] = "prefer-replica"
    sc.cfg["log"]["level"] = "debug"
    sc.write_ini()
    reads0 = int(sc.info()["reads_to_replicas"])
    gets0 = replica.calls("get")
    assert sc.client().execute_command("PROXY", "RELOAD") == b"reloaded"
    reloaded = time.monotonic()
    load.wait_ok(1, each=True, after=reloaded)                    # all 50 go on
    # (the proxy is full for 127.0.0.1 now: asked the replica)
    wait_until(lambda: replica.calls("get") > gets0, what="reads on the replica")
    # the 50 are kept; a 51st connection from 127.0.0.1 is over the new cap
    s = sc.raw()
    assert s.makefile("rb").readline().startswith(b"-ERR max connections per client IP")
    load.stop()
    assert not load.errors(), load.error_texts()[:3]
    # (refused until the proxy has seen the 50 close: over the cap meanwhile)
    cfg = wait_until(lambda: config(sc), what="a connection under the cap again")
    assert cfg["clients.max_connections_per_ip"] == "10"
    assert cfg["clients.deny"] == "127.0.0.9/32"
    assert cfg["routing.read_from"] == "prefer-replica"
    assert cfg["log.level"] == "debug"
    assert cfg["admin.password"] == "(set)" and "adm1n" not in str(cfg)
    # in behaviour: reads went to the replica, 127.0.0.9 is refused
    assert int(sc.info()["reads_to_replicas"]) > reads0
    s = socket.create_connection(("127.0.0.1", sc.port), timeout=5,
                                 source_address=("127.0.0.9", 0))
    assert b"is not allowed to connect" in s.makefile("rb").readline()
    assert "DEBUG" in sc.log()


def test_invalid_file_changes_nothing_and_says_why(sidecar):
    before = config(sidecar)
    text = sidecar.ini.read_text()
    sidecar.ini.write_text(text + "[pool]\nconnections = 0\n")
    with pytest.raises(redis.ResponseError) as e:
        sidecar.client().execute_command("PROXY", "RELOAD")
    assert f"reload refused, nothing changed: {sidecar.ini}:" in str(e.value)
    assert 'pool.connections: "0" not in 1..64' in str(e.value)
    assert config(sidecar) == before
    assert sidecar.client().ping()


def reload(sc):
    return sc.client().execute_command("PROXY", "RELOAD").decode()


def writers(sc, n):
    """n clients SETting unique keys (w{client}:{seq}) until stopped, each
    until its first error."""
    return Load(lambda c, i, k: c.set(f"w{i}:{k}", k), n=n, port=sc.port,
                stop_on_error=True).start()


def test_a_new_master_address_drains_the_old_links_and_opens_new_ones(env):
    a, b = env.redis("a"), env.redis("b")
    sc = env.sidecar(a, proxy={"shutdown_timeout": "10s"})
    load = writers(sc, 10)
    load.wait_ok(1, each=True)
    # a request in flight on the old master at the reload: it finishes there
    a.hold_writes()
    slow = sc.raw()
    f = slow.makefile("rb")
    slow.sendall(resp_cmd("CLIENT", "SETNAME", "slow"))
    assert resp_read(f) == b"OK"
    slow.sendall(resp_cmd("EVAL", "return 7", "0"))
    wait_until(lambda: any(c["name"] == "slow" and c["pending"] == "1" for c in sc.clients()),
               what="the EVAL in flight")
    sc.cfg["upstream"]["master"] = f"127.0.0.1:{b.port}"
    sc.write_ini()
    assert reload(sc) == "reloaded; changed in place: upstream nodes"
    ns = nodes(sc)
    assert ns["master"] == f"127.0.0.1:{b.port}"
    assert ns["retiring"][0]["addr"] == f"127.0.0.1:{a.port}"
    a.release_writes()
    assert resp_read(f) == 7                              # answered by the old master
    n_before = len(load.ok())
    load.wait_ok(n_before + 100)                          # writes after the reload
    # the old master's links close once nothing is in flight on them
    wait_until(lambda: not a.sidecar_links(), timeout=3, what="old links closed")
    assert not nodes(sc)["retiring"]
    load.stop()
    assert not load.errors(), load.error_texts()[:3]
    acked = [f"w{c.client}:{c.seq}" for c in load.ok()]
    # every acknowledged write is on one of the two, exactly once
    on_a, on_b = set(a.client().keys("w*")), set(b.client().keys("w*"))
    assert not on_a & on_b
    assert on_a | on_b == {k.encode() for k in acked}
    assert len(on_b) > 100


def test_a_transaction_on_the_old_master_finishes_there(env):
    a, b = env.redis("a"), env.redis("b")
    port = free_port()
    sc = env.sidecar(a, proxy={"shutdown_timeout": "10s"},
                     admin={"metrics_listen": f"127.0.0.1:{port}"})
    c = sc.client()
    t = sc.raw()
    f = t.makefile("rb")
    t.sendall(resp_cmd("MULTI") + resp_cmd("SET", "tx", "1"))
    assert resp_read(f) == b"OK" and resp_read(f) == b"QUEUED"
    sc.cfg["upstream"]["master"] = f"127.0.0.1:{b.port}"
    sc.write_ini()
    assert reload(sc) == "reloaded; changed in place: upstream nodes"
    c.set("after", "1")                                 # new requests: the new master
    assert b.client().get("after") == b"1"
    assert nodes(sc)["retiring"][0]["leases_held"] == "1"
    retiring = f'redis_sidecar_links{{node="127.0.0.1:{a.port}",state="retiring"}} '
    wait_until(lambda: retiring + "1\n" in get(port, "/metrics")[1],
               what="the lease, the last retiring link")
    t.sendall(resp_cmd("EXEC"))
    assert resp_read(f) == [b"OK"]
    assert a.client().get("tx") == b"1"                 # where MULTI began
    wait_until(lambda: not nodes(sc)["retiring"], what="old master retired")
    assert retiring not in get(port, "/metrics")[1]


def test_a_new_password_is_used_by_new_links_and_nothing_is_closed(env):
    m = env.redis("m", args=["--requirepass", "old"])
    m.password = "old"
    sc = env.sidecar(m, upstream={"password": "old"})
    c = sc.client()
    c.set("k", "v")
    ids = {x["id"] for x in m.sidecar_links()}
    m.client().config_set("requirepass", "new")        # connections keep their AUTH
    m.password = "new"
    sc.cfg["upstream"]["password"] = "new"
    sc.write_ini()
    assert reload(sc) == "reloaded"
    assert c.get("k") == b"v"                           # the same links, the same app connection
    assert {x["id"] for x in m.sidecar_links()} == ids
    p = c.pipeline(transaction=True)                    # a new lease: AUTH with "new"
    p.set("t", 1)
    assert p.execute() == [True]
    assert config(sc)["upstream.password"] == "(set)"


def test_a_pool_size_change_reopens_the_links_and_keeps_subscribers(env, master):
    sc = env.sidecar(master)
    c = sc.client()
    c.set("k", "v")
    ids = {x["id"] for x in master.sidecar_links()}
    assert len(ids) == 2
    sub = sc.client().pubsub()
    sub.subscribe("ch")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    sc.cfg["pool"] = {"connections": "3"}
    sc.write_ini()
    assert reload(sc) == "reloaded; changed in place: upstream links"
    assert c.get("k") == b"v"
    wait_until(lambda: len(master.sidecar_links()) == 3, what="3 new links")
    assert len({x["id"] for x in master.sidecar_links()} & ids) == 0
    # No condition: past shutdown_timeout (1 s), the old links' deadline, and
    # the retire tick after it, nothing changes for a kept lease: the point.
    time.sleep(1.5)
    assert c.publish("ch", "hello") == 1
    msg = sub.get_message(timeout=5)
    assert msg and msg["data"] == b"hello"              # the subscriber was kept
    assert config(sc)["pool.connections"] == "3"


def test_a_client_s_order_holds_across_new_links(env, master):
    """Its writes still queued on the old links run before its next ones."""
    sc = env.sidecar(master, proxy={"shutdown_timeout": "10s"})
    s = sc.raw()
    f = s.makefile("rb")
    master.hold_writes()                                # the server holds every write
    s.sendall(b"".join(resp_cmd("SET", "k", f"v{i:06d}") for i in range(4000)))
    wait_until(lambda: 4000 in sc.pending(), what="4000 SETs on the old links")
    sc.cfg["pool"] = {"connections": "3"}
    sc.write_ini()
    sc.proc.send_signal(signal.SIGHUP)
    sc.wait_log("changed in place: upstream links")
    s.sendall(resp_cmd("SET", "k", "FINAL") + resp_cmd("GET", "k"))
    wait_until(lambda: unread_by_peer(s) == 0, what="FINAL and GET read by the proxy")
    master.release_writes()
    for _ in range(4001):
        assert resp_read(f) == b"OK"
    assert resp_read(f) == b"FINAL"
    assert master.client().get("k") == b"FINAL"
    assert "upstream links" in sc.log()


def test_replicas_added_and_removed_live(env, master):
    r1 = env.redis("r1", args=["--replicaof", "127.0.0.1", str(master.port)])
    r2 = env.redis("r2", args=["--replicaof", "127.0.0.1", str(master.port)])
    sc = env.sidecar(master, upstream={"replicas": f"127.0.0.1:{r1.port}"},
                     routing={"read_from": "replica"}, health={"check_interval": "100ms"})
    sc.cfg["upstream"]["replicas"] = f"127.0.0.1:{r2.port}"
    sc.write_ini()
    assert reload(sc) == "reloaded; changed in place: upstream nodes"
    wait_until(lambda: [n["use"] for n in nodes(sc)["node"]] == ["master", "replica"],
               what="r2 eligible")
    assert nodes(sc)["node"][1]["addr"] == f"127.0.0.1:{r2.port}"
    before = r2.client().info("commandstats").get("cmdstat_get", {}).get("calls", 0)
    c = sc.client()
    for _ in range(20):
        c.get("x")
    assert r2.client().info("commandstats")["cmdstat_get"]["calls"] - before == 20
    wait_until(lambda: not r1.sidecar_links(), what="r1's links closed")


def test_listen_moves_and_the_old_connections_stay(env, master):
    sc = env.sidecar(master)
    old_port, new_port = sc.port, free_port()
    kept = sc.client()
    kept.set("k", "1")
    sc.cfg["proxy"]["listen"] = f"127.0.0.1:{new_port}"
    sc.write_ini()
    assert kept.execute_command("PROXY", "RELOAD") == b"reloaded; changed in place: proxy.listen"
    assert kept.get("k") == b"1"                        # its connection was not closed
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", old_port), timeout=2)
    sc.port = new_port
    assert sc.client().get("k") == b"1"
    # an address that cannot be bound: refused, nothing changed
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    sc.cfg["proxy"]["listen"] = f"127.0.0.1:{new_port}, 127.0.0.1:{taken.getsockname()[1]}"
    sc.write_ini()
    with pytest.raises(redis.ResponseError, match="reload refused, nothing changed: listen"):
        sc.client().execute_command("PROXY", "RELOAD")
    assert config(sc)["proxy.listen"] == f"127.0.0.1:{new_port}"
    assert sc.client().get("k") == b"1"
    taken.close()


def test_metrics_listen_moves(env, master):
    p1, p2 = free_port(), free_port()
    sc = env.sidecar(master, admin={"metrics_listen": f"127.0.0.1:{p1}"})
    assert get(p1, "/healthz")[0] == 200
    sc.cfg["admin"]["metrics_listen"] = f"127.0.0.1:{p2}"
    sc.write_ini()
    assert reload(sc) == "reloaded; changed in place: admin.metrics_listen"
    assert get(p2, "/healthz")[0] == 200
    with pytest.raises(OSError):
        get(p1, "/healthz")


def test_sentinels_added_by_a_reload_are_followed(env, master):
    s = env.sentinel(master)
    sc = env.sidecar(master)
    assert nodes(sc)["source"] == "static"
    sc.cfg["upstream"].update({"sentinels": f"127.0.0.1:{s.port}", "master_name": "mymaster"})
    sc.write_ini()
    assert reload(sc) == "reloaded; changed in place: sentinels"
    wait_until(lambda: nodes(sc)["sentinel"] and nodes(sc)["sentinel"][0]["master"] ==
               f"127.0.0.1:{master.port}", what="the sentinel answers")
    assert nodes(sc)["source"] == "sentinel" and nodes(sc)["master"] == f"127.0.0.1:{master.port}"
    assert sc.client().set("k", "v")


def test_sighup_reloads(sidecar):
    sidecar.cfg["log"]["level"] = "warn"
    sidecar.write_ini()
    sidecar.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: config(sidecar)["log.level"] == "warn", what="reloaded")


def test_a_blocking_call_on_a_removed_master_ends_cleanly_and_the_client_goes_on(env):
    """Its lease is closed at the deadline: an error for the BLPOP, then the
    same connection's next blocking calls get their own replies."""
    a, b = env.redis("a"), env.redis("b")
    sc = env.sidecar(a, proxy={"shutdown_timeout": "1s"}, pool={"reply_timeout": "1s"})
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("BLPOP", "q", "0"))
    wait_until(lambda: [c for c in a.links("sidecar-lease") if c["cmd"] == "blpop"],
               what="the BLPOP blocked on a lease")
    sc.cfg["upstream"]["master"] = f"127.0.0.1:{b.port}"
    sc.write_ini()
    assert reload(sc) == "reloaded; changed in place: upstream nodes"
    err = resp_read(f)                                  # at the deadline
    assert isinstance(err, redis.ResponseError) and "dedicated connection" in str(err), err
    s.sendall(resp_cmd("BLPOP", "q", "0.1") + resp_cmd("BLPOP", "q", "0.1"))
    assert resp_read(f) is None and resp_read(f) is None
    b.client().rpush("q", "x")
    s.sendall(resp_cmd("BLPOP", "q", "1"))
    assert resp_read(f) == [b"q", b"x"]


def test_requests_waiting_for_a_dead_master_go_to_the_new_one(env):
    """The old master is gone; what waits on its links never ran and moves
    to the new master at the reload instead of failing at connect_timeout."""
    a, b = env.redis("a"), env.redis("b")
    sc = env.sidecar(a, pool={"connect_timeout": "5s"}, health={"down_after": "100"},
                     proxy={"shutdown_timeout": "10s"})
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("PING"))
    assert resp_read(f) == b"PONG"
    a.stop()
    wait_until(lambda: sc.counter("link_failures") >= 2, what="links to a lost")
    s.sendall(resp_cmd("SET", "x", "1") + resp_cmd("INCR", "n"))   # queued: no link to a
    wait_until(lambda: 2 in sc.pending(), what="both queued")
    sc.cfg["upstream"]["master"] = f"127.0.0.1:{b.port}"
    sc.write_ini()
    t0 = time.monotonic()
    assert reload(sc) == "reloaded; changed in place: upstream nodes"
    assert resp_read(f) == b"OK" and resp_read(f) == 1
    assert time.monotonic() - t0 < 1
    assert b.client().get("x") == b"1"


def test_kept_leases_follow_the_address_through_later_reloads(env):
    """Leases kept by a pool-size reload are closed at the deadline once a
    later reload drops their address; leases of an address that comes back
    are kept."""
    a, b = env.redis("a"), env.redis("b")
    fast = {"reply_timeout": "1s"}
    sc = env.sidecar(a, pool=dict(fast))
    other_db = sc.client(db=5)
    other_db.set("k", "1")                              # SELECT 5: a lease on a
    sc.cfg["pool"] = dict(fast, connections="3")
    sc.write_ini()
    assert reload(sc) == "reloaded; changed in place: upstream links"
    sc.cfg["upstream"]["master"] = f"127.0.0.1:{b.port}"
    sc.write_ini()
    assert reload(sc) == "reloaded; changed in place: upstream nodes"
    # closed at the 1 s deadline (within 1.5 s, as ever): its server left
    # the config (redis-py reconnects, to b)
    wait_until(lambda: not a.links("sidecar-lease"), timeout=1.5, scale=False,
               what="the lease on a closed")
    other_db.set("k", "2")
    assert a.client(db=5).get("k") == b"1" and b.client(db=5).get("k") == b"2"
    wait_until(lambda: not nodes(sc)["retiring"], what="nothing left retiring")

    # b -> a -> b again within the deadline: a subscriber on b is kept
    sub = sc.client().pubsub()
    sub.subscribe("ch")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    sc.cfg["upstream"]["master"] = f"127.0.0.1:{a.port}"
    sc.write_ini()
    assert reload(sc) == "reloaded; changed in place: upstream nodes"
    sc.cfg["upstream"]["master"] = f"127.0.0.1:{b.port}"
    sc.write_ini()
    assert reload(sc) == "reloaded; changed in place: upstream nodes"
    # No condition: past the 1 s deadline and the retire tick after it,
    # nothing changes for a kept lease: the point.
    time.sleep(1.5)
    assert b.client().publish("ch", "hi") == 1
    msg = sub.get_message(timeout=5)
    assert msg and msg["data"] == b"hi"
