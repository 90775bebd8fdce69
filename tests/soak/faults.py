"""The faults the soak injects, one at a time, each healed before it
returns: the master killed, stopped, restarted, failed over by Sentinel,
a replica falling behind, the proxy's upstream flows blackholed,
PROXY RELOAD with other pool sizes, a connection flood past the per-IP
cap, PROXY PAUSE/RESUME.

A fault returns a line saying what happened; a broken promise of the
proxy's (the per-IP cap, a PAUSE or RELOAD answer) goes to `problems`,
which fail the run."""
import signal
import socket
import subprocess
import time

import redis

from helpers import wait_until


class Firewall:
    """DROP rules for whole 4-tuples in a chain of its own (SOAK, jumped to
    from OUTPUT: loopback packets all pass there), inside the soak's
    network namespace. Only the flows named are cut: Linux may reuse a
    local port towards another destination, so a rule on one port could
    cut an unrelated connection."""

    def __init__(self):
        self.run("-N", "SOAK")
        self.run("-I", "OUTPUT", "-j", "SOAK")

    @staticmethod
    def run(*args):
        subprocess.run(["iptables", "-w", *args], check=True, capture_output=True)

    def drop(self, flows):
        for a, b in flows:
            for sp, dp in ((a, b), (b, a)):
                self.run("-A", "SOAK", "-p", "tcp", "-s", "127.0.0.1", "--sport", str(sp),
                         "-d", "127.0.0.1", "--dport", str(dp), "-j", "DROP")

    def heal(self):
        self.run("-F", "SOAK")


