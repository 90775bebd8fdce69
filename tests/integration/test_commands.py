"""Every data type's common commands, scripts, expiry, binary safety,
pipelines and the commands the proxy answers itself, through the sidecar
with redis-py and raw sockets."""
import socket
import subprocess
import time

import pytest
import redis

from helpers import resp_cmd, resp_read, wait_until


def test_strings_and_counters(sidecar):
    r = sidecar.client()
    assert r.set("s", "v") is True
    assert r.get("s") == b"v"
    assert r.append("s", "w") == 2
    assert r.strlen("s") == 2
    assert r.getrange("s", 0, 0) == b"v"
    assert r.mset({"a": 1, "b": 2}) is True
    assert r.mget("a", "b", "nope") == [b"1", b"2", None]
    assert r.incr("n") == 1
    assert r.incrby("n", 41) == 42
    assert r.decr("n") == 41
    assert r.incrbyfloat("f", 1.5) == 1.5
    assert r.setnx("s", "x") is False
    assert r.getset("s", "z") == b"vw"
    assert r.delete("s", "a", "b") == 3
    assert r.exists("s") == 0


def test_hashes_lists_sets_zsets(sidecar):
    r = sidecar.client()
    assert r.hset("h", mapping={"f1": "a", "f2": "b"}) == 2
    assert r.hgetall("h") == {b"f1": b"a", b"f2": b"b"}
    assert r.hincrby("h", "n", 3) == 3
    assert sorted(r.hkeys("h")) == [b"f1", b"f2", b"n"]
    assert r.hdel("h", "f1") == 1
    assert r.rpush("l", 1, 2, 3) == 3
    assert r.lpush("l", 0) == 4
    assert r.lrange("l", 0, -1) == [b"0", b"1", b"2", b"3"]
    assert r.lpop("l") == b"0"
    assert r.rpop("l") == b"3"
    assert r.llen("l") == 2
    assert r.sadd("s", "a", "b", "c") == 3
    assert r.smembers("s") == {b"a", b"b", b"c"}
    assert r.sismember("s", "b") is True
    assert r.srem("s", "a") == 1
    assert r.sinter("s", "s") == {b"b", b"c"}
    assert r.zadd("z", {"x": 1, "y": 2.5}) == 2
    assert r.zrange("z", 0, -1, withscores=True) == [(b"x", 1.0), (b"y", 2.5)]
    assert r.zscore("z", "y") == 2.5
    assert r.zincrby("z", 10, "x") == 11.0
    assert r.zrevrange("z", 0, 0) == [b"x"]
    assert r.zrank("z", "y") == 0


def test_streams_hll_geo_bits(sidecar):
    r = sidecar.client()
    i1 = r.xadd("st", {"k": "v1"})
    r.xadd("st", {"k": "v2"})
    assert r.xlen("st") == 2
    assert r.xrange("st")[0] == (i1, {b"k": b"v1"})
    assert len(r.xread({"st": "0"})[0][1]) == 2   # no BLOCK: a plain read
    assert r.pfadd("hll", *[f"e{i}" for i in range(100)]) == 1
    assert 95 <= r.pfcount("hll") <= 105
    assert r.geoadd("g", (13.361389, 38.115556, "Palermo")) == 1
    assert r.geopos("g", "Palermo")[0][0] == pytest.approx(13.361389, abs=1e-4)
    assert r.setbit("bits", 7, 1) == 0
    assert r.bitcount("bits") == 1
    assert r.get("bits") == b"\x01"


def test_expiry(sidecar):
    r = sidecar.client()
    r.set("e", "v", px=200)
    assert 0 < r.pttl("e") <= 200
    r.set("e2", "v", ex=100)
    assert 90 < r.ttl("e2") <= 100
    assert r.persist("e2") is True
    assert r.ttl("e2") == -1
    wait_until(lambda: r.get("e") is None, timeout=3, what="key to expire")


