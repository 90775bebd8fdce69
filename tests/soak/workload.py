"""The soak's workload: writers, readers, transactions, blocking pops and
subscribers, each a thread with its own raw connection to the proxy (no
client library: nothing is retried behind the soak's back, and every
reply is checked against the request it answers).

Every operation ends in one of three states, kept with its times:
  OK         acknowledged: the reply says it ran;
  MAYBE      it may or may not have run (the proxy said so, or the
             connection died after the request was written);
  NOT_RUN    an error that says it never ran (verify.py checks it is
             absent).
A reply of the wrong shape or content is a mismatch, counted with an
example; verify.py decides afterwards what is lost or duplicated."""
import collections
import random
import re
import socket
import threading
import time
import traceback

import redis

from helpers import resp_cmd

OK, MAYBE, NOT_RUN = 0, 1, 2

# Errors whose request the proxy (or Redis) never ran: README, "the retry
# rule", "Redis down", "Sentinel and failover", "Commands that hold state".
NOT_RUN_ERRORS = ("unavailable", "is down", "no master confirmed within failover_wait",
                  "no dedicated connection free", "max connections", "proxy is shutting down",
                  "LOADING", "READONLY", "MASTERDOWN", "EXECABORT", "without MULTI")


def error_kind(text):
    """An error's text without its addresses, numbers and durations, so
    that errors of one cause count as one kind."""
    t = re.sub(r"\[?[0-9a-f.:]*\d+\.\d+\.\d+\.\d+\]?:\d+", "ADDR", text)
    t = re.sub(r"\b\d+(\.\d+)?(ms|s|mb|kb)?\b", "N", t)
    return t


def outcome(err_text):
    """MAYBE or NOT_RUN for an error reply's text."""
    return NOT_RUN if any(s in err_text for s in NOT_RUN_ERRORS) else MAYBE


class Lost(Exception):
    """The connection failed: closed, reset or silent past its timeout."""


class BadReply(Lost):
    """Bytes that are no RESP reply: the connection is dropped, and the
    reply counted as a mismatch."""


class _More(Exception):
    pass


def parse(buf, i):
    """One RESP2 reply from buf at i: (value, next i); errors come back as
    ResponseError values. _More if buf holds only part of it."""
    end = buf.find(b"\r\n", i)
    if end < 0:
        raise _More
    t, line, i = buf[i:i + 1], bytes(buf[i + 1:end]), end + 2
    if t == b"+":
        return line, i
    if t == b"-":
        return redis.ResponseError(line.decode(errors="replace")), i
    if t == b":":
        return int(line), i
    if t == b"$":
        n = int(line)
        if n < 0:
            return None, i
        if len(buf) < i + n + 2:
            raise _More
        return bytes(buf[i:i + n]), i + n + 2
    if t == b"*":
        n = int(line)
        if n < 0:
            return None, i
        out = []
        for _ in range(n):
            v, i = parse(buf, i)
            out.append(v)
        return out, i
    raise ValueError(f"bad reply line {bytes(t) + line!r}")


class Conn:
    """One raw connection to the proxy; `call` sends commands in one write
    and reads one reply each. A read that times out keeps what it has
    read (a subscriber waits for messages with a short timeout)."""

    def __init__(self, port, timeout, source="127.0.0.1"):
        self.timeout = timeout
        s = socket.socket()
        s.settimeout(timeout)
        try:
            s.bind((source, 0))
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            raise
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s = s
        self.buf = bytearray()

    def send(self, *cmds):
        try:
            self.s.sendall(b"".join(resp_cmd(*c) for c in cmds))
        except OSError as e:
            raise Lost(f"send: {e}") from e

    def read(self, timeout=None):
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                v, i = parse(self.buf, 0)
                del self.buf[:i]
                return v
            except _More:
                pass
            except ValueError as e:
                raise BadReply(f"{e} after {bytes(self.buf[:80])!r}") from e
            left = deadline - time.monotonic()
            if left <= 0:
                raise Lost("no reply within %gs" % timeout)
            self.s.settimeout(left)
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                raise Lost(f"{type(e).__name__}: {e}") from e
            if not data:
                raise Lost("closed by the proxy" + (f" after {bytes(self.buf[:80])!r}" if self.buf else ""))
            self.buf += data

    def call(self, *cmds, timeout=None):
        self.send(*cmds)
        return [self.read(timeout) for _ in cmds]

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def is_err(v):
    return isinstance(v, redis.ResponseError)


