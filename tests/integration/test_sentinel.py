"""Sentinel: a real master, two replicas and three sentinels (quorum 2,
down-after 1000 ms, failover-timeout 5000 ms). The master is killed or
paused under write load; the proxy follows the sentinels, never
acknowledges a write from a deposed master, and holds writes meanwhile.

Figures (switch to stable writes, errors, lost writes) are printed; run
with -s to see them."""
import signal
import threading
import time

import pytest
import redis

from helpers import SLOW, Load, Sampler, nodes, resp_cmd, resp_read, wait_until


class Topology:
    down_after = 1000                # sentinel down-after-milliseconds
    def __init__(self, env, nsentinels=3, tls=None):
        """tls: the tls= dict of TLS-only servers and sentinels (test_tls);
        the sidecar then gets tls_upstream."""
        self.env = env
        self.tls = tls
        self.master = env.redis("master", args=self.redis_args(), tls=tls)
        self.replicas = [env.redis(f"replica{i}", args=self.redis_args() +
                                   ["--replicaof", "127.0.0.1", str(self.master.port)], tls=tls)
                         for i in range(2)]
        self.sentinels = [env.sentinel(self.master, down_after=self.down_after, tls=tls)
                          for _ in range(nsentinels)]
        for r in self.replicas:
            wait_until(lambda: r.client().info("replication")["master_link_status"] == "up",
                       what="replica in sync")

        def discovered():
            for s in self.sentinels:
                m = dict(zip(*[iter(s.client().execute_command("SENTINEL", "MASTER",
                                                               "mymaster"))] * 2))
                if int(m[b"num-slaves"]) != 2 or int(m[b"num-other-sentinels"]) != nsentinels - 1:
                    return False
            return True
        wait_until(discovered, timeout=15, what="sentinels know the replicas and each other")

    def redis_args(self):
        return []

    def all_nodes(self):
        return [self.master] + self.replicas

    def by_port(self, port):
        return next(n for n in self.all_nodes() if n.port == port)

    def sentinel_master(self):
        for s in self.sentinels:
            try:
                return s.master_addr()
            except redis.RedisError:
                continue
        return None

    def sidecar(self, sentinels=None, **sections):
        sentinels = self.sentinels if sentinels is None else sentinels
        up = sections.setdefault("upstream", {})
        if self.tls:
            for k, v in {"tls": "on", "tls_ca_file": self.tls["ca"]}.items():
                up.setdefault(k, v)
        up.setdefault("sentinels", ", ".join(f"127.0.0.1:{s.port}" for s in sentinels))
        up.setdefault("master_name", "mymaster")
        return self.env.sidecar(None, **sections)


@pytest.fixture
def topo(env):
    return Topology(env)


def writes(sc, prefix="w"):
    """The write load: 4 clients, each running 100 writes/s (SET of a
    unique key, then INCR of its own counter, alternately), every call
    recorded; a client whose connection fails records it and reconnects."""
    def op(c, i, seq):
        if seq % 2 == 0:
            return c.set(f"{prefix}{i}:{seq}", "v")
        return c.incr(f"{prefix}{i}:ctr")
    load = Load(op, n=4, port=sc.port, rate=100, reconnect="record", socket_timeout=30)
    load.prefix = prefix
    return load.start()


def written_key(load, call):
    i = call.client
    return f"{load.prefix}{i}:{call.seq}" if call.seq % 2 == 0 else f"{load.prefix}{i}:ctr"


def lost_on(load, node, after):
    """Acknowledged writes started after `after` that `node` lacks: SET keys
    missing, or a counter below the last value INCR returned."""
    c = node.client()
    acked = load.ok(after=after)
    lost = [written_key(load, r) for r in acked if r.seq % 2 == 0 and not c.exists(written_key(load, r))]
    last = {}
    for r in acked:
        if r.seq % 2:
            k = written_key(load, r)
            last[k] = max(last.get(k, 0), r.value)
    for key, v in last.items():
        if int(c.get(key) or 0) < v:
            lost.append(f"{key} < {v}")
    return lost


def reads(sc):
    """A client reading one key through the proxy, 200 times a second."""
    def op(c, *_):
        assert c.get("readme") == b"x"
    return Load(op, port=sc.port, rate=200, socket_timeout=30).start()


