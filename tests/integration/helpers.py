"""Everything the integration tests share: real redis-server,
redis-sentinel and sidecar processes on spare loopback ports, waiting on
conditions, RESP encoding and decoding, a TCP relay that can blackhole
its flows, the one load generator, and small probes of the proxy's state
(PROXY INFO, PROXY NODES, CLIENT LIST, GET /metrics).

Fixtures and hooks are in conftest.py; test files import from here only.
This module needs neither pytest nor the fixtures: the netns test runs
part of it in a subprocess."""
import collections
import fcntl
import os
import pathlib
import random
import resource
import select
import selectors
import signal
import socket
import subprocess
import threading
import time

import redis

ROOT = pathlib.Path(__file__).resolve().parents[2]
SIDECAR_BIN = os.environ.get("SIDECAR_BIN", str(ROOT / "redis-sidecar"))
ASAN = os.environ.get("SIDECAR_ASAN") == "1"
SLOW = 3 if ASAN else 1            # sanitizers slow everything down
LOCK_DIR = "/tmp/redis-sidecar-test-ports"
_held_locks = []


# ---------------------------------------------------------------- waiting

def wait_until(cond, timeout=5.0, what="condition", interval=0.02, scale=True):
    """cond()'s first true value, polled until the deadline (timeout x SLOW,
    unless scale is false: a bound the test asserts, not a margin)."""
    deadline = time.monotonic() + timeout * (SLOW if scale else 1)
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - report the last failure
            last = e
        if time.monotonic() >= deadline:
            break
        # No condition: this is the poll interval of waiting on one.
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}" + (f": {last!r}" if last else ""))


def readable(sock, timeout):
    """True once sock has data or EOF to read (it is not consumed)."""
    return bool(select.select([sock], [], [], timeout)[0])


class Sampler:
    """Calls fn() every `interval` seconds in a thread until stop() and
    keeps [(monotonic time, value)]: for levels over time (how many links
    Redis sees during a run), where no single event can be waited on.
    With changes_only, a value is kept only when it differs from the last."""

    def __init__(self, fn, interval=0.05, changes_only=False):
        self.fn, self.interval, self.changes_only = fn, interval, changes_only
        self.samples = []
        self.errors = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                v = self.fn()
            except Exception as e:  # noqa: BLE001 - kept for the test to see
                self.errors.append(repr(e))
            else:
                if not (self.changes_only and self.samples and self.samples[-1][1] == v):
                    self.samples.append((time.monotonic(), v))
            # No condition: the sampling period of a level, which has no event.
            time.sleep(self.interval)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_flag.set()
        self.thread.join(10)
        return self

    def values(self):
        return [v for _, v in self.samples]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------- ports, processes

def free_port(bus=False):
    """A port in 21000-29999 that no other worker holds and nothing binds
    (bus: in 20000-22767, and nothing binds port + 10000, a cluster node's
    bus, in 30000-32767: apart from the other ports, below the ephemeral
    range that clients' connections take theirs from)."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    ports = list(range(20000, 22768) if bus else range(21000, 30000))
    random.shuffle(ports)
    for p in ports:
        fd = os.open(f"{LOCK_DIR}/{p}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        ok = True
        for q in (p, p + 10000) if bus else (p,):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", q))
            except OSError:
                ok = False
            finally:
                s.close()
        if not ok:
            os.close(fd)
            continue
        _held_locks.append(fd)
        return p
    raise RuntimeError("no free port")


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def status_kb(pid, field):
    """A size from /proc/PID/status (VmRSS, VmHWM, ...), in KB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kb(pid):
    return status_kb(pid, "VmRSS")


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        return sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])


def stop_process(server, sig):
    """Signal a server's process (SIGKILL by default: the tests kill by PID)."""
    if server.proc and server.proc.poll() is None:
        server.proc.send_signal(sig)
        server.proc.wait(10)
    server.proc = None