class Stats:
    """Counts shared by the workers: requests and round trips per kind,
    errors per (worker kind, error kind), mismatches with examples."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = collections.Counter()
        self.trips = collections.Counter()
        self.errors = collections.Counter()
        self.error_times = {}         # (kind, error kind) -> [first, last]
        self.mismatches = collections.Counter()
        self.mismatch_examples = []   # (time, text)

    def sent(self, kind, n):
        with self.lock:
            self.requests[kind] += n
            self.trips[kind] += 1

    def error(self, kind, text):
        t = time.monotonic()
        key = (kind, error_kind(text))
        with self.lock:
            self.errors[key] += 1
            self.error_times.setdefault(key, [t, t])[1] = t

    def mismatch(self, kind, what, detail):
        with self.lock:
            self.mismatches[(kind, what)] += 1
            if len(self.mismatch_examples) < 50:
                self.mismatch_examples.append((time.monotonic(), f"{kind}: {what}: {detail}"))


class Worker(threading.Thread):
    """A loop of steps on one connection, paced at `rate` steps a second;
    a lost connection is counted and replaced."""
    kind = "worker"
    rate = 20.0
    timeout = 15.0

    def __init__(self, wl, idx):
        super().__init__(daemon=True, name=f"{self.kind}{idx}")
        self.wl, self.idx = wl, idx
        self.rng = random.Random(f"{wl.seed}/{self.kind}/{idx}")
        self.conn = None
        self.seq = 0
        self.crashed = None
        # (n, t0, t1, outcome) per step; a Writer's adds the SET's outcome,
        # a Publisher's is (n, outcome)
        self.records = []

    def connect(self):
        self.conn = Conn(self.wl.port, self.timeout)
        try:
            self.on_connect()
        except BaseException:
            self.conn.close()
            self.conn = None
            raise

    def on_connect(self):
        pass

    def drop(self, why):
        if self.conn:
            self.conn.close()
            self.conn = None
        self.wl.stats.error(self.kind, f"connection lost: {why}")

    def run(self):
        try:
            while not self.wl.stopping.is_set():
                t0 = time.monotonic()
                if self.conn is None:
                    try:
                        self.connect()
                    except (OSError, Lost) as e:
                        self.wl.stats.error(self.kind, f"connect: {e}")
                        self.conn = None
                        self.wl.stopping.wait(0.2)
                        continue
                try:
                    self.step()
                except BadReply as e:
                    self.wl.stats.mismatch(self.kind, "not a RESP reply", str(e))
                    self.drop("bad reply")
                except Lost as e:
                    self.drop(str(e))
                delay = 1.0 / self.rate - (time.monotonic() - t0)
                if delay > 0:
                    self.wl.stopping.wait(delay)
        except Exception as e:  # noqa: BLE001 - the report must show it
            self.crashed = traceback.format_exc()
            self.wl.stats.mismatch(self.kind, "worker crashed", repr(e))
        finally:
            if self.conn:
                self.conn.close()

    def step(self):
        raise NotImplementedError

    def judged_write(self, cmd, good, record):
        """Send one write and record how it ended: OK when its reply is
        good, MAYBE when the reply is unexpected or the link was lost (Lost
        goes on up), or what its error says (outcome())."""
        self.wl.stats.sent(self.kind, 1)
        try:
            r = self.conn.call(cmd)[0]
        except Lost:
            record(MAYBE)
            raise
        if is_err(r):
            self.wl.stats.error(self.kind, f"{cmd[0]}: {r}")
            record(outcome(str(r)))
        elif good(r):
            record(OK)
        else:
            self.wl.stats.mismatch(self.kind, f"{cmd[0]} reply", repr(r)[:200])
            record(MAYBE)


class Writer(Worker):
    """RPUSH of a unique number to its own list, SET of a unique key, GET
    of that key, pipelined: [int, OK, the value] (the GET must see the
    SET: read-your-writes). Each number is recorded with its outcome."""
    kind = "writer"
    rate = 40.0

    def __init__(self, wl, idx):
        super().__init__(wl, idx)
        self.ryw = []                 # (t0, t1, n, what the GET saw): a SET's GET missed it
        self.last_acked = 0

    def step(self):
        self.seq += 1
        n, i = self.seq, self.idx
        key, val = f"soak:k:{i}:{n}", f"v:{i}:{n}".encode()
        t0 = time.monotonic()
        self.wl.stats.sent(self.kind, 3)
        try:
            r = self.conn.call(("RPUSH", f"soak:w:{i}", n), ("SET", key, val), ("GET", key))
        except Lost:
            self.records.append((n, t0, time.monotonic(), MAYBE, MAYBE))
            raise
        t1 = time.monotonic()
        push = self.judge(r[0], lambda v: isinstance(v, int) and v >= 1, "RPUSH")
        sset = self.judge(r[1], lambda v: v == b"OK", "SET")
        self.records.append((n, t0, t1, push, sset))
        if is_err(r[2]):
            self.wl.stats.error(self.kind, f"GET: {r[2]}")
        elif r[2] != val and not (r[2] is None and sset != OK):
            if r[2] is None:
                self.ryw.append((t0, t1, n, r[2]))
            else:
                self.wl.stats.mismatch(self.kind, "GET after SET", f"{key} -> {r[2]!r}")
        if push == OK and sset == OK:
            self.last_acked = n

    def judge(self, v, good, cmd):
        if is_err(v):
            self.wl.stats.error(self.kind, f"{cmd}: {v}")
            return outcome(str(v))
        if not good(v):
            self.wl.stats.mismatch(self.kind, f"{cmd} reply", repr(v)[:200])
            return MAYBE
        return OK


def ro_value(k):
    """The value of preloaded key soak:ro:k: it names its key."""
    return b"ro:%d:" % k + b"x" * (k % 64)


class Reader(Worker):
    """GET and MGET of preloaded keys (their values name them) and GET of a
    key a writer acknowledged (its value, or nil from a replica behind),
    pipelined; reads go to replicas."""
    kind = "reader"
    rate = 40.0

    def step(self):
        a, b, c = (self.rng.randrange(self.wl.preloaded) for _ in range(3))
        w = self.rng.choice(self.wl.writers)
        n = w.last_acked
        cmds = [("GET", f"soak:ro:{a}"), ("MGET", f"soak:ro:{b}", f"soak:ro:{c}"),
                ("GET", f"soak:k:{w.idx}:{n}")]
        self.wl.stats.sent(self.kind, len(cmds))
        r = self.conn.call(*cmds)
        self.expect(r[0], ro_value(a), "GET")
        if is_err(r[1]):
            self.wl.stats.error(self.kind, f"MGET: {r[1]}")
        elif r[1] != [ro_value(b), ro_value(c)]:
            self.wl.stats.mismatch(self.kind, "MGET reply", f"{b},{c} -> {r[1]!r}"[:200])
        if n and not is_err(r[2]) and r[2] not in (None, f"v:{w.idx}:{n}".encode()):
            self.wl.stats.mismatch(self.kind, "GET of a written key",
                                   f"soak:k:{w.idx}:{n} -> {r[2]!r}")
        elif is_err(r[2]):
            self.wl.stats.error(self.kind, f"GET: {r[2]}")

    def expect(self, v, want, cmd):
        if is_err(v):
            self.wl.stats.error(self.kind, f"{cmd}: {v}")
        elif v != want:
            self.wl.stats.mismatch(self.kind, f"{cmd} reply", f"want {want!r}, got {v!r}"[:200])


class Transactor(Worker):
    """MULTI, then RPUSH n to its list and INCR its counter, EXEC: [OK],
    [QUEUED, QUEUED, [L, C]] with L == C (the two always change together).
    Every other one first WATCHes the counter and GETs it: then C must be
    that value plus one. MULTI is sent alone: were it refused, a pipelined
    RPUSH would run outside any transaction."""
    kind = "tx"
    rate = 15.0

    def step(self):
        self.seq += 1
        n, i = self.seq, self.idx
        lst, ctr = f"soak:tx:{i}", f"soak:txn:{i}"
        t0 = time.monotonic()
        watched = None
        if n % 2:
            self.wl.stats.sent(self.kind, 2)
            r = self.conn.call(("WATCH", ctr), ("GET", ctr))
            if is_err(r[0]) or is_err(r[1]):
                self.fail(n, t0, NOT_RUN, f"WATCH/GET: {r[0] if is_err(r[0]) else r[1]}")
                return self.unwatch()
            if r[0] != b"OK" or not (r[1] is None or r[1].isdigit()):
                self.wl.stats.mismatch(self.kind, "WATCH/GET reply", repr(r)[:200])
                self.records.append((n, t0, time.monotonic(), NOT_RUN))
                return self.unwatch()
            watched = int(r[1] or 0)
        self.wl.stats.sent(self.kind, 1)
        r = self.conn.call(("MULTI",))[0]
        if r != b"OK":
            if is_err(r):
                self.fail(n, t0, NOT_RUN, f"MULTI: {r}")
            else:
                self.wl.stats.mismatch(self.kind, "MULTI reply", repr(r))
                self.records.append((n, t0, time.monotonic(), MAYBE))
            return self.unwatch() if watched is not None else None
        self.wl.stats.sent(self.kind, 3)
        try:
            r = self.conn.call(("RPUSH", lst, n), ("INCR", ctr), ("EXEC",))
        except Lost:
            self.records.append((n, t0, time.monotonic(), MAYBE))
            raise
        t1 = time.monotonic()
        ex = r[2]
        if is_err(ex):
            first = next((x for x in r[:2] if is_err(x)), None)
            self.fail(n, t0, outcome(str(ex)), f"EXEC: {ex}" + (f" (queued: {first})" if first else ""))
            return None
        if r[:2] != [b"QUEUED", b"QUEUED"]:
            self.wl.stats.mismatch(self.kind, "queued replies", repr(r[:2])[:200])
        if ex is None:
            # the WATCHed counter changed: nobody else writes it
            self.wl.stats.mismatch(self.kind, "EXEC aborted by WATCH", f"n={n}")
            self.records.append((n, t0, t1, NOT_RUN))
            return None
        ok = (isinstance(ex, list) and len(ex) == 2 and all(isinstance(x, int) for x in ex)
              and ex[0] == ex[1] and (watched is None or ex[1] == watched + 1))
        if not ok:
            self.wl.stats.mismatch(self.kind, "EXEC reply", f"n={n} watched={watched} {ex!r}"[:200])
        self.records.append((n, t0, t1, OK if ok else MAYBE))
        return None

    def fail(self, n, t0, how, text):
        self.wl.stats.error(self.kind, text)
        self.records.append((n, t0, time.monotonic(), how))

    def unwatch(self):
        self.wl.stats.sent(self.kind, 1)
        r = self.conn.call(("UNWATCH",))[0]
        if is_err(r):
            self.wl.stats.error(self.kind, f"UNWATCH: {r}")


class Producer(Worker):
    """RPUSH j:n to queue j (popped by Consumer j)."""
    kind = "producer"
    rate = 20.0

    def step(self):
        self.seq += 1
        n = self.seq
        t0 = time.monotonic()
        self.judged_write(("RPUSH", f"soak:q:{self.idx}", f"{self.idx}:{n}"),
                          lambda r: isinstance(r, int) and r >= 1,
                          lambda how: self.records.append((n, t0, time.monotonic(), how)))


class Consumer(Worker):
    """BLPOP of its own queue with a 1 or 2 s timeout: nil, or
    [its queue, j:n] with n growing. It may wait longer for a master or a
    PAUSE, and on a lease fallen silent the proxy ends it at its timeout
    plus reply_timeout (10s); a reply later than that is counted, none
    within 20 s is a hang."""
    kind = "blpop"
    rate = 1000.0                     # back to back: BLPOP is the pacing
    timeout = 20.0
    late = 12.0                       # reply_timeout, and 2 s to spare

    def __init__(self, wl, idx):
        super().__init__(wl, idx)
        self.popped = []              # (n, t0, t1)
        self.maybe_pops = []          # (t0, t1): a BLPOP whose reply was lost

    def step(self):
        secs = self.rng.choice((1, 2))
        t0 = time.monotonic()
        self.wl.stats.sent(self.kind, 1)
        try:
            r = self.conn.call(("BLPOP", f"soak:q:{self.idx}", secs))[0]
        except Lost as e:
            self.maybe_pops.append((t0, time.monotonic()))
            if "no reply" in str(e):
                self.wl.stats.error(self.kind, f"BLPOP q {secs}: no reply within 20s (hung)")
            raise
        t1 = time.monotonic()
        if t1 - t0 > secs + self.late:
            self.wl.stats.error(self.kind, f"BLPOP q {secs}: answered {t1 - t0 - secs:.0f}s "
                                "after its timeout")
        if is_err(r):
            self.wl.stats.error(self.kind, f"BLPOP: {r}")
            if outcome(str(r)) == MAYBE:
                self.maybe_pops.append((t0, t1))
            self.wl.stopping.wait(0.05)
            return
        if r is None:
            return
        key = f"soak:q:{self.idx}".encode()
        item = r[1] if isinstance(r, list) and len(r) == 2 else b""
        j, _, n = item.decode(errors="replace").partition(":")
        if r[0] != key or j != str(self.idx) or not n.isdigit():
            self.wl.stats.mismatch(self.kind, "BLPOP reply", repr(r)[:200])
            return
        self.popped.append((int(n), t0, t1))


class Publisher(Worker):
    """PUBLISH k:n on subscriber k's channel."""
    kind = "publish"
    rate = 20.0

    def step(self):
        self.seq += 1
        n = self.seq
        self.judged_write(("PUBLISH", Subscriber.channel(self.idx), f"{self.idx}:{n}"),
                          lambda r: isinstance(r, int) and r >= 0,
                          lambda how: self.records.append((n, how)))


