"""After the run: every acknowledged write on the final master, none
twice, nothing the proxy said never ran present, and what is missing
split between the proxy and Redis's asynchronous replication.

Redis acknowledges a write before its replicas have it. When a replica
is promoted, it has the old master's stream up to an offset (INFO
second_repl_offset - 1, recorded by cluster.py at the promotion); the old
master's offset was sampled every 20 ms. A write acknowledged before a
sample at or under that offset is on the new master; one acknowledged
later, until the proxy stopped using the old master, may be lost by
Redis itself: a window. A missing write acknowledged outside every window
is lost unexplained, and fails the run. (The failover tests of
tests/integration/test_sentinel.py count writes of a short-lived
intermediate master apart in the same way.)"""
import collections

from workload import NOT_RUN, OK

# The proxy follows the sentinels within a check interval or at their
# event; a write acknowledged by the old master later than this after
# the sentinels named the new one is the proxy's, not Redis's.
MAX_FOLLOW = 10.0


class Window:
    def __init__(self, old, new, start, promoted, named, end):
        self.old, self.new = old, new
        self.start, self.promoted, self.named, self.end = start, promoted, named, end
        self.lost = 0                 # acknowledged writes it explains

    def covers(self, t0, t1):
        """Whether a request sent at t0 and answered at t1 may have been
        acknowledged by the old master after what the new one took."""
        return t1 >= self.start and t0 <= self.end


def windows(topo):
    """The windows of the promotions the sentinels went on with, and the
    promotions they aborted (the old master stayed: nothing to lose)."""
    out, aborted = [], []
    for new in topo.nodes:
        for promoted, took in new.promotions:
            named = next((t for t, m in topo.sentinel_view
                          if m == new.addr and promoted - 1 <= t <= promoted + 30), None)
            if named is None:
                aborted.append((new.name, promoted))
                continue
            old_addr, left = proxy_master_at(topo, promoted, named + MAX_FOLLOW)
            old = topo.node(old_addr)
            if old is None or old is new:
                continue
            ms = [s for s in old.samples if s[2] == "master" and promoted - 30 <= s[0] <= promoted]
            if not ms:
                continue
            inc = ms[-1][1]
            ms = [s for s in ms if s[1] == inc]
            under = [s[0] for s in ms if s[3] <= took]
            start = max(under) if under else ms[0][0]
            out.append(Window(old.name, new.name, start, promoted, named, left))
    return out, aborted


def proxy_master_at(topo, t, limit):
    """The master the proxy used last at or before t, and when it was
    seen using another (`limit` at the latest)."""
    addr, left = None, None
    for seen, m in topo.proxy_view:
        if seen <= t:
            if m != "none":
                addr, left = m, None
            elif left is None:
                left = seen
        elif left is None and m != addr:
            left = seen
            break
    return addr, min(left or limit, limit)


class Result:
    def __init__(self, t0):
        self.t0 = t0                                # times in examples count from it
        self.acked = collections.Counter()          # per structure
        self.lost = 0
        self.lost_async = 0
        self.lost_with_pop = 0
        self.dup = 0
        self.dup_async = 0
        self.applied_not_run = 0
        self.mismatch = collections.Counter()
        self.examples = []
        self.received = 0

    def note(self, what, detail):
        if len(self.examples) < 40:
            self.examples.append(f"{what}: {detail}")

    def missing(self, wins, t0, t1, detail):
        covering = [w for w in wins if w.covers(t0, t1)]
        if covering:
            self.lost_async += 1
            covering[0].lost += 1
        else:
            self.lost += 1
            self.note("lost", f"{detail} (sent at {t0 - self.t0:.3f}s, acknowledged "
                              f"{t1 - t0:.3f}s later)")

    def twice(self, wins, spans, detail):
        if any(w.covers(t0, t1) for w in wins for t0, t1 in spans):
            self.dup_async += 1
        else:
            self.dup += 1
            self.note("duplicated", detail)


def chunks(xs, n=500):
    for i in range(0, len(xs), n):
        yield xs[i:i + n]


def check(wl, topo, master, t0):
    """master: a redis-py client of the final master; t0: the soak's
    start, for the times in examples."""
    wins, aborted = windows(topo)
    res = Result(t0)
    res.aborted = aborted
    for w in wl.writers:
        check_writer(w, master, wins, res)
    for w in wl.txs:
        check_tx(w, master, wins, res)
    for p, c in zip(wl.producers, wl.consumers):
        check_queue(p, c, master, wins, res)
    for p, s in zip(wl.publishers, wl.subscribers):
        check_messages(p, s, res)
    return res, wins


def as_ints(items):
    return collections.Counter(int(x) for x in items)


