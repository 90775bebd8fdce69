"""Fixtures: real redis-server processes and the sidecar on spare loopback
ports, started per test and killed by PID at teardown. Logs are printed
when a test fails."""
import fcntl
import os
import pathlib
import random
import signal
import socket
import subprocess
import time

import pytest
import redis

ROOT = pathlib.Path(__file__).resolve().parents[2]
SIDECAR_BIN = os.environ.get("SIDECAR_BIN", str(ROOT / "redis-sidecar"))
ASAN = os.environ.get("SIDECAR_ASAN") == "1"
SLOW = 3 if ASAN else 1            # sanitizers slow everything down
LOCK_DIR = "/tmp/redis-sidecar-test-ports"
_held_locks = []


def free_port():
    """A port in 21000-29999 that no other worker holds and nothing binds."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    ports = list(range(21000, 30000))
    random.shuffle(ports)
    for p in ports:
        fd = os.open(f"{LOCK_DIR}/{p}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            os.close(fd)
            continue
        finally:
            s.close()
        _held_locks.append(fd)
        return p
    raise RuntimeError("no free port")


def wait_until(cond, timeout=5.0, what="condition", interval=0.02):
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - report the last failure
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}" + (f": {last!r}" if last else ""))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stop_process(server, sig):
    """Signal a server's process (SIGKILL by default: the tests kill by PID)."""
    if server.proc and server.proc.poll() is None:
        server.proc.send_signal(sig)
        server.proc.wait(10)
    server.proc = None


class RedisServer:
    def __init__(self, tmp, name="redis", args=()):
        self.port = free_port()
        self.dir = tmp / f"{name}-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logfile = self.dir / "redis.log"
        self.args = list(args)
        self.password = (self.args[self.args.index("--requirepass") + 1]
                         if "--requirepass" in self.args else None)
        self.proc = None

    def start(self, wait=True):
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", str(self.dir),
               "--logfile", str(self.logfile), "--daemonize", "no",
               "--repl-diskless-sync-delay", "0"] + self.args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        if wait:
            wait_until(lambda: self.client().ping(), what=f"redis on {self.port}")
        return self

    def stop(self, sig=signal.SIGKILL):
        stop_process(self, sig)

    def client(self, **kw):
        kw.setdefault("password", self.password)
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kw)

    def sidecar_links(self):
        """CLIENT LIST entries of the proxy's data links."""
        return [c for c in self.client().client_list() if c.get("name") == "sidecar-data"]

    def log(self):
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""


