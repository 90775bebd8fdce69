"""A lease that holds nothing after its holder's last request comes back
in that request's round trip: its RESET and handshake are written right
behind it, and whatever is queued after them waits for their replies."""
import redis

from helpers import resp_cmd, resp_read, wait_until


def lease_links(master):
    return [c for c in master.client().client_list() if c.get("name") == "sidecar-lease"]


def test_transactions_reuse_one_lease_reset_in_the_same_round_trip(env, master):
    sc = env.sidecar(master)
    r = sc.client()
    r.ping()
    wait_until(lambda: master.client().info("commandstats").get("cmdstat_info"),
               what="the checker's INFO")
    master.client().config_resetstat()
    for i in range(50):
        p = r.pipeline(transaction=True)
        p.set("k", i).get("k")
        assert p.execute() == [True, str(i).encode()]
    stats = master.client().info("commandstats")
    info = sc.info()
    # Each transaction took the one idle lease and gave it back with one
    # RESET; no link ever asks INFO (the version is the checker's).
    assert stats["cmdstat_exec"]["calls"] == 50
    assert stats["cmdstat_reset"]["calls"] == 50
    assert "cmdstat_info" not in stats
    assert int(info["leases_taken"]) == 50
    assert int(info["leases_reset_and_reused"]) == 50
    assert len(lease_links(master)) == 1


def test_requests_pipelined_past_exec_run_after_the_reset_in_order(env, master):
    sc = env.sidecar(master)
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("MULTI") + resp_cmd("SET", "p", "1") + resp_cmd("EXEC") +
              resp_cmd("GET", "p") + resp_cmd("MULTI") + resp_cmd("INCR", "p") +
              resp_cmd("EXEC") + resp_cmd("GET", "p") + resp_cmd("SET", "q", "x"))
    got = [resp_read(f) for _ in range(9)]
    assert got == [b"OK", b"QUEUED", [b"OK"], b"1", b"OK", b"QUEUED", [2], b"2", b"OK"]
    assert master.client().mget("p", "q") == [b"2", b"x"]
    wait_until(lambda: len(lease_links(master)) == 1, what="one lease")


def test_a_refused_return_handshake_closes_the_lease_not_the_client(env):
    m = env.redis("master", args=["--requirepass", "pw"])
    sc = env.sidecar(m, upstream={"password": "pw"})
    r = sc.client()
    p = r.pipeline(transaction=True)
    p.set("a", 1)
    assert p.execute() == [True]
    wait_until(lambda: len(lease_links(m)) == 1, what="the lease")
    # The server's password changes: the next return handshake's AUTH is
    # refused after the transaction ran, and the lease is closed.
    m.client().config_set("requirepass", "other")
    m.password = "other"
    p = r.pipeline(transaction=True)
    p.set("b", 2)
    try:
        assert p.execute() == [True]
    except redis.ResponseError as e:       # its new lease may already be refused
        assert "dedicated connection" in str(e) or "AUTH" in str(e), e
    wait_until(lambda: "AUTH refused" in sc.log(), what="the refused AUTH logged")
    wait_until(lambda: not lease_links(m), what="the lease closed")
    assert r.ping()                        # the client stays


def test_subscribe_on_a_lease_whose_reset_is_still_unanswered(env, master):
    """The replies of a return handshake sent ahead never reach the next
    holder, even one that subscribes: its SUBSCRIBE goes out after them."""
    sc = env.sidecar(master)
    # "+OK", "+QUEUED" and the EXEC reply fill exactly one 16 KiB read of
    # the lease: the handshake's replies come in the next read.
    master.client().set("big", "v" * 16356)
    s = sc.raw(timeout=3)
    f = s.makefile("rb")
    s.sendall(resp_cmd("MULTI") + resp_cmd("GET", "big") + resp_cmd("EXEC"))
    assert [resp_read(f) for _ in range(3)][:2] == [b"OK", b"QUEUED"]
    wait_until(lambda: len(lease_links(master)) == 1, what="the lease")
    s.sendall(resp_cmd("MULTI") + resp_cmd("GET", "big") + resp_cmd("EXEC") +
              resp_cmd("SUBSCRIBE", "ch"))
    got = [resp_read(f) for _ in range(3)]
    assert got[:2] == [b"OK", b"QUEUED"] and len(got[2][0]) == 16356
    assert resp_read(f) == [b"subscribe", b"ch", 1]
    assert master.client().pubsub_numsub("ch") == [(b"ch", 1)]