def unread_by_peer(sock):
    """Bytes sock has sent that its loopback peer has not read yet (the
    peer's receive queue, from /proc/net/tcp[6]); None if not found."""
    lport = sock.getsockname()[1]
    rport = sock.getpeername()[1]
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if (int(local.rsplit(":", 1)[1], 16) == rport and
                        int(remote.rsplit(":", 1)[1], 16) == lport):
                    return int(fields[4].split(":")[1], 16)
    return None


def tls_client_kw(tls):
    """redis-py keyword arguments for a client of a TLS-only server (or
    sentinel) started with this tls= dict: ssl on, trusting tls["ca"] (or
    tls["client_ca"]), presenting tls["client_cert"]/["client_key"] if
    given, else the client.crt/client.key next to the CA file if there
    are. The host name is not checked (redis-py's default)."""
    cert, key = tls.get("client_cert"), tls.get("client_key")
    if "client_cert" not in tls:
        d = pathlib.Path(tls["ca"]).parent
        if (d / "client.crt").exists():
            cert, key = str(d / "client.crt"), str(d / "client.key")
    return {"ssl": True, "ssl_ca_certs": tls.get("client_ca", tls["ca"]),
            "ssl_certfile": cert, "ssl_keyfile": key}


def tls_upstream(certs, **extra):
    """The sidecar's [upstream] keys for TLS to Redis: tls = on, trusting
    the test CA (certs: a tls_certs.Certs); extra keys (tls_cert_file,
    tls_server_name, tls_verify, sentinel_tls, ...) are added, or
    override (None leaves a key out of the ini)."""
    return {"tls": "on", "tls_ca_file": certs["ca.crt"], **extra}


