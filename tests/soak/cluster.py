"""The soak's processes and what watches them: the `make run` topology
(a master, two replicas, three sentinels watching it as "mymaster"), the
sidecar in front of it with an admin socket, and three watchers:

- a sampler per Redis node (ROLE every 20 ms, straight to the node):
  replication offsets over time, and each promotion with the offset the
  new master took over at, for the accounting of what Redis's
  asynchronous replication loses (verify.py);
- a watcher of who is master, for the sentinels and for the proxy;
- the proxy's RSS and descriptor count, every half second.

`settle()` waits until the topology is whole again after a fault."""
import os
import signal
import subprocess
import threading
import time

import redis

from helpers import RedisServer, SentinelServer, Sidecar, nodes, status_kb, wait_until

SENTINEL_DOWN_AFTER = 2000       # ms, sentinel down-after-milliseconds
SENTINEL_FAILOVER_TIMEOUT = 5000  # ms


class Node(RedisServer):
    """A Redis server that can be restarted as a replica of someone, or on
    its own; `incarnation` counts its processes."""

    def __init__(self, tmp, name):
        super().__init__(tmp, name)
        self.name = name
        self.incarnation = 0
        self.samples = []        # (time sent, incarnation, role, offset)
        self.promotions = []     # (time seen, offset taken over at)

    def client(self, socket_timeout=5, **kw):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=socket_timeout, **kw)

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start_as(self, master_port=None):
        self.args = ["--replicaof", "127.0.0.1", str(master_port)] if master_port else []
        self.incarnation += 1
        self.start(wait=False)
        wait_until(self.answers, timeout=20, what=f"{self.name} answering")

    def answers(self):
        try:
            return self.client(socket_timeout=1).ping()
        except redis.BusyLoadingError:
            return True

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def role(self, timeout=0.5):
        r = self.client(socket_timeout=timeout, socket_connect_timeout=timeout).execute_command("ROLE")
        return [x.decode() if isinstance(x, bytes) else x for x in r]


