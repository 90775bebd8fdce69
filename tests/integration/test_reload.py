"""Live reload (PROXY RELOAD, SIGHUP): limits, lists, routing and log
level change without closing any app connection; an invalid file changes
nothing and says why; PROXY CONFIG shows the running values, passwords
masked."""
import signal
import socket
import threading
import time

import pytest
import redis

from conftest import SLOW, wait_until


def config(sc):
    raw = sc.client().execute_command("PROXY", "CONFIG").decode()
    return dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)


def test_reload_while_50_clients_run(env, master):
    replica = env.redis("replica", args=["--replicaof", "127.0.0.1", str(master.port)])
    wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up",
               what="replica in sync")
    sc = env.sidecar(master, upstream={"replicas": f"127.0.0.1:{replica.port}"},
                     routing={"read_from": "master"},
                     admin={"password": "adm1n"})
    errors, done = [], threading.Event()

    def run(i):
        c = redis.Redis(host="127.0.0.1", port=sc.port, socket_timeout=10 * SLOW)
        n = 0
        while not done.is_set():
            try:
                if i == 0:                   # a reader: its GETs may go to the replica
                    c.get("readme")
                    continue
                c.set(f"k{i}", n)
                assert c.get(f"k{i}") == str(n).encode()
                n += 1
            except (redis.RedisError, AssertionError) as e:
                errors.append(repr(e))
                return
    ts = [threading.Thread(target=run, args=(i,)) for i in range(50)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    sc.cfg.setdefault("clients", {}).update({"max_connections_per_ip": "10",
                                            "deny": "127.0.0.9"})
    sc.cfg["routing"]["read_from"] = "prefer-replica"
    sc.cfg["log"]["level"] = "debug"
    sc.write_ini()
    reads0 = int(sc.info()["reads_to_replicas"])
    assert sc.client().execute_command("PROXY", "RELOAD") == b"reloaded"
    time.sleep(1)
    # the 50 are kept; a 51st connection from 127.0.0.1 is over the new cap
    s = sc.raw()
    assert s.makefile("rb").readline().startswith(b"-ERR max connections per client IP")
    done.set()
    for t in ts:
        t.join(30)
    assert not errors, errors[:3]
    cfg = config(sc)
    assert cfg["clients.max_connections_per_ip"] == "10"
    assert cfg["clients.deny"] == "127.0.0.9/32"
    assert cfg["routing.read_from"] == "prefer-replica"
    assert cfg["log.level"] == "debug"
    assert cfg["admin.password"] == "(set)" and "adm1n" not in str(cfg)
    # in behaviour: reads went to the replica, 127.0.0.9 is refused
    assert int(sc.info()["reads_to_replicas"]) > reads0
    s = socket.create_connection(("127.0.0.1", sc.port), timeout=5,
                                 source_address=("127.0.0.9", 0))
    assert b"is not allowed to connect" in s.makefile("rb").readline()
    assert "DEBUG" in sc.log()


def test_invalid_file_changes_nothing_and_says_why(sidecar):
    before = config(sidecar)
    text = sidecar.ini.read_text()
    sidecar.ini.write_text(text + "[pool]\nconnections = 0\n")
    with pytest.raises(redis.ResponseError) as e:
        sidecar.client().execute_command("PROXY", "RELOAD")
    assert f"reload refused, nothing changed: {sidecar.ini}:" in str(e.value)
    assert 'pool.connections: "0" not in 1..64' in str(e.value)
    assert config(sidecar) == before
    assert sidecar.client().ping()


def test_keys_that_need_a_restart_keep_their_value_and_are_named(sidecar):
    sidecar.cfg["pool"] = {"connections": "3", "reply_timeout": "7s"}
    sidecar.write_ini()
    reply = sidecar.client().execute_command("PROXY", "RELOAD").decode()
    assert reply == "reloaded; needs a restart to change: pool.connections"
    cfg = config(sidecar)
    assert cfg["pool.connections"] == "2" and cfg["pool.reply_timeout"] == "7s"


def test_sighup_reloads(sidecar):
    sidecar.cfg["log"]["level"] = "warn"
    sidecar.write_ini()
    sidecar.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: config(sidecar)["log.level"] == "warn", what="reloaded")