class Sidecar:
    def __init__(self, tmp, master_port, **sections):
        self.port = free_port()
        self.dir = tmp / f"sidecar-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ini = self.dir / "proxy.ini"
        self.logfile = self.dir / "sidecar.log"
        self.proc = None
        cfg = {
            "proxy": {"listen": f"127.0.0.1:{self.port}"},
            "upstream": {"master": f"127.0.0.1:{master_port}"} if master_port else {},
            "log": {"level": "debug" if os.environ.get("SIDECAR_DEBUG") else "info"},
        }
        # teardown drains; a client a test left blocked costs at most this
        cfg["proxy"]["shutdown_timeout"] = "1s"
        for sec, kv in sections.items():
            cfg.setdefault(sec, {}).update(kv)
        self.cfg = cfg
        self.write_ini()

    def write_ini(self):
        lines = []
        for sec, kv in self.cfg.items():
            lines.append(f"[{sec}]")
            lines += [f"{k} = {v}" for k, v in kv.items()]
        self.ini.write_text("\n".join(lines) + "\n")

    def start(self):
        self.log_fh = open(self.logfile, "ab")
        self.proc = subprocess.Popen([SIDECAR_BIN, "-c", str(self.ini)],
                                     stdin=subprocess.DEVNULL, stdout=self.log_fh,
                                     stderr=subprocess.STDOUT)

        def accepting():
            assert self.proc.poll() is None, f"sidecar exited: {self.log()}"
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        wait_until(accepting, what="sidecar listening")
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM; returns the exit code (0 unless the proxy misbehaved)."""
        if not self.proc:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return "hung on SIGTERM"
        rc = self.proc.returncode
        self.proc = None
        self.log_fh.close()
        return rc

    def rss_kb(self):
        return rss_kb(self.proc.pid)

    def client(self, **kw):
        kw.setdefault("socket_timeout", 10 * SLOW)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def raw(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout * SLOW)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def info(self):
        raw = self.client().execute_command("PROXY", "INFO")
        out = {}
        for line in raw.decode().splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def log(self):
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""


class SentinelServer:
    """A redis-sentinel watching `master_port` as `name` (its config file
    is its own: sentinel rewrites it)."""

    def __init__(self, tmp, master_port, name="mymaster", quorum=2, down_after=1000,
                 failover_timeout=5000, extra=()):
        self.port = free_port()
        self.dir = tmp / f"sentinel-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "sentinel.conf"
        self.logfile = self.dir / "sentinel.log"
        self.conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", "daemonize no", f"dir {self.dir}",
            f"logfile {self.logfile}",
            f"sentinel monitor {name} 127.0.0.1 {master_port} {quorum}",
            f"sentinel down-after-milliseconds {name} {down_after}",
            f"sentinel failover-timeout {name} {failover_timeout}",
            *extra]) + "\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["redis-sentinel", str(self.conf)],
                                     stdin=subprocess.DEVNULL)
        wait_until(lambda: self.client().ping(), what=f"sentinel on {self.port}")
        return self

    def stop(self, sig=signal.SIGKILL):
        stop_process(self, sig)

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def master_addr(self, name="mymaster"):
        a = self.client().execute_command("SENTINEL", "get-master-addr-by-name", name)
        return None if a is None else (a[0].decode(), int(a[1]))

    def log(self):
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


class Env:
    """What a test started; torn down in reverse, logs shown on failure."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.redises = []
        self.sidecars = []
        self.sentinels = []

    def redis(self, name="redis", args=(), start=True):
        r = RedisServer(self.tmp, name, args)
        self.redises.append(r)
        return r.start() if start else r

    def sentinel(self, master, **kw):
        s = SentinelServer(self.tmp, master.port, **kw)
        self.sentinels.append(s)
        return s.start()

    def sidecar(self, master, start=True, **sections):
        port = master.port if hasattr(master, "port") else master
        s = Sidecar(self.tmp, port, **sections)
        self.sidecars.append(s)
        return s.start() if start else s


@pytest.fixture
def env(request, tmp_path):
    e = Env(tmp_path)
    yield e
    problems = []
    for s in e.sidecars:
        if s.proc is not None and s.proc.poll() is not None:
            problems.append(f"sidecar exited by itself with {s.proc.returncode}")
        rc = s.stop()
        if rc not in (0, None):
            problems.append(f"sidecar stop returned {rc}")
    for s in e.sentinels:
        s.stop()
    for r in e.redises:
        r.stop()
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed or problems:
        for s in e.sidecars:
            print(f"----- sidecar {s.port} log (last 80 lines) -----")
            print("\n".join(s.log().splitlines()[-80:]))
    assert not problems, "; ".join(problems)


@pytest.fixture
def master(env):
    return env.redis("master")


@pytest.fixture
def sidecar(env, master):
    return env.sidecar(master)


def resp_read(f):
    """Parse one RESP2 reply from a buffered socket file; errors come back
    as ResponseError instances (not raised)."""
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest
    if t == b"-":
        return redis.ResponseError(rest.decode(errors="replace"))
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    # RESP3
    if t == b"_":
        return None
    if t == b",":
        return float(rest)
    if t == b"#":
        return rest == b"t"
    if t == b"(":
        return int(rest)
    if t in (b"=", b"!"):
        data = f.read(int(rest) + 2)[:-2]
        return data[4:] if t == b"=" else redis.ResponseError(data.decode(errors="replace"))
    if t == b"%":
        return dict((resp_read(f), resp_read(f)) for _ in range(int(rest)))
    if t == b"~":
        return Resp3Set(resp_read(f) for _ in range(int(rest)))
    if t == b">":
        return Push(resp_read(f) for _ in range(int(rest)))
    raise AssertionError(f"bad reply line {line!r}")


class Push(list):
    """A RESP3 push frame (>), told apart from an array reply."""


class Resp3Set(list):
    """A RESP3 set (~), told apart from an array reply."""


def resp_type(f):
    """The type byte of the next reply, without consuming it."""
    return f.peek(1)[:1]


def resp_cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)