def test_eval_and_lock_idiom(sidecar):
    r = sidecar.client()
    assert r.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, "k", "v") == b"OK"
    assert r.eval("return {1, 'two', {3}}", 0) == [1, b"two", [3]]
    sha = r.script_load("return ARGV[1]")
    assert r.evalsha(sha, 0, "x") == b"x"
    with pytest.raises(redis.exceptions.NoScriptError):
        r.evalsha("0" * 40, 0)
    # SET NX PX lock with Lua compare-and-delete release
    assert r.set("lock", "tok1", nx=True, px=5000) is True
    assert r.set("lock", "tok2", nx=True, px=5000) is None
    release = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"
    assert r.eval(release, 1, "lock", "tok2") == 0
    assert r.eval(release, 1, "lock", "tok1") == 1
    assert r.exists("lock") == 0


def test_binary_safe_keys_and_values(sidecar):
    r = sidecar.client()
    key = bytes(range(256))
    val = b"\r\n\x00*3\r\n$1\r\n" + bytes(range(255, -1, -1)) * 40
    assert r.set(key, val) is True
    assert r.get(key) == val
    assert r.strlen(key) == len(val)


def test_pipeline_of_10000(sidecar):
    r = sidecar.client()
    p = r.pipeline(transaction=False)
    for i in range(10000):
        if i % 2:
            p.get(f"p{i - 1}")
        else:
            p.set(f"p{i}", f"v{i}")
    out = p.execute()
    assert len(out) == 10000
    for i, v in enumerate(out):
        assert v == (True if i % 2 == 0 else f"v{i - 1}".encode())


def test_inline_commands(sidecar):
    s = sidecar.raw()
    f = s.makefile("rb")
    s.sendall(b"PING\r\nset inl 'hello world'\r\nGET inl\n\r\n  \r\necho \"a\\x41b\"\r\n")
    assert resp_read(f) == b"PONG"
    assert resp_read(f) == b"OK"
    assert resp_read(f) == b"hello world"
    assert resp_read(f) == b"aAb"
    s.sendall(b"set x \"unbalanced\r\n")
    err = resp_read(f)
    assert isinstance(err, redis.ResponseError)
    assert "unbalanced quotes" in str(err)
    assert f.read() == b""   # closed, as redis does


def test_hello_with_too_many_options_is_refused(sidecar):
    args = ["HELLO", "2", "AUTH", "default", "x"] + ["SETNAME", "a"] * 5 + ["SETNAME", "x"]
    with pytest.raises(redis.ResponseError):
        sidecar.client().execute_command(*args)
    assert sidecar.client().ping() is True


def test_xread_of_a_stream_named_block_is_not_blocking(sidecar):
    r = sidecar.client()
    r.xadd("block", {"f": "v"})
    assert r.execute_command("XREAD", "COUNT", "1", "STREAMS", "block", "0")[0][0] == b"block"


def test_unknown_command_gets_redis_error(sidecar):
    with pytest.raises(redis.ResponseError, match="unknown command"):
        sidecar.client().execute_command("NOSUCHCOMMAND", "a")


def test_refused_and_unsupported_commands(sidecar):
    r = sidecar.client()
    for cmd in (["SYNC"], ["REPLICAOF", "NO", "ONE"], ["SHUTDOWN"]):
        with pytest.raises(redis.ResponseError, match="not allowed through redis-sidecar"):
            r.execute_command(*cmd)
    assert r.ping() is True   # the connection is still fine


