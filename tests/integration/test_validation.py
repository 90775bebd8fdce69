"""A dead link never reaches the app: idle links are validated with PING
before reuse, links are replaced when Redis reaps, restarts or a relay
blackholes them, and requests follow the retry rule."""
import os
import signal
import subprocess
import threading
import time

import pytest
import redis

from helpers import SIDECAR_BIN, SLOW, Relay, rss_kb, ten_requests_each, wait_until

IDLE = 1.6            # longer than the default validate_after (1s)


def twenty_idle_clients_then(sc, break_links, idle=IDLE):
    """20 connections write once, sit idle, the links are broken, then each
    sends 10 requests. Returns (errors, slowest first request, clients)."""
    clients = [sc.client(socket_timeout=10 * SLOW) for _ in range(20)]
    for i, c in enumerate(clients):
        assert c.set(f"v:{i}", "init") is True
    time.sleep(idle)
    break_links()
    errors, slowest = ten_requests_each(clients)
    return errors, slowest, clients


def no_lost_write(master):
    r = master.client()
    for i in range(20):
        assert r.get(f"v:{i}") == b"s8", f"v:{i} lost its last write"


def test_links_killed_by_client_kill(env, master):
    sc = env.sidecar(master)

    def kill():
        n = master.client().client_kill_filter(_type="normal")
        assert n >= 2
    errors, _, _ = twenty_idle_clients_then(sc, kill)
    assert errors == []
    no_lost_write(master)


def test_links_reaped_by_redis_timeout(env):
    m = env.redis("master", args=["--timeout", "1"])
    sc = env.sidecar(m)
    errors, _, _ = twenty_idle_clients_then(sc, lambda: None, idle=2.5)
    assert errors == []
    no_lost_write(m)
    assert int(sc.info()["link_failures"]) >= 2     # Redis did reap them


def test_redis_restarted_during_idle_time(env, master):
    sc = env.sidecar(master)

    def restart():
        master.stop()
        time.sleep(1)
        master.start()
        time.sleep(1)
    errors, _, _ = twenty_idle_clients_then(sc, restart, idle=0.2)
    assert errors == []
    no_lost_write(master)


def test_relay_blackholes_the_links(env, master):
    relay = Relay(master.port)
    try:
        sc = env.sidecar(relay.port)
        errors, slowest, _ = twenty_idle_clients_then(sc, relay.blackhole)
        assert errors == []
        # ping_timeout (300ms) plus one connect, not a TCP timeout
        assert slowest < 0.3 * 3 * SLOW, f"first requests took {slowest:.2f}s"
        no_lost_write(master)
        info = sc.info()
        assert int(info["validations_failed"]) >= 2
        assert int(info["requeued_unsent"]) >= 20
    finally:
        relay.close()


