"""Client limits and the admin view: a runaway host is capped with a clear
error while everyone else is served; max_connections keeps slots for
admins; bans, allow/deny lists, admin rights, back-pressure."""
import socket
import threading
import time

import pytest
import redis

from helpers import (BoundRedis, Load, Sampler, connect_from, cpu_ticks, free_port, raise_nofile,
                     resp_cmd, resp_read, wait_until)


def proxy_clients(admin):
    out = {}
    for line in admin.execute_command("PROXY", "CLIENTS").decode().splitlines():
        kv = dict(f.split("=", 1) for f in line.split())
        out[kv["ip"]] = kv
    return out


def test_runaway_host_is_capped(env, master):
    raise_nofile()
    sc = env.sidecar(master, clients={"max_connections_per_ip": "100"})
    admin = sc.client()

    def good_host(c, _, i):
        assert c.set(f"good:{i}", i) is True
        assert c.get(f"good:{i}") == str(i).encode()

    watcher = Sampler(lambda: len([c for c in master.client().client_list()
                                   if c.get("name", "").startswith("sidecar-")])).start()
    socks = []
    for _ in range(3000):
        s = connect_from("127.0.0.2", sc.port)
        s.sendall(resp_cmd("GET", "runaway"))
        socks.append(s)
    good = Load(good_host, connect=lambda _: BoundRedis("127.0.0.1", sc.port),
                iterations=20).start()
    served = refused = 0
    for s in socks:
        f = s.makefile("rb")
        reply = resp_read(f)
        if reply is None:
            served += 1
        else:
            assert isinstance(reply, redis.ResponseError), reply
            assert str(reply) == "ERR max connections per client IP reached (127.0.0.2, limit 100)"
            assert f.read() == b""      # and closed
            refused += 1
    good.join()                 # its 20 calls, however the threads were scheduled
    watcher.stop()
    links_seen = watcher.values()
    assert (served, refused) == (100, 2900)
    assert (len(good.ok()), good.error_texts()) == (20, [])
    assert not watcher.errors, watcher.errors
    assert links_seen and max(links_seen) <= 3        # 2 data links + 1 health check
    row = proxy_clients(admin)["127.0.0.2"]
    assert row["current"] == "100" and row["refused"] == "2900"
    assert row["refused_per_ip"] == "2900" and row["peak"] == "100"
    assert sc.info()["refused_per_ip"] == "2900"
    assert "127.0.0.2 refused: max connections per client IP reached" in sc.log()
    for s in socks:
        s.close()


def test_max_connections_keeps_admin_slots(env, master):
    sc = env.sidecar(master, clients={"max_connections": "20"},
                     admin={"allow": "127.0.0.1/32", "reserved": "2"})
    watcher = BoundRedis("127.0.0.1", sc.port)
    # the start-up probe's connections must be gone: only this admin is left
    wait_until(lambda: b"connected_clients:1\r" in watcher.execute_command("PROXY", "INFO"),
               what="probe connections closed")
    apps = [connect_from("127.0.0.2", sc.port) for _ in range(19)]   # 20 with the admin
    for s in apps:
        s.sendall(resp_cmd("PING"))
        assert resp_read(s.makefile("rb")) == b"PONG"
    extra = connect_from("127.0.0.2", sc.port)
    err = resp_read(extra.makefile("rb"))
    assert str(err) == "ERR max number of clients reached (limit 20)"
    admin = BoundRedis("127.0.0.1", sc.port)        # a reserved slot
    assert admin.execute_command("PROXY", "KILL", "IP", "127.0.0.2") == 19
    for s in apps:
        assert s.recv(10) == b""
    again = connect_from("127.0.0.2", sc.port)
    again.sendall(resp_cmd("PING"))
    assert resp_read(again.makefile("rb")) == b"PONG"
    assert sc.info()["refused_max_connections"] == "1"


