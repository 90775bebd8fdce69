"""TLS to Redis: apps speak plaintext to the sidecar, every connection the
sidecar makes to Redis (links, leases, health checks, sentinels) is TLS,
verified, resumed on reconnect, and re-read from its files on reload.

The servers are TLS-only (port 0): anything that reached them in
plaintext would fail. Certificates come from tls_certs.py."""
import shutil
import signal
import threading
import time

import pytest
import redis

from helpers import (SLOW, Load, Relay, replica_of, resp_cmd, resp_read, resp_type,
                     tls_upstream, wait_until)
from test_validation import no_lost_write, twenty_idle_clients_then


def tls_sidecar(env, master, certs, replicas=(), **upstream):
    up = tls_upstream(certs, **upstream)
    if replicas:
        up["replicas"] = ", ".join(f"127.0.0.1:{r.port}" for r in replicas)
    return env.sidecar(master, upstream=up, health={"check_interval": "100ms"})


def test_every_kind_of_request_over_tls_to_a_master_with_a_replica(env, certs):
    tls = certs.redis_tls()
    m = env.redis("master", tls=tls)
    rep = replica_of(env, m.port, tls=tls)
    sc = tls_sidecar(env, m, certs, replicas=[rep])
    wait_until(lambda: "eligible=1" in sc.info().get("replica0", ""), what="replica eligible")
    c = sc.client()
    assert c.set("k", "v") is True
    assert c.get("k") == b"v"
    # a pipeline of 1,000
    p = c.pipeline(transaction=False)
    for i in range(1000):
        p.set(f"p{i}", i)
    for i in range(1000):
        p.get(f"p{i}")
    out = p.execute()
    assert out[:1000] == [True] * 1000
    assert out[1000:] == [str(i).encode() for i in range(1000)]
    # MULTI on a lease
    tx = c.pipeline(transaction=True)
    tx.incr("ctr").incr("ctr")
    assert tx.execute() == [1, 2]
    # BLPOP answered by a push from another client
    got = []
    t = threading.Thread(target=lambda: got.append(sc.client().blpop("q", timeout=10)))
    t.start()
    wait_until(lambda: m.client().info("clients")["blocked_clients"] == 1, what="BLPOP blocked")
    c.rpush("q", "x")
    t.join(10)
    assert got == [(b"q", b"x")]
    # pub/sub on a lease in stream mode
    ps = sc.client().pubsub()
    ps.subscribe("news")
    assert ps.get_message(timeout=5)["type"] == "subscribe"
    wait_until(lambda: c.publish("news", "hello") == 1, what="subscriber seen")
    msg = ps.get_message(timeout=5)
    assert msg and msg["data"] == b"hello", msg
    ps.close()
    # a RESP3 client (a new connection: its GET may go to the replica,
    # which must have k by then)
    wait_until(lambda: rep.client().get("k") == b"v", what="k on the replica")
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("HELLO", "3"))
    assert resp_type(f) == b"%"
    resp_read(f)
    s.sendall(resp_cmd("GET", "k"))
    assert resp_read(f) == b"v"
    s.close()
    # reads went to the replica, over TLS too
    wait_until(lambda: m.client().get("p999") == b"999" and rep.client().get("p999") == b"999",
               what="replicated")
    # (c's own writes keep its reads on the master until the replica is
    # seen past them: read-your-writes, judged by sampled offsets)
    before = sc.counter("reads_to_replicas")
    wait_until(lambda: c.get("p1") == b"1" and sc.counter("reads_to_replicas") > before,
               what="a read served by the replica")
    # every link kind is on the TLS-only servers: data, leases, health
    names = {x.get("name") for x in m.client().client_list()}
    assert {"sidecar-data", "sidecar-health"} <= names, names
    assert any(x.get("name") == "sidecar-health" for x in rep.client().client_list())
    info = sc.info()
    assert int(info["tls_handshakes_full"]) >= 2
    assert info["tls_handshakes_failed"] == "0"
    assert info["links_lost_tls"] == "0"


