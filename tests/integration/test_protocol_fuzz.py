"""A protocol fuzzer against the running proxy (the ASan build under
`make asan`) and a real Redis: clients send mutated RESP (valid commands
with flipped bytes, random splits across writes, huge declared lengths,
nested arrays, HELLO 3 / SUBSCRIBE / MULTI interleaved with garbage) and
close mid-request and mid-reply, while a canary client checks every reply
it gets. Nothing may crash, the canary may see no error, and the proxy's
descriptors and memory come back."""
import multiprocessing
import os
import random
import socket
import time

from helpers import ASAN, SLOW, resp_cmd, wait_until

SECONDS = float(os.environ.get("PROTOCOL_FUZZ_SECONDS", "8"))
WORKERS = 4
MB = 1024 * 1024

COMMANDS = [
    ("SET", "k{n}", "v{n}"), ("GET", "k{n}"), ("MGET", "k1", "k2", "big"), ("INCR", "c{n}"),
    ("HSET", "h{n}", "f", "v"), ("LPUSH", "l{n}", "a", "b"), ("LRANGE", "l{n}", "0", "-1"),
    ("PING",), ("ECHO", "hello"), ("EVAL", "return ARGV[1]", "0", "x"), ("MULTI",),
    ("EXEC",), ("DISCARD",), ("WATCH", "k{n}"), ("UNWATCH",), ("SUBSCRIBE", "ch{n}"),
    ("UNSUBSCRIBE",), ("PSUBSCRIBE", "p*"), ("HELLO", "3"), ("HELLO", "2"),
    ("CLIENT", "SETNAME", "f{n}"), ("CLIENT", "TRACKING", "on"), ("SELECT", "1"),
    ("SELECT", "0"), ("BLPOP", "q{n}", "0.05"), ("XADD", "s", "*", "a", "1"),
    ("XREAD", "BLOCK", "20", "STREAMS", "s", "$"), ("GET", "big"), ("QUIT",),
    ("PROXY", "INFO"), ("CLIENT", "INFO"), ("DEL", "k{n}"), ("EXPIRE", "k{n}", "100"),
]


def encode(rnd, cmd):
    n = rnd.randrange(1000)
    return resp_cmd(*[a.format(n=n) for a in cmd])


def piece(rnd):
    """One chunk of input: valid, mutated or hostile."""
    kind = rnd.randrange(10)
    cmd = encode(rnd, rnd.choice(COMMANDS))
    if kind <= 3:
        return cmd
    if kind == 4:                                   # a few flipped bytes
        b = bytearray(cmd)
        for _ in range(rnd.randint(1, 3)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        return bytes(b)
    if kind == 5:                                   # a huge declared length
        return rnd.choice([b"*99999999999\r\n", b"*2147483647\r\n$3\r\nGET\r\n",
                           b"*2\r\n$3\r\nGET\r\n$536870913\r\n", b"$-5\r\n",
                           b"*1\r\n$9223372036854775807\r\n", b"*-1\r\n"])
    if kind == 6:                                   # nesting a request may not have
        depth = rnd.randint(1, 40)
        return b"*1\r\n" * depth + b"$4\r\nPING\r\n"
    if kind == 7:                                   # inline, with quotes and controls
        return rnd.choice([b"SET k \"a b\"\r\n", b"GET 'k\r\n", b"\"unbalanced\r\n",
                           b"PING\x0b\x0c\r\n", b"SET k a\x00b\r\n", b"\r\n", b"   \n"])
    if kind == 8:                                   # a truncated command
        return cmd[:rnd.randrange(1, len(cmd))]
    return bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 64)))


def drain(s):
    """Read whatever replies came, without waiting for more."""
    s.setblocking(False)
    try:
        while s.recv(65536):
            pass
    except (BlockingIOError, ConnectionError, OSError):
        pass
    finally:
        s.setblocking(True)


def fuzz_worker(port, seed, deadline):
    """One fuzzing client process until the deadline; returns its counts."""
    rnd = random.Random(seed)
    counts = {"pieces": 0, "connections": 0, "closed_by_proxy": 0, "connect_errors": 0}
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            counts["connect_errors"] += 1
            continue
        try:
            for _ in range(rnd.randint(1, 30)):
                data = piece(rnd)
                # random splits across writes
                while data:
                    cut = rnd.randint(1, max(1, len(data)))
                    s.sendall(data[:cut])
                    data = data[cut:]
                counts["pieces"] += 1
                if rnd.random() < 0.3:
                    drain(s)
            end = rnd.randrange(6)
            if end == 0:                             # close mid-reply: a big one asked
                s.sendall(resp_cmd("GET", "big"))
            elif end == 1:                           # close mid-request
                s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc")
        except OSError:
            counts["closed_by_proxy"] += 1           # a protocol error closes: fine
        finally:
            s.close()
            counts["connections"] += 1
    return counts


def fds(pid, upstream_port):
    """The proxy's descriptors, less its links to upstream_port (the pool
    keeps what it opened under load; those are not a leak)."""
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            inodes.add(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            pass
    links = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if int(cols[2].split(":")[1], 16) == upstream_port and f"socket:[{cols[9]}]" in inodes:
                links += 1
    return len(inodes) - links


def test_mutated_resp_against_the_running_proxy(env, master):
    sc = env.sidecar(master, clients={"max_query_buffer": "2mb", "max_output_buffer": "8mb"},
                     pool={"max_leased": "64"})
    master.client().set("big", b"b" * (MB // 4))
    r = sc.client()
    assert r.ping()
    fd0, rss0 = fds(sc.proc.pid, master.port), sc.rss_kb()
    deadline = time.monotonic() + SECONDS
    canary = {"ok": 0, "errors": []}
    seeds = [random.randrange(1 << 30) for _ in range(WORKERS)]
    # Processes, not threads: the canary must not wait on the fuzzers' GIL.
    with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
        job = pool.starmap_async(fuzz_worker, [(sc.port, s, deadline) for s in seeds])
        c = sc.client()
        i = 0
        # until the deadline, and at least 20 checks (the ASan build under
        # this load answers it slowly)
        while time.monotonic() < deadline or (canary["ok"] < 20 and not canary["errors"]):
            i += 1
            try:
                assert c.set(f"canary:{i}", f"value-{i}") is True
                got = c.get(f"canary:{i}")
                assert got == f"value-{i}".encode(), got
                canary["ok"] += 1
            except Exception as e:  # noqa: BLE001 - every one is a finding
                canary["errors"].append(repr(e))
        c.connection_pool.disconnect()
        per_worker = job.get(timeout=30 * SLOW)
    counts = {k: sum(w[k] for w in per_worker) for k in per_worker[0]}
    print(f"\nprotocol fuzz (seeds {seeds}): {counts}, canary {canary['ok']} checked")
    assert sc.alive(), sc.log()[-3000:]
    assert "AddressSanitizer" not in sc.log() and "runtime error" not in sc.log()
    assert not canary["errors"], canary["errors"][:5]
    assert canary["ok"] > 0 and counts["pieces"] > 100
    # Every fuzzing connection is gone: descriptors and memory come back.
    wait_until(lambda: fds(sc.proc.pid, master.port) <= fd0, timeout=10,
               what=f"descriptors back near {fd0}")
    if not ASAN:        # its quarantine keeps freed memory on purpose
        wait_until(lambda: sc.rss_kb() - rss0 < 32 * 1024, timeout=10,
                   what="RSS back near its start")
    assert r.set("after", "1") and r.get("after") == b"1"