def netns_available():
    if subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0":
        return False
    ns = f"sidecar-probe-{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode == 0
    ok = ok and subprocess.run(["ip", "netns", "exec", ns, "iptables", "-S"],
                               capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return ok


NETNS_CLIENT = r"""
import sys
import redis
sys.path.insert(0, sys.argv[2])
from helpers import ten_requests_each
clients = [redis.Redis(port=int(sys.argv[1]), socket_timeout=30) for _ in range(20)]
for i, c in enumerate(clients):
    c.set(f"v:{i}", "init")
print("IDLE", flush=True)
sys.stdin.readline()                     # the firewall drops the links now
errors, slowest = ten_requests_each(clients)
print("RESULT", len(errors), slowest, errors[:3], flush=True)
"""


@pytest.mark.skipif(not netns_available(), reason="needs root, CAP_NET_ADMIN, iproute2 and iptables")
def test_flow_dropped_by_iptables_in_a_netns(tmp_path):
    """The relay variant with a real firewall: inside a network namespace
    made for the test, iptables drops every packet of the proxy's existing
    links; new connections pass."""
    ns = f"sidecar-t{os.getpid()}"
    procs = []

    def nsexec(*cmd, **kw):
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True,
                              text=True, **kw)

    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        nsexec("ip", "link", "set", "lo", "up")
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, "redis-server", "--port", "7000", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path), "--logfile", str(tmp_path / "r.log")]))
        ini = tmp_path / "proxy.ini"
        ini.write_text("[proxy]\nlisten = 127.0.0.1:6380\n[upstream]\nmaster = 127.0.0.1:7000\n")
        log = open(tmp_path / "sidecar.log", "w")
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, SIDECAR_BIN, "-c", str(ini)],
                                      stdout=log, stderr=subprocess.STDOUT))
        wait_until(lambda: nsexec("redis-cli", "-p", "6380", "ping").stdout.strip() == "PONG",
                   what="sidecar in the namespace")
        script = tmp_path / "client.py"
        script.write_text(NETNS_CLIENT)
        cl = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", str(script), "6380",
                               os.path.dirname(os.path.abspath(__file__))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(cl)
        assert cl.stdout.readline().strip() == "IDLE"
        time.sleep(IDLE)
        flows = nsexec("ss", "-tnH", "state", "established", "dport = :7000").stdout.split()
        sports = [f.rsplit(":", 1)[1] for f in flows if f.startswith("127.0.0.1:") and
                  not f.endswith(":7000")]
        assert len(sports) >= 2, flows
        for sp in sports:
            nsexec("iptables", "-A", "OUTPUT", "-p", "tcp", "--sport", sp, "-j", "DROP", check=True)
            nsexec("iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", sp, "-j", "DROP", check=True)
        cl.stdin.write("go\n")
        cl.stdin.flush()
        line = cl.stdout.readline().split(maxsplit=3)
        assert line[0] == "RESULT", line
        assert int(line[1]) == 0, line
        assert float(line[2]) < 0.3 * 3 * SLOW, f"first requests took {line[2]}s"
        assert nsexec("redis-cli", "-p", "7000", "get", "v:7").stdout.strip() == "s8"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_written_read_is_retried_and_written_write_gets_an_error(env, master):
    relay = Relay(master.port)
    try:
        sc = env.sidecar(relay.port, pool={"validate_after": "0", "reply_timeout": "500ms"})
        a, b = sc.client(), sc.client()        # consecutive ids: one per link
        assert a.set("k", "v") is True and b.set("k2", "v2") is True
        relay.blackhole()
        t0 = time.monotonic()
        assert a.get("k") == b"v"               # written, lost, retried once
        assert time.monotonic() - t0 < 0.5 * 3 * SLOW
        with pytest.raises(redis.ResponseError, match="may or may not have been applied"):
            b.set("k2", "v3")
        info = sc.info()
        assert int(info["retried_reads"]) >= 1
        assert int(info["errors_link_lost_after_send"]) >= 1
        assert int(info["errors_reply_timeout"]) >= 2
    finally:
        relay.close()


def test_background_pings_keep_idle_links_alive(env, master):
    sc = env.sidecar(master, pool={"ping_interval": "200ms", "validate_after": "0"})
    sc.client().ping()
    time.sleep(1.2)
    assert int(sc.info()["validations"]) >= 6
    for link in master.sidecar_links():
        assert int(link["idle"]) <= 1


def test_links_and_client_sockets_carry_tcp_keepalive(env, master):
    sc = env.sidecar(master, pool={"tcp_keepalive": "7s"})
    c = sc.client()
    c.ping()
    out = subprocess.run(["ss", "-tnoH", "state", "established", f"dport = :{master.port}"],
                         capture_output=True, text=True).stdout
    assert out.count("keepalive") >= 2, out
    # the proxy's end of the app connection too (Redis may run tcp-keepalive 0)
    out = subprocess.run(["ss", "-tnoH", "state", "established", f"sport = :{sc.port}"],
                         capture_output=True, text=True).stdout
    assert "keepalive" in out, out


def test_max_link_age_retires_links(env, master):
    sc = env.sidecar(master, pool={"max_link_age": "500ms"})
    r = sc.client()
    wait_until(lambda: int(sc.info()["links_retired"]) >= 2, timeout=5, what="links retired")
    assert r.set("k", "v") is True and r.get("k") == b"v"


def test_client_idle_timeout(env, master):
    sc = env.sidecar(master, clients={"idle_timeout": "500ms"})
    s = sc.raw()
    s.settimeout(5 * SLOW)
    t0 = time.monotonic()
    assert s.recv(10) == b""              # closed by the proxy
    assert 0.4 < time.monotonic() - t0 < 2 * SLOW
    assert int(sc.info()["clients_closed_idle"]) == 1