# (server certificate, its CA as the sidecar's tls_ca_file, the cause in the error)
FAILURES = {
    "wrong_ca": ("server", "other-ca", "certificate verify failed (self-signed certificate "
                 "in certificate chain)"),
    "expired": ("expired", "ca", "certificate verify failed (certificate has expired)"),
    "name_mismatch": ("wrongname", "ca", "certificate verify failed (IP address mismatch)"),
    "self_signed": ("selfsigned", "ca", "certificate verify failed (self-signed certificate)"),
}


def server_with(env, certs, cert):
    """A TLS-only server with a certificate our own test client may not
    trust (expired, self-signed): waited for without verifying it."""
    m = env.redis("master", tls=certs.redis_tls(cert), start=False)
    m.start(wait=False)
    wait_until(lambda: m.client(ssl_cert_reqs="none").ping(), what=f"redis on {m.port}")
    return m


@pytest.mark.parametrize("case", sorted(FAILURES) + ["plaintext_server"])
def test_verification_failures_give_a_clear_error_in_time(env, certs, case):
    if case == "plaintext_server":
        m = env.redis("master")
        ca, cause = "ca", "TLS: "
    else:
        cert, ca, cause = FAILURES[case]
        m = server_with(env, certs, cert)
    sc = env.sidecar(m, upstream=tls_upstream(certs, tls_ca_file=certs[f"{ca}.crt"]),
                     pool={"connect_timeout": "500ms", "min_idle_leases": "0"})
    c = sc.client(socket_timeout=10)
    t0 = time.monotonic()
    with pytest.raises(redis.ResponseError) as e:
        c.get("k")
    took = time.monotonic() - t0
    msg = str(e.value)
    assert msg.startswith(f"upstream 127.0.0.1:{m.port} "), msg
    assert "TLS: " + cause.removeprefix("TLS: ") in msg, msg
    assert took < 0.5 * 3, took                 # within connect_timeout (3x margin)
    with pytest.raises(redis.ResponseError):
        c.set("k", "v")
    direct = m.client(ssl_cert_reqs="none") if case != "plaintext_server" else m.client()
    assert direct.get("k") is None              # nothing reached the server
    info = sc.info()
    assert int(info["links_lost_tls"]) >= 1
    assert int(info["connect_failures"]) >= 1
    assert int(info["tls_handshakes_failed"]) >= 1
    assert info["tls_handshakes_full"] == "0"
    # logged once for the node, however many links and retries
    time.sleep(0.5)
    lines = [x for x in sc.log().splitlines() if "cannot connect: TLS" in x]
    assert len(lines) == 1, lines


def test_verify_ca_takes_a_nameless_certificate_that_full_refuses(env, certs):
    m = env.redis("master", tls=certs.redis_tls("noname"))
    full = env.sidecar(m, upstream=tls_upstream(certs), pool={"connect_timeout": "500ms"})
    with pytest.raises(redis.ResponseError, match=r"IP address mismatch"):
        full.client().get("k")
    ca = env.sidecar(m, upstream=tls_upstream(certs, tls_verify="ca"))
    assert ca.client().set("k", "v") is True
    assert ca.client().get("k") == b"v"
    # the name sent and checked can be set: localhost is in the server's SAN
    named = env.sidecar(m, upstream=tls_upstream(certs, tls_server_name="localhost"))
    with pytest.raises(redis.ResponseError, match=r"hostname mismatch"):
        named.client().get("k")        # noname has no SAN at all
    m2 = env.redis("master2", tls=certs.redis_tls())
    named2 = env.sidecar(m2, upstream=tls_upstream(certs, tls_server_name="localhost"))
    assert named2.client().set("k", "v") is True


def test_verify_off_is_logged_and_works(env, certs):
    m = server_with(env, certs, "selfsigned")
    sc = env.sidecar(m, upstream=tls_upstream(certs, tls_verify="off"))
    assert sc.client().set("k", "v") is True
    assert "tls_verify = off" in sc.log()