def wait_confirmed(sc, addr=None):
    def ok():
        n = nodes(sc)
        return n["master"] != "none" and (addr is None or n["master"] == addr)
    try:
        wait_until(ok, timeout=10, what="a confirmed master")
    except AssertionError:
        raise AssertionError(f"no confirmed master {addr}: {nodes(sc)}\n" +
                             "\n".join(sc.log().splitlines()[-60:]))
    return nodes(sc)["master"]


def wait_follows(sc, topo):
    """Until the proxy's master is the one the sentinels name now (after a
    failover; Sentinel may fail over twice in a row)."""
    def follows():
        m = topo.sentinel_master()
        return m is not None and nodes(sc)["master"] == f"{m[0]}:{m[1]}"
    wait_until(follows, timeout=20, what="the proxy follows the sentinels")


class Switches:
    """Watches what the sentinels name master, from before the fault: a
    list of (monotonic time, (host, port)). Sentinel sometimes fails over
    twice in a row (the new master flagged down at once on a busy box):
    the proxy must follow each one."""

    def __init__(self, topo):
        self.topo = topo
        self.initial = (time.monotonic(), topo.sentinel_master())
        self.sampler = Sampler(topo.sentinel_master, interval=0.01, changes_only=True).start()

    @property
    def seen(self):
        out = [self.initial]
        for t, a in list(self.sampler.samples):
            if a and a != out[-1][1]:        # None: no sentinel answered that time
                out.append((t, a))
        return out

    def first(self, timeout=20):
        wait_until(lambda: len(self.seen) > 1, timeout=timeout, what="a failover")
        return self.seen[1]

    def stop(self):
        """Waits until all sentinels agree and that master is in the
        list; returns it."""
        def agreed():
            addrs = {s.master_addr() for s in self.topo.sentinels}
            return len(addrs) == 1 and addrs.pop()
        final = wait_until(agreed, timeout=15, what="sentinels agree")
        wait_until(lambda: self.seen[-1][1] == final, what="the last switch recorded")
        self.sampler.stop()
        return final

    def times(self):
        return [t for t, _ in self.seen[1:]]


def check_failover(load, fault_t, switches, new_master, what):
    errors = load.errors()
    times = switches.times()
    # A write that waited (held for a master) is answered when the proxy
    # confirms the next master: measured from that switch.
    # (Negative: the proxy learnt of it before the test's 10 ms poll did.)
    recovered = -1.0
    for r in load.all():
        if r.t1 - r.t0 > 0.2:
            after = [t for t in times if t >= r.t0 - 0.2]
            assert after, f"a write waited {r.t1 - r.t0:.2f}s with no failover: {r}"
            recovered = max(recovered, r.t1 - after[0])
    # Sentinel sometimes deposes the master it just promoted (a busy box
    # misses its PINGs): what that short-lived master acknowledged before
    # its replicas had it is lost by Redis's asynchronous replication, not
    # by the proxy. Then only writes sent once the last master was known
    # must all be there.
    lost = lost_on(load, new_master, fault_t if len(times) == 1 else times[-1])
    if len(times) > 1:
        print(f"{len(times)} failovers: {len(lost_on(load, new_master, fault_t))} writes "
              "acknowledged by an intermediate master are not on the last one")
    acked_after = len(load.ok(after=fault_t))
    print(f"\n{what}: {len(times)} failover(s), the first {times[0] - fault_t:.2f}s after "
          f"the fault; held writes answered {recovered:+.3f}s from the switch; "
          f"{len(load.all())} writes, {len(errors)} errors, {acked_after} acknowledged "
          f"after the fault, {len(lost)} lost")
    for e in errors:
        print(f"  error: started {e.t0 - fault_t:+.3f}s, answered {e.t1 - fault_t:+.3f}s "
              f"after the fault: {e.value}")
    # Only writes in flight on a deposed master's links fail (written there
    # before its switch: a paused master still takes bytes into its socket
    # buffer); each client had at most one per switch.
    assert len(errors) <= load.n * len(times), errors
    assert all(e.t0 < times[-1] for e in errors), errors
    assert all("may or may not" in str(e.value) for e in errors), errors
    # Writes are stable within 1 s of the switch (3x margin).
    assert recovered < 3.0, recovered
    assert not lost, lost[:10]


