#!/usr/bin/python3
"""Helpers for bench/run.sh (stdlib only; run with /usr/bin/python3).

  helpers.py ports N
      print N free TCP ports from 21000-29999, one a line (bind test on
      0.0.0.0 and 127.0.0.1, which also catches listeners on either).

  helpers.py idle --port P --pid PID --n N
      open N TCP connections to 127.0.0.1:P from this one process, send one
      PING on each and read the PONG (so each is really accepted and served),
      then print "baseline_kb=.. loaded_kb=.. opened=.. ok=.. failed=.." with
      the VmRSS of PID before and with the connections. Closes them with RST
      (SO_LINGER 0) so no TIME_WAIT ports are left behind.

  helpers.py irtotal FILE
      print the total Ir of a callgrind output file ("totals:" or "summary:").

  helpers.py tx --port P --master M --n N
      one client running N transactions (MULTI, SET, EXEC in one write,
      then their three replies) through port P; prints "tx_per_sec=..
      redis_us_per_tx=.. redis_commands_per_tx=.. commands=name:n,..",
      Redis's side read from the master M's INFO commandstats before and
      after.
"""
import argparse
import random
import resource
import selectors
import socket
import statistics
import struct
import sys
import time

PING = b"*1\r\n$4\r\nPING\r\n"  # twemproxy does not take inline commands


def free_ports(n):
    cands = list(range(21000, 30000))
    random.shuffle(cands)
    out = []
    for p in cands:
        ok = True
        for host in ("0.0.0.0", "127.0.0.1"):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, p))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            out.append(p)
            if len(out) == n:
                return out
    sys.exit("helpers.py: not enough free ports in 21000-29999")


def vmrss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def idle(port, pid, n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < n + 64:
        print(f"warning: RLIMIT_NOFILE hard limit {hard} < {n + 64}", file=sys.stderr)

    baseline = vmrss_kb(pid)
    socks, failed, first_err = [], 0, ""
    linger = struct.pack("ii", 1, 0)
    # Connect in waves of up to 500 so the listen backlog never overflows,
    # each wave PINGs and waits for every PONG before the next one starts.
    wave = 500
    sel = selectors.DefaultSelector()
    while len(socks) + failed < n:
        batch = []
        for _ in range(min(wave, n - len(socks) - failed)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            try:
                s.settimeout(10)
                s.connect(("127.0.0.1", port))
                s.sendall(PING)
                s.setblocking(False)
            except OSError as e:
                failed += 1
                first_err = first_err or repr(e)
                s.close()
                continue
            batch.append(s)
            sel.register(s, selectors.EVENT_READ, bytearray())
        pending = len(batch)
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                s, buf = key.fileobj, key.data
                try:
                    chunk = s.recv(64)
                except BlockingIOError:
                    continue
                except OSError as e:
                    chunk = b""
                    first_err = first_err or repr(e)
                buf += chunk
                if not chunk or buf.endswith(b"\r\n"):
                    sel.unregister(s)
                    pending -= 1
                    if bytes(buf) == b"+PONG\r\n":
                        socks.append(s)
                    else:
                        failed += 1
                        first_err = first_err or f"reply {bytes(buf)!r}"
                        s.close()
        for key in list(sel.get_map().values()):  # timed out
            sel.unregister(key.fileobj)
            key.fileobj.close()
            failed += 1
            first_err = first_err or "timeout waiting for PONG"
    time.sleep(1.0)  # let the proxy settle (lazy allocations, free lists)
    loaded = vmrss_kb(pid)
    ok = len(socks)
    for s in socks:
        s.close()
    print(f"baseline_kb={baseline} loaded_kb={loaded} opened={n} ok={ok} "
          f"failed={failed} first_error={first_err.replace(' ', '_') or '-'}")


def irtotal(path):
    total = summary = None
    with open(path) as f:
        for line in f:
            if line.startswith("totals:"):
                total = int(line.split()[1])
            elif line.startswith("summary:"):
                summary = int(line.split()[1])
    v = total if total is not None else summary
    if v is None:
        sys.exit(f"helpers.py: no totals/summary line in {path}")
    print(v)


def latency(port, idle_s, rounds):
    """Median latency of a GET that follows an idle period (the sidecar
    validates the link with a PING first) and of the GET right after it."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = b"*2\r\n$3\r\nGET\r\n$8\r\nlat:idle\r\n"

    def one():
        t0 = time.perf_counter()
        s.sendall(req)
        buf = b""
        while not buf.endswith(b"\r\n"):
            buf += s.recv(4096)
        return (time.perf_counter() - t0) * 1e6

    one()
    after_idle, busy = [], []
    for _ in range(rounds):
        time.sleep(idle_s)
        after_idle.append(one())
        busy.append(one())
    s.close()
    print(f"after_idle_us={statistics.median(after_idle):.0f} busy_us={statistics.median(busy):.0f}")


def command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def commandstats(port):
    """{command: (calls, usec)} from INFO commandstats."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(command("INFO", "commandstats"))
    f = s.makefile("rb")
    n = int(f.readline()[1:])
    text = f.read(n + 2).decode()
    s.close()
    out = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[8:].split(":", 1)
            kv = dict(x.split("=") for x in rest.split(","))
            out[name] = (int(kv["calls"]), int(kv["usec"]))
    return out


def tx(port, master, n):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    batch = command("MULTI") + command("SET", "bench:tx", "1") + command("EXEC")

    def one():
        s.sendall(batch)
        assert f.readline() == b"+OK\r\n"
        assert f.readline() == b"+QUEUED\r\n"
        assert f.readline() == b"*1\r\n" and f.readline() == b"+OK\r\n"

    for _ in range(50):
        one()
    before = commandstats(master)
    t0 = time.perf_counter()
    for _ in range(n):
        one()
    dt = time.perf_counter() - t0
    after = commandstats(master)
    s.close()
    diff = {k: (v[0] - before.get(k, (0, 0))[0], v[1] - before.get(k, (0, 0))[1])
            for k, v in after.items()}
    if "info" in diff:                      # the INFO read for `before`
        c, u = diff["info"]
        diff["info"] = (c - 1, u * (c - 1) // c if c else 0)
    calls = sum(c for c, _ in diff.values())
    usec = sum(u for _, u in diff.values())
    per = ",".join(f"{k}:{c / n:.2f}" for k, (c, _) in sorted(diff.items()) if c >= n / 10)
    print(f"tx_per_sec={n / dt:.0f} redis_us_per_tx={usec / n:.2f} "
          f"redis_commands_per_tx={calls / n:.2f} commands={per}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ports")
    p.add_argument("n", type=int)
    p = sub.add_parser("idle")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p = sub.add_parser("irtotal")
    p.add_argument("file")
    p = sub.add_parser("tx")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--master", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p = sub.add_parser("latency")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--idle", type=float, required=True)
    p.add_argument("--rounds", type=int, required=True)
    a = ap.parse_args()
    if a.cmd == "ports":
        print("\n".join(map(str, free_ports(a.n))))
    elif a.cmd == "idle":
        idle(a.port, a.pid, a.n)
    elif a.cmd == "latency":
        latency(a.port, a.idle, a.rounds)
    elif a.cmd == "tx":
        tx(a.port, a.master, a.n)
    else:
        irtotal(a.file)


if __name__ == "__main__":
    main()
