"""Reads to replicas, writes to the master, proven on the servers'
INFO commandstats; replicas that cannot serve are skipped."""
import time

import pytest
import redis

from helpers import Load, Relay, replica_of, sidecar_for, wait_until


def serving_reads(sc, client, replicas):
    """Until each replica serves `client`'s reads (they caught up with its
    writes and the proxy knows it). Probed with EXISTS, which no test here
    counts; the probes count in reads_to_replicas, read it after this."""
    def probe():
        client.exists("probe")
        return all(n.calls("exists") >= 1 for n in replicas)
    wait_until(probe, what="reads served by every replica")


@pytest.fixture
def topo(env, master):
    replicas = [replica_of(env, master.port, f"replica{i}") for i in range(2)]
    return master, replicas


def test_writes_to_master_reads_spread_over_replicas(env, topo):
    master, replicas = topo
    sc = sidecar_for(env, master, replicas)
    r = sc.client()
    before = [n.calls("get") for n in replicas]
    for i in range(1000):
        r.set(f"k{i}", i)
    serving_reads(sc, r, replicas)                  # the replicas caught up
    reads0 = int(sc.info()["reads_to_replicas"])
    for i in range(1000):
        assert r.get(f"k{i}") == str(i).encode()
    assert master.calls("set") == 1000
    assert master.calls("get") == 0
    got = [n.calls("get") - b for n, b in zip(replicas, before)]
    assert sum(got) == 1000 and min(got) >= 200, got
    for n in replicas:       # replicas ran the SETs by replication only, none refused
        st = n.client().info("commandstats")["cmdstat_set"]
        assert st["calls"] == 1000 and st.get("rejected_calls", 0) == 0
    assert int(sc.info()["reads_to_replicas"]) - reads0 == 1000


def test_read_from_master_policy(env, topo):
    master, replicas = topo
    sc = sidecar_for(env, master, replicas, routing={"read_from": "master"})
    r = sc.client()
    for i in range(100):
        r.get(f"m{i}")
    assert master.calls("get") == 100
    assert all(n.calls("get") == 0 for n in replicas)


def test_replica_killed_reads_move_to_master_and_back(env, topo):
    master, replicas = topo
    sc = sidecar_for(env, master, replicas)
    r = sc.client()
    r.set("k", "v")
    serving_reads(sc, r, replicas)            # its reads are on the replicas
    with Load(lambda c, *_: c.get("k"), port=sc.port, rate=200) as reads:
        for rep in replicas:
            rep.stop()
        # reading all along, until the proxy has put both aside
        wait_until(lambda: all("eligible=0" in sc.info()[f"replica{i}"] for i in range(2)),
                   what="replicas put aside")
        reads.wait_ok(200)
    errors = reads.errors() + [c for c in reads.ok() if c.value != b"v"]
    assert errors == []
    assert master.calls("get") > 0
    for rep in replicas:
        rep.start()
    wait_until(lambda: all("eligible=1" in sc.info()[f"replica{i}"] for i in range(2)),
               timeout=10, what="replicas back")
    before = master.calls("get")
    for _ in range(50):
        assert r.get("k") == b"v"
    assert master.calls("get") == before        # reads are back on the replicas


def test_replica_with_master_link_down_is_skipped(env, topo):
    master, replicas = topo
    sc = sidecar_for(env, master, replicas)
    dead = replicas[0]
    dead.client().execute_command("REPLICAOF", "127.0.0.1", "1")     # nothing listens there
    wait_until(lambda: "eligible=0" in sc.info()["replica0"], what="replica0 skipped")
    assert "why=master link " in sc.info()["replica0"]      # not up: connect or connecting
    r = sc.client()
    r.set("k", "v")
    wait_until(lambda: replicas[1].client().get("k") == b"v", what="replica1 has it")
    before = dead.calls("get")
    for _ in range(100):
        assert r.get("k") == b"v"
    assert dead.calls("get") == before


