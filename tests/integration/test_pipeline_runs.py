"""Pipelined batches: replies that come in a row on a link for one client
are answered together (the pool's on_replies). Whatever breaks a row (an
error reply, a reply made by the proxy, another client's request, a large
reply passed on as it comes, the end of what one read brought) must leave
every reply where it belongs and every counter as one-by-one would."""
import socket
import threading

import pytest
import redis

from helpers import RawClient, SLOW, free_port, resp_cmd, resp_read, wait_until
from test_metrics import delta, parse, scrape

SMALL, MEDIUM, BIG = b"abc", b"m" * 3000, b"B" * (200 * 1024)


def batch(n, tag):
    """n commands and the replies Redis would give, in order."""
    cmds, want, ctr = [], [], 0
    for i in range(n):
        k = i % 9
        if k == 0:
            cmds.append(("GET", "small")); want.append(SMALL)
        elif k == 1:
            cmds.append(("GET", "medium")); want.append(MEDIUM)
        elif k == 2:
            ctr += 1
            cmds.append(("INCR", f"ctr:{tag}")); want.append(ctr)
        elif k == 3 and i % 4 == 3:
            cmds.append(("INCR", "notnum")); want.append(redis.ResponseError)
        elif k == 4 and i % 5 == 4:
            cmds.append(("CLIENT", "GETNAME")); want.append(None)   # the proxy's own reply
        elif k == 5 and i % 50 == 5:
            cmds.append(("GET", "big")); want.append(BIG)           # passed on as it comes
        elif k == 6:
            cmds.append(("SET", f"k:{tag}:{i}", i)); want.append(b"OK")
        elif k == 7:
            cmds.append(("GET", "missing")); want.append(None)
        else:
            cmds.append(("ECHO", f"{tag}-{i}")); want.append(f"{tag}-{i}".encode())
    return cmds, want


def check(got, want):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        if w is redis.ResponseError:
            assert isinstance(g, redis.ResponseError) and "not an integer" in str(g), (i, g)
        else:
            assert g == w, (i, g if not isinstance(g, bytes) else g[:40], w if not
                            isinstance(w, bytes) else w[:40])


def app_totals(c):
    """PROXY APPS's counters, summed over the apps, asked on c."""
    c.send(("PROXY", "APPS"))
    out = {"replies_timed": 0, "errors_redis": 0}
    for line in c.read().decode().splitlines():
        for f in line.split(" "):
            k, _, v = f.partition("=")
            if k in out:
                out[k] += int(v)
    return out


def closed(s):
    """Read what came: True once the peer closed."""
    try:
        while s.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass
    return True


@pytest.fixture
def loaded(master):
    r = master.client()
    r.mset({"small": SMALL, "medium": MEDIUM, "big": BIG, "notnum": "x"})
    return master


def test_a_batch_keeps_its_order_through_errors_local_replies_and_partial_reads(env, loaded):
    sc = env.sidecar(loaded, pool={"connections": 1})
    c = RawClient(sc.port)
    cmds, want = batch(900, "a")
    forwarded = sum(1 for cmd in cmds if cmd[0] != "CLIENT")
    req0, rep0 = sc.counter("forwarded_requests"), sc.counter("forwarded_replies")
    apps0 = app_totals(c)
    c.send(*cmds)
    check(c.read(len(cmds)), want)
    apps1 = app_totals(c)
    # each reply timed once (and PROXY APPS's own first one), each error counted once
    assert apps1["replies_timed"] - apps0["replies_timed"] == len(cmds) + 1
    assert apps1["errors_redis"] - apps0["errors_redis"] == want.count(redis.ResponseError)
    # every reply counted once, the errors among them too
    assert sc.counter("forwarded_requests") - req0 == forwarded
    assert sc.counter("forwarded_replies") - rep0 == forwarded
    # and the link is in step: a plain command after the batch
    c.send(("GET", "small"))
    assert c.read() == SMALL
    c.close()


def test_clients_interleaved_on_one_link_each_get_their_own_replies(env, loaded):
    sc = env.sidecar(loaded, pool={"connections": 1})
    errors = []

    def run(tag):
        try:
            c = RawClient(sc.port)
            for rnd in range(4):
                cmds, want = batch(300, f"{tag}.{rnd}")
                # in pieces: each write lands among the others' requests
                for at in range(0, len(cmds), 37):
                    c.send(*cmds[at:at + 37])
                check(c.read(len(cmds)), want)
            c.close()
        except Exception as e:   # noqa: BLE001 - reported below
            errors.append((tag, repr(e)[:300]))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120 * SLOW)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def test_a_client_closed_at_its_output_limit_mid_batch_leaves_the_link_in_step(env, loaded):
    sc = env.sidecar(loaded, pool={"connections": 1}, clients={"max_output_buffer": "256kb"})
    closed0 = sc.counter("errors_output_buffer")
    hog = RawClient(sc.port)
    other = RawClient(sc.port)
    # 4,000 replies of 3,000 bytes, never read: far over the limit
    hog.send(*[("GET", "medium")] * 4000)
    # without the 200 KB replies: its own ~170 KB of replies can never pass
    # the 256 KB limit, however late it reads them
    cmds, want = map(list, zip(*[(c, w) for c, w in zip(*batch(450, "o"))
                                 if c != ("GET", "big")]))
    other.send(*cmds)
    check(other.read(len(cmds)), want)
    # 12 MB of replies never read: past what the kernel holds for the hog
    # (its socket's buffers) and its 256 KB, whatever came first
    wait_until(lambda: sc.counter("errors_output_buffer") == closed0 + 1,
               what="the hog closed at its output limit")
    closed(hog.s)              # EOF or a reset, else the socket times out
    other.send(("GET", "small"))
    assert other.read() == SMALL
    hog.close()
    other.close()


