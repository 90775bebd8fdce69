"""Sentinel: a real master, two replicas and three sentinels (quorum 2,
down-after 1000 ms, failover-timeout 5000 ms). The master is killed or
paused under write load; the proxy follows the sentinels, never
acknowledges a write from a deposed master, and holds writes meanwhile.

Figures (switch to stable writes, errors, lost writes) are printed; run
with -s to see them."""
import os
import signal
import threading
import time

import pytest
import redis

from helpers import SLOW, nodes, resp_cmd, wait_until


class Topology:
    def __init__(self, env, nsentinels=3):
        self.env = env
        self.master = env.redis("master", args=self.redis_args())
        self.replicas = [env.redis(f"replica{i}", args=self.redis_args() +
                                   ["--replicaof", "127.0.0.1", str(self.master.port)])
                         for i in range(2)]
        self.sentinels = [env.sentinel(self.master) for _ in range(nsentinels)]
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
        up.setdefault("sentinels", ", ".join(f"127.0.0.1:{s.port}" for s in sentinels))
        up.setdefault("master_name", "mymaster")
        return self.env.sidecar(None, **sections)


@pytest.fixture
def topo(env):
    return Topology(env)


class Load:
    """n clients, each running `rate` writes/s (SET of a unique key, then
    INCR of its own counter, alternately), every call recorded as
    (start, end, kind, key, ok, value-or-error)."""

    def __init__(self, port, n=4, rate=100, prefix="w"):
        self.port, self.n, self.rate, self.prefix = port, n, rate, prefix
        self.records = []
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(n)]

    def run(self, i):
        c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=30 * SLOW)
        seq = 0
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            if seq % 2 == 0:
                kind, key = "set", f"{self.prefix}{i}:{seq}"
            else:
                kind, key = "incr", f"{self.prefix}{i}:ctr"
            try:
                v = c.set(key, "v") if kind == "set" else c.incr(key)
                ok = True
            except redis.ConnectionError:
                c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=30 * SLOW)
                ok, v = False, "connection error"
            except redis.RedisError as e:
                ok, v = False, str(e)
            t1 = time.monotonic()
            with self.lock:
                self.records.append((t0, t1, kind, key, ok, v))
            seq += 1
            time.sleep(max(0.0, 1.0 / self.rate - (t1 - t0)))

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(60)

    def errors(self):
        return [r for r in self.records if not r[4]]

    def lost_on(self, node, after):
        """Acknowledged writes started after `after` that `node` lacks:
        SET keys missing, or a counter below the last value INCR returned."""
        c = node.client()
        lost = [r[3] for r in self.records
                if r[4] and r[2] == "set" and r[0] > after and not c.exists(r[3])]
        last = {}
        for r in self.records:
            if r[4] and r[2] == "incr" and r[0] > after:
                last[r[3]] = max(last.get(r[3], 0), r[5])
        for key, v in last.items():
            if int(c.get(key) or 0) < v:
                lost.append(f"{key} < {v}")
        return lost


class Reads:
    """A client reading one key through the proxy, counting errors."""

    def __init__(self, port):
        self.port = port
        self.ok = 0
        self.errors = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=30 * SLOW)
        while not self.stop_flag.is_set():
            try:
                assert c.get("readme") == b"x"
                self.ok += 1
            except (redis.RedisError, AssertionError) as e:
                self.errors.append(repr(e))
            time.sleep(0.005)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_flag.set()
        self.thread.join(60)


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