def test_master_killed_under_writes(env, topo):
    master_killed_under_writes(topo)


def master_killed_under_writes(topo):
    """The master SIGKILLed under 4 writers and a reader (test_tls runs
    it over TLS)."""
    sc = topo.sidecar()
    old = wait_confirmed(sc, f"127.0.0.1:{topo.master.port}")
    topo.master.client().set("readme", "x")
    wait_until(lambda: all(r.client().get("readme") == b"x" for r in topo.replicas),
               what="replicated")
    reader = reads(sc)
    load = writes(sc)
    load.wait_ok(20, each=True)
    reader.wait_ok(20)
    before = int(sc.info()["reads_to_replicas"])
    switches = Switches(topo)
    fault_t = time.monotonic()
    topo.master.stop(signal.SIGKILL)
    switches.first()
    # the proxy follows; writes go on there, reads on replicas
    confirmed = time.monotonic()
    wait_follows(sc, topo)
    load.wait_ok(20, each=True, after=confirmed)
    reader.wait_ok(20, after=confirmed)
    wait_until(lambda: sc.counter("reads_to_replicas") > before, what="reads on replicas")
    during = int(sc.info()["reads_to_replicas"]) - before
    load.stop()
    reader.stop()
    new = switches.stop()
    new_master = topo.by_port(new[1])
    wait_confirmed(sc, f"127.0.0.1:{new[1]}")
    check_failover(load, fault_t, switches, new_master, "SIGKILL")
    assert old != nodes(sc)["master"]
    # Reads kept flowing, from replicas too, without an error.
    print(f"reads: {len(reader.ok())} answered, {during} by replicas during the failover, "
          f"{len(reader.errors())} errors")
    assert not reader.errors(), reader.error_texts()[:5]
    assert during > 0
    # one switch per master the sentinels named; in a double failover the
    # middle master may be deposed before the proxy confirmed it by ROLE,
    # and the proxy goes straight to the last one
    named = len(switches.times())
    got = int(nodes(sc)["master_switches"])
    assert got == named if named == 1 else 1 <= got <= named, (got, named)
    # the switch was heard as events too, not only polled
    assert sum(int(s["events"]) for s in nodes(sc)["sentinel"]) > 0
    assert "master is now 127.0.0.1:%d" % new[1] in sc.log()
    return sc


def test_master_paused_and_resumed_loses_no_acknowledged_write(env, topo):
    sc = topo.sidecar()
    wait_confirmed(sc, f"127.0.0.1:{topo.master.port}")
    topo.master.client().set("readme", "x")
    load = writes(sc, prefix="p")
    reader = reads(sc)
    load.wait_ok(20, each=True)
    reader.wait_ok(20)
    old = topo.master
    switches = Switches(topo)
    fault_t = time.monotonic()
    old.proc.send_signal(signal.SIGSTOP)
    switches.first()
    # Resumed once the proxy follows the new master and writes go there,
    # it believes it is master for a while (until a sentinel converts it):
    # nothing may be written there, while the writes go on.
    confirmed = time.monotonic()
    wait_follows(sc, topo)
    load.wait_ok(20, each=True, after=confirmed)
    old.proc.send_signal(signal.SIGCONT)
    old_addr = f"127.0.0.1:{old.port}"
    wait_until(lambda: any(n["addr"] == old_addr and n["role"] == "master" and
                           n["use"] != "master" for n in nodes(sc)["node"]),
               what="the proxy sees the old master claim it is one")
    # 300 writes each (3 s) while it does
    load.wait_ok(300, each=True, after=time.monotonic())
    load.stop()
    new = switches.stop()
    new_master = topo.by_port(new[1])
    wait_confirmed(sc, f"127.0.0.1:{new[1]}")
    check_failover(load, fault_t, switches, new_master, "SIGSTOP")
    # The old master, once a replica again and caught up, takes reads.
    wait_until(lambda: old.client().info("replication")["role"] == "slave" and
               old.client().info("replication")["master_link_status"] == "up",
               timeout=40, what="old master converted to a replica")
    wait_until(lambda: any(n["addr"] == old_addr and n["use"] == "replica"
                           for n in nodes(sc)["node"]), timeout=10,
               what="old master eligible for reads")
    reader.stop()
    assert not reader.errors(), reader.error_texts()[:5]
    gets = old.client().info("commandstats").get("cmdstat_get", {}).get("calls", 0)
    c = sc.client()
    for _ in range(200):
        assert c.get("readme") == b"x"
    after = old.client().info("commandstats").get("cmdstat_get", {}).get("calls", 0)
    assert after > gets, (gets, after)
    # It never got a write from the proxy after the fault: its counters of
    # SET/INCR calls stopped, its data is the new master's (once it has
    # all of it).
    wait_until(lambda: old.repl_offset() >= new_master.repl_offset(), what="old caught up")
    assert not lost_on(load, old, fault_t)