class Faults:
    def __init__(self, topo, rng, log, firewall, per_ip_cap):
        self.topo, self.rng, self.log = topo, rng, log
        self.fw = firewall
        self.per_ip_cap = per_ip_cap
        self.problems = []
        self.flood_ip = 1
        self.kinds = {
            "master-sigkill": self.master_sigkill,
            "master-sigstop": self.master_sigstop,
            "redis-restart": self.redis_restart,
            "sentinel-failover": self.sentinel_failover,
            "replica-lag": self.replica_lag,
            "blackhole": self.blackhole,
            "reload": self.reload,
            "client-flood": self.client_flood,
            "pause": self.pause,
        }
        self.skipped = {}
        if firewall is None:
            self.kinds.pop("blackhole")
            self.skipped["blackhole"] = "needs root and iptables in a network namespace"

    def problem(self, text):
        self.log(f"PROBLEM: {text}")
        self.problems.append(text)

    # ---------------------------------------------------------------- helpers

    def wait_switch(self, old, timeout=30):
        """Until the sentinels name another master than `old` (with a
        SENTINEL FAILOVER after `timeout` if they have not); the new
        master's node and how long it took."""
        t0 = time.monotonic()
        forced = ""
        try:
            wait_until(lambda: self.topo.sentinel_master() not in (None, old.addr),
                       timeout=timeout, what="a failover", interval=0.05)
        except AssertionError:
            self.log(f"no failover {timeout}s after the fault: SENTINEL FAILOVER")
            for s in self.topo.sentinels:
                try:
                    s.client().execute_command("SENTINEL", "FAILOVER", "mymaster")
                    break
                except redis.RedisError:
                    continue
            wait_until(lambda: self.topo.sentinel_master() not in (None, old.addr),
                       timeout=60, what="a failover", interval=0.05)
            forced = f" (none within {timeout}s: a SENTINEL FAILOVER more)"
        return self.topo.master(), f"{time.monotonic() - t0:.1f}s{forced}"

    def hold(self, lo, hi):
        d = self.rng.uniform(lo, hi)
        time.sleep(d)
        return d

    # ---------------------------------------------------------------- faults

    def master_sigkill(self):
        m = self.topo.master()
        m.stop(signal.SIGKILL)
        new, took = self.wait_switch(m)
        self.hold(0, 3)
        as_replica = self.rng.random() < 0.5
        m.start_as(new.port if as_replica else None)
        return (f"{m.name} killed; {new.name} master after {took}; {m.name} restarted "
                + ("as its replica" if as_replica else "empty, as a master (Sentinel converts it)"))

    def master_sigstop(self):
        m = self.topo.master()
        m.proc.send_signal(signal.SIGSTOP)
        if self.rng.random() < 0.4:
            d = self.hold(0.3, 1.2)
            m.proc.send_signal(signal.SIGCONT)
            return f"{m.name} stopped {d:.1f}s (under down-after: no failover expected)"
        try:
            new, took = self.wait_switch(m)
            d = self.hold(0.5, 3)
        finally:
            m.proc.send_signal(signal.SIGCONT)
        return f"{m.name} stopped; {new.name} master after {took}; {m.name} resumed {d:.1f}s later"

    def redis_restart(self):
        n = self.rng.choice(self.topo.nodes)
        m = self.topo.master()
        paused = n is m and self.rng.random() < 0.5
        if paused:
            self.admin_ok(("PROXY", "PAUSE"), b"OK", "PROXY PAUSE before a restart")
        t0 = time.monotonic()
        try:
            n.client().execute_command("SHUTDOWN", "SAVE" if n is m else "NOSAVE")
        except redis.ConnectionError:
            pass
        n.proc.wait(30)
        n.proc = None
        n.start_as(None if n is m else m.port)
        down = time.monotonic() - t0
        if paused:
            self.admin_ok(("PROXY", "RESUME"), b"OK", "PROXY RESUME after a restart")
        what = "master (SHUTDOWN SAVE)" if n is m else "replica"
        return f"{n.name} {what} restarted, down {down:.1f}s" + (" under PROXY PAUSE" if paused else "")

    def sentinel_failover(self):
        m = self.topo.master()
        s = self.rng.choice(self.topo.sentinels)
        try:
            s.client().execute_command("SENTINEL", "FAILOVER", "mymaster")
        except redis.RedisError as e:
            return f"SENTINEL FAILOVER refused: {e}"
        new, took = self.wait_switch(m)
        return f"SENTINEL FAILOVER: {m.name} -> {new.name} in {took}"

    def replica_lag(self):
        m = self.topo.master()
        r = self.rng.choice(self.topo.replicas())
        left_reads = []

        def watch_use():
            for x in self.topo.proxy_nodes()["node"]:
                if x["addr"] == r.addr and x["use"] != "replica" and not left_reads:
                    left_reads.append(time.monotonic() - t0)
        t0 = time.monotonic()
        if self.fw:
            flows = [f for f in self.topo.tcp_flows(r.proc.pid) if f[1] == m.port]
            self.fw.drop(flows)
            how = f"replication flow dropped ({len(flows)})"
        else:
            r.proc.send_signal(signal.SIGSTOP)
            how = "stopped"
        d = self.rng.uniform(6, 10)
        try:
            while time.monotonic() - t0 < d:
                watch_use()
                time.sleep(0.2)
            behind = f", {m.repl_offset() - r.repl_offset()} bytes behind" if self.fw else ""
        finally:
            if self.fw:
                self.fw.heal()
            else:
                r.proc.send_signal(signal.SIGCONT)
        seen = f"; the proxy stopped reading from it after {left_reads[0]:.1f}s" if left_reads else \
            "; the proxy kept reading from it"
        return f"{r.name} {how} {d:.1f}s{behind}{seen}"

    def blackhole(self):
        m = self.topo.master()
        variant = self.rng.choice(("master", "replica", "all"))
        if variant == "master":
            ports = {m.port}
        elif variant == "replica":
            ports = {self.rng.choice(self.topo.replicas()).port}
        else:
            ports = {n.port for n in self.topo.nodes} | {s.port for s in self.topo.sentinels}
        flows = [f for f in self.topo.tcp_flows(self.topo.proxy_pid()) if f[1] in ports]
        self.fw.drop(flows)
        try:
            # short: TCP carries on once it lifts; long: past reply_timeout
            # (10s), the links are replaced and blocked calls must end
            d = self.hold(2, 8) if self.rng.random() < 0.7 else self.hold(11, 16)
        finally:
            self.fw.heal()
        names = {n.port: n.name for n in self.topo.nodes}
        what = "all its upstream flows" if variant == "all" else f"its flows to {names[ports.copy().pop()]}"
        return f"{len(flows)} flows blackholed for {d:.1f}s ({what})"

    def reload(self):
        sc = self.topo.sidecar
        pool = sc.cfg.setdefault("pool", {})
        before = (pool.get("connections", 2), pool.get("max_leased", 64))
        pool["connections"] = self.rng.choice([c for c in (1, 2, 3, 4) if c != before[0]])
        pool["max_leased"] = self.rng.choice((16, 32, 64, 128))
        sc.write_ini()
        t0 = time.monotonic()
        r = self.admin_ok(("PROXY", "RELOAD"), b"reloaded", "PROXY RELOAD")
        return (f"connections {before[0]} -> {pool['connections']}, max_leased {before[1]} -> "
                f"{pool['max_leased']}: {r!r} in {time.monotonic() - t0:.2f}s")

    def restore_config(self, pool):
        sc = self.topo.sidecar
        if sc.cfg.get("pool") != pool:
            sc.cfg["pool"] = dict(pool)
            sc.write_ini()
            self.admin_ok(("PROXY", "RELOAD"), b"reloaded", "PROXY RELOAD (restore)")

    def client_flood(self):
        """cap + extra connections from one address of 127/8 (a new one
        each time): exactly cap answer PING, the rest get the per-IP error
        and a close; the workload's address is not affected."""
        self.flood_ip += 1
        ip = f"127.0.{self.flood_ip // 250}.{self.flood_ip % 250 + 2}"
        extra = self.rng.randint(10, 100)
        socks, accepted, refused, other = [], 0, 0, []
        want = f"-ERR max connections per client IP reached ({ip}, limit {self.per_ip_cap})\r\n"
        try:
            for _ in range(self.per_ip_cap + extra):
                s = socket.socket()
                s.settimeout(10)
                s.bind((ip, 0))
                s.connect(("127.0.0.1", self.topo.sidecar.port))
                socks.append(s)
            for s in socks:
                try:
                    s.sendall(b"PING\r\n")
                except OSError:
                    pass
            for s in socks:
                got = b""
                try:
                    while not got.endswith(b"\r\n"):
                        chunk = s.recv(512)
                        if not chunk:
                            break
                        got += chunk
                except OSError as e:
                    got += f"<{e}>".encode()
                if got == b"+PONG\r\n":
                    accepted += 1
                elif got.decode(errors="replace") == want:
                    refused += 1
                else:
                    other.append(got)
            time.sleep(self.rng.uniform(0.2, 1.5))
        finally:
            for s in socks:
                s.close()
        if accepted != self.per_ip_cap or refused != extra or other:
            self.problem(f"flood from {ip}: {accepted} accepted, {refused} refused, "
                         f"{len(other)} other ({other[:2]}); expected {self.per_ip_cap} and {extra}")
        return f"{len(socks)} connections from {ip}: {accepted} served, {refused} refused"

    def pause(self):
        if self.rng.random() < 0.3:
            t0 = time.monotonic()
            self.admin_ok(("PROXY", "PAUSE", "2s"), b"OK", "PROXY PAUSE 2s")
            answered = time.monotonic() - t0
            wait_until(lambda: self.topo.proxy("PROXY", "INFO").find(b"requests_paused:0") >= 0,
                       timeout=10, what="the pause ends by itself")
            return f"PROXY PAUSE 2s (answered in {answered:.2f}s), resumed by itself"
        t0 = time.monotonic()
        self.admin_ok(("PROXY", "PAUSE"), b"OK", "PROXY PAUSE")
        answered = time.monotonic() - t0
        d = self.hold(0.5, 3)
        self.admin_ok(("PROXY", "RESUME"), b"OK", "PROXY RESUME")
        return f"PROXY PAUSE (answered in {answered:.2f}s), RESUME {d:.1f}s later"

    def admin_ok(self, cmd, want, what):
        try:
            r = self.topo.proxy(*cmd)
        except (redis.RedisError, OSError) as e:
            self.problem(f"{what}: {e}")
            return None
        if not r.startswith(want):
            self.problem(f"{what}: {r!r}")
        return r
