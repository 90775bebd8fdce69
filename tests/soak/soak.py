#!/usr/bin/env python3
"""`make soak`: a chaos soak of redis-sidecar (issue 16).

For --minutes (SOAK_MINUTES, 10), on the `make run` topology (a master,
two replicas, three sentinels) with the sidecar in front: a workload of
writers, readers, transactions, blocking pops and subscribers
(workload.py) while faults are injected one after another, in an order
drawn from --seed (SOAK_SEED, random unless given; printed so that a run
can be replayed: same faults, same order, the timing is the machine's).
Each fault is healed and the topology left to settle before the next.
At the end: every acknowledged write on the final master but those
Redis's asynchronous replication may lose, counted apart (verify.py),
none applied twice, every reply matching its request, the proxy's RSS
and descriptors back near where they started; a one-screen report,
printed and written to --report; exit 1 on any failed check.

As root, the whole topology runs in a network namespace made for the
soak, where iptables can drop chosen flows; otherwise in the host's,
without the blackhole fault (the report says so). Artifacts (every
process's log, the timeline, the details) are left in build/soak/."""
import argparse
import collections
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE))

import redis  # noqa: E402

from helpers import ROOT, raise_nofile, wait_until  # noqa: E402
from cluster import SENTINEL_DOWN_AFTER, SENTINEL_FAILOVER_TIMEOUT, Topology  # noqa: E402
from faults import Faults, Firewall  # noqa: E402
from verify import check  # noqa: E402
from workload import Workload, ro_value  # noqa: E402