def test_debug_goes_to_the_master_on_a_lease(env):
    """DEBUG gets redis's own answer: refused by a server without
    enable-debug-command, run by one with it, on a lease so that DEBUG
    SLEEP is not cut at reply_timeout nor holds a shared link."""
    plain = env.redis("plain")
    with pytest.raises(redis.ResponseError, match="DEBUG command not allowed"):
        env.sidecar(plain).client().execute_command("DEBUG", "SLEEP", "0")
    m = env.redis("debug", args=["--enable-debug-command", "yes"])
    sc = env.sidecar(m, pool={"reply_timeout": "500ms"})
    r = sc.client()
    r.set("k", "v")
    assert r.execute_command("DEBUG", "OBJECT", "k").startswith(b"Value at:")
    assert r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1") == b"OK"
    t0 = time.monotonic()
    # the whole server sleeps: another client's write waits as directly,
    # and its link is not given up at reply_timeout
    other = sc.raw()
    of = other.makefile("rb")
    r2 = sc.raw()
    r2.sendall(resp_cmd("DEBUG", "SLEEP", "1.2"))
    wait_until(lambda: m.client().info("clients")["connected_clients"] and
               any(c["cmd"] == "debug" for c in sc.clients()), what="DEBUG SLEEP sent")
    other.sendall(resp_cmd("SET", "during", "1"))
    assert resp_read(of) == b"OK"
    assert resp_read(r2.makefile("rb")) == b"OK"
    assert time.monotonic() - t0 >= 1.1
    assert r.execute_command("DEBUG", "SLEEP", "0") == b"OK"
    assert r.execute_command("DEBUG", "RELOAD") == b"OK"
    assert r.get("k") == b"v"
    assert sc.counter("links_lost_reply_timeout") == 0
    assert sc.counter("errors_link_lost_after_send") == 0
    # leases taken and given back (r2's may still be being reset when r
    # wants one: then r gets a second)
    assert 1 <= len(m.links("sidecar-lease")) <= 2
    # DEBUG PROTOCOL attrib: redis's own bytes, RESP2 and RESP3 (an attribute
    # before the reply)
    for hello in ("2", "3"):
        got = []
        for port in (m.port, sc.port):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(resp_cmd("HELLO", hello) + resp_cmd("DEBUG", "PROTOCOL", "attrib") +
                      resp_cmd("PING"))
            data = b""
            while not data.endswith(b"+PONG\r\n"):
                data += s.recv(65536)
            mark = b"$7\r\nmodules\r\n*0\r\n"              # HELLO's reply ends so
            got.append(data[data.index(mark) + len(mark):])
            s.close()
        assert got[0] == got[1], hello
        assert (b"|1\r\n" in got[1]) == (hello == "3")


def test_local_commands(sidecar, master):
    r = sidecar.client()
    # HELLO reports the master's version once a link has learnt it
    wait_until(lambda: sidecar.info()["master_links_ready"] == "2", what="links up")
    # the version comes from the health check's INFO, which may answer after
    # the links are up; until then HELLO says "unknown"
    wait_until(lambda: sidecar.info()["upstream_redis_version"] != "unknown",
               what="the master's version learnt")
    hello = r.execute_command("HELLO")
    d = dict(zip(hello[::2], hello[1::2]))
    assert d[b"proto"] == 2 and d[b"server"] == b"redis"
    assert d[b"version"] == master.client().info()["redis_version"].encode()
    with pytest.raises(redis.ResponseError, match="NOPROTO"):
        r.execute_command("HELLO", "4")
    assert r.execute_command("SELECT", "0") in (True, b"OK")
    assert r.client_setname("app-1") is True
    assert r.client_getname() == "app-1" or r.client_getname() == b"app-1"
    assert isinstance(r.client_id(), int)
    assert r.execute_command("CLIENT", "SETINFO", "LIB-NAME", "x") == b"OK"
    info = sidecar.info()
    assert int(info["connected_clients"]) >= 1
    assert info["master_links_ready"] == "2"
    # INFO and FLUSHALL go to the master, unchanged
    assert "redis_version" in r.info()
    assert r.flushall() is True


def test_quit_after_earlier_replies(sidecar):
    s = sidecar.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("SET", "q", "1") + resp_cmd("GET", "q") + resp_cmd("QUIT") +
              resp_cmd("GET", "q"))
    assert resp_read(f) == b"OK"
    assert resp_read(f) == b"1"
    assert resp_read(f) == b"OK"
    assert f.read() == b""


def test_auth_without_proxy_password(env, master):
    sc = env.sidecar(master)
    r = sc.client()
    with pytest.raises(redis.ResponseError, match="without any password configured"):
        r.execute_command("AUTH", "x")
    assert r.set("k", "v") is True


