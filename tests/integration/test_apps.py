"""Local apps told apart by the kernel, not by 127.0.0.1: caps, PROXY APPS,
KILL APP, BAN APP, the slowlog and hot keys per app, and per-app metrics.
Each "app" is a real process (app_proc.py) running as a uid of its own,
and, where the machine lets the test make cgroups, in a service's cgroup."""
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import redis

from helpers import (SLOW, BoundRedis, connect_from, free_port, http_get, resp_cmd, resp_read,
                     wait_until)

APP = pathlib.Path(__file__).with_name("app_proc.py")
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="SKIPPED: needs root to run apps as other uids")


class App:
    """An app process; its connections stay open until it is stopped."""

    def __init__(self, uid=None, tcp=None, unix=None, name=None, cgroup=None):
        args = [sys.executable, str(APP)]
        for flag, v in (("--uid", uid), ("--tcp", tcp), ("--unix", unix), ("--name", name),
                        ("--cgroup", cgroup)):
            if v is not None:
                args += [flag, str(v)]
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.p.pid

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline()
        assert out, f"app {self.pid} died"
        return json.loads(out)

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


@pytest.fixture
def apps():
    made = []

    def make(**kw):
        a = App(**kw)
        made.append(a)
        return a
    yield make
    for a in made:
        a.stop()


def admin(sc):
    return redis.Redis(unix_socket_path=str(sc.dir / "admin.sock"), socket_timeout=10 * SLOW)


def proxy(sc, *args):
    out = admin(sc).execute_command("PROXY", *args)
    return out.decode() if isinstance(out, bytes) else out


def lines_of(text):
    """key=value lines, as dicts."""
    return [dict(f.split("=", 1) for f in line.split(" ") if "=" in f)
            for line in text.splitlines() if line]


def app_table(sc):
    return {a["app"]: a for a in lines_of(proxy(sc, "APPS"))}


def admin_info(sc):
    """PROXY INFO over the admin socket: no TCP connection of the test's
    own is looked up (and counted) to read it."""
    out = {}
    for line in proxy(sc, "INFO").splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out


@pytest.fixture
def app_sidecar(env, master):
    """make(**clients): a sidecar with an admin socket and an app socket
    every uid can reach (in /tmp: pytest's own directories are its user's
    only)."""
    dirs = []

    def make(**clients):
        d = pathlib.Path(tempfile.mkdtemp(prefix="sidecar-apps-", dir="/tmp"))
        os.chmod(d, 0o755)
        dirs.append(d)
        return start_app_sidecar(env, master, d, clients)
    yield make
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def start_app_sidecar(env, master, d, clients):
    sc = env.sidecar(master, start=False)
    sc.cfg["admin"]["socket"] = str(sc.dir / "admin.sock")
    sc.apps_sock = d / "apps.sock"
    sc.cfg["proxy"]["listen"] += f", unix:{sc.apps_sock}"
    sc.cfg["clients"] = {"max_connections_per_app": "50", **clients}
    sc.write_ini()
    sc.start()
    # start() waits for the TCP listener; the unix one is bound right after
    wait_until(sc.apps_sock.exists, what="the app socket")
    os.chmod(sc.apps_sock, 0o777)
    return sc


def cgroup2_mount():
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        sep = f.index("-")
        if f[sep + 1] == "cgroup2":
            return pathlib.Path(f[4])
    return None


@pytest.fixture
def service_cgroup(request):
    """A cgroup named like a systemd service, where the machine lets the
    test make one (root, a writable cgroup2); None elsewhere."""
    made = []

    def make(name):
        mount = cgroup2_mount()
        if not ROOT or not mount:
            return None
        d = mount / f"sidecar-test-{os.getpid()}.slice" / name
        try:
            d.mkdir(parents=True)
        except OSError:
            return None
        made.append(d)
        return d
    yield make
    for d in made:
        for _ in range(50):
            try:
                d.rmdir()
                d.parent.rmdir()
                break
            except OSError:
                time.sleep(0.1)