def test_ban_closes_refuses_and_expires(env, master):
    sc = env.sidecar(master)
    victims = [connect_from("127.0.0.2", sc.port) for _ in range(5)]
    for s in victims:
        s.sendall(resp_cmd("PING"))
        assert resp_read(s.makefile("rb")) == b"PONG"
    admin = sc.client()
    assert admin.execute_command("PROXY", "BAN", "127.0.0.2/32", "2") == 5
    for s in victims:
        assert s.recv(10) == b""
    err = resp_read(connect_from("127.0.0.2", sc.port).makefile("rb"))
    assert str(err).startswith("ERR client IP 127.0.0.2 is banned for another")
    assert b"cidr=127.0.0.2/32" in admin.execute_command("PROXY", "BANS")
    assert BoundRedis("127.0.0.3", sc.port).ping() is True     # others untouched
    # over within its 2 s (PROXY BANS drops expired bans); 2.1 s, unscaled, as ever
    wait_until(lambda: admin.execute_command("PROXY", "BANS") == b"", timeout=2.1, scale=False,
               what="the ban to expire")
    assert BoundRedis("127.0.0.2", sc.port).ping() is True
    assert admin.execute_command("PROXY", "BANS") == b""
    assert admin.execute_command("PROXY", "BAN", "127.0.0.0/24", "60") >= 0
    assert admin.execute_command("PROXY", "UNBAN", "127.0.0.0/24") == 1


def test_allow_and_deny_lists_ipv4_and_ipv6(env, master):
    v6 = free_port()
    sc = env.sidecar(master, start=False, clients={"allow": "127.0.0.0/30"})
    sc.ini.write_text(sc.ini.read_text().replace(
        f"listen = 127.0.0.1:{sc.port}", f"listen = 127.0.0.1:{sc.port}, [::1]:{v6}"))
    sc.start()
    assert BoundRedis("127.0.0.2", sc.port).ping() is True
    err = resp_read(connect_from("127.0.0.5", sc.port).makefile("rb"))
    assert str(err) == "ERR client IP 127.0.0.5 is not allowed to connect"
    s6 = socket.create_connection(("::1", v6), timeout=5)
    assert str(resp_read(s6.makefile("rb"))) == "ERR client IP ::1 is not allowed to connect"
    env.sidecars.remove(sc)
    assert sc.stop() == 0

    sc2 = env.sidecar(master, start=False, clients={"deny": "::1, 127.0.0.3"})
    v6b = free_port()
    sc2.ini.write_text(sc2.ini.read_text().replace(
        f"listen = 127.0.0.1:{sc2.port}", f"listen = 127.0.0.1:{sc2.port}, [::1]:{v6b}"))
    sc2.start()
    s6 = socket.create_connection(("::1", v6b), timeout=5)
    assert str(resp_read(s6.makefile("rb"))) == "ERR client IP ::1 is not allowed to connect"
    err = resp_read(connect_from("127.0.0.3", sc2.port).makefile("rb"))
    assert str(err) == "ERR client IP 127.0.0.3 is not allowed to connect"
    assert BoundRedis("127.0.0.4", sc2.port).ping() is True


def test_non_admin_gets_noperm_and_admin_password_grants(env, master):
    sc = env.sidecar(master, admin={"allow": "127.0.0.1/32", "password": "adm1n"})
    r = BoundRedis("127.0.0.3", sc.port)
    for cmd in (["PROXY", "INFO"], ["PROXY", "CLIENTS"], ["PROXY", "CLIENT", "LIST"],
                ["PROXY", "KILL", "IP", "127.0.0.9"], ["PROXY", "BAN", "127.0.0.9/32", "1"],
                ["PROXY", "UNBAN", "127.0.0.9/32"], ["PROXY", "BANS"], ["PROXY", "HELP"]):
        with pytest.raises(redis.exceptions.NoPermissionError, match="needs admin rights"):
            r.execute_command(*cmd)
    assert r.set("k", "v") is True                    # data commands still work
    assert r.execute_command("AUTH", "adm1n") in (True, b"OK")
    assert b"connected_clients" in r.execute_command("PROXY", "INFO")
    lines = r.execute_command("CLIENT", "LIST").decode().splitlines()
    assert len(lines) >= 1 and all(line.startswith("id=") for line in lines)
    # CLIENT LIST and KILL are an app's too, on its own ACL user's connections
    me = BoundRedis("127.0.0.4", sc.port)
    mine = me.execute_command("CLIENT", "LIST").decode()
    assert f"id={me.client_id()} " in mine and f"id={r.client_id()} " in mine
    assert all("user=default" in line for line in mine.splitlines())
    assert b"PROXY CLIENTS" in b"".join(BoundRedis("127.0.0.1", sc.port).execute_command("PROXY", "HELP"))