def test_auth_with_proxy_password(env, master):
    sc = env.sidecar(master, proxy={"password": "s3cret"})
    r = sc.client()
    with pytest.raises(redis.AuthenticationError):
        r.get("k")
    with pytest.raises(redis.ResponseError, match="WRONGPASS"):
        sc.client(password="wrong").ping()
    good = sc.client(password="s3cret")
    assert good.set("k", "v") is True
    assert sc.client(username="default", password="s3cret").get("k") == b"v"
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("HELLO", "2", "AUTH", "default", "s3cret", "SETNAME", "n1") +
              resp_cmd("CLIENT", "GETNAME"))
    assert resp_read(f)[0] == b"server"
    assert resp_read(f) == b"n1"


def test_upstream_password_and_database(env):
    m = env.redis("master", args=["--requirepass", "up-pass"])
    sc = env.sidecar(m.port, upstream={"password": "up-pass", "database": "5"})
    r = sc.client()
    assert r.set("dbkey", "v") is True
    direct = redis.Redis(port=m.port, password="up-pass", db=5)
    assert direct.get("dbkey") == b"v"
    assert redis.Redis(port=m.port, password="up-pass", db=0).get("dbkey") is None
    # the app may keep its old AUTH: the upstream password is accepted
    assert sc.client(password="up-pass").get("dbkey") == b"v"
    assert r.execute_command("SELECT", "5") in (True, b"OK")


def test_upstream_acl_user_with_least_privilege(env):
    """An ACL user without @admin (no ROLE, no INFO) still works, and the
    health check does not take the master for down."""
    m = env.redis("master")
    m.client().execute_command("ACL", "SETUSER", "app", "on", ">app-pass", "~*",
                               "+@all", "-@admin", "-@dangerous", "+client|setname")
    sc = env.sidecar(m.port, upstream={"username": "app", "password": "app-pass"},
                     health={"check_interval": "100ms"})
    assert sc.client().set("k", "v") is True
    links = m.sidecar_links()
    assert links and all(c["user"] == "app" for c in links)
    checks = sc.counter("health_checks")
    # several checks with ROLE refused
    wait_until(lambda: sc.counter("health_checks") >= checks + 5, what="5 more checks")
    assert sc.info()["master_state"] == "up"
    assert sc.client().get("k") == b"v"
    assert sc.log().count("ROLE refused") == 1


def test_wrong_upstream_password_is_a_clear_error(env):
    m = env.redis("master", args=["--requirepass", "right"])
    sc = env.sidecar(m.port, upstream={"password": "wrong"}, pool={"connect_timeout": "300ms"})
    t0 = time.monotonic()
    with pytest.raises(redis.ResponseError, match="unavailable: AUTH refused"):
        sc.client().get("k")
    assert time.monotonic() - t0 < 3


def test_redis_cli_through_the_proxy(sidecar):
    def cli(*args):
        return subprocess.run(["redis-cli", "-p", str(sidecar.port), *args],
                              capture_output=True, text=True, timeout=20).stdout.strip()
    assert cli("SET", "c", "1") == "OK"
    assert cli("INCR", "c") == "2"
    assert cli("PING") == "PONG"
    assert "connected_clients" in cli("PROXY", "INFO")