def test_client_certificate_required_by_the_server(env, certs):
    m = env.redis("master", tls=certs.redis_tls(auth_clients="yes"))
    without = env.sidecar(m, upstream=tls_upstream(certs), pool={"connect_timeout": "500ms"})
    with pytest.raises(redis.ResponseError, match=r"unavailable|is down") as e:
        without.client().get("k")
    assert "TLS: " in str(e.value), e.value
    with_cert = env.sidecar(m, upstream=tls_upstream(certs, tls_cert_file=certs.client_crt,
                                                      tls_key_file=certs.client_key))
    assert with_cert.client().set("k", "v") is True
    assert with_cert.client().get("k") == b"v"


def test_idle_tls_links_blackholed_reach_no_app_and_reconnects_resume(env, certs):
    m = env.redis("master", tls=certs.redis_tls())
    relay = Relay(m.port)
    try:
        sc = env.sidecar(relay.port, upstream=tls_upstream(certs))
        # the health checks' own TLS connection counts too: once it answered
        wait_until(lambda: sc.nodes()["node"][0]["role"] == "master", what="a ROLE over TLS")
        full = sc.counter("tls_handshakes_full")
        errors, slowest, _ = twenty_idle_clients_then(sc, relay.blackhole)
        assert errors == []
        assert slowest < 0.3 * 3 * SLOW, f"first requests took {slowest:.2f}s"
        no_lost_write(m)
        info = sc.info()
        assert int(info["validations_failed"]) >= 2
        # the new links resumed the node's session: no new full handshake
        assert int(info["tls_handshakes_resumed"]) >= 2
        assert int(info["tls_handshakes_full"]) == full
    finally:
        relay.close()


def test_links_reconnecting_together_each_resume_a_session_of_their_own(env, certs):
    """A TLS 1.3 session serves one handshake (OpenSSL spends the session
    object a handshake resumed with; a server may take a ticket once), so
    each link takes one of the node's sessions and the tickets it is sent
    go back to them. Four links dropped at once all resume; so do four
    dropped one after the other through a relay that delays every chunk
    0.2 s, each as soon as the one before it has resumed and before that
    one's new ticket has come back (the timing that made one session shared
    by the node's links give a full handshake). Nothing else reconnects
    meanwhile: resumed handshakes grow by exactly the links dropped."""
    m = env.redis("master", tls=certs.redis_tls())
    relay = Relay(m.port)
    try:
        sc = env.sidecar(relay.port, upstream=tls_upstream(certs),
                         pool={"connections": "4", "min_idle_leases": "0",
                               "connect_timeout": "5s"},
                         health={"check_interval": "2s"})   # over the relay's delay
        assert sc.client().set("k", "v") is True
        wait_until(lambda: sc.info()["master_links_ready"] == "4", what="4 links ready")
        wait_until(lambda: sc.nodes()["node"][0]["role"] == "master", what="a ROLE over TLS")
        admin = m.client()

        def handshakes():
            info = sc.info()
            return int(info["tls_handshakes_full"]), int(info["tls_handshakes_resumed"])

        def drop_links(each_after_the_last):
            ids = [c["id"] for c in m.sidecar_links()]
            assert len(ids) == 4, ids
            full, resumed = handshakes()
            for i, cid in enumerate(ids):
                assert admin.client_kill_filter(_id=cid) == 1
                if each_after_the_last:
                    wait_until(lambda: sum(handshakes()) > full + resumed + i,
                               what=f"link {i + 1} reconnected")
            wait_until(lambda: sum(handshakes()) >= full + resumed + 4
                       and sc.info()["master_links_ready"] == "4", what="4 links back")
            assert handshakes() == (full, resumed + 4)
            assert c.get("k") == b"v"

        c = sc.client()
        drop_links(each_after_the_last=False)
        relay.delay = 0.2
        drop_links(each_after_the_last=True)
        assert sc.counter("links_lost_tls") == 0
    finally:
        relay.close()