@needs_root
def test_a_runaway_app_is_capped_by_its_uid_the_others_are_served(apps, app_sidecar):
    sc = app_sidecar(app_key="uid")
    unix = sc.apps_sock
    runaway = apps(uid=61001, tcp=sc.port, name="runaway")
    quiet = apps(uid=61002, tcp=sc.port, name="quiet")
    quiet_unix = apps(uid=61002, unix=unix, name="quietsock")
    out = runaway.ask("open 60")
    assert out["ok"] == 50 and len(out["errors"]) == 10, out
    assert out["errors"][0] == "ERR max connections per app reached (uid:61001, limit 50)", out
    # the same app over the unix socket is the same key, and capped as well
    runaway_unix = apps(uid=61001, unix=unix, name="runaway")
    assert runaway_unix.ask("open 3")["ok"] == 0
    assert quiet.ask("open 20") == {"ok": 20, "errors": []}
    assert quiet_unix.ask("open 5") == {"ok": 5, "errors": []}
    t = app_table(sc)
    r, q = t["uid:61001"], t["uid:61002"]
    assert (r["key"], r["uid"], r["current"], r["peak"]) == ("uid", "61001", "50", "50")
    assert int(r["refused_per_app"]) == 13 and int(r["accepted"]) == 50
    assert r["processes"] == f"{runaway.pid}:runaway"
    assert q["current"] == "25" and q["refused"] == "0"
    assert sorted(q["processes"].split(",")) == sorted(
        [f"{quiet.pid}:quiet", f"{quiet_unix.pid}:quietsock"])
    assert int(q["requests"]) >= 25 and int(q["bytes_in"]) > 0
    info = sc.info()
    assert int(info["refused_per_app"]) == 13
    # PROXY CLIENT LIST: each connection with its app, pid and name
    listed = lines_of(proxy(sc, "CLIENT", "LIST"))
    mine = [c for c in listed if c.get("app") == "uid:61001"]
    assert len(mine) == 50 and all(c["pid"] == str(runaway.pid) and c["comm"] == "runaway"
                                   for c in mine)
    # PROXY KILL APP closes that app only
    assert admin(sc).execute_command("PROXY", "KILL", "APP", "uid:61001") == 50
    assert runaway.ask("alive")["alive"] == 0
    assert quiet.ask("alive")["alive"] == 20 and quiet_unix.ask("alive")["alive"] == 5
    # PROXY BAN APP: closed and refused until it expires; the others go on
    assert admin(sc).execute_command("PROXY", "BAN", "APP", "uid:61002", 60) == 25
    out = quiet.ask("open 1")
    assert out["ok"] == 0 and out["errors"][0].startswith("ERR app uid:61002 is banned for"), out
    assert runaway.ask("open 5")["ok"] == 5
    assert "app=uid:61002" in proxy(sc, "BANS")
    assert admin(sc).execute_command("PROXY", "UNBAN", "APP", "uid:61002") == 1
    assert quiet.ask("open 1")["ok"] == 1
    assert sc.log().count("app uid:61001 refused: max connections per app") == 1


@needs_root
def test_apps_in_a_service_cgroup_are_keyed_by_the_service(service_cgroup, apps, app_sidecar):
    cg = service_cgroup("billing.service")
    if cg is None:
        pytest.skip("SKIPPED: cannot make a cgroup here (needs root and a writable cgroup2)")
    sc = app_sidecar()                 # app_key = service, the default
    billing = apps(uid=61003, tcp=sc.port, name="billing", cgroup=cg)
    other = apps(uid=61004, tcp=sc.port, name="other")
    billing_unix = apps(uid=61003, unix=sc.apps_sock, name="billing2", cgroup=cg)
    out = billing.ask("open 55")
    assert out["ok"] == 50, out
    assert out["errors"][0] == \
        "ERR max connections per app reached (billing.service, uid 61003, limit 50)"
    assert billing_unix.ask("open 1")["ok"] == 0    # the same service over the unix socket
    assert other.ask("open 30")["ok"] == 30         # no service: keyed by its uid
    t = app_table(sc)
    b = t["billing.service"]
    assert (b["key"], b["service"], b["uid"], b["current"]) == \
        ("service", "billing.service", "61003", "50")
    assert t["uid:61004"]["current"] == "30"
    assert admin(sc).execute_command("PROXY", "KILL", "APP", "billing.service") == 50
    assert other.ask("alive")["alive"] == 30


@needs_root
def test_process_key(apps, app_sidecar):
    sc = app_sidecar(app_key="process")
    a = apps(uid=61005, tcp=sc.port, name="worker")
    b = apps(uid=61005, tcp=sc.port, name="worker")
    assert a.ask("open 52")["errors"] == \
        [f"ERR max connections per app reached (worker[{a.pid}], uid 61005, limit 50)"] * 2
    assert b.ask("open 10")["ok"] == 10               # same uid, another process
    t = app_table(sc)
    assert t[f"worker[{a.pid}]"]["current"] == "50"
    assert t[f"worker[{b.pid}]"]["current"] == "10"