class Topology:
    def __init__(self, tmp, log):
        self.tmp, self.log = tmp, log
        self.nodes = [Node(tmp, n) for n in ("node-a", "node-b", "node-c")]
        self.sentinels = []
        self.sidecar = None
        self.admin_sock = tmp / "admin.sock"
        self.stopping = threading.Event()
        self.threads = []
        self.sentinel_view = []  # (time, "host:port" the sentinels name, or None)
        self.proxy_view = []     # (time, PROXY NODES master, "none" when none)
        self.proxy_usage = []    # (time, RSS KB, fds)

    # ---------------------------------------------------------------- start, stop

    def start(self, sidecar_cfg):
        a, b, c = self.nodes
        a.start_as()
        b.start_as(a.port)
        c.start_as(a.port)
        for n in (b, c):
            wait_until(lambda n=n: n.client().info("replication")["master_link_status"] == "up",
                       what=f"{n.name} in sync")
        for _ in range(3):
            s = SentinelServer(self.tmp, a.port, down_after=SENTINEL_DOWN_AFTER,
                               failover_timeout=SENTINEL_FAILOVER_TIMEOUT)
            self.sentinels.append(s.start())
        wait_until(self.sentinels_know_all, timeout=30, what="sentinels know the replicas and each other")
        up = {"sentinels": ", ".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
              "master_name": "mymaster"}
        sections = {k: dict(v) for k, v in sidecar_cfg.items()}
        sections.setdefault("upstream", {}).update(up)
        sections.setdefault("admin", {}).update({"allow": None, "socket": str(self.admin_sock)})
        self.sidecar = Sidecar(self.tmp, None, **sections)
        self.sidecar.start()
        wait_until(lambda: self.proxy_master() == a.addr, timeout=20, what="the proxy confirms the master")

    def sentinels_know_all(self):
        for s in self.sentinels:
            m = dict(zip(*[iter(s.client().execute_command("SENTINEL", "MASTER", "mymaster"))] * 2))
            if int(m[b"num-slaves"]) != 2 or int(m[b"num-other-sentinels"]) != 2:
                return False
        return True

    def watch(self):
        for n in self.nodes:
            self.spawn(self.sample_node, n)
        self.spawn(self.watch_masters)
        self.spawn(self.watch_proxy)

    def spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def stop(self):
        """Every process this soak started, by PID; the sidecar with SIGTERM
        first (it must drain and exit 0). Returns the sidecar's exit code."""
        self.stopping.set()
        for t in self.threads:
            t.join(5)
        rc = self.sidecar.stop() if self.sidecar else 0
        for s in self.sentinels:
            s.stop()
        for n in self.nodes:
            if n.proc and n.proc.poll() is None:
                os.kill(n.proc.pid, signal.SIGCONT)
            n.stop()
        return rc

    # ---------------------------------------------------------------- admin

    def admin(self, timeout=15):
        return redis.Redis(unix_socket_path=str(self.admin_sock), socket_timeout=timeout)

    def proxy(self, *args, timeout=15):
        return self.admin(timeout).execute_command(*args)

    def proxy_nodes(self):
        class Via:
            client = self.admin
        return nodes(Via)

    def proxy_master(self):
        return self.proxy_nodes()["master"]

    def proxy_pid(self):
        return self.sidecar.proc.pid

    def proxy_fds(self):
        return len(os.listdir(f"/proc/{self.proxy_pid()}/fd"))

    def proxy_rss(self):
        return status_kb(self.proxy_pid(), "VmRSS")

    # ---------------------------------------------------------------- who is master

    def node(self, addr):
        return next((n for n in self.nodes if n.addr == addr), None)

    def sentinel_master(self):
        """The address two sentinels or more name, else None."""
        seen = {}
        for s in self.sentinels:
            try:
                a = s.master_addr()
            except (redis.RedisError, OSError):
                continue
            if a:
                key = f"{a[0]}:{a[1]}"
                seen[key] = seen.get(key, 0) + 1
        best = max(seen.items(), key=lambda kv: kv[1], default=(None, 0))
        return best[0] if best[1] >= 2 else None

    def master(self):
        return self.node(self.sentinel_master())

    def replicas(self):
        m = self.master()
        return [n for n in self.nodes if n is not m]

    # ---------------------------------------------------------------- watchers

    def sample_node(self, n):
        """ROLE every 20 ms; a slave seen master next is a promotion: the
        offset it took over at comes from INFO (second_repl_offset - 1),
        else from its last offset as a slave (a lower bound)."""
        last = None              # (incarnation, role, offset)
        client, inc = None, None
        while not self.stopping.is_set():
            t = time.monotonic()
            if not n.running():
                client = None
                self.stopping.wait(0.05)
                continue
            if client is None or inc != n.incarnation:
                inc = n.incarnation
                client = n.client(socket_timeout=0.3, socket_connect_timeout=0.3)
            try:
                r = client.execute_command("ROLE")
            except (redis.RedisError, OSError):
                self.stopping.wait(0.02)
                continue
            role = r[0].decode()
            off = int(r[1]) if role == "master" else int(r[4])
            n.samples.append((t, inc, role, off))
            if last and last[0] == inc and last[1] == "slave" and role == "master":
                took = last[2]
                try:
                    info = client.info("replication")
                    if int(info.get("second_repl_offset", -1)) > 0:
                        took = int(info["second_repl_offset"]) - 1
                except (redis.RedisError, OSError):
                    pass
                n.promotions.append((t, took))
                self.log(f"{n.name} ({n.addr}) promoted, took over at offset {took}")
            last = (inc, role, off)
            self.stopping.wait(0.02)

    def watch_masters(self):
        while not self.stopping.is_set():
            t = time.monotonic()
            m = self.sentinel_master()
            if m and (not self.sentinel_view or self.sentinel_view[-1][1] != m):
                self.sentinel_view.append((t, m))
            self.stopping.wait(0.05)

    def watch_proxy(self):
        while not self.stopping.is_set():
            t = time.monotonic()
            try:
                m = self.proxy_master()
            except (redis.RedisError, OSError):
                m = None
            if m and (not self.proxy_view or self.proxy_view[-1][1] != m):
                self.proxy_view.append((t, m))
            try:
                self.proxy_usage.append((t, self.proxy_rss(), self.proxy_fds()))
            except OSError:
                pass
            self.stopping.wait(0.1)

    # ---------------------------------------------------------------- settling

    def unsettled(self):
        """Why the topology is not whole yet, or None: one master the three
        sentinels agree on, both others its replicas in sync, the
        sentinels seeing them healthy, the proxy writing to that master
        and reading from both replicas."""
        names = set()
        for s in self.sentinels:
            try:
                names.add(s.master_addr())
            except (redis.RedisError, OSError) as e:
                return f"sentinel {s.port}: {e}"
        if len(names) != 1:
            return f"sentinels name {sorted(map(str, names))}"
        m = self.node("%s:%d" % names.pop())
        if not m or not m.running():
            return "the named master is not running"
        try:
            if m.role()[0] != "master":
                return f"{m.name} named master but is not"
            for r in self.nodes:
                if r is m:
                    continue
                role = r.role()
                if role[0] != "slave" or role[2] != m.port or role[3] != "connected":
                    return f"{r.name} not a replica of {m.name} in sync: {role[:4]}"
        except (redis.RedisError, OSError) as e:
            return f"a node does not answer: {e}"
        for s in self.sentinels:
            flags = self.sentinel_flags(s)
            if flags != {m.addr: "master", **{r.addr: "slave" for r in self.nodes if r is not m}}:
                return f"sentinel {s.port} sees {flags}"
        try:
            pn = self.proxy_nodes()
        except (redis.RedisError, OSError) as e:
            return f"PROXY NODES: {e}"
        if pn["master"] != m.addr:
            return f"the proxy's master is {pn['master']}, not {m.addr}"
        use = {x["addr"]: x["use"] for x in pn["node"]}
        if any(use.get(r.addr) != "replica" for r in self.nodes if r is not m):
            return f"the proxy's nodes: {use}"
        return None

    @staticmethod
    def sentinel_flags(s):
        c = s.client()
        m = dict(zip(*[iter(c.execute_command("SENTINEL", "MASTER", "mymaster"))] * 2))
        out = {f"{m[b'ip'].decode()}:{m[b'port'].decode()}": m[b"flags"].decode()}
        for r in c.execute_command("SENTINEL", "REPLICAS", "mymaster"):
            d = dict(zip(*[iter(r)] * 2))
            out[f"{d[b'ip'].decode()}:{d[b'port'].decode()}"] = d[b"flags"].decode()
        return out

    def settle(self, timeout=90):
        """Waits until unsettled() is None; returns (seconds, None) or
        (seconds, the last reason)."""
        t0 = time.monotonic()
        why = None
        while time.monotonic() - t0 < timeout:
            why = self.unsettled()
            if why is None:
                return time.monotonic() - t0, None
            time.sleep(0.2)
        return time.monotonic() - t0, why

    # ---------------------------------------------------------------- sockets

    def tcp_flows(self, pid):
        """Established TCP flows of a process: [(local port, peer port)]."""
        out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True,
                             text=True).stdout
        flows = []
        for line in out.splitlines():
            if f"pid={pid}," not in line:
                continue
            f = line.split()
            local, peer = f[2], f[3]
            if local.startswith("127.0.0.1:") and peer.startswith("127.0.0.1:"):
                flows.append((int(local.rsplit(":", 1)[1]), int(peer.rsplit(":", 1)[1])))
        return flows