class Subscriber(Worker):
    """SUBSCRIBE (even k) or PSUBSCRIBE (odd k) to its own channel, then
    messages only of it, k:n with n growing (pub/sub delivers at most
    once; gaps while it reconnects are fine), and PING answered with
    [pong, ""] between them."""
    kind = "subscriber"
    rate = 1000.0
    timeout = 10.0

    @staticmethod
    def channel(k):
        return f"soak:ch:{k}" if k % 2 == 0 else f"soak:pch:{k}:x"

    def __init__(self, wl, idx):
        super().__init__(wl, idx)
        self.received = []            # (n, t)
        self.pings_out = 0
        self.last_n = 0

    def on_connect(self):
        k = self.idx
        cmd = ("SUBSCRIBE", self.channel(k)) if k % 2 == 0 else ("PSUBSCRIBE", f"soak:pch:{k}:*")
        self.wl.stats.sent(self.kind, 1)
        r = self.conn.call(cmd)[0]
        want = [cmd[0].lower().encode(), cmd[1].encode(), 1]
        if r != want:
            if is_err(r):
                self.wl.stats.error(self.kind, f"{cmd[0]}: {r}")
            else:
                self.wl.stats.mismatch(self.kind, f"{cmd[0]} reply", repr(r)[:200])
            raise Lost(f"{cmd[0]} refused")
        self.pings_out = 0

    def step(self):
        try:
            m = self.conn.read(timeout=1.0)
        except Lost as e:
            if "no reply" not in str(e):
                raise
            if self.pings_out >= 5:
                raise Lost("5 PINGs unanswered in subscribed mode") from e
            self.wl.stats.sent(self.kind, 1)
            self.conn.send(("PING",))
            self.pings_out += 1
            return
        k = self.idx
        if m == [b"pong", b""] and self.pings_out:
            self.pings_out -= 1
            return
        if is_err(m):
            self.wl.stats.error(self.kind, f"message: {m}")
            return
        if k % 2 == 0:
            good = isinstance(m, list) and len(m) == 3 and m[:2] == [b"message", self.channel(k).encode()]
        else:
            good = (isinstance(m, list) and len(m) == 4 and
                    m[:3] == [b"pmessage", f"soak:pch:{k}:*".encode(), self.channel(k).encode()])
        data = m[-1] if good else b""
        j, _, n = data.decode(errors="replace").partition(":")
        if not good or j != str(k) or not n.isdigit():
            self.wl.stats.mismatch(self.kind, "message", repr(m)[:200])
            return
        n = int(n)
        if n <= self.last_n:
            self.wl.stats.mismatch(self.kind, "message again or out of order",
                                   f"{n} after {self.last_n}")
        self.last_n = max(self.last_n, n)
        self.received.append((n, time.monotonic()))