class LoadingTopology(Topology):
    # The master is killed and restarted: if the sentinels' last PING
    # answer came just under 1 s before, they could not reach the new
    # process (and get its -LOADING, an answer they accept) within 1 s and
    # would fail over; these tests want the restarted master kept.
    down_after = 5000

    def redis_args(self):
        # Loading 2,000 keys takes about 2 s, answering -LOADING meanwhile.
        return ["--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024"]


def loading_topology(env, keys):
    """A topology whose master, once restarted, loads `keys` keys for
    about keys/1000 seconds."""
    topo = LoadingTopology(env)
    pipe = topo.master.client().pipeline(transaction=False)
    for i in range(keys):
        pipe.set(f"fill{i}", "v")
    pipe.execute()
    topo.master.client().save()
    return topo


def restart_loading(m):
    m.stop(signal.SIGKILL)
    m.start(wait=False)
    wait_until(lambda: m.client().info("persistence")["loading"] == 1, what="loading")


def test_loading_master_is_waited_for_not_shown(env):
    topo = loading_topology(env, 2000)
    m = topo.master
    sc = topo.sidecar(routing={"read_from": "master"})
    wait_confirmed(sc, f"127.0.0.1:{m.port}")
    load = writes(sc, prefix="l")
    load.wait_ok(20, each=True)
    fault_t = time.monotonic()
    restart_loading(m)
    wait_until(lambda: m.client().ping(), timeout=15, what="loaded")
    loaded = time.monotonic()
    load.wait_ok(20, each=True, after=loaded)         # writes go on there
    load.stop()
    errors = load.errors()
    info = sc.info()
    print(f"\nLOADING: {len(load.all())} writes, {len(errors)} errors, "
          f"{info['master_refusals_held']} -LOADING replies held and resent")
    # Only what was in flight when it died fails, one per client at most.
    assert not any("LOADING" in str(e.value) for e in errors), errors
    assert all("may or may not" in str(e.value) for e in errors), errors
    assert len({e.client for e in errors}) == len(errors), errors
    assert int(info["master_refusals_held"]) > 0
    assert topo.sentinel_master() == ("127.0.0.1", m.port)      # no failover
    assert not lost_on(load, m, fault_t)


def test_no_master_writes_wait_failover_wait_then_a_clear_error(env, topo):
    for s in topo.sentinels:
        s.stop()
    sc = topo.sidecar(routing={"failover_wait": "2s"}, health={"check_interval": "250ms"})
    c = sc.client()
    t0 = time.monotonic()
    with pytest.raises(redis.ResponseError) as e:
        c.set("k", "v")
    waited = time.monotonic() - t0
    assert "no master confirmed within failover_wait (2s)" in str(e.value)
    assert "no sentinel has named the master yet" in str(e.value)
    assert 1.9 < waited < 6 * SLOW, waited
    assert "no sentinel answers: keeping the last known topology" in sc.log()
    # A write that arrives meanwhile waits, and goes through once a
    # sentinel answers.
    write = Load(lambda c, *_: c.set("k2", "v"), connect=lambda _: c, iterations=1).start()
    wait_until(lambda: nodes(sc)["requests_held_now"] == "1", what="the write held")
    topo.sentinels[1].start()
    assert write.join(10)
    assert [r.value for r in write.all()] == [True]
    assert topo.master.client().get("k2") == b"v"
    wait_until(lambda: "sentinels answer again" in sc.log(), what="log line")