def check_writer(w, c, wins, res):
    i = w.idx
    in_list = as_ints(c.lrange(f"soak:w:{i}", 0, -1))
    sent = {r[0] for r in w.records}
    for n in in_list:
        if n not in sent:
            res.mismatch["writer: a number never sent in the list"] += 1
            res.note("unknown item", f"soak:w:{i} holds {n}")
    acked_sets = [r for r in w.records if r[4] == OK]
    not_run_sets = [r for r in w.records if r[4] == NOT_RUN]
    for n, t0, t1, push, _ in w.records:
        judge_item(res, wins, (n, t0, t1, push), in_list, f"soak:w:{i}", "list pushes",
                   f"RPUSH soak:w:{i} {n}")
    for recs, want in ((acked_sets, True), (not_run_sets, False)):
        for part in chunks(recs):
            vals = c.mget([f"soak:k:{i}:{r[0]}" for r in part])
            for r, v in zip(part, vals):
                if want and v != f"v:{i}:{r[0]}".encode():
                    if v is None:
                        res.missing(wins, r[1], r[2], f"SET soak:k:{i}:{r[0]}")
                    else:
                        res.mismatch["writer: a key holds another value"] += 1
                        res.note("wrong value", f"soak:k:{i}:{r[0]} = {v!r}")
                elif not want and v is not None:
                    res.applied_not_run += 1
                    res.note("applied after an error saying it was not", f"SET soak:k:{i}:{r[0]}")
    res.acked["keys set"] += len(acked_sets)
    for t0, t1, n, got in w.ryw:
        if not any(x.covers(t0, t1) for x in wins):
            res.mismatch["writer: GET after its own SET missed it"] += 1
            res.note("read-your-writes", f"GET soak:k:{i}:{n} after SET -> {got!r}")


def judge_item(res, wins, rec, in_list, key, kind, what):
    """One recorded write of a unique number to the list `key`: there once
    if acknowledged (else lost), never twice, absent if said not run."""
    n, t0, t1, how = rec
    k = in_list.get(n, 0)
    if k > 1:
        res.twice(wins, [(t0, t1)], f"{key} holds {n} {k} times")
    if how == OK:
        res.acked[kind] += 1
        if k == 0:
            res.missing(wins, t0, t1, what)
    elif how == NOT_RUN and k:
        res.applied_not_run += 1
        res.note("applied after an error saying it was not", what)


def check_tx(w, c, wins, res):
    i = w.idx
    items = c.lrange(f"soak:tx:{i}", 0, -1)
    ctr = int(c.get(f"soak:txn:{i}") or 0)
    if ctr != len(items):
        res.mismatch["tx: counter and list disagree (half a transaction)"] += 1
        res.note("transaction", f"soak:txn:{i} = {ctr}, soak:tx:{i} has {len(items)}")
    in_list = as_ints(items)
    sent = {r[0] for r in w.records}
    for n in in_list:
        if n not in sent:
            res.mismatch["tx: a number never sent in the list"] += 1
    for rec in w.records:
        judge_item(res, wins, rec, in_list, f"soak:tx:{i}", "transactions",
                   f"transaction {rec[0]} of tx{i}")


def check_queue(p, cons, c, wins, res):
    j = p.idx
    left = collections.Counter()
    for x in c.lrange(f"soak:q:{j}", 0, -1):
        q, _, n = x.decode().partition(":")
        if q != str(j):
            res.mismatch["queue: a foreign item"] += 1
            continue
        left[int(n)] += 1
    pops = collections.defaultdict(list)
    for n, t0, t1 in cons.popped:
        pops[n].append((t0, t1))
    pushed = {r[0]: r for r in p.records}
    for n in set(pops) | set(left):
        if n not in pushed:
            res.mismatch["queue: an item never pushed"] += 1
            res.note("queue", f"soak:q:{j} item {n} never pushed")
    budget = len(cons.maybe_pops)
    for n, t0, t1, how in p.records:
        seen = len(pops.get(n, ())) + left.get(n, 0)
        if seen > 1:
            res.twice(wins, pops.get(n, []) + [(t0, t1)], f"queue item {j}:{n} seen {seen} times")
        if how == OK:
            res.acked["queue items"] += 1
            if seen == 0:
                if any(w.covers(t0, t1) for w in wins):
                    res.missing(wins, t0, t1, "")
                elif budget:
                    budget -= 1
                    res.lost_with_pop += 1
                else:
                    res.missing(wins, t0, t1, f"queue item {j}:{n}")
        elif how == NOT_RUN and seen:
            res.applied_not_run += 1
            res.note("applied after an error saying it was not", f"RPUSH soak:q:{j} {j}:{n}")
    res.received += len(cons.popped)


def check_messages(p, s, res):
    how = dict(p.records)
    for n, _ in s.received:
        if n not in how:
            res.mismatch["pub/sub: a message never published"] += 1
        elif how[n] == NOT_RUN:
            res.applied_not_run += 1
            res.note("applied after an error saying it was not", f"PUBLISH {s.idx}:{n}")
    res.acked["messages published"] += sum(1 for v in how.values() if v == OK)
    res.received += len(s.received)