class Workload:
    """All the workers: started together, stopped together."""

    def __init__(self, port, seed, preloaded, writers=6, readers=4, txs=2, queues=2, subs=2):
        self.port, self.seed, self.preloaded = port, seed, preloaded
        self.stats = Stats()
        self.stopping = threading.Event()
        self.writers = [Writer(self, i) for i in range(writers)]
        self.readers = [Reader(self, i) for i in range(readers)]
        self.txs = [Transactor(self, i) for i in range(txs)]
        self.producers = [Producer(self, i) for i in range(queues)]
        self.consumers = [Consumer(self, i) for i in range(queues)]
        self.publishers = [Publisher(self, i) for i in range(subs)]
        self.subscribers = [Subscriber(self, i) for i in range(subs)]
        self.all = (self.writers + self.readers + self.txs + self.producers + self.consumers +
                    self.publishers + self.subscribers)

    def connections(self):
        return len(self.all)

    def start(self):
        for w in self.subscribers + self.consumers:
            w.start()
        for w in self.all:
            if not w.is_alive():
                w.start()
        return self

    def connected(self):
        return all(w.conn is not None for w in self.all)

    def stop(self):
        self.stopping.set()
        for w in self.all:
            w.join(30)
        return [w.name for w in self.all if w.is_alive()]

    def crashes(self):
        return [(w.name, w.crashed) for w in self.all if w.crashed]