def test_node_down_fails_fast_and_comes_back(env, master):
    sc = env.sidecar(master, health={"check_interval": "100ms", "down_after": "3"},
                     pool={"connect_timeout": "1s"})
    r = sc.client()
    assert r.ping() is True
    master.stop()
    wait_until(lambda: sc.info()["master_state"] == "down", timeout=2, what="master marked down")
    t0 = time.monotonic()
    with pytest.raises(redis.ResponseError, match=f"upstream 127.0.0.1:{master.port} is down"):
        r.get("k")
    assert time.monotonic() - t0 < 0.1 * SLOW       # fast: no connect_timeout wait
    master.start()
    wait_until(lambda: r.set("k", "v"), timeout=5, what="service back")
    info = sc.info()
    assert info["master_state"] == "up"
    assert int(info["node_down_transitions"]) == 1 and int(info["node_up_transitions"]) == 1
    assert sc.log().count("is down") == 1          # logged once, not per request


def test_restart_with_aof_loses_and_duplicates_nothing(env):
    m = env.redis("master", args=["--appendonly", "yes", "--appendfsync", "always"])
    sc = env.sidecar(m)
    stop = threading.Event()
    back = {}
    stats = [{"sets": [], "incr_ok": 0, "incr_unsure": 0, "errors": [], "first_ok_after_back": None}
             for _ in range(8)]

    def worker(i):
        r = sc.client(socket_timeout=10 * SLOW)
        st = stats[i]
        n = 0
        while not stop.is_set():
            n += 1
            t0 = time.monotonic()
            try:
                if n % 2:
                    r.set(f"aof:{i}:{n}", n)
                    st["sets"].append(n)
                else:
                    r.incr(f"ctr:{i}")
                    st["incr_ok"] += 1
                if "t" in back and t0 >= back["t"] and st["first_ok_after_back"] is None:
                    st["first_ok_after_back"] = time.monotonic() - back["t"]
            except redis.ResponseError as e:
                if n % 2 == 0 and "may or may not" in str(e):
                    st["incr_unsure"] += 1
                st["errors"].append((t0, str(e)))
            time.sleep(max(0, 1 / 150 - (time.monotonic() - t0)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(4)
    m.stop(signal.SIGTERM)
    m.start()
    back["t"] = time.monotonic()
    time.sleep(8)
    stop.set()
    for t in threads:
        t.join(30)
    r = m.client()
    for i, st in enumerate(stats):
        ctr = int(r.get(f"ctr:{i}") or 0)
        assert st["incr_ok"] <= ctr <= st["incr_ok"] + st["incr_unsure"], (i, ctr, st["incr_ok"])
        missing = [n for n in st["sets"] if r.get(f"aof:{i}:{n}") != str(n).encode()]
        assert missing == [], f"client {i} lost acknowledged writes {missing[:5]}"
        late = [e for t0, e in st["errors"] if t0 >= back["t"]]
        assert late == [], f"client {i} errors after Redis was back: {late[:3]}"
        assert st["first_ok_after_back"] is not None and st["first_ok_after_back"] < 1 * SLOW


def test_down_at_start_and_for_10s_under_load(env):
    m = env.redis("master", start=False)
    sc = env.sidecar(m.port, pool={"connect_timeout": "300ms"})
    rss0 = sc.rss_kb()
    stop = threading.Event()
    back = {}
    res = [{"ok": 0, "errors": [], "late_errors": [], "slowest": 0.0} for _ in range(4)]

    def worker(i):
        r = sc.client(socket_timeout=10 * SLOW)
        n = 0
        while not stop.is_set():
            n += 1
            t0 = time.monotonic()
            try:
                r.set(f"d:{i}", n) if n % 2 else r.get(f"d:{i}")
                res[i]["ok"] += 1
            except redis.ResponseError as e:
                res[i]["errors"].append(str(e))
                # a request sent once Redis was back and the proxy knew it
                if "ready" in back and t0 > back["ready"]:
                    res[i]["late_errors"].append(str(e))
            res[i]["slowest"] = max(res[i]["slowest"], time.monotonic() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(10)
    assert all(x["ok"] == 0 for x in res)
    grew = rss_kb(sc.proc.pid) - rss0
    m.start()
    back["t"] = time.monotonic()
    wait_until(lambda: all(x["ok"] > 0 for x in res), timeout=5, what="every client served")
    recovered = time.monotonic() - back["t"]
    back["ready"] = time.monotonic()
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    for x in res:
        assert x["slowest"] < 0.3 * 3 * SLOW, x["slowest"]
        assert all(e.startswith("upstream 127.0.0.1:") and
                   ("unavailable" in e or "is down" in e) for e in x["errors"]), x["errors"][:3]
        assert x["late_errors"] == []
    assert recovered < 1 * SLOW + 0.5, f"service came back {recovered:.2f}s after Redis"
    assert grew < 64 * 1024, f"RSS grew by {grew} kB"