def test_runs_of_one_command_break_at_another_name_case_or_length(env, loaded):
    """A run of one command is sent on without asking the router again:
    it must end exactly where the name's bytes change."""
    port = free_port()
    sc = env.sidecar(loaded, pool={"connections": 1},
                     admin={"metrics_listen": f"127.0.0.1:{port}"})
    c = RawClient(sc.port)
    before = parse(scrape(port))
    cmds, want = [], []
    for i in range(600):
        kind = (i // 7) % 6          # runs of 7 of each
        if kind == 0:
            cmds.append(("GET", "small")); want.append(SMALL)
        elif kind == 1:
            cmds.append(("get", "medium")); want.append(MEDIUM)
        elif kind == 2:
            cmds.append(("SET", f"r:{i}", i)); want.append(b"OK")
        elif kind == 3:
            cmds.append(("GeT", f"r:{i - 7}")); want.append(str(i - 7).encode())
        elif kind == 4:
            cmds.append(("STRLEN", "medium")); want.append(len(MEDIUM))
        else:
            cmds.append(("HINCRBY", "h", "f", 1)); want.append(i // 42 * 7 + i % 7 + 1)
    c.send(*cmds)
    check(c.read(len(cmds)), want)
    c.close()
    # each request counted as its own command: a write in a run of reads is a write
    after = parse(scrape(port))
    writes = sum(1 for cmd in cmds if cmd[0] in ("SET", "HINCRBY"))
    for cls, n in (("write", writes), ("read", len(cmds) - writes)):
        assert delta(after, before, "redis_sidecar_requests_total", **{
            "class": cls, "destination": "master"}) == n, cls


def test_a_run_read_a_few_bytes_at_a_time_is_framed_whole(env, loaded):
    """Requests of one run that arrive cut anywhere (a partial request at
    the end of each read) go out whole and in order."""
    sc = env.sidecar(loaded, pool={"connections": 1})
    c = RawClient(sc.port)
    payload = b"".join(resp_cmd("INCR", "cut") for _ in range(300))
    for at in range(0, len(payload), 29):
        c.s.sendall(payload[at:at + 29])
    assert c.read(300) == list(range(1, 301))
    c.close()


def mine(sc, s):
    """The proxy's CLIENT LIST entry for socket s."""
    port = s.getsockname()[1]
    return next(c for c in sc.clients() if c["addr"].endswith(f":{port}"))


def unread_client(port):
    """A client with a small receive buffer that does not read yet."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10 * SLOW)
    s.connect(("127.0.0.1", port))
    return s


def test_a_reply_sent_straight_that_the_socket_takes_in_part_is_finished_in_order(env, loaded):
    """The last reply a client is owed is written straight from the link's
    buffer. Once its socket takes only part of one (a client that does not
    read), the rest must wait in the output and go out before any later
    reply, every byte in order."""
    sc = env.sidecar(loaded, pool={"connections": 1}, clients={"max_output_buffer": "64mb"})
    value = bytes(range(256)) * 240            # 60 KB: under the size passed on as it comes
    loaded.client().set("v60", value)
    s = unread_client(sc.port)
    f = s.makefile("rb")
    sent = 0
    # one at a time, each the last reply owed, until the kernel's buffers
    # are full and one is written in part (the rest queued in the output)
    while True:
        s.sendall(resp_cmd("GET", "v60"))
        sent += 1
        me = wait_until(lambda: (lambda c: c if c["pending"] == "0" else None)(mine(sc, s)),
                        what="the GET answered")
        if int(me["obuf"]) > 0:
            break
        assert sent < 400, "the socket took 24 MB unread"
    # then a batch whose run ends with the last reply owed, and one more
    s.sendall(b"".join(resp_cmd("GET", "v60") for _ in range(8)) + resp_cmd("ECHO", "end"))
    got = [resp_read(f) for _ in range(sent + 9)]
    assert got[-1] == b"end"
    assert all(g == value for g in got[:-1]), [i for i, g in enumerate(got[:-1]) if g != value][:5]
    s.sendall(resp_cmd("GET", "small"))
    assert resp_read(f) == SMALL
    f.close()
    s.close()


def test_replies_sent_straight_still_meet_the_output_limit(env, loaded):
    """A client that never reads is closed at max_output_buffer whether its
    replies were queued or written straight until its socket was full, and
    the link stays in step for the others."""
    sc = env.sidecar(loaded, pool={"connections": 1}, clients={"max_output_buffer": "2mb"})
    loaded.client().set("v60", b"v" * 60000)
    closed0 = sc.counter("errors_output_buffer")
    s = unread_client(sc.port)
    for _ in range(300):                       # 18 MB: past the kernel's buffers and 2 MB
        try:
            s.sendall(resp_cmd("GET", "v60"))
        except OSError:
            break                              # closed already
    wait_until(lambda: sc.counter("errors_output_buffer") == closed0 + 1,
               what="the client closed at its output limit")
    closed(s)
    other = RawClient(sc.port)
    other.send(("GET", "small"))
    assert other.read() == SMALL
    other.close()
    s.close()
