"""Many clients at once: each sees its own replies in its own order, the
master sees only the pool's links, and large values pass whole."""
import asyncio
import hashlib
import threading
import time

import pytest

from helpers import raise_nofile, resp_cmd, wait_until

CLIENTS = 1000
ROUNDS = 20


async def read_reply(reader):
    line = await reader.readline()
    assert line, "connection closed"
    t, rest = line[:1], line[1:-2]
    if t in (b"+", b"-"):
        return t + rest
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        return None if n < 0 else (await reader.readexactly(n + 2))[:-2]
    raise AssertionError(f"unexpected reply {line!r}")


async def one_client(port, i, started):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started.append(i)
    for rnd in range(ROUNDS):
        tag = f"c{i}-r{rnd}".encode()
        writer.write(resp_cmd("SET", f"key:{i}", tag) + resp_cmd("GET", f"key:{i}") +
                     resp_cmd("INCR", f"ctr:{i}") + resp_cmd("ECHO", tag) +
                     resp_cmd("PING"))
        await writer.drain()
        assert await read_reply(reader) == b"+OK"
        assert await read_reply(reader) == tag
        assert await read_reply(reader) == rnd + 1
        assert await read_reply(reader) == tag
        assert await read_reply(reader) == b"+PONG"
    writer.close()
    return i


def test_1000_clients_each_in_order_over_the_pool_links(env, master):
    raise_nofile()
    sc = env.sidecar(master, pool={"connections": 2})
    # counted from when both links are up: the proxy opens them at start
    wait_until(lambda: len(master.sidecar_links()) == 2, what="2 links")
    samples = []
    stop = threading.Event()

    def sample_links():
        while not stop.is_set():
            samples.append(len(master.sidecar_links()))
            time.sleep(0.05)

    t = threading.Thread(target=sample_links)
    t.start()

    async def main():
        started = []
        done = await asyncio.gather(*(one_client(sc.port, i, started) for i in range(CLIENTS)))
        return done

    try:
        done = asyncio.run(asyncio.wait_for(main(), timeout=120))
    finally:
        stop.set()
        t.join()
    assert sorted(done) == list(range(CLIENTS))
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