def test_sentinel_down_at_start_then_all_down_keeps_the_last_topology(env, topo):
    down = topo.sentinels[2]
    down.stop()
    sc = topo.sidecar()
    wait_confirmed(sc, f"127.0.0.1:{topo.master.port}")
    # the first sentinel to answer names the master; the other live one is
    # "up" once its own poll has been answered, which may be a moment later
    def states():
        return {s["addr"]: s["state"] for s in nodes(sc)["sentinel"]}
    wait_until(lambda: list(states().values()).count("up") == 2, what="two sentinels up")
    assert states()[f"127.0.0.1:{down.port}"] == "down"
    assert f"sentinel 127.0.0.1:{down.port}: connect: Connection refused" in sc.log()
    replicas = {f"127.0.0.1:{r.port}" for r in topo.replicas}
    wait_until(lambda: {x["addr"] for x in nodes(sc)["node"] if x["use"] == "replica"} == replicas,
               what="replicas eligible")
    assert "no sentinel answers" not in sc.log()
    for s in topo.sentinels[:2]:
        s.stop()
    wait_until(lambda: nodes(sc)["sentinels_up"] == "0", what="sentinels seen down")
    assert "no sentinel answers: keeping the last known topology" in sc.log()
    c = sc.client()
    for i in range(300):
        assert c.set(f"k{i}", i)
        assert c.get(f"k{i}") == str(i).encode()
    n = nodes(sc)
    assert n["master"] == f"127.0.0.1:{topo.master.port}"
    assert n["sentinels_up"] == "0"
    assert {x["addr"] for x in n["node"] if x["use"] == "replica"} == replicas
    for s in topo.sentinels:
        s.start()
    wait_until(lambda: nodes(sc)["sentinels_up"] == "3", what="sentinels back")
    assert "sentinels answer again" in sc.log()
    assert c.set("after", 1)


def test_loading_longer_than_failover_wait_gets_the_error_in_time(env):
    topo = loading_topology(env, 3000)
    m = topo.master
    sc = topo.sidecar(routing={"read_from": "master", "failover_wait": "1s"})
    wait_confirmed(sc, f"127.0.0.1:{m.port}")
    restart_loading(m)
    c = sc.client()
    t0 = time.monotonic()
    with pytest.raises(redis.ResponseError) as e:
        c.set("x", "1")
    waited = time.monotonic() - t0
    # Refused and sent again several times, its wait still counts from
    # the first time it waited.
    assert "no master confirmed within failover_wait (1s)" in str(e.value)
    assert 0.9 < waited < 3 * SLOW, waited
    assert m.client().info("persistence")["loading"] == 1 or waited < 2


def leased_calls(sc):
    """A transaction, a BLPOP (of an item already there) and a SUBSCRIBE,
    each from its own client and thread; returns a function that joins them and gives
    {name: reply or the error}."""
    out = {}

    def run(name, fn):
        try:
            out[name] = fn(sc.client(socket_timeout=30))
        except redis.RedisError as e:
            out[name] = e

    def tx(c):
        p = c.pipeline(transaction=True)
        p.set("tx-key", "1").incr("tx-n")
        return p.execute()
    def subscribe(c):
        ps = c.pubsub()
        ps.subscribe("leased-ch")
        m = ps.get_message(timeout=20)
        return m and (m["type"], m["data"])
    threads = [threading.Thread(target=run, args=a) for a in
               (("multi", tx), ("blpop", lambda c: c.blpop("leased-q", 5)),
                ("subscribe", subscribe))]
    for t in threads:
        t.start()

    def join():
        for t in threads:
            t.join(30)
        return out
    return join


def test_leases_taken_as_the_master_dies_wait_for_the_failover(env, topo):
    """MULTI, BLPOP and SUBSCRIBE sent just after the master is killed wait
    for the new master as plain writes do, instead of failing with
    'dedicated connection lost (connect: Connection refused)' or a close
    (found by the chaos soak): a lease that dies before it is ready ran
    nothing."""
    sc = topo.sidecar(routing={"failover_wait": "15s"})
    wait_confirmed(sc, f"127.0.0.1:{topo.master.port}")
    topo.master.client().rpush("leased-q", "item")
    wait_until(lambda: all(r.client().llen("leased-q") == 1 for r in topo.replicas),
               what="replicated")
    topo.master.stop(signal.SIGKILL)
    got = leased_calls(sc)()
    assert got == {"multi": [True, 1], "blpop": (b"leased-q", b"item"),
                   "subscribe": ("subscribe", 1)}, got
    new = nodes(sc)["master"]             # the calls went there
    assert new not in ("none", f"127.0.0.1:{topo.master.port}")
    assert topo.by_port(int(new.rsplit(":", 1)[1])).client().get("tx-key") == b"1"


