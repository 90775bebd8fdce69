"""Zero-downtime restart: a new process starts on the same port
(SO_REUSEPORT) while the old one drains. 20 clients that reconnect on
close run throughout: no connect is refused, no request fails."""
import signal
import socket
import time

from helpers import SLOW, Load, Sidecar, wait_until


def set_in_a_loop(c, i, n):
    c.set(f"r{i}:{n}", n)


def test_restart_on_the_same_port_refuses_nothing(env, master):
    old = env.sidecar(master)
    # 20 clients SET in a loop; on a closed connection (nothing was answered,
    # so the drain never read the request) each reconnects and sends it again
    load = Load(set_in_a_loop, n=20, port=old.port, rate=500, reconnect="retry").start()
    load.wait_ok(10, each=True)
    new = Sidecar(env.tmp, master.port)
    new.port = old.port                      # the same address, by SO_REUSEPORT
    new.cfg["proxy"]["listen"] = f"127.0.0.1:{old.port}"
    new.write_ini()
    env.sidecars.append(new)
    new.start()
    wait_until(lambda: f"listening on 127.0.0.1:{old.port}" in new.log(), what="new listening")
    old.proc.send_signal(signal.SIGTERM)
    old.proc.wait(15 * SLOW)
    assert old.stop() == 0
    gone = time.monotonic()
    load.wait_ok(10, each=True, after=gone)  # every client carries on, on the new one
    load.stop()
    ok = len(load.ok())
    refused = sum(load.refused)
    errors = load.error_texts()
    reconnects = sum(load.reconnects)
    print(f"\nrestart: {ok} requests, {reconnects} reconnects, {refused} refused, "
          f"{len(errors)} errors")
    assert refused == 0 and not errors, errors[:5]
    assert all(load.ok(i) for i in range(20))
    assert int(new.info()["total_requests"]) > 0       # the new one took over
    socket.create_connection(("127.0.0.1", old.port), timeout=2).close()
    # every acknowledged SET is there
    acked = load.ok()
    p = master.client().pipeline(transaction=False)
    for c in acked:
        p.get(f"r{c.client}:{c.seq}")
    lost = [c for c, v in zip(acked, p.execute()) if v != str(c.seq).encode()]
    assert not lost, lost[:5]