def test_lagging_replica_is_skipped_until_it_catches_up(env, master):
    relay = Relay(master.port)
    try:
        rep = replica_of(env, relay.port)
        sc = sidecar_for(env, master, [rep], routing={"replica_max_lag": "1s"})
        relay.blackhole()                     # replication stalls, the link looks up
        w = sc.client()
        def moves_on_without_it():
            w.incr("lagging")                  # the master moves on
            return "eligible=0" in sc.info()["replica0"]
        wait_until(moves_on_without_it, timeout=3, interval=0.05, what="replica0 put aside")
        assert "why=lag " in sc.info()["replica0"]
        before = rep.calls("get")
        assert w.get("lagging") is not None   # fresh value: served by the master
        assert rep.calls("get") == before
    finally:
        relay.close()


def test_read_from_replica_without_eligible_replica_is_an_error(env, topo):
    master, replicas = topo
    sc = sidecar_for(env, master, replicas, routing={"read_from": "replica"})
    r = sc.client()
    assert r.get("nope") is None
    for rep in replicas:
        rep.stop()
    wait_until(lambda: all("eligible=0" in sc.info()[f"replica{i}"] for i in range(2)),
               what="no replica eligible")
    with pytest.raises(redis.ResponseError, match="no replica can serve reads"):
        r.get("nope")
    assert r.set("w", "1") is True              # writes are unaffected


def test_replica_refusing_a_read_is_bypassed_through_the_master(env, master):
    """A replica that answers -MASTERDOWN did not run the read: the client
    gets the master's answer instead, in order, never the error. The
    sidecar's view is kept stale on purpose (checks every 30 s)."""
    rep = replica_of(env, master.port)
    rep.client().config_set("replica-serve-stale-data", "no")
    sc = env.sidecar(master, upstream={"replicas": f"127.0.0.1:{rep.port}"},
                     health={"check_interval": "30s"}, routing={"read_your_writes": "off"})
    wait_until(lambda: "eligible=1" in sc.info()["replica0"], what="replica eligible")
    r = sc.client()
    r.set("k", "v")
    wait_until(lambda: rep.client().get("k") == b"v", what="replicated")
    rep.client().execute_command("REPLICAOF", "127.0.0.1", "1")    # its master link is gone
    with pytest.raises(redis.ResponseError, match="MASTERDOWN"):
        rep.client().get("k")
    p = r.pipeline(transaction=False)
    for i in range(10):
        p.get("k")
        p.incr("n")
    assert p.execute() == [x for i in range(10) for x in (b"v", i + 1)]
    # a read the replica refuses runs before the write pipelined after it
    p = r.pipeline(transaction=False)
    p.get("k").set("k", "new").get("k")
    assert p.execute() == [b"v", True, b"new"]
    # at least the first read met the refusal (later ones may find the
    # replica's link being replaced and go to the master directly)
    assert int(sc.info()["replica_redirects"]) >= 1


def ryw_setup(env, master, lag):
    relay = Relay(master.port, delay=lag) if lag else None
    up = relay.port if relay else master.port
    reps = [replica_of(env, up, f"replica{i}") for i in range(2)]
    return relay, reps


@pytest.mark.parametrize("lag", [0, 0.05])
def test_read_your_writes_sequential_and_pipelined(env, master, lag):
    relay, reps = ryw_setup(env, master, lag)
    try:
        sc = sidecar_for(env, master, reps)
        r = sc.client()
        stale = 0
        for i in range(1000):
            r.set("ryw", f"v{i}")
            if r.get("ryw") != f"v{i}".encode():
                stale += 1
        p = r.pipeline(transaction=False)
        for i in range(1000):
            p.set("ryw", f"p{i}")
            p.get("ryw")
        out = p.execute()
        stale += sum(1 for i in range(1000) if out[2 * i + 1] != f"p{i}".encode())
        assert stale == 0
        # a client that has not written reads from the replicas
        reader = sc.client()
        before = sum(n.calls("get") for n in reps)
        for _ in range(100):
            reader.get("ryw")
        assert sum(n.calls("get") for n in reps) - before == 100
    finally:
        if relay:
            relay.close()