def test_reload_reads_new_files_while_20_clients_run(env, certs, tmp_path):
    """Rotation to a new CA, both ways: the server moves to a certificate of
    the new CA and accepts only client certificates of the new CA; the
    sidecar's CA, certificate and key files (same paths) are replaced and
    reloaded under load. No client sees an error, open links keep serving,
    a new link verifies the server with the new CA and presents the new
    certificate, and a bad file refuses the reload."""
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    shutil.copy(certs.ca_crt, ca_file)
    shutil.copy(certs.client_crt, cert_file)
    shutil.copy(certs.client_key, key_file)
    m = env.redis("master", tls=certs.redis_tls(ca="ca-both", auth_clients="yes"))
    sc = env.sidecar(m, upstream=tls_upstream(certs, tls_ca_file=str(ca_file),
                                              tls_cert_file=str(cert_file),
                                              tls_key_file=str(key_file)))

    def op(c, i, seq):
        assert c.set(f"r{i}", seq) is True
        assert c.get(f"r{i}") == str(seq).encode()
    load = Load(op, n=20, port=sc.port, rate=100).start()
    load.wait_ok(20, each=True)
    admin = sc.client()
    # a file that is no CA bundle: refused with the reason, nothing changes
    ca_file.write_text("not a certificate\n")
    with pytest.raises(redis.ResponseError, match=r"ca\.pem"):
        admin.execute_command("PROXY", "RELOAD")
    # a key that is not the certificate's: refused too
    shutil.copy(certs.ca2_crt, ca_file)
    shutil.copy(certs.server_ca2_crt, cert_file)
    with pytest.raises(redis.ResponseError, match=r"does not match"):
        admin.execute_command("PROXY", "RELOAD")
    shutil.copy(certs.server_ca2_key, key_file)     # (it has clientAuth too)
    assert admin.execute_command("PROXY", "RELOAD") == b"reloaded"
    # the server: a certificate of the new CA, client certificates of it only
    new_client = {"ssl_certfile": certs.server_ca2_crt, "ssl_keyfile": certs.server_ca2_key}
    m.client().execute_command("CONFIG", "SET", "tls-cert-file", certs.server_ca2_crt,
                               "tls-key-file", certs.server_ca2_key,
                               "tls-ca-cert-file", certs.ca2_crt)
    assert m.client(**new_client).ping()
    load.wait_ok(50, each=True, after=time.monotonic())
    # a new link (a lease for MULTI) could only be made with the new files
    full = sc.counter("tls_handshakes_full")
    tx = sc.client().pipeline(transaction=True)
    tx.set("tx", 1).get("tx")
    assert tx.execute() == [True, b"1"]
    assert sc.counter("tls_handshakes_full") > full
    load.stop()
    assert load.errors() == [], load.error_texts()[:5]
    assert sc.counter("links_lost_tls") == 0


def test_tls_1_2_sessions_resume_too(env, certs):
    m = env.redis("master", tls=certs.redis_tls(),
                  args=["--tls-protocols", "TLSv1.2"])
    sc = env.sidecar(m, upstream=tls_upstream(certs))
    c = sc.client()
    assert c.set("k", "v") is True
    wait_until(lambda: sc.info()["master_links_ready"] == "2", what="links ready")
    assert m.client().client_kill_filter(_type="normal") >= 2
    wait_until(lambda: sc.counter("tls_handshakes_resumed") >= 2, what="links resumed")
    assert c.get("k") == b"v"


def test_tls_sentinel_failover_holds_the_failover_figures(env, certs):
    """test_sentinel's SIGKILL failover, every server and sentinel TLS-only:
    the same bounds (errors only for writes in flight on the old master,
    stable writes within 1 s of the switch, nothing lost)."""
    from test_sentinel import Topology, master_killed_under_writes
    sc = master_killed_under_writes(Topology(env, tls=certs.redis_tls()))
    # the sentinels were TLS too: polled and subscribed, their sessions counted
    sentinels = sc.nodes()["sentinel"]
    assert all(s["state"] == "up" for s in sentinels), sentinels
    assert all(int(s["tls_full"]) + int(s["tls_resumed"]) >= 2 for s in sentinels), sentinels
    assert int(sc.info()["tls_handshakes_full"]) > 0
