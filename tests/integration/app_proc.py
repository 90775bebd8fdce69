"""One local "app" for test_apps.py: a process that becomes another uid
(and, before that, joins a cgroup), names itself, and opens connections to
the sidecar on command. Commands come one per line on stdin; each answer is
one JSON line on stdout.

    open N         open N connections, PING on each: {"ok": n, "errors": [...]}
    alive          PING every open connection: {"alive": n}
    get KEY N      GET KEY N times on its first connection: {"ok": n}
    eval MS KEY    a Lua busy loop of MS milliseconds on KEY: {"ok": 1}
    pid            {"pid": its pid}
"""
import argparse
import json
import os
import socket
import sys


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("closed")
    t, rest = line[:1], line[1:-2]
    if t == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if t == b"*":
        return [read_reply(f) for _ in range(int(rest))]
    if t == b"-":
        return RuntimeError(rest.decode())
    return rest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uid", type=int)
    ap.add_argument("--cgroup")
    ap.add_argument("--name")
    ap.add_argument("--tcp", type=int)
    ap.add_argument("--unix")
    o = ap.parse_args()
    if o.cgroup:
        with open(os.path.join(o.cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    if o.name:
        with open("/proc/self/comm", "w") as f:
            f.write(o.name)
    if o.uid is not None:
        os.setgroups([])
        os.setresgid(o.uid, o.uid, o.uid)
        os.setresuid(o.uid, o.uid, o.uid)
    conns = []

    def connect():
        if o.unix:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(o.unix)
        else:
            s = socket.create_connection(("127.0.0.1", o.tcp), timeout=10)
        return s, s.makefile("rb")

    def say(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "open":
            ok, errors = 0, []
            for _ in range(int(cmd[1])):
                s, f = connect()
                try:
                    s.sendall(resp("PING"))
                    r = read_reply(f)
                except (ConnectionError, OSError) as e:
                    r = RuntimeError(f"closed: {e}")
                if isinstance(r, RuntimeError):
                    errors.append(str(r))
                    s.close()
                else:
                    ok += 1
                    conns.append((s, f))
            say({"ok": ok, "errors": errors})
        elif cmd[0] == "alive":
            n = 0
            for s, f in conns:
                try:
                    s.sendall(resp("PING"))
                    n += read_reply(f) == b"PONG"
                except (ConnectionError, OSError):
                    pass
            say({"alive": n})
        elif cmd[0] == "get":
            s, f = conns[0]
            n = int(cmd[2])
            s.sendall(resp("GET", cmd[1]) * n)
            for _ in range(n):
                read_reply(f)
            say({"ok": n})
        elif cmd[0] == "eval":
            s, f = conns[0]
            script = ("local t = redis.call('TIME') local e = t[1] * 1000000 + t[2] + %d "
                      "while true do t = redis.call('TIME') "
                      "if t[1] * 1000000 + t[2] >= e then break end end return 1"
                      % (int(cmd[1]) * 1000))
            s.sendall(resp("EVAL", script, 1, cmd[2]))
            r = read_reply(f)
            say({"ok": 1 if r == b"1" else str(r)})
        elif cmd[0] == "pid":
            say({"pid": os.getpid()})


if __name__ == "__main__":
    main()