def test_without_read_your_writes_replication_lag_shows(env, master):
    """The control: the same loop with read_your_writes off does read stale
    values through a 50 ms lag, so the test above can fail."""
    relay, reps = ryw_setup(env, master, 0.05)
    try:
        sc = sidecar_for(env, master, reps, routing={"read_your_writes": "off"})
        r = sc.client()
        stale = sum(1 for i in range(200) if (r.set("ryw", f"v{i}"), r.get("ryw"))[1]
                    != f"v{i}".encode())
        assert stale > 100
    finally:
        relay.close()


def test_read_your_writes_window(env, topo):
    master, replicas = topo
    sc = sidecar_for(env, master, replicas, routing={"read_your_writes": "window",
                                                      "ryw_window": "500ms"})
    r = sc.client()
    r.set("w", "1")
    before = master.calls("get")
    r.get("w")
    assert master.calls("get") == before + 1          # inside the window: master
    # No condition: ryw_window (500 ms) must pass; its end shows only in
    # where the next read goes, which is what is checked.
    time.sleep(0.6)
    r.get("w")
    assert master.calls("get") == before + 1          # after it: a replica


def test_script_load_reaches_replicas_and_evalsha_ro_runs_there(env, topo):
    master, replicas = topo
    sc = sidecar_for(env, master, replicas, routing={"read_your_writes": "off"})
    r = sc.client()
    r.set("sk", "sv")
    sha = r.script_load("return redis.call('GET', KEYS[1])")
    for n in replicas:
        wait_until(lambda n=n: n.client().script_exists(sha) == [True], what="script on replica")
        wait_until(lambda n=n: n.client().get("sk") == b"sv", what="key on replica")
    for _ in range(20):
        assert r.execute_command("EVALSHA_RO", sha, 1, "sk") == b"sv"
    assert sum(n.calls("evalsha_ro") for n in replicas) == 20
    assert master.calls("evalsha_ro") == 0
    # a script only the master knows: the replica's NOSCRIPT is never shown
    sha2 = master.client().script_load("return 'only-master'")
    assert r.execute_command("EVALSHA_RO", sha2, 0) == b"only-master"
    assert int(sc.info()["replica_redirects"]) >= 1


def test_commands_learnt_from_the_server_are_routed_by_their_flags(env, topo):
    """PFCOUNT is not in the compiled table; the master's COMMAND reply
    says it is read-only, so it goes to a replica."""
    master, replicas = topo
    sc = sidecar_for(env, master, replicas, routing={"read_your_writes": "off"})
    # until the table is learnt, PFCOUNT is unknown and goes to the master
    wait_until(lambda: "commands learnt from the master" in sc.log(), what="COMMAND loaded")
    r = sc.client()
    for _ in range(20):
        r.pfcount("hll")
    assert sum(n.calls("pfcount") for n in replicas) == 20
    assert master.calls("pfcount") == 0


def test_wait_counts_the_clients_writes_from_shared_links(env, master):
    """WAIT runs on a lease, while the client's writes went out on shared
    links: it must still wait for them to reach a replica."""
    relay = Relay(master.port)
    try:
        rep = replica_of(env, relay.port)
        sc = env.sidecar(master)
        r = sc.client()
        r.set("before", "1")
        assert r.execute_command("WAIT", "1", "2000") == 1     # it gets there
        relay.blackhole()                                       # replication stalls
        r.set("after", "1")
        t0 = time.monotonic()
        assert r.execute_command("WAIT", "1", "300") == 0       # and now it cannot
        assert time.monotonic() - t0 >= 0.25
    finally:
        relay.close()


def test_info_and_scan_stay_on_the_master(env, topo):
    master, replicas = topo
    sc = sidecar_for(env, master, replicas, routing={"read_your_writes": "off"})
    r = sc.client()
    assert r.info()["role"] == "master"
    for i in range(20):
        r.scan(0)
    assert master.calls("scan") == 20
    assert all(n.calls("scan") == 0 for n in replicas)