class RedisServer:
    """A redis-server on a spare port. With tls (a dict: cert, key, ca,
    auth_clients "no" | "yes" | "optional", and for client() optionally
    client_cert, client_key, client_ca; tls_certs.Certs.redis_tls makes
    one) it is TLS-only: `port` is its tls-port, plaintext is off, and
    replication (both ways) is over TLS, with `cert` as its client
    certificate to its master."""

    def __init__(self, tmp, name="redis", args=(), tls=None):
        self.port = free_port(bus="--cluster-enabled" in args)
        self.dir = tmp / f"{name}-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logfile = self.dir / "redis.log"
        self.args = list(args)
        self.password = (self.args[self.args.index("--requirepass") + 1]
                         if "--requirepass" in self.args else None)
        self.tls = dict(tls) if tls else None
        self.proc = None

    def start(self, wait=True):
        if self.tls:
            ports = ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"],
                     "--tls-ca-cert-file", self.tls["ca"],
                     "--tls-auth-clients", self.tls.get("auth_clients", "no"),
                     "--tls-replication", "yes"]
        else:
            ports = ["--port", str(self.port)]
        cmd = ["redis-server", *ports, "--bind", "127.0.0.1",
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
        """A redis-py client (over TLS for a TLS server; kw override, e.g.
        ssl_certfile=None, ssl_keyfile=None for one without a certificate)."""
        kw.setdefault("password", self.password)
        if self.tls:
            for k, v in tls_client_kw(self.tls).items():
                kw.setdefault(k, v)
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kw)

    def links(self, name="sidecar-data"):
        """CLIENT LIST entries of the proxy's links of one kind (DECISIONS:
        sidecar-data, sidecar-lease, sidecar-health, sidecar-sentinel)."""
        return [c for c in self.client().client_list() if c.get("name") == name]

    def sidecar_links(self):
        """CLIENT LIST entries of the proxy's data links."""
        return self.links("sidecar-data")

    def calls(self, cmd):
        """How many times this server ran cmd (INFO commandstats)."""
        stats = self.client().info("commandstats")
        return stats.get(f"cmdstat_{cmd}", {}).get("calls", 0)

    def hold_writes(self, seconds=30):
        """CLIENT PAUSE WRITE: the server reads writes (and scripts) and
        leaves them unanswered until release_writes(); reads, PING and
        ROLE are still answered. Requests sent meanwhile stay in flight
        for as long as a test needs, however slow the machine."""
        self.client().execute_command("CLIENT", "PAUSE", int(seconds * 1000), "WRITE")

    def release_writes(self):
        self.client().execute_command("CLIENT", "UNPAUSE")

    def repl_offset(self):
        """master_repl_offset, or a replica's slave_repl_offset."""
        info = self.client().info("replication")
        return info.get("slave_repl_offset", info["master_repl_offset"])

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
        # the tests' own PROXY INFO/NODES come from 127.0.0.1 (no address
        # is an admin by default); admin={"allow": None} leaves it out
        cfg["admin"] = {"allow": "127.0.0.1"}
        # leases on demand, so that the tests that count leases and their
        # handshakes see only their own; the tests of min_idle_leases (and
        # of the order it gives) set it
        cfg["pool"] = {"min_idle_leases": "0"}
        for sec, kv in sections.items():
            cfg.setdefault(sec, {}).update(kv)
        self.cfg = cfg
        self.write_ini()

    def write_ini(self):
        lines = []
        for sec, kv in self.cfg.items():
            lines.append(f"[{sec}]")
            lines += [f"{k} = {v}" for k, v in kv.items() if v is not None]
        self.ini.write_text("\n".join(lines) + "\n")

    def start(self, prefix=()):
        """Starts the binary (after `prefix`, e.g. a prlimit command) and
        waits until it accepts connections."""
        self.log_fh = open(self.logfile, "ab")
        self.proc = subprocess.Popen([*prefix, SIDECAR_BIN, "-c", str(self.ini)],
                                     stdin=subprocess.DEVNULL, stdout=self.log_fh,
                                     stderr=subprocess.STDOUT)

        def accepting():
            assert self.proc.poll() is None, f"sidecar exited: {self.log()}"
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        wait_until(accepting, what="sidecar listening")
        # the admin socket is bound just after the TCP listener
        path = (self.cfg.get("admin") or {}).get("socket")
        if path:
            wait_until(lambda: accepting() and os.path.exists(path), what="the admin socket")
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

    def counter(self, name):
        """One PROXY INFO counter, as an int."""
        return int(self.info()[name])

    def nodes(self):
        return nodes(self)

    def clients(self):
        """The proxy's CLIENT LIST (as an admin sees it): one dict per app
        connection (id, addr, name, cmd, pending, qbuf, obuf, ...)."""
        raw = self.client().execute_command("CLIENT", "LIST").decode()
        return [dict(f.split("=", 1) for f in line.split()) for line in raw.splitlines() if line]

    def pending(self):
        """Per app connection, its requests read and not answered yet."""
        return [int(c["pending"]) for c in self.clients()]

    def log(self):
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_log(self, text, count=1, timeout=5.0):
        """Until `text` is in the log `count` times (state changes are logged)."""
        wait_until(lambda: self.log().count(text) >= count, timeout=timeout,
                   what=f"{text!r} x{count} in the sidecar log")