class Switches:
    """Watches what the sentinels name master, from before the fault: a
    list of (monotonic time, (host, port)). Sentinel sometimes fails over
    twice in a row (the new master flagged down at once on a busy box):
    the proxy must follow each one."""

    def __init__(self, topo):
        self.topo = topo
        self.seen = [(time.monotonic(), topo.sentinel_master())]
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.stop_flag.is_set():
            a = self.topo.sentinel_master()
            if a and a != self.seen[-1][1]:
                self.seen.append((time.monotonic(), a))
            time.sleep(0.01)

    def first(self, timeout=20):
        wait_until(lambda: len(self.seen) > 1, timeout=timeout, what="a failover")
        return self.seen[1]

    def stop(self):
        """Waits until all sentinels agree; returns the final master."""
        def agreed():
            addrs = {s.master_addr() for s in self.topo.sentinels}
            return len(addrs) == 1 and addrs.pop()
        final = wait_until(agreed, timeout=15, what="sentinels agree")
        time.sleep(0.1)
        self.stop_flag.set()
        self.thread.join(10)
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
    for r in load.records:
        if r[1] - r[0] > 0.2:
            after = [t for t in times if t >= r[0] - 0.2]
            assert after, f"a write waited {r[1] - r[0]:.2f}s with no failover: {r}"
            recovered = max(recovered, r[1] - after[0])
    # Sentinel sometimes deposes the master it just promoted (a busy box
    # misses its PINGs): what that short-lived master acknowledged before
    # its replicas had it is lost by Redis's asynchronous replication, not
    # by the proxy. Then only writes sent once the last master was known
    # must all be there.
    lost = load.lost_on(new_master, fault_t if len(times) == 1 else times[-1])
    if len(times) > 1:
        print(f"{len(times)} failovers: {len(load.lost_on(new_master, fault_t))} writes "
              "acknowledged by an intermediate master are not on the last one")
    acked_after = sum(1 for r in load.records if r[4] and r[0] > fault_t)
    print(f"\n{what}: {len(times)} failover(s), the first {times[0] - fault_t:.2f}s after "
          f"the fault; held writes answered {recovered:+.3f}s from the switch; "
          f"{len(load.records)} writes, {len(errors)} errors, {acked_after} acknowledged "
          f"after the fault, {len(lost)} lost")
    for e in errors:
        print(f"  error: started {e[0] - fault_t:+.3f}s, answered {e[1] - fault_t:+.3f}s "
              f"after the fault: {e[5]}")
    # Only writes in flight on a deposed master's links fail (written there
    # before its switch: a paused master still takes bytes into its socket
    # buffer); each client had at most one per switch.
    assert len(errors) <= load.n * len(times), errors
    assert all(e[0] < times[-1] for e in errors), errors
    assert all("may or may not" in str(e[5]) for e in errors), errors
    # Writes are stable within 1 s of the switch (3x margin).
    assert recovered < 3.0, recovered
    assert not lost, lost[:10]


def test_master_killed_under_writes(env, topo):
    sc = topo.sidecar()
    old = wait_confirmed(sc, f"127.0.0.1:{topo.master.port}")
    topo.master.client().set("readme", "x")
    wait_until(lambda: all(r.client().get("readme") == b"x" for r in topo.replicas),
               what="replicated")
    reads = Reads(sc.port).start()
    load = Load(sc.port).start()
    time.sleep(3)
    before = int(sc.info()["reads_to_replicas"])
    switches = Switches(topo)
    fault_t = time.monotonic()
    topo.master.stop(signal.SIGKILL)
    switches.first()
    time.sleep(3)
    during = int(sc.info()["reads_to_replicas"]) - before
    load.stop()
    reads.stop()
    new = switches.stop()
    new_master = topo.by_port(new[1])
    wait_confirmed(sc, f"127.0.0.1:{new[1]}")
    check_failover(load, fault_t, switches, new_master, "SIGKILL")
    assert old != nodes(sc)["master"]
    # Reads kept flowing, from replicas too, without an error.
    print(f"reads: {reads.ok} answered, {during} by replicas during the failover, "
          f"{len(reads.errors)} errors")
    assert not reads.errors, reads.errors[:5]
    assert during > 0
    assert int(nodes(sc)["master_switches"]) == len(switches.times())
    # the switch was heard as events too, not only polled
    assert sum(int(s["events"]) for s in nodes(sc)["sentinel"]) > 0
    assert "master is now 127.0.0.1:%d" % new[1] in sc.log()


def test_master_paused_and_resumed_loses_no_acknowledged_write(env, topo):
    sc = topo.sidecar()
    wait_confirmed(sc, f"127.0.0.1:{topo.master.port}")
    topo.master.client().set("readme", "x")
    load = Load(sc.port, prefix="p").start()
    reads = Reads(sc.port).start()
    time.sleep(3)
    old = topo.master
    switches = Switches(topo)
    fault_t = time.monotonic()
    old.proc.send_signal(signal.SIGSTOP)
    switches.first()
    # Resumed 3 s after the switch, it believes it is master for a while
    # (until a sentinel converts it): nothing may be written there.
    time.sleep(3)
    old.proc.send_signal(signal.SIGCONT)
    time.sleep(3)
    load.stop()
    new = switches.stop()
    new_master = topo.by_port(new[1])
    wait_confirmed(sc, f"127.0.0.1:{new[1]}")
    check_failover(load, fault_t, switches, new_master, "SIGSTOP")
    # The old master, once a replica again and caught up, takes reads.
    wait_until(lambda: old.client().info("replication")["role"] == "slave" and
               old.client().info("replication")["master_link_status"] == "up",
               timeout=40, what="old master converted to a replica")
    old_addr = f"127.0.0.1:{old.port}"
    wait_until(lambda: any(n["addr"] == old_addr and n["use"] == "replica"
                           for n in nodes(sc)["node"]), timeout=10,
               what="old master eligible for reads")
    reads.stop()
    assert not reads.errors, reads.errors[:5]
    gets = old.client().info("commandstats").get("cmdstat_get", {}).get("calls", 0)
    c = sc.client()
    for _ in range(200):
        assert c.get("readme") == b"x"
    after = old.client().info("commandstats").get("cmdstat_get", {}).get("calls", 0)
    assert after > gets, (gets, after)
    # It never got a write from the proxy after the fault: its counters of
    # SET/INCR calls stopped, its data is the new master's.
    assert not load.lost_on(old, fault_t)