def test_leases_on_a_loading_master_wait_for_it(env):
    """A restarted master loading its data answers a lease's MULTI (and
    queues nothing) or BLPOP with -LOADING; they wait for the load to end,
    as plain requests do (found by the chaos soak)."""
    topo = loading_topology(env, 2000)
    m = topo.master
    m.client().rpush("leased-q", "item")
    m.client().save()
    sc = topo.sidecar(routing={"read_from": "master", "failover_wait": "15s"})
    wait_confirmed(sc, f"127.0.0.1:{m.port}")
    restart_loading(m)
    got = leased_calls(sc)()
    assert got == {"multi": [True, 1], "blpop": (b"leased-q", b"item"),
                   "subscribe": ("subscribe", 1)}, got
    assert m.client().info("persistence")["loading"] == 0
    assert topo.sentinel_master() == ("127.0.0.1", m.port)      # no failover


def test_a_second_loading_gets_a_whole_wait_again(env):
    """One client's transaction waits through a load, then through a
    second one soon after: its wait starts afresh (found in review: the
    first wait's start was kept, and the second transaction failed)."""
    topo = loading_topology(env, 2000)
    m = topo.master
    sc = topo.sidecar(routing={"read_from": "master", "failover_wait": "3s"})
    wait_confirmed(sc, f"127.0.0.1:{m.port}")
    s = sc.raw(timeout=30)
    f = s.makefile("rb")
    tx = (resp_cmd("MULTI") + resp_cmd("SET", "tx-key", "1") + resp_cmd("INCR", "tx-n") +
          resp_cmd("EXEC"))
    for _ in range(2):
        restart_loading(m)                 # from the same dump: tx-n starts at 0 again
        s.sendall(tx)
        got = [resp_read(f) for _ in range(4)]
        assert got == [b"OK", b"QUEUED", b"QUEUED", [b"OK", 1]], got


def test_held_requests_expiring_while_their_client_is_closed(env, topo):
    for s in topo.sentinels:
        s.stop()
    sc = topo.sidecar(routing={"failover_wait": "1s"}, clients={"max_output_buffer": "8kb"},
                      health={"check_interval": "250ms"})
    # SET a waits; GETNAME's 8,100-byte reply waits behind it; when SET a
    # expires, both go out at once, over 8kb: the client is closed while
    # the proxy answers its other expired requests.
    s = sc.raw()
    s.sendall(resp_cmd("CLIENT", "SETNAME", "n" * 8100) + resp_cmd("SET", "a", "1") +
              resp_cmd("CLIENT", "GETNAME") + b"".join(resp_cmd("SET", k, "1") for k in "bcd"))
    wait_until(lambda: int(sc.info()["requests_held_failed"]) >= 1, what="expiry")
    sc.wait_log("output buffer over 8192 bytes")
    assert sc.alive()
    assert nodes(sc)["requests_held_now"] == "0"


def test_upstream_user_without_role_takes_the_sentinels_word(env, topo):
    for n in topo.all_nodes():
        n.client().execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*",
                                   "+@all", "-@admin")
    sc = topo.sidecar(upstream={"username": "app", "password": "pw"})
    wait_confirmed(sc, f"127.0.0.1:{topo.master.port}")
    c = sc.client()
    assert c.set("k", "v") and c.get("k") == b"v"
    assert "ROLE is not permitted" in sc.log()


