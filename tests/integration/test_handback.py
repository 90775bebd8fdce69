"""Requests a link hands back to their client when it dies without
having run them (reads on a replica go to the master): the client may
be closed while they are handed back, one by one."""
import signal
import socket

from helpers import resp_cmd, wait_until


def replica_requests(sc, port):
    nodes = sc.client().execute_command("PROXY", "NODES").decode()
    for line in nodes.splitlines():
        if f"addr=127.0.0.1:{port}," in line:
            return int(line.split("requests=")[1].split(",")[0])
    return 0


def gets_run(node):
    return node.client().info("commandstats").get("cmdstat_get", {}).get("calls", 0)


def test_reads_handed_back_for_a_client_an_earlier_error_closed(env):
    master = env.redis("master")
    rep = env.redis("replica", args=["--replicaof", "127.0.0.1", str(master.port)])
    wait_until(lambda: rep.client().info("replication")["master_link_status"] == "up",
               what="replica synced")
    master.client().mset({"big": "v" * 1002, "k1": "a", "k2": "b"})
    wait_until(lambda: rep.client().get("k2") == b"b", what="keys on the replica")
    sc = env.sidecar(master, upstream={"replicas": f"127.0.0.1:{rep.port}"},
                     routing={"read_from": "prefer-replica", "read_your_writes": "off"},
                     health={"check_interval": "200ms", "down_after": "3"},
                     pool={"reply_timeout": "60s"},
                     clients={"max_output_buffer": "1024b"})
    wait_until(lambda: sc.client().get("k1") == b"a" and replica_requests(sc, rep.port),
               what="the replica serving reads")
    s = sc.raw()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    master.proc.send_signal(signal.SIGSTOP)
    try:
        # The SET stays unanswered on the master, so every later reply
        # parks behind it: GET big's 1 KB fills the client's output.
        before, ran = replica_requests(sc, rep.port), gets_run(rep)
        s.sendall(resp_cmd("SET", "x", "1") + resp_cmd("GET", "big"))
        wait_until(lambda: replica_requests(sc, rep.port) == before + 1, what="GET big sent")
        # run, not only sent: its reply must be parked before the replica
        # stops (the test failed now and then when it was not)
        wait_until(lambda: gets_run(rep) == ran + 1, what="GET big run by the replica")
        rep.proc.send_signal(signal.SIGSTOP)
        s.sendall(resp_cmd("GET", "k1") + resp_cmd("GET", "k2"))
        wait_until(lambda: replica_requests(sc, rep.port) == before + 3, what="both GETs sent")
        wait_until(lambda: f"node 127.0.0.1:{master.port} is down" in sc.log(), timeout=10,
                   what="the master marked down")
        # The replica link dies: both reads go back; the master is down, so
        # the first gets an error, which closes the client over its output
        # limit; the second is handed back with no client left.
        rep.stop()
        wait_until(lambda: "closed: output buffer over 1024 bytes" in sc.log(),
                   what="the client closed")
        # (PROXY INFO's reply is over this test's 1kb output limit: the log
        # and the process tell.)
        wait_until(lambda: f"link 127.0.0.1:{rep.port}#" in sc.log(), what="the replica's links lost")
        assert sc.alive(), sc.log()[-600:]
        assert s.recv(4096) == b""           # closed, nothing more for it
    finally:
        if master.proc:
            master.proc.send_signal(signal.SIGCONT)