class LoadingTopology(Topology):
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
    load = Load(sc.port, prefix="l").start()
    time.sleep(1)
    fault_t = time.monotonic()
    restart_loading(m)
    wait_until(lambda: m.client().ping(), timeout=15, what="loaded")
    time.sleep(1)
    load.stop()
    errors = load.errors()
    info = sc.info()
    print(f"\nLOADING: {len(load.records)} writes, {len(errors)} errors, "
          f"{info['master_refusals_held']} -LOADING replies held and resent")
    # Only what was in flight when it died fails, one per client at most.
    assert not any("LOADING" in str(e[5]) for e in errors), errors
    assert all("may or may not" in str(e[5]) for e in errors), errors
    assert len({e[3].split(":")[0] for e in errors}) == len(errors), errors
    assert int(info["master_refusals_held"]) > 0
    assert topo.sentinel_master() == ("127.0.0.1", m.port)      # no failover
    assert not load.lost_on(m, fault_t)


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
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", c.set("k2", "v")))
    t.start()
    time.sleep(0.2)
    topo.sentinels[1].start()
    t.join(10)
    assert result.get("r") is True
    assert topo.master.client().get("k2") == b"v"
    wait_until(lambda: "sentinels answer again" in sc.log(), what="log line")


def test_sentinel_down_at_start_then_all_down_keeps_the_last_topology(env, topo):
    down = topo.sentinels[2]
    down.stop()
    sc = topo.sidecar()
    wait_confirmed(sc, f"127.0.0.1:{topo.master.port}")
    n = nodes(sc)
    states = {s["addr"]: s["state"] for s in n["sentinel"]}
    assert states[f"127.0.0.1:{down.port}"] == "down"
    assert list(states.values()).count("up") == 2
    assert f"sentinel 127.0.0.1:{down.port}: Connection refused" in sc.log()
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
    time.sleep(0.3)
    assert sc.alive()
    assert "output buffer over 8192 bytes" in sc.log()
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
    load = Load(sc.port, prefix="r").start()
    time.sleep(1)
    fault_t = time.monotonic()
    z.client().execute_command("REPLICAOF", "NO", "ONE")
    x.client().execute_command("REPLICAOF", "127.0.0.1", str(z.port))
    wait_until(lambda: x.client().info("replication")["master_link_status"] == "up",
               what="x a replica of z")
    demoted_t = time.monotonic()
    time.sleep(1)
    x.client().execute_command("REPLICAOF", "NO", "ONE")
    z.client().execute_command("REPLICAOF", "127.0.0.1", str(x.port))
    wait_confirmed(sc, f"127.0.0.1:{x.port}")
    time.sleep(1)
    load.stop()
    errors = load.errors()
    info = sc.info()
    print(f"\nREADONLY: {len(load.records)} writes, {len(errors)} errors, "
          f"{info['master_refusals_held']} refusals held and resent")
    assert int(info["master_refusals_held"]) > 0
    assert not any("READONLY" in str(e[5]) for e in errors), errors
    # Only what was on the wire when the proxy saw the demotion.
    assert all("may or may not" in str(e[5]) for e in errors), errors
    assert len({e[3].split(":")[0] for e in errors}) == len(errors), errors
    # Held writes ran on x once it was master again (what x acknowledged
    # before z's copy replaced its data is the test's own split brain).
    assert not load.lost_on(x, demoted_t)
    assert max(r[1] - r[0] for r in load.records) < 3 * SLOW


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
    time.sleep(0.2)
    c.set("x", "1")                                     # redis-py reconnects if closed
    node = topo.by_port(int(new.rsplit(":", 1)[1]))
    assert node.client(db=3).get("x") == b"1"
    wait_until(lambda: not nodes(sc)["retiring"], what="the old links gone")