def test_readonly_from_a_demoted_master_is_held_and_resent(env, topo):
    """The master is made a replica behind the sentinels' back for a
    second, then master again: writes meanwhile answered READONLY did not
    run; clients never see READONLY, their writes run once it is back."""
    x, z = topo.master, topo.replicas[0]
    # Checks far apart (and no read-your-writes sampling), so that a write
    # meets the demotion before a ROLE does.
    sc = topo.sidecar(health={"check_interval": "10s"},
                      routing={"read_from": "master", "read_your_writes": "off"})
    wait_confirmed(sc, f"127.0.0.1:{x.port}")
    load = writes(sc, prefix="r")
    load.wait_ok(20, each=True)
    z.client().execute_command("REPLICAOF", "NO", "ONE")
    x.client().execute_command("REPLICAOF", "127.0.0.1", str(z.port))
    wait_until(lambda: x.client().info("replication")["master_link_status"] == "up",
               what="x a replica of z")
    demoted_t = time.monotonic()
    # demoted until writes have met it: refused, held
    wait_until(lambda: sc.counter("master_refusals_held") > 0, what="READONLY held")
    x.client().execute_command("REPLICAOF", "NO", "ONE")
    z.client().execute_command("REPLICAOF", "127.0.0.1", str(x.port))
    wait_confirmed(sc, f"127.0.0.1:{x.port}")
    load.wait_ok(20, each=True, after=time.monotonic())  # writes go on there
    load.stop()
    errors = load.errors()
    info = sc.info()
    print(f"\nREADONLY: {len(load.all())} writes, {len(errors)} errors, "
          f"{info['master_refusals_held']} refusals held and resent")
    assert int(info["master_refusals_held"]) > 0
    assert not any("READONLY" in str(e.value) for e in errors), errors
    # Only what was on the wire when the proxy saw the demotion.
    assert all("may or may not" in str(e.value) for e in errors), errors
    assert len({e.client for e in errors}) == len(errors), errors
    # Held writes ran on x once it was master again (what x acknowledged
    # before z's copy replaced its data is the test's own split brain).
    assert not lost_on(load, x, demoted_t)
    assert load.slowest() < 3 * SLOW


def test_a_lease_kept_by_a_pool_size_reload_follows_a_failover(env, topo):
    """A client in another database keeps its lease on the old links after
    a pool-size reload; when the sentinels depose that master, the lease
    goes too, so its next write lands on the new master, not the old."""
    sc = topo.sidecar(pool={"reply_timeout": "30s"})
    old = wait_confirmed(sc, f"127.0.0.1:{topo.master.port}")
    c = sc.client(db=3)
    c.set("x", "0")                                     # SELECT 3: a lease
    sc.cfg["pool"]["connections"] = "3"
    sc.write_ini()
    assert sc.client().execute_command("PROXY", "RELOAD") == \
        b"reloaded; changed in place: upstream links"
    assert nodes(sc)["retiring"][0]["leases_kept"] == "1"
    topo.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", "mymaster")
    wait_until(lambda: nodes(sc)["master"] not in ("none", old), timeout=20,
               what="the new master confirmed")
    new = nodes(sc)["master"]
    deposed = topo.by_port(int(old.rsplit(":", 1)[1]))
    wait_until(lambda: not deposed.links("sidecar-lease"), what="the kept lease closed")
    c.set("x", "1")                                     # redis-py reconnects if closed
    node = topo.by_port(int(new.rsplit(":", 1)[1]))
    assert node.client(db=3).get("x") == b"1"
    wait_until(lambda: not nodes(sc)["retiring"], what="the old links gone")


def test_a_lease_waiting_for_a_master_that_comes_back_up_goes_on(env, topo):
    # The proxy marks the master down (two checks 100 ms apart) well before
    # the sentinels would (down-after 1 s): a MULTI then waits for it, and
    # goes on as soon as its checks pass again, not at failover_wait.
    sc = topo.sidecar(health={"check_interval": "100ms", "down_after": "2"},
                      routing={"failover_wait": "5s"})
    m = topo.master
    wait_confirmed(sc, f"127.0.0.1:{m.port}")
    c = sc.client()
    result = {}

    def transaction():
        p = c.pipeline(transaction=True)
        p.set("after-down", 1)
        result["reply"] = p.execute()
        result["at"] = time.monotonic()

    m.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: f"node 127.0.0.1:{m.port} is down" in sc.log(), what="master down")
        t = threading.Thread(target=transaction)
        t.start()
        wait_until(lambda: b"cmd=multi" in sc.client().execute_command("PROXY", "CLIENT", "LIST"),
                   what="the MULTI waiting")
    finally:
        m.proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    t.join(10 * SLOW)
    assert result.get("reply") == [True]
    assert result["at"] - resumed < 2 * SLOW, result["at"] - resumed