def test_redis_benchmark_through_the_proxy(sidecar):
    out = subprocess.run(["redis-benchmark", "-p", str(sidecar.port), "-q", "-n", "20000",
                          "-c", "20", "-P", "8", "-t", "set,get,incr,lpush,rpop,sadd,hset,mset"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "requests per second" in out.stdout
    assert "rror" not in out.stdout + out.stderr


def test_refused_commands_inside_multi_abort_it_as_redis_does(env, master):
    """SHUTDOWN, SYNC and SAVE inside MULTI get redis's own refusal; a
    command the proxy refuses (REPLICAOF) gets its error; either way the
    transaction fails at EXEC, as redis fails one with a refused command."""
    sc = env.sidecar(master)

    def run(port):
        s = socket.create_connection(("127.0.0.1", port))
        f = s.makefile("rb")
        cmds = [("MULTI",), ("SET", "tx:k", "1"), ("SHUTDOWN",), ("SAVE",), ("EXEC",),
                ("GET", "tx:k"), ("MULTI",), ("SET", "tx:k", "2"), ("REPLICAOF", "NO", "ONE"),
                ("EXEC",), ("GET", "tx:k")]
        s.sendall(b"".join(resp_cmd(*c) for c in cmds))
        out = [resp_read(f) for _ in cmds]
        s.close()
        return [str(x) if isinstance(x, Exception) else x for x in out]
    direct = run(master.port)              # its REPLICAOF NO ONE is queued, and runs
    master.client().delete("tx:k")
    via = run(sc.port)
    assert via[:8] == direct[:8]
    assert via[2] == via[3] == "ERR Command not allowed inside a transaction"
    assert via[4].startswith("EXECABORT") and via[5] is None
    assert "not allowed through redis-sidecar" in via[8]
    assert via[9].startswith("EXECABORT") and via[10] is None
    assert master.client().get("tx:k") is None and master.client().ping()


def test_commands_that_name_another_database(env, master):
    """COPY ... DB, MOVE, SWAPDB and SELECT then anything: as redis."""
    sc = env.sidecar(master)

    def run(port):
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        r.flushall()
        r.set("src", "v")
        out = [r.execute_command("COPY", "src", "dst", "DB", "2"),
               r.execute_command("MOVE", "src", "3"), r.get("src"),
               r.execute_command("SWAPDB", "0", "3"), r.get("src"),
               r.execute_command("SWAPDB", "0", "3")]
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        f = s.makefile("rb")
        cmds = [("SELECT", "2"), ("GET", "dst"), ("COPY", "dst", "x", "DB", "0"),
                ("SELECT", "0"), ("GET", "x"), ("DBSIZE",)]
        s.sendall(b"".join(resp_cmd(*c) for c in cmds))
        out += [resp_read(f) for _ in cmds]
        s.close()
        return out
    direct = run(master.port)
    assert run(sc.port) == direct
    assert direct[4] == b"v" and direct[-2] == b"v"


def test_script_kill_reaches_a_busy_server(env, master):
    """A script running past busy-reply-threshold: SCRIPT KILL goes on a
    connection of its own (on a shared link it could wait behind that very
    script), and a BUSY answer to a validation PING proves a link alive."""
    master.client().config_set("busy-reply-threshold", "10")
    sc = env.sidecar(master, pool={"validate_after": "100ms", "min_idle_leases": "2"})
    wait_until(lambda: sc.nodes()["node"][0]["leases_idle"] == "2", what="leases ahead")
    for kill in (("SCRIPT", "KILL"), ("FUNCTION", "KILL")):
        # ids two apart: on a shared link, b's would be a's (2 links)
        a, _, b = sc.raw(), sc.raw(), sc.raw()
        if kill[0] == "SCRIPT":
            a.sendall(resp_cmd("EVAL", "while true do end", "0"))
        else:
            master.client().execute_command(
                "FUNCTION", "LOAD", "REPLACE",
                "#!lua name=spin\nredis.register_function('spin', function() while true do end end)")
            a.sendall(resp_cmd("FCALL", "spin", "0"))
        wait_until(lambda: "BUSY" in str(resp_of(master.port, "PING")), what="server busy")
        time.sleep(0.3)                  # past validate_after: the idle leases get PINGed
        # b's shared link is a's, which the script holds: b takes the other
        # and gets redis's BUSY, as directly, instead of waiting behind it
        bf = b.makefile("rb")
        b.sendall(resp_cmd("PING"))
        busy = resp_read(bf)
        assert isinstance(busy, redis.ResponseError) and str(busy).startswith("BUSY"), busy
        b.sendall(resp_cmd(*kill))
        assert resp_read(bf) == b"OK"
        err = resp_read(a.makefile("rb"))
        assert isinstance(err, redis.ResponseError) and "killed" in str(err).lower(), err
    assert sc.counter("validations_failed") == 0
    assert sc.client().ping()


def resp_of(port, *cmd):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(resp_cmd(*cmd))
    got = resp_read(s.makefile("rb"))
    s.close()
    return got
