"""The TLS fixture itself, on the real binaries (no sidecar): TLS-only
redis-server and redis-sentinel processes started with the test
certificates of tls_certs.py. A TLS server answers over TLS and not in
plaintext, and passes through the fault relay unchanged; a TLS replica
syncs from a TLS master; TLS sentinels watch a TLS master and fail it
over; a server that asks for client certificates takes only a client
that has one."""
import redis

from helpers import Relay, replica_of, wait_until


def test_tls_only_redis_answers_over_tls_and_refuses_plaintext(env, certs):
    r = env.redis("tls", tls=certs.redis_tls())
    c = r.client()
    assert c.set("k", "v") is True
    assert c.get("k") == b"v"
    try:
        r.client(ssl=False).ping()
        raise AssertionError("a plaintext client was answered")
    except redis.ConnectionError:
        pass
    try:
        r.client(ssl_ca_certs=certs.other_ca_crt).ping()
        raise AssertionError("a client trusting another CA verified the server")
    except redis.ConnectionError as e:
        assert "CERTIFICATE_VERIFY_FAILED" in str(e), e

    # the relay carries TLS unchanged, and its black hole stops it
    relay = Relay(r.port)
    try:
        via = redis.Redis(host="127.0.0.1", port=relay.port, socket_timeout=0.5,
                          ssl=True, ssl_ca_certs=certs.ca_crt)
        assert via.get("k") == b"v"
        relay.blackhole()
        try:
            via.get("k")
            raise AssertionError("answered through a black hole")
        except redis.TimeoutError:
            pass
    finally:
        relay.close()


def test_tls_replica_syncs_from_a_tls_master(env, certs):
    tls = certs.redis_tls()
    m = env.redis("master", tls=tls)
    m.client().set("before", "1")
    rep = replica_of(env, m.port, tls=tls)
    m.client().set("after", "2")
    wait_until(lambda: rep.client().get("after") == b"2", what="the write replicated")
    assert rep.client().get("before") == b"1"
    # the replica announces its TLS port (its only one) to the master
    slaves = m.client().info("replication")
    assert slaves["slave0"]["port"] == rep.port, slaves


def test_tls_sentinels_watch_and_fail_over_a_tls_master(env, certs):
    tls = certs.redis_tls()
    m = env.redis("master", tls=tls)
    rep = replica_of(env, m.port, tls=tls)
    sentinels = [env.sentinel(m, tls=tls, down_after=1000) for _ in range(3)]

    def discovered():
        for s in sentinels:
            info = s.client().execute_command("SENTINEL", "MASTER", "mymaster")
            f = dict(zip(info[::2], info[1::2]))
            if f[b"num-slaves"] != b"1" or f[b"num-other-sentinels"] != b"2":
                return False
        return True
    # sentinels find each other by hello messages (every 2 s), over TLS
    wait_until(discovered, timeout=15, what="sentinels know the replica and each other")
    assert all(s.master_addr() == ("127.0.0.1", m.port) for s in sentinels)

    m.stop()
    wait_until(lambda: all(s.master_addr() == ("127.0.0.1", rep.port) for s in sentinels),
               timeout=15, scale=False, what="the sentinels promote the replica")
    wait_until(lambda: rep.client().info("replication")["role"] == "master",
               what="the replica is a master")


def test_a_server_asking_for_client_certificates_takes_only_clients_with_one(env, certs):
    r = env.redis("mtls", tls=certs.redis_tls(auth_clients="yes"))
    assert r.client().ping()                       # with client.crt
    try:
        r.client(ssl_certfile=None, ssl_keyfile=None).ping()
        raise AssertionError("a client without a certificate was answered")
    except redis.ConnectionError as e:
        # the alert, or (TLS 1.3: the client's handshake is over before the
        # server judged its certificate) the close that follows it
        assert "CERTIFICATE_REQUIRED" in str(e) or "EOF" in str(e), e
    # nor one that the server's CA did not sign
    try:
        r.client(ssl_certfile=certs.selfsigned_crt, ssl_keyfile=certs.selfsigned_key).ping()
        raise AssertionError("a self-signed client certificate was taken")
    except redis.ConnectionError as e:
        assert "UNKNOWN_CA" in str(e) or "EOF" in str(e), e
