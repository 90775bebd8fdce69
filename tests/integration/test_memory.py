"""Memory held to the limits: a client that never reads its replies costs
about max_output_buffer before it is closed, never twice that, and the
memory goes back once it is gone. (Under make asan the sizes are not
asserted: its shadow memory and quarantine are most of the RSS.)"""
import socket

from helpers import ASAN, resp_cmd, status_kb, wait_until

MB = 1024 * 1024


def test_unread_replies_cost_the_output_limit_then_come_back(env, master):
    sc = env.sidecar(master)                      # max_output_buffer: 64mb by default
    master.client().set("big", b"v" * MB)
    sc.client().get("big")                        # the links and the lease of a first GET
    rss0 = status_kb(sc.proc.pid, "VmRSS")
    for round in range(2):                        # and again: the memory came back
        s = sc.raw()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"".join(resp_cmd("GET", "big") for _ in range(300)))
        wait_until(lambda: sc.log().count("output buffer over 67108864 bytes") == round + 1,
                   timeout=30, what="the client closed at its output limit")
        peak = status_kb(sc.proc.pid, "VmHWM")    # the high-water mark, since start
        print(f"\nRSS before {rss0} KB, peak {peak} KB (+{(peak - rss0) / 1024:.1f} MB)")
        if not ASAN:
            assert peak - rss0 <= 72 * 1024, (rss0, peak)
            wait_until(lambda: status_kb(sc.proc.pid, "VmRSS") - rss0 <= 10 * 1024,
                       timeout=10, what="RSS back within 10 MB of its start")
        s.close()
    r = sc.client()
    assert r.get("big") == b"v" * MB              # others untouched


def test_a_reply_over_the_output_limit_is_an_error_and_is_never_buffered(env, master):
    sc = env.sidecar(master, clients={"max_output_buffer": "1mb"})
    master.client().set("huge", b"h" * (8 * MB))
    master.client().set("small", b"s")
    r = sc.client()
    r.get("small")
    rss0 = status_kb(sc.proc.pid, "VmRSS")
    p = r.pipeline(transaction=False)
    p.get("small").get("huge").get("small")
    got = p.execute(raise_on_error=False)
    assert got[0] == b"s" and got[2] == b"s", got
    assert "over max_output_buffer (1048576 bytes)" in str(got[1]), got[1]
    # Dropped as it came: the proxy never held the 8 MB reply.
    assert ASAN or status_kb(sc.proc.pid, "VmHWM") - rss0 < 4 * 1024
    assert r.get("small") == b"s"                 # the same connection goes on