RUN_DIR = ROOT / "build" / "soak"
PRELOADED = 1000
PER_IP_CAP = 100
POOL = {"connections": 2, "max_leased": 64}
RSS_MARGIN_KB = 10 * 1024
FD_MARGIN = 8
FAILOVER_KINDS = ("master-sigkill", "master-sigstop", "sentinel-failover", "redis-restart")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 10))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--report", default=str(ROOT / "build" / "soak-report.txt"))
    ap.add_argument("--inside", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.seed is None:
        env = os.environ.get("SOAK_SEED")
        args.seed = int(env) if env else int.from_bytes(os.urandom(4), "big") % 1000000000
    if args.inside is not None:
        return run(args, args.inside or None)
    print(f"soak: seed {args.seed}, {args.minutes:g} minutes", flush=True)
    if os.geteuid() == 0 and shutil.which("iptables") and shutil.which("ip"):
        return in_netns(args)
    return run(args, None)


def in_netns(args):
    """Runs this script again inside a new network namespace with its
    loopback up; the namespace (and anything left in it) goes after."""
    ns = f"redis-sidecar-soak-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
        print("soak: cannot make a network namespace: running without it", flush=True)
        return run(args, None)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        ok = subprocess.run(["ip", "netns", "exec", ns, "iptables", "-S"],
                            capture_output=True).returncode == 0
        cmd = ["ip", "netns", "exec", ns, sys.executable, __file__, "--inside", ns if ok else "",
               "--minutes", str(args.minutes), "--seed", str(args.seed), "--report", args.report]
        child = subprocess.Popen(cmd)
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue        # the child got it too, and cleans up
    finally:
        # what the soak started in its own namespace, if the child died early
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Clock:
    def __init__(self, path):
        self.t0 = time.monotonic()
        self.f = open(path, "w")

    def rel(self, t):
        return t - self.t0

    def log(self, text):
        line = f"[{time.monotonic() - self.t0:7.1f}s] {text}"
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()


def run(args, netns):
    if RUN_DIR.exists():
        shutil.rmtree(RUN_DIR)
    RUN_DIR.mkdir(parents=True)
    raise_nofile()
    clock = Clock(RUN_DIR / "timeline.txt")
    log = clock.log
    rng = random.Random(args.seed)
    topo = Topology(RUN_DIR, log)
    wl = None
    problems = []
    try:
        log(f"seed {args.seed}; topology in " + (f"network namespace {netns}" if netns else
                                                 "the host's network namespace"))
        topo.start({"pool": dict(POOL), "clients": {"max_connections_per_ip": PER_IP_CAP},
                    "proxy": {"shutdown_timeout": "2s"}, "log": {"level": "info"}})
        preload(topo)
        firewall = Firewall() if netns else None
        faults = Faults(topo, rng, log, firewall, PER_IP_CAP)
        topo.watch()
        wl = Workload(topo.sidecar.port, args.seed, PRELOADED).start()
        wait_until(wl.connected, timeout=30, what="every worker connected")
        time.sleep(5)           # warm: leases taken, buffers grown
        took, why = topo.settle()
        if why:
            raise RuntimeError(f"the topology did not settle before the first fault: {why}")
        start = (topo.proxy_rss(), topo.proxy_fds())
        log(f"workload of {wl.connections()} connections running; proxy RSS {start[0]} KB, "
            f"{start[1]} fds; faults for {args.minutes:g} min")
        fault_log = inject(topo, faults, rng, clock, args.minutes * 60)
        problems += faults.problems
        faults.restore_config(POOL)
        took, why = topo.settle()
        if why:
            problems.append(f"the topology did not settle at the end: {why}")
        calm_before = sum(wl.stats.errors.values())
        time.sleep(10)
        calm_errors = sum(wl.stats.errors.values()) - calm_before
        end = proxy_back(topo, start)
        log(f"faults over; {calm_errors} errors in 10 s of calm; proxy RSS {end[0]} KB, {end[1]} fds")
        hung = wl.stop()
        if hung:
            problems.append(f"workers did not stop: {hung}")
        for name, tb in wl.crashes():
            problems.append(f"worker {name} crashed: {tb.strip().splitlines()[-1]}")
        master = topo.master().client(socket_timeout=30)
        res, wins = check(wl, topo, master, clock.t0)
        report = render(args, netns, topo, wl, faults, fault_log, res, wins, problems,
                        start, end, calm_errors, clock)
    except BaseException as e:  # noqa: BLE001 - the run fails, with the reason
        log(f"soak aborted: {e!r}")
        traceback.print_exc()
        report = f"redis-sidecar chaos soak: FAIL (aborted: {e!r}); see {RUN_DIR}\n"
        if wl:
            wl.stopping.set()
    finally:
        rc = topo.stop()
    if rc != 0:
        report = report.replace("\nresult: PASS", "\nresult: FAIL")
        report += f"the sidecar's exit on SIGTERM: {rc} (expected 0)\nresult: FAIL\n"
    print(report, end="")
    pathlib.Path(args.report).write_text(report)
    return 0 if report.rstrip().endswith("result: PASS") else 1


def preload(topo):
    """soak:ro:0..999, each value naming its key, replicated before the
    workload reads them."""
    m = topo.master().client()
    p = m.pipeline(transaction=False)
    for k in range(PRELOADED):
        p.set(f"soak:ro:{k}", ro_value(k))
    p.execute()
    off = m.info("replication")["master_repl_offset"]
    for r in topo.replicas():
        wait_until(lambda r=r: r.repl_offset() >= off, what=f"{r.name} has the preloaded keys")


def inject(topo, faults, rng, clock, seconds):
    """Faults one at a time until `seconds` have passed; each healed and
    the topology settled before the next. Returns [(kind, t0, t1, what)]."""
    done = []
    deadline = time.monotonic() + seconds
    kinds = sorted(faults.kinds)
    while time.monotonic() < deadline:
        kind = rng.choice(kinds)
        t0 = time.monotonic()
        clock.log(f"fault {len(done) + 1}: {kind}")
        try:
            what = faults.kinds[kind]()
        except Exception as e:  # noqa: BLE001 - a fault that failed is reported, healed
            what = f"failed: {e!r}"
            faults.problem(f"{kind}: {e!r}")
            traceback.print_exc()
            heal_everything(topo, faults)
        took, why = topo.settle()
        if why:
            clock.log(f"not settled after {took:.0f}s ({why}): healing")
            heal_everything(topo, faults)
            took2, why = topo.settle(60)
            took += took2
            if why:
                faults.problem(f"the topology did not settle after {kind}: {why}")
        done.append((kind, t0, time.monotonic(), what))
        clock.log(f"  {what}; settled in {took:.1f}s")
        if not topo.sidecar.alive():
            faults.problem(f"the sidecar exited ({topo.sidecar.proc.returncode}) during {kind}")
            break
        if why:
            break
        time.sleep(min(rng.uniform(2, 6), max(0.0, deadline - time.monotonic())))
    return done


def heal_everything(topo, faults):
    """After a fault that failed half-way: no DROP rule, no stopped
    process, every node running (a missing one as a replica)."""
    if faults.fw:
        faults.fw.heal()
    for n in topo.nodes:
        if n.running():
            n.proc.send_signal(signal.SIGCONT)
    m = topo.master()
    for n in topo.nodes:
        if not n.running():
            n.proc = None
            n.start_as(m.port if m and m is not n else None)
    try:
        topo.proxy("PROXY", "RESUME")
    except (redis.RedisError, OSError):
        pass


def proxy_back(topo, start):
    """The proxy's RSS and fds once back within their margins (leases and
    links a fault replaced close as they are found idle), or after 30 s."""
    def back():
        rss, fds = topo.proxy_rss(), topo.proxy_fds()
        return rss <= start[0] + RSS_MARGIN_KB and fds <= start[1] + FD_MARGIN
    try:
        wait_until(back, timeout=30, what="proxy usage back", interval=0.5)
    except AssertionError:
        pass
    return topo.proxy_rss(), topo.proxy_fds()


# ---------------------------------------------------------------- report

def render(args, netns, topo, wl, faults, fault_log, res, wins, problems, start, end, calm, clock):
    st = wl.stats
    peak_rss = max([u[1] for u in topo.proxy_usage] + [end[0]])
    peak_fds = max([u[2] for u in topo.proxy_usage] + [end[1]])
    promos = sorted((t, n.name) for n in topo.nodes for t, _ in n.promotions
                    if (n.name, t) not in res.aborted)
    planned = [t for t, _ in promos
               if any(k in FAILOVER_KINDS and t0 <= t <= t1 for k, t0, t1, _ in fault_log)]
    kinds = collections.Counter(k for k, *_ in fault_log)
    total_req = sum(st.requests.values())
    lost_total = res.lost
    dup_total = res.dup
    mism = sum(st.mismatches.values()) + sum(res.mismatch.values())
    rss_ok = end[0] <= start[0] + RSS_MARGIN_KB
    fds_ok = end[1] <= start[1] + FD_MARGIN
    fail = bool(lost_total or dup_total or mism or res.applied_not_run or problems
                or not rss_ok or not fds_ok)
    W = []
    W.append(f"redis-sidecar chaos soak, {args.minutes:g} min of faults, seed {args.seed} "
             f"(make soak SOAK_MINUTES={args.minutes:g} SOAK_SEED={args.seed} replays the faults)")
    W.append(f"topology: master + 2 replicas + 3 sentinels (quorum 2, down-after {SENTINEL_DOWN_AFTER} ms, "
             f"failover-timeout {SENTINEL_FAILOVER_TIMEOUT} ms), "
             + (f"in netns {netns}" if netns else "in the host's netns"))
    W.append(f"faults: {len(fault_log)} = " + ", ".join(f"{k} {kinds[k]}" for k in sorted(kinds)))
    for k, why in faults.skipped.items():
        W.append(f"  skipped: {k} ({why})")
    follow = max((w.end - w.named for w in wins), default=0.0)
    W.append(f"  failovers seen: {len(promos)} ({len(planned)} from the faults above, "
             f"{len(promos) - len(planned)} unplanned"
             + (f"; {len(res.aborted)} promotion(s) Sentinel aborted" if res.aborted else "")
             + f"); the proxy followed the sentinels within {follow:.1f}s")
    W.append(f"requests: {total_req:,} in {sum(st.trips.values()):,} round trips (" +
             ", ".join(f"{k} {st.requests[k]:,}" for k in sorted(st.requests)) + ")")
    W.append("acknowledged: " + ", ".join(f"{v:,} {k}" for k, v in sorted(res.acked.items())) +
             f"; {res.received:,} popped or received")
    nerr = sum(st.errors.values())
    W.append(f"errors: {nerr:,} ({calm} in the final 10 s of calm), by kind:")
    for (kind, text), n in st.errors.most_common(12):
        W.append(f"  {n:7,}  {kind:<10} {text[:110]}")
    if len(st.errors) > 12:
        W.append(f"  ... {len(st.errors) - 12} more kinds in {RUN_DIR}/details.txt")
    W.append("checks:")
    W.append(f"  lost unexplained                 {res.lost:7,}")
    by_fault = collections.Counter()
    for w in wins:
        by_fault[next((k for k, t0, t1, _ in fault_log if t0 <= w.promoted <= t1), "unplanned")] += w.lost
    where = ", ".join(f"{n:,} in {k}" for k, n in by_fault.most_common() if n)
    W.append(f"  lost by async replication        {res.lost_async:7,}   ({len(wins)} failovers"
             + (f"; {where})" if where else ")"))
    W.append(f"  lost with a BLPOP reply lost     {res.lost_with_pop:7,}")
    W.append(f"  duplicated                       {res.dup:7,}   (+{res.dup_async} by async replication)")
    W.append(f"  mismatched replies               {mism:7,}")
    W.append(f"  applied after a 'not run' error  {res.applied_not_run:7,}")
    W.append(f"  proxy RSS KB   start {start[0]:7,}  peak {peak_rss:7,}  end {end[0]:7,}  "
             f"({end[0] - start[0]:+,}, limit +{RSS_MARGIN_KB:,})" + ("" if rss_ok else "  FAIL"))
    W.append(f"  proxy fds      start {start[1]:7,}  peak {peak_fds:7,}  end {end[1]:7,}  "
             f"({end[1] - start[1]:+,}, limit +{FD_MARGIN})" + ("" if fds_ok else "  FAIL"))
    for p in problems:
        W.append(f"  problem: {p}")
    W.append("result: " + ("FAIL" if fail else "PASS"))
    text = "\n".join(W) + "\n"
    details(clock, topo, wl, fault_log, res, wins, text)
    return text


def details(clock, topo, wl, fault_log, res, wins, report):
    out = [report, "faults:"]
    for k, t0, t1, what in fault_log:
        out.append(f"  [{clock.rel(t0):7.1f}s +{t1 - t0:5.1f}s] {k}: {what}")
    out.append("async replication windows (old -> new master: from the old master's last "
               "sample at or under the offset taken over, to the proxy leaving it):")
    for w in wins:
        out.append(f"  {w.old} -> {w.new}: [{clock.rel(w.start):7.2f}s, {clock.rel(w.end):7.2f}s] "
                   f"promoted at {clock.rel(w.promoted):7.2f}s, named by the sentinels at "
                   f"{clock.rel(w.named):7.2f}s; {w.lost} writes lost in it")
    for name, t in res.aborted:
        out.append(f"  {name} promoted at {clock.rel(t):7.2f}s, never named by the sentinels (aborted)")
    out.append("proxy master changes: " + ", ".join(f"{clock.rel(t):.1f}s {m}" for t, m in topo.proxy_view))
    out.append("errors by kind (all):")
    for (kind, text), n in wl.stats.errors.most_common():
        first, last = wl.stats.error_times[(kind, text)]
        out.append(f"  {n:7,}  {kind:<10} {text}  [{clock.rel(first):.1f}s .. {clock.rel(last):.1f}s]")
    out.append("mismatches:")
    for (kind, what), n in wl.stats.mismatches.most_common():
        out.append(f"  {n:7,}  {kind}: {what}")
    for what, n in res.mismatch.most_common():
        out.append(f"  {n:7,}  {what}")
    out += ["examples:"] + [f"  [{clock.rel(t):7.1f}s] {x}" for t, x in wl.stats.mismatch_examples]
    out += [f"  {x}" for x in res.examples]
    (RUN_DIR / "details.txt").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    sys.exit(main())