def test_client_commands_answered_by_the_proxy(env, master):
    sc = env.sidecar(master)
    r = sc.client()
    r.client_setname("worker-7")
    info = r.execute_command("CLIENT", "INFO").decode()
    assert "name=worker-7" in info and f"id={r.client_id()}" in info
    assert r.execute_command("CLIENT", "NO-EVICT", "on") in (True, b"OK")
    other = sc.client()
    other.ping()
    oid = other.client_id()
    assert r.execute_command("CLIENT", "KILL", "ID", oid) == 1
    assert other.client_id() != oid      # redis-py noticed the close and reconnected
    assert r.execute_command("CLIENT", "KILL", "ID", oid) == 0
    assert r.execute_command("CLIENT", "PAUSE", "10") in (True, b"OK")   # to the master


def test_max_pipeline_is_back_pressure(env, master):
    sc = env.sidecar(master, clients={"max_pipeline": "1000"})
    rss0 = sc.rss_kb()
    s = sc.raw(timeout=60)
    n = 100000
    payload = b"".join(resp_cmd("INCR", "pipe") for _ in range(n))
    sender = threading.Thread(target=s.sendall, args=(payload,))
    sender.start()
    # the proxy stops reading at 1000 pending
    wait_until(lambda: sc.counter("pipeline_pauses") >= 1, what="reading paused")
    peak = sc.rss_kb()
    f = s.makefile("rb", buffering=1 << 20)
    for i in range(1, n + 1):
        assert resp_read(f) == i
    sender.join(30)
    assert peak - rss0 < 64 * 1024
    assert int(sc.info()["pipeline_pauses"]) >= 1     # it did stop reading
    assert master.client().get("pipe") == str(n).encode()


def test_10000_idle_clients_from_several_addresses(env, master):
    raise_nofile()
    sc = env.sidecar(master, clients={"max_connections": "10050", "max_connections_per_ip": "1000"})
    rss0 = sc.rss_kb()
    socks = []
    for i in range(10000):
        s = connect_from(f"127.0.0.{2 + i % 10}", sc.port)
        socks.append(s)
    extra = connect_from("127.0.0.2", sc.port)
    assert str(resp_read(extra.makefile("rb"))).startswith("ERR max connections per client IP")
    for s in socks[::97]:
        s.sendall(resp_cmd("PING"))
        assert resp_read(s.makefile("rb")) == b"PONG"
    wait_until(lambda: int(sc.info()["connected_clients"]) == 10001, what="all accepted")
    rss = sc.rss_kb()
    print(f"RSS with 10,000 idle clients: {rss} kB (fresh {rss0} kB)")
    assert rss - rss0 < 16 * 1024
    for s in socks:
        s.close()


def test_out_of_descriptors_pauses_accepts_instead_of_spinning(env, master):
    """With its descriptors used up, the proxy stops accepting for a moment
    (the log says so a few times a second), burns no CPU, and serves again
    once connections go."""
    sc = env.sidecar(master, start=False).start(prefix=["prlimit", "--nofile=64:64"])
    socks = []
    for _ in range(100):
        try:
            socks.append(socket.create_connection(("127.0.0.1", sc.port), timeout=1))
        except OSError:
            break
    sc.wait_log("pausing accepts")                # out of descriptors
    before = cpu_ticks(sc.proc.pid)
    # No condition: a CPU-time window, in which nothing is to happen.
    time.sleep(1)
    after = cpu_ticks(sc.proc.pid)
    assert after - before < 20, f"{after - before} ticks of CPU in 1 s while out of fds"
    assert 3 <= sc.log().count("pausing accepts") <= 30
    for s in socks:
        s.close()
    wait_until(lambda: sc.client().ping(), what="serving again")
