"""Many clients at once: each sees its own replies in its own order, the
master sees only the pool's links, and large values pass whole."""
import hashlib

import pytest

from helpers import Load, RawClient, Sampler, raise_nofile, wait_until

CLIENTS = 1000
ROUNDS = 20


def one_round(c, i, rnd):
    """Five pipelined commands; each reply checked, in order."""
    tag = f"c{i}-r{rnd}".encode()
    c.send(("SET", f"key:{i}", tag), ("GET", f"key:{i}"), ("INCR", f"ctr:{i}"),
           ("ECHO", tag), ("PING",))
    assert c.read() == b"OK"
    assert c.read() == tag
    assert c.read() == rnd + 1
    assert c.read() == tag
    assert c.read() == b"PONG"


def test_1000_clients_each_in_order_over_the_pool_links(env, master):
    raise_nofile()
    sc = env.sidecar(master, pool={"connections": 2})
    # counted from when both links are up: the proxy opens them at start
    wait_until(lambda: len(master.sidecar_links()) == 2, what="2 links")
    conns = []

    def connect(i):
        conns.append(RawClient(sc.port))
        return conns[-1]

    # every client connects before any sends: 1000 at once
    load = Load(one_round, n=CLIENTS, connect=connect, iterations=ROUNDS, together=True,
                stop_on_error=True)
    with Sampler(lambda: len(master.sidecar_links())) as links:
        load.start()
        finished = load.join(120)
    for c in conns:
        c.close()
    assert finished and not load.crashed, load.crashed
    assert not load.errors(), load.errors()[:3]
    done = [i for i in range(CLIENTS) if len(load.ok(i)) == ROUNDS]
    assert sorted(done) == list(range(CLIENTS))
    samples = links.values()
    assert not links.errors, links.errors
    assert samples and all(n == 2 for n in samples), samples
    r = master.client()
    assert all(int(r.get(f"ctr:{i}")) == ROUNDS for i in range(0, CLIENTS, 37))
    assert int(sc.info()["total_connections_received"]) >= CLIENTS


@pytest.mark.parametrize("connections", [1, 4])
def test_pool_size_is_what_the_master_sees(env, master, connections):
    sc = env.sidecar(master, pool={"connections": connections})
    clients = [sc.client() for _ in range(20)]
    for i, c in enumerate(clients):
        c.set(f"k{i}", i)
    links = master.sidecar_links()
    assert len(links) == connections
    others = [c for c in master.client().client_list() if not c.get("name", "").startswith("sidecar-")]
    assert len(others) == 1   # this CLIENT LIST itself


def test_100mb_value(env, master):
    sc = env.sidecar(master, clients={"max_query_buffer": "256mb", "max_output_buffer": "256mb"})
    r = sc.client(socket_timeout=60)
    val = hashlib.sha256(b"seed").digest() * (100 * 1024 * 1024 // 32)
    assert r.set("huge", val) is True
    got = r.get("huge")
    assert len(got) == len(val) and got == val
    assert r.strlen("huge") == len(val)
    other = sc.client()
    assert other.ping() is True
