"""Redis Cluster behind the sidecar ([upstream] cluster): a real cluster
of three masters with a replica each (redis-cli --cluster create); the
app speaks to one plaintext endpoint. Keys land on the nodes that own
their slots, MOVED and ASK never reach the app (resharding under load),
and cluster-mode clients see a one-node cluster."""
import subprocess
import threading

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from helpers import Cluster, Load, nodes, owned_ranges, wait_until


@pytest.fixture
def cluster(env):
    return Cluster(env)


def cluster_sidecar(env, cluster, **sections):
    sections.setdefault("health", {}).setdefault("check_interval", "200ms")
    up = sections.setdefault("upstream", {})
    up["cluster"] = cluster.seeds(1)
    sc = env.sidecar(None, **sections)
    wait_until(lambda: nodes(sc).get("slot_map") == "read" and nodes(sc)["shards"] == "3",
               what="the slot map read")
    return sc


def slot_owners(cluster):
    """slot -> the master RedisServer serving it, from each master's SHARDS."""
    out = {}
    for n in cluster.masters():
        for lo, hi in owned_ranges(n):
            for s in range(lo, hi + 1):
                out[s] = n
    return out


def test_keys_land_on_the_nodes_that_own_their_slots(env, cluster):
    sc = cluster_sidecar(env, cluster)
    c = sc.client()
    p = c.pipeline(transaction=False)
    for i in range(10000):
        p.set(f"k:{i}", i)
    assert all(p.execute())
    p = c.pipeline(transaction=False)
    for i in range(10000):
        p.get(f"k:{i}")
    assert p.execute() == [str(i).encode() for i in range(10000)]
    owners = slot_owners(cluster)
    assert len(owners) == 16384
    by_node = {}
    for i in range(10000):
        by_node.setdefault(owners[key_slot(f"k:{i}".encode())].port, []).append(f"k:{i}")
    assert len(by_node) == 3                     # spread over the three masters
    for n in cluster.masters():
        keys = by_node[n.port]
        d = n.client()
        assert d.dbsize() == len(keys)
        pp = d.pipeline(transaction=False)
        for k in keys:
            pp.exists(k)
        assert all(x == 1 for x in pp.execute())
    # hash tags keep keys together: a multi-key command on one slot works
    assert c.mset({"{user:7}:name": "ann", "{user:7}:mail": "a@x"}) is True
    assert c.mget("{user:7}:name", "{user:7}:mail") == [b"ann", b"a@x"]
    assert cluster.owner("{user:7}:name").client().get("{user:7}:mail") == b"a@x"
    assert c.sunionstore("{t}dst", "{t}a", "{t}b") == 0
    # keys of different slots in one command that is not split: Redis's own error
    with pytest.raises(redis.ResponseError, match="CROSSSLOT"):
        c.sunionstore("dst", "a", "b")
    # no redirection reached the app, none was needed
    n = nodes(sc)
    assert n["source"] == "cluster" and int(n["moved"]) == 0
    assert {s["master"] for s in n["shard"]} == {f"127.0.0.1:{m.port}" for m in cluster.masters()}


def test_resharding_under_load_is_never_seen_by_the_app(env, cluster):
    sc = cluster_sidecar(env, cluster)
    stop = threading.Event()

    def op(c, i, seq):
        k = f"r:{i}:{seq % 500}"
        assert c.set(k, seq) is True
        assert c.get(k) == str(seq).encode()
    load = Load(op, n=20, port=sc.port, rate=200).start()
    load.wait_ok(20, each=True)
    masters = cluster.masters()
    src, dst = masters[0], masters[1]
    ids = [m.client().cluster("myid") for m in (src, dst)]
    ids = [i.decode() if isinstance(i, bytes) else i for i in ids]
    out = subprocess.run(["redis-cli", "--cluster", "reshard", f"127.0.0.1:{src.port}",
                          "--cluster-from", ids[0], "--cluster-to", ids[1],
                          "--cluster-slots", "1000", "--cluster-yes",
                          "--cluster-pipeline", "20"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    load.wait_ok(20, each=True, after=__import__("time").monotonic())
    load.stop()
    stop.set()
    assert load.errors() == [], load.error_texts()[:5]
    # every value the app wrote last is there, where its slot is now
    last = {}
    for call in load.ok():
        last[f"r:{call.client}:{call.seq % 500}"] = call.seq
    owners = slot_owners(cluster)
    for k, v in last.items():
        assert owners[key_slot(k.encode())].client().get(k) == str(v).encode(), k
    n = nodes(sc)
    assert int(n["moved"]) + int(n["ask"]) > 0, n     # the redirections happened, unseen


def test_a_cluster_mode_client_sees_a_one_node_cluster(env, cluster):
    sc = cluster_sidecar(env, cluster)
    slots = sc.client().execute_command("CLUSTER", "SLOTS")
    assert slots == [[0, 16383, [b"127.0.0.1", sc.port, slots[0][2][2]]]]
    info = sc.client().execute_command("CLUSTER", "INFO").decode()
    assert "cluster_state:ok" in info and "cluster_known_nodes:1" in info
    assert sc.client().execute_command("READONLY") in (True, b"OK")
    assert sc.client().execute_command("ASKING") in (True, b"OK")
    rc = RedisCluster(host="127.0.0.1", port=sc.port)
    for i in range(300):
        assert rc.set(f"c:{i}", i) is True
    assert [rc.get(f"c:{i}") for i in range(300)] == [str(i).encode() for i in range(300)]
    assert [n.port for n in rc.get_nodes()] == [sc.port]
    owners = slot_owners(cluster)
    assert owners[key_slot(b"c:7")].client().get("c:7") == b"7"
    rc.close()


def test_cluster_key_excludes_master_and_needs_a_restart_to_change(env, cluster, tmp_path):
    from helpers import SIDECAR_BIN
    ini = tmp_path / "bad.ini"
    ini.write_text(f"[upstream]\ncluster = {cluster.seeds(1)}\nmaster = 127.0.0.1:1\n")
    out = subprocess.run([SIDECAR_BIN, "-c", str(ini), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 1 and "upstream.cluster excludes upstream.master" in out.stderr
    sc = cluster_sidecar(env, cluster)
    sc.cfg["upstream"]["cluster"] = cluster.seeds(2)
    sc.write_ini()
    with pytest.raises(redis.ResponseError, match="upstream.cluster cannot change"):
        sc.client().execute_command("PROXY", "RELOAD")
    assert sc.client().set("still", "here") is True