@needs_root
def test_the_admin_socket_is_never_shut_by_an_app_rule(apps, app_sidecar):
    """Root's uid is an app like any other over TCP, capped and banned; the
    admin socket stays the operator's way in."""
    sc = app_sidecar(app_key="uid", max_connections_per_app="3")
    root = apps(tcp=sc.port, name="rootapp")
    assert root.ask("open 5")["ok"] == 3
    assert admin(sc).execute_command("PROXY", "BAN", "APP", "uid:0", 60) >= 3
    assert root.ask("open 1")["errors"][0].startswith("ERR app uid:0 is banned")
    held = [admin(sc) for _ in range(5)]             # over the cap, banned uid, all served
    assert all(h.execute_command("PROXY", "APPS") for h in held)
    for bad in ("", "a b", "x" * 200):
        with pytest.raises(redis.ResponseError, match="not an app key"):
            admin(sc).execute_command("PROXY", "BAN", "APP", bad, 60)
    assert admin(sc).execute_command("PROXY", "UNBAN", "APP", "uid:0") == 1


def test_a_client_closed_while_its_request_runs_keeps_its_app_until_freed(app_sidecar):
    """A local reply over max_output_buffer closes its client inside the
    request; the request is still counted on its app after that. When that
    was its process's only connection, the process entry must outlive the
    close until the client is freed (make asan's build checks it)."""
    sc = app_sidecar(max_output_buffer="1kb")
    others = [sc.client() for _ in range(6)]
    for c in others:
        assert c.ping()                         # CLIENT LIST is longer than 1kb now
    code = ("import socket, sys\n"
            "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
            "s.sendall(b'*2\\r\\n$6\\r\\nCLIENT\\r\\n$4\\r\\nLIST\\r\\n')\n"
            "data = b''\n"
            "while True:\n"
            "    d = s.recv(65536)\n"
            "    if not d:\n"
            "        break\n"
            "    data += d\n"
            "print(len(data))\n")
    for _ in range(3):
        p = subprocess.run([sys.executable, "-c", code, str(sc.port)], capture_output=True,
                           text=True, timeout=20 * SLOW)
        assert p.returncode == 0 and int(p.stdout) < 1024, p
    assert sc.alive() and all(c.ping() for c in others)
    sc.wait_log("closed: output buffer over 1024 bytes", count=3)   # (PROXY INFO is over 1kb)


def test_remote_and_ip_keys(app_sidecar):
    """app_key = ip keys every peer by address, loopback ones included."""
    sc = app_sidecar(app_key="ip", max_connections_per_app="2")
    held = [connect_from("127.0.0.7", sc.port) for _ in range(2)]
    s = connect_from("127.0.0.7", sc.port)
    assert str(resp_read(s.makefile("rb"))) == \
        "ERR max connections per app reached (127.0.0.7, limit 2)"
    ok = connect_from("127.0.0.8", sc.port)
    ok.sendall(resp_cmd("PING"))
    assert resp_read(ok.makefile("rb")) == b"PONG"
    assert app_table(sc)["127.0.0.7"]["current"] == "2"
    for h in held:
        h.close()


@needs_root
def test_peers_that_leave_before_they_are_looked_up_fall_back_and_are_counted(
        app_sidecar):
    sc = app_sidecar()
    before = admin_info(sc)
    code = ("import socket, sys, os\n"
            "os.setresgid(61006, 61006, 61006); os.setresuid(61006, 61006, 61006)\n"
            "s = socket.socket(socket.AF_UNIX if sys.argv[1] == 'unix' else socket.AF_INET)\n"
            "s.connect(sys.argv[2] if sys.argv[1] == 'unix' else ('127.0.0.1', int(sys.argv[2])))\n"
            "s.sendall(b'PING\\r\\n')\n")
    # the proxy does not accept while stopped: the peers are gone when it does
    os.kill(sc.proc.pid, signal.SIGSTOP)
    try:
        for how, where in (("unix", str(sc.apps_sock)), ("tcp", str(sc.port))):
            subprocess.run([sys.executable, "-c", code, how, where], check=True, timeout=20)
    finally:
        os.kill(sc.proc.pid, signal.SIGCONT)
    # (the admin socket's own connections are unix ones: one lookup each,
    # never a fallback while the test runs)
    wait_until(lambda: int(admin_info(sc)["app_lookups"]) >= int(before["app_lookups"]) + 3,
               what="both looked up")
    info = admin_info(sc)
    gone = int(info["app_lookup_process_gone"]) - int(before["app_lookup_process_gone"])
    tcp = (int(info["app_lookup_no_pid"]) - int(before["app_lookup_no_pid"]) +
           int(info["app_lookup_no_socket"]) - int(before["app_lookup_no_socket"]))
    assert gone == 1 and tcp == 1, info
    # keyed by what was known: the uid (unix; TCP while its socket lingers), else the address
    t = app_table(sc)
    assert "uid:61006" in t and int(t["uid:61006"]["accepted"]) >= 1
    assert sc.client().ping() and sc.alive()