class SentinelServer:
    """A redis-sentinel watching `master_port` as `name` (its config file
    is its own: sentinel rewrites it). With tls (RedisServer's dict) it is
    TLS-only (`port` is its tls-port) and talks TLS to the nodes it
    watches and to the other sentinels (tls-replication yes), presenting
    `cert` as its client certificate: every node and sentinel of the
    set must then be TLS too."""

    def __init__(self, tmp, master_port, name="mymaster", quorum=2, down_after=1000,
                 failover_timeout=5000, extra=(), tls=None):
        self.port = free_port()
        self.dir = tmp / f"sentinel-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "sentinel.conf"
        self.logfile = self.dir / "sentinel.log"
        self.tls = dict(tls) if tls else None
        if self.tls:
            ports = ["port 0", f"tls-port {self.port}",
                     f"tls-cert-file {self.tls['cert']}", f"tls-key-file {self.tls['key']}",
                     f"tls-ca-cert-file {self.tls['ca']}",
                     f"tls-auth-clients {self.tls.get('auth_clients', 'no')}",
                     "tls-replication yes"]
        else:
            ports = [f"port {self.port}"]
        self.conf.write_text("\n".join([
            *ports, "bind 127.0.0.1", "daemonize no", f"dir {self.dir}",
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

    def client(self, **kw):
        if self.tls:
            for k, v in tls_client_kw(self.tls).items():
                kw.setdefault(k, v)
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kw)

    def master_addr(self, name="mymaster"):
        a = self.client().execute_command("SENTINEL", "get-master-addr-by-name", name)
        return None if a is None else (a[0].decode(), int(a[1]))

    def log(self):
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""


class Env:
    """What a test started; torn down in reverse by the env fixture, logs
    shown on failure."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.redises = []
        self.sidecars = []
        self.sentinels = []

    def redis(self, name="redis", args=(), start=True, tls=None):
        r = RedisServer(self.tmp, name, args, tls=tls)
        self.redises.append(r)
        return r.start() if start else r

    def sentinel(self, master, tls=None, **kw):
        s = SentinelServer(self.tmp, master.port, tls=tls, **kw)
        self.sentinels.append(s)
        return s.start()

    def sidecar(self, master, start=True, **sections):
        port = master.port if hasattr(master, "port") else master
        s = Sidecar(self.tmp, port, **sections)
        self.sidecars.append(s)
        return s.start() if start else s


# ---------------------------------------------------------------- topologies

class Cluster:
    """A Redis Cluster of `masters` masters with `replicas` replicas each,
    made by `redis-cli --cluster create` (node timeout 2 s, full coverage
    not required), waited for until every node says cluster_state:ok."""

    def __init__(self, env, masters=3, replicas=1, tls=None):
        self.env = env
        self.tls = tls
        args = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                # the shards that are up serve while one fails over
                "--cluster-require-full-coverage", "no"]
        if tls:
            args += ["--tls-cluster", "yes"]
        self.nodes = []
        for i in range(masters * (1 + replicas)):
            r = env.redis(f"cl{i}", args=args + ["--cluster-config-file", "nodes.conf"],
                          start=False, tls=tls)
            r.args += ["--cluster-config-file", str(r.dir / "nodes.conf")]
            r.start()
            self.nodes.append(r)
        cmd = ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes],
               "--cluster-replicas", str(replicas), "--cluster-yes"]
        if tls:
            cmd[1:1] = ["--tls", "--cacert", tls["ca"], "--cert", tls["client_cert"],
                        "--key", tls["client_key"]]
        out = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out.stdout + out.stderr
        wait_until(lambda: all(n.client().cluster("info")["cluster_state"] == "ok"
                               for n in self.nodes), timeout=20, what="cluster_state:ok")

    def seeds(self, k=1):
        return ", ".join(f"127.0.0.1:{n.port}" for n in self.nodes[:k])

    def masters(self):
        """The nodes that are masters now."""
        return [n for n in self.nodes if n.proc and
                n.client().info("replication")["role"] == "master"]

    def owner(self, key):
        """The node (a RedisServer) whose master role serves key's slot now."""
        slot = self.nodes[0].client().cluster("keyslot", key)
        for n in self.masters():
            for lo, hi in owned_ranges(n):
                if lo <= slot <= hi:
                    return n
        return None


def owned_ranges(node):
    """The slot ranges a master node serves, from its CLUSTER SHARDS."""
    me = node.client().cluster("myid")
    me = me.decode() if isinstance(me, bytes) else me
    raw = node.client().execute_command("CLUSTER", "SHARDS")
    for shard in raw:
        f = dict(zip(shard[::2], shard[1::2]))
        for n in f[b"nodes"]:
            nf = dict(zip(n[::2], n[1::2]))
            if nf[b"id"].decode() == me and nf[b"role"] == b"master":
                s = f[b"slots"]
                return [(int(s[i]), int(s[i + 1])) for i in range(0, len(s), 2)]
    return []


def replica_of(env, port, name="replica", tls=None):
    """A replica of the node on `port` (a master or a relay), in sync
    (with tls, a TLS-only one replicating over TLS: the master's too)."""
    rep = env.redis(name, args=["--replicaof", "127.0.0.1", str(port)], tls=tls)
    wait_until(lambda: rep.client().info("replication")["master_link_status"] == "up",
               what=f"{name} in sync")
    return rep


def sidecar_for(env, master, replicas, **sections):
    """A sidecar with these replicas, started and waited for until every
    replica is eligible for reads."""
    sections.setdefault("health", {}).setdefault("check_interval", "100ms")
    sc = env.sidecar(master, upstream={"replicas": ", ".join(f"127.0.0.1:{r.port}"
                                                              for r in replicas)}, **sections)
    wait_until(lambda: sc.info()["replicas"] == str(len(replicas)) and
               all("eligible=1" in sc.info()[f"replica{i}"] for i in range(len(replicas))),
               what="replicas eligible")
    return sc


def nodes(sc):
    """PROXY NODES as {field: value} plus 'node'/'sentinel'/'retiring'/
    'shard' lists of dicts."""
    raw = sc.client().execute_command("PROXY", "NODES").decode()
    out = {"node": [], "sentinel": [], "retiring": [], "shard": []}
    for line in raw.splitlines():
        if ":" not in line or line.startswith("#"):
            continue
        k, v = line.split(":", 1)
        kind = k.rstrip("0123456789")
        if kind in ("node", "sentinel", "retiring", "shard") and k != kind:
            out[kind].append(dict(kv.split("=", 1) for kv in v.split(",")))
        else:
            out[k] = v
    return out


def http_get(port, path, timeout=5):
    """(status, body) of one GET on the admin HTTP port."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def connect_from(ip, port, timeout=10):
    """A raw connection to the proxy from a loopback address of our choice."""
    s = socket.socket()
    s.bind((ip, 0))
    s.settimeout(timeout * SLOW)
    s.connect(("127.0.0.1", port))
    return s


class BoundRedis(redis.Redis):
    """A redis-py client whose connections come from `ip`."""

    def __init__(self, ip, port, **kw):
        class Conn(redis.Connection):
            def _connect(self):
                s = socket.socket()
                s.bind((ip, 0))
                s.settimeout(self.socket_connect_timeout or 10)
                s.connect((self.host, self.port))
                s.settimeout(self.socket_timeout)
                return s
        super().__init__(connection_pool=redis.ConnectionPool(
            connection_class=Conn, host="127.0.0.1", port=port, **kw))


# ---------------------------------------------------------------- RESP

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


class RawClient:
    """A raw connection (to the proxy, or any Redis port): send commands,
    read replies with resp_read."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")

    def send(self, *cmds):
        """Each cmd a tuple of arguments; all in one write."""
        self.s.sendall(b"".join(resp_cmd(*c) for c in cmds))

    def read(self, n=None):
        return resp_read(self.f) if n is None else [resp_read(self.f) for _ in range(n)]

    def close(self):
        self.f.close()
        self.s.close()


# ---------------------------------------------------------------- load

Call = collections.namedtuple("Call", "client seq t0 t1 ok value")


class Load:
    """The load generator: n client threads, each calling op(c, i, seq)
    with its own client c (connect(i); a redis-py client of `port` by
    default), seq counting its calls from 0. Every call is recorded as a
    Call(client, seq, t0, t1, ok, value): the op's return value, or the
    text of what it raised (a Redis error, a failed assert in the op).
    Tests name their keys from (i, seq), so the acknowledged writes are
    the ok calls.

    It runs until stop(), or `iterations` calls per client (join()). Pacing:
    `rate` calls per second per client, or as fast as replies come;
    `pause_after_error` seconds after a failed call. With `together`,
    every client connects before any sends. On a connection error,
    reconnect="retry" opens a new client and sends the same call again
    (counted in reconnects/refused, not recorded: nothing was answered);
    reconnect="record" records the error and opens a new client; else the
    error is recorded like any other. stop_on_error ends a client at its
    first failed call."""

    def __init__(self, op, n=1, port=None, connect=None, iterations=None, rate=None,
                 pause_after_error=0.0, reconnect=None, stop_on_error=False,
                 together=False, socket_timeout=10):
        if connect is None:
            def connect(i):
                return redis.Redis(host="127.0.0.1", port=port,
                                   socket_timeout=socket_timeout * SLOW)
        self.op, self.n, self.connect = op, n, connect
        self.iterations, self.rate = iterations, rate
        self.pause_after_error, self.reconnect = pause_after_error, reconnect
        self.stop_on_error = stop_on_error
        self.calls = []                       # every client's, in order
        self.per_client = [[] for _ in range(n)]
        self.nok = [0] * n
        self.reconnects = [0] * n
        self.refused = [0] * n
        self.crashed = []                     # (client, text): a thread that died
        self.stop_flag = threading.Event()
        self.barrier = threading.Barrier(n) if together else None
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]

    def _run(self, i):
        try:
            c = self.connect(i)
            if self.barrier:
                self.barrier.wait(60 * SLOW)
            seq = 0
            while not self.stop_flag.is_set() and (self.iterations is None or
                                                   seq < self.iterations):
                t0 = time.monotonic()
                retry = False
                try:
                    value, ok = self.op(c, i, seq), True
                except redis.ConnectionError as e:
                    if self.reconnect in ("retry", "record"):
                        if isinstance(e.__context__, ConnectionRefusedError) or "refused" in str(e):
                            self.refused[i] += 1
                        self.reconnects[i] += 1
                        c = self.connect(i)
                    retry = self.reconnect == "retry"
                    value, ok = str(e), False
                except (redis.RedisError, AssertionError, OSError) as e:
                    value, ok = str(e) or repr(e), False
                t1 = time.monotonic()
                if not retry:
                    call = Call(i, seq, t0, t1, ok, value)
                    self.calls.append(call)
                    self.per_client[i].append(call)
                    self.nok[i] += ok
                    seq += 1
                    if not ok and self.stop_on_error:
                        return
                delay = (1.0 / self.rate - (t1 - t0)) if self.rate else 0.0
                if not ok:
                    delay = max(delay, self.pause_after_error)
                if delay > 0:
                    # No condition: pacing, not waiting (the load's set rate).
                    time.sleep(delay)
        except Exception as e:  # noqa: BLE001 - the test must see it
            self.crashed.append((i, repr(e)))

    def start(self):
        # many clients: small stacks start faster (the ops never recurse deeply)
        old = threading.stack_size(512 * 1024 if self.n > 100 else 0)
        try:
            for t in self.threads:
                t.start()
        finally:
            threading.stack_size(old)
        return self

    def join(self, timeout=60):
        """Waits for every client to finish (iterations, or after stop());
        returns whether all did."""
        deadline = time.monotonic() + timeout * SLOW
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def stop(self, timeout=60):
        self.stop_flag.set()
        done = self.join(timeout)
        assert done, "a load client hung"
        assert not self.crashed, self.crashed
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # what happened
    def all(self, client=None, after=None):
        """The calls (of one client; started after a time), in order."""
        calls = list(self.calls if client is None else self.per_client[client])
        return [c for c in calls if after is None or c.t0 > after]

    def ok(self, client=None, after=None):
        return [c for c in self.all(client, after) if c.ok]

    def errors(self, client=None, after=None):
        return [c for c in self.all(client, after) if not c.ok]

    def error_texts(self, client=None, after=None):
        return [c.value for c in self.errors(client, after)]

    def slowest(self, client=None):
        return max((c.t1 - c.t0 for c in self.all(client)), default=0.0)

    def _count_ok(self, i, after):
        if after is None:
            return self.nok[i]
        n = 0
        for c in reversed(self.per_client[i]):      # a client's calls are in time order
            if c.t0 <= after:
                break
            n += c.ok
        return n

    def wait_ok(self, k, each=False, after=None, timeout=10.0):
        """Until at least k calls succeeded (k per client with each; only
        calls started after `after` count)."""
        if each:
            def cond():
                return all(self._count_ok(i, after) >= k for i in range(self.n))
        else:
            def cond():
                return sum(self._count_ok(i, after) for i in range(self.n)) >= k

        def done():
            assert not self.crashed, self.crashed
            return cond()
        wait_until(done, timeout=timeout, what=f"{k} successful calls" + (" each" if each else ""))
        return self


