"""Zero-downtime restart: a new process starts on the same port
(SO_REUSEPORT) while the old one drains. 20 clients that reconnect on
close run throughout: no connect is refused, no request fails."""
import signal
import socket
import threading
import time

import redis

from helpers import SLOW, Sidecar, wait_until


class Looper:
    """SET in a loop; on a closed connection (nothing was answered, so the
    drain never read the request) it reconnects and sends it again."""

    def __init__(self, port, i):
        self.port, self.i = port, i
        self.ok = self.reconnects = self.refused = 0
        self.errors = []
        self.stop_flag = threading.Event()
        self.t = threading.Thread(target=self.run)

    def run(self):
        c = None
        n = 0
        while not self.stop_flag.is_set():
            try:
                if c is None:
                    c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10 * SLOW)
                c.set(f"r{self.i}:{n}", n)
                self.ok += 1
                n += 1
            except redis.ConnectionError as e:
                if isinstance(e.__context__, ConnectionRefusedError) or "refused" in str(e):
                    self.refused += 1
                self.reconnects += 1
                c = None
            except redis.RedisError as e:
                self.errors.append(repr(e))
                n += 1
            time.sleep(0.002)


def test_restart_on_the_same_port_refuses_nothing(env, master):
    old = env.sidecar(master)
    loopers = [Looper(old.port, i) for i in range(20)]
    for lp in loopers:
        lp.t.start()
    time.sleep(1)
    new = Sidecar(env.tmp, master.port)
    new.port = old.port                      # the same address, by SO_REUSEPORT
    new.cfg["proxy"]["listen"] = f"127.0.0.1:{old.port}"
    new.write_ini()
    env.sidecars.append(new)
    new.start()
    wait_until(lambda: f"listening on 127.0.0.1:{old.port}" in new.log(), what="new listening")
    time.sleep(0.5)
    old.proc.send_signal(signal.SIGTERM)
    old.proc.wait(15 * SLOW)
    assert old.stop() == 0
    time.sleep(1)
    for lp in loopers:
        lp.stop_flag.set()
    for lp in loopers:
        lp.t.join(30)
    ok = sum(lp.ok for lp in loopers)
    refused = sum(lp.refused for lp in loopers)
    errors = [e for lp in loopers for e in lp.errors]
    reconnects = sum(lp.reconnects for lp in loopers)
    print(f"\nrestart: {ok} requests, {reconnects} reconnects, {refused} refused, "
          f"{len(errors)} errors")
    assert refused == 0 and not errors, errors[:5]
    assert all(lp.ok > 0 for lp in loopers)
    assert int(new.info()["total_requests"]) > 0       # the new one took over
    socket.create_connection(("127.0.0.1", old.port), timeout=2).close()
    # every acknowledged SET is there
    r = master.client()
    for lp in loopers:
        assert r.exists(f"r{lp.i}:{lp.ok - 1}")