@needs_root
def test_slowlog_names_the_app_and_splits_the_time(apps, app_sidecar):
    sc = app_sidecar(slowlog_slower_than="20ms")
    slow = apps(uid=61007, tcp=sc.port, name="reports")
    assert slow.ask("open 1")["ok"] == 1
    assert slow.ask("eval 120 report:2026")["ok"] == 1
    long_key = "report:" + "x" * 60                  # 67 bytes: 32 kept
    assert slow.ask(f"eval 40 {long_key}")["ok"] == 1
    # a request held in the sidecar (PROXY PAUSE): its time is the sidecar's
    waiter = apps(uid=61008, tcp=sc.port, name="waiter")
    assert waiter.ask("open 1")["ok"] == 1
    proxy(sc, "PAUSE", "300ms")
    assert waiter.ask("get session:7 1")["ok"] == 1
    entries = lines_of(proxy(sc, "SLOWLOG", "10"))
    ev = [e for e in entries if e["cmd"] == "eval" and e["app"] == "uid:61007"]
    assert len(ev) == 2, entries
    assert (ev[0]["key"], ev[0]["key_len"]) == (long_key[:32] + "...", "67"), ev[0]  # newest first
    e = ev[1]
    assert (e["app"], e["pid"], e["key"]) == ("uid:61007", str(slow.pid), "report:2026")
    assert int(e["total_us"]) >= 110000 and int(e["upstream_us"]) >= 110000
    assert int(e["sidecar_us"]) < 20000
    g = [e for e in entries if e["cmd"] == "get" and e["app"] == "uid:61008"]
    assert len(g) == 1 and g[0]["key"] == "session:7", entries
    assert int(g[0]["sidecar_us"]) >= 200000 and int(g[0]["upstream_us"]) < 20000, g
    assert admin(sc).execute_command("PROXY", "SLOWLOG", "LEN") >= 3
    assert int(app_table(sc)["uid:61007"]["latency_p99_us"]) >= 110000
    assert admin(sc).execute_command("PROXY", "SLOWLOG", "RESET") == b"OK"
    assert admin(sc).execute_command("PROXY", "SLOWLOG", "LEN") == 0


def test_hotkeys_name_the_key_read_10000_times_among_100000(app_sidecar):
    sc = app_sidecar(app_key="ip")
    c = BoundRedis("127.0.0.9", sc.port, socket_timeout=30 * SLOW)   # its own app
    rnd = random.Random(18)
    keys = [f"k:{rnd.randrange(10**9)}" for _ in range(100000)] + ["hot:key"] * 10000
    rnd.shuffle(keys)
    for i in range(0, len(keys), 2000):
        p = c.pipeline(transaction=False)
        for k in keys[i:i + 2000]:
            p.get(k)
        p.execute()
    top = lines_of(proxy(sc, "HOTKEYS", "APP", "127.0.0.9", "3"))
    assert top[0]["key"] == "hot:key", top
    assert top[0]["app"] == "127.0.0.9" and top[0]["rank"] == "1"
    # ~1 in 32 sampled: the estimate is near 10,000
    assert 5000 < int(top[0]["est_requests"]) < 20000, top
    assert float(top[0]["share"]) > 0.05


def test_metrics_stay_bounded_with_50_apps(app_sidecar):
    sc = app_sidecar(app_key="ip")
    held = []
    for i in range(50):
        s = connect_from(f"127.0.1.{i + 1}", sc.port)
        s.sendall(resp_cmd("SET", f"k{i}", "v") * (i + 1))
        f = s.makefile("rb")
        for _ in range(i + 1):
            assert resp_read(f) == b"OK"
        held.append(s)
    body = metrics_body(sc)
    fams = {}
    for line in body.splitlines():
        if line.startswith("redis_sidecar_app_") and "app=" in line:
            name = line.split("{")[0]
            app = line.split('app="')[1].split('"')[0]
            fams.setdefault(name, set()).add(app)
    assert fams["redis_sidecar_app_connections"], body[:2000]
    for name, labels in fams.items():
        assert len(labels) <= 21, (name, len(labels))
        assert "other" in labels, name
    # the busiest are named: 127.0.1.50 sent 50 requests
    assert "127.0.1.50" in fams["redis_sidecar_app_requests_total"]
    assert "127.0.1.1" not in fams["redis_sidecar_app_requests_total"]
    p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    for s in held:
        s.close()


def metrics_body(sc):
    """/metrics, from a port a reload opens."""
    port = free_port()
    sc.cfg["admin"]["metrics_listen"] = f"127.0.0.1:{port}"
    sc.write_ini()
    assert admin(sc).execute_command("PROXY", "RELOAD")
    status, body = http_get(port, "/metrics")
    assert status == 200
    return body