def ten_requests_each(clients):
    """Each of the idle clients (which wrote "init" to v:i) sends 10 requests
    at once: SET, then GET/SET alternating, values checked. Returns
    (errors, slowest first request). Also run inside the netns test's
    subprocess."""
    def op(c, i, j):
        if j % 2 == 0:
            assert c.set(f"v:{i}", f"s{j}") is True
        else:
            got = c.get(f"v:{i}")
            assert got == f"s{j - 1}".encode(), (got, f"s{j - 1}")

    load = Load(op, n=len(clients), connect=lambda i: clients[i], iterations=10,
                together=True).start()
    assert load.join(60), "a client hung"
    assert not load.crashed, load.crashed
    errors = [f"client {c.client} request {c.seq}: {c.value}" for c in load.errors()]
    firsts = [c.t1 - c.t0 for c in load.all() if c.seq == 0]
    return errors, max(firsts)


# ---------------------------------------------------------------- faults

class Relay:
    """A TCP relay for fault tests: forwards loopback connections to a
    target, optionally delaying every chunk (replication lag) or pacing
    each flow to `rate` bytes a second (a slow network), and can turn
    every flow it already carries into a black hole (kept open, nothing
    forwarded either way), as a NAT or firewall that silently dropped them
    would. Flows opened afterwards are forwarded normally."""

    def __init__(self, target_port, delay=0.0, rate=0):
        self.delay = delay
        self.rate = rate
        self.paced_until = {}            # socket -> when its last chunk goes (rate)
        self.due = collections.deque()   # (time, peer socket, data), in order
        self.port = free_port()
        self.target = ("127.0.0.1", target_port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(512)
        self.lsock.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self.flows = {}          # socket -> [peer socket, blackholed]
        self.lock = threading.Lock()
        self.stopping = False
        self.accepted = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def blackhole(self):
        """Every current flow stops forwarding, in both directions."""
        with self.lock:
            for flow in self.flows.values():
                flow[1] = True

    def _close(self, s):
        flow = self.flows.pop(s, None)
        try:
            self.sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
        if flow and flow[0] in self.flows:
            self._close(flow[0])

    def _send(self, peer, data):
        try:
            peer.setblocking(True)
            peer.sendall(data)
            peer.setblocking(False)
        except OSError:
            self._close(peer)

    def _flush_due(self):
        now = time.monotonic()
        while self.due and self.due[0][0] <= now:
            _, peer, data = self.due.popleft()
            if peer in self.flows:
                self._send(peer, data)

    def _run(self):
        while not self.stopping:
            with self.lock:
                self._flush_due()
                wait = 0.05 if not self.due else max(0.0, min(0.05, self.due[0][0] - time.monotonic()))
            for key, _ in self.sel.select(timeout=wait):
                s = key.fileobj
                with self.lock:
                    if s is self.lsock:
                        self._accept()
                    elif s in self.flows:
                        self._pump(s)

    def _accept(self):
        try:
            c, _ = self.lsock.accept()
        except BlockingIOError:
            return
        try:
            u = socket.create_connection(self.target, timeout=1)
        except OSError:
            c.close()
            return
        self.accepted += 1
        for a, b in ((c, u), (u, c)):
            a.setblocking(False)
            self.flows[a] = [b, False]
            self.sel.register(a, selectors.EVENT_READ, None)

    def _pump(self, s):
        peer, holed = self.flows[s]
        try:
            data = s.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            if not holed:
                self._close(s)
            else:
                self.sel.unregister(s)   # a black hole says nothing, not even FIN
            return
        if holed:
            return
        if self.delay or self.rate:
            at = time.monotonic() + self.delay
            if self.rate:
                at = max(at, self.paced_until.get(s, 0)) + len(data) / self.rate
                self.paced_until[s] = at
            self.due.append((at, peer, data))
            return
        self._send(peer, data)

    def close(self):
        self.stopping = True
        self.thread.join(2)
        with self.lock:
            for s in list(self.flows):
                s.close()
            self.flows.clear()
        self.lsock.close()
