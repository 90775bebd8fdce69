"""ACL users per app (issue 17): without [proxy] password an app's AUTH is
checked by Redis, and its requests then run on links authenticated as that
user, so Redis's ACLs answer each app exactly as they would directly."""
import time
import urllib.request

import pytest
import redis

from helpers import free_port, resp_cmd, resp_read, wait_until

ALICE = ["on", ">alice-pw", "~a:*", "+get", "+acl"]
BOB = ["on", ">bob-pw", "~*", "&*", "+@all"]


def users(master, **acls):
    r = master.client()
    for name, rules in acls.items():
        r.execute_command("ACL", "SETUSER", name, "reset", *rules)


def answer(conn, *cmd):
    """A command's reply, or its error text, as the app sees it."""
    try:
        return conn.execute_command(*cmd)
    except redis.ResponseError as e:
        return f"ERR:{e}"


def app(port, user, password):
    return redis.Redis(host="127.0.0.1", port=port, username=user, password=password,
                       socket_timeout=10)


def test_each_app_runs_as_its_user(env, master):
    users(master, alice=ALICE, bob=BOB)
    master.client().set("a:1", "x")
    sc = env.sidecar(master)
    cases = [("GET", "a:1"), ("GET", "b:1"), ("SET", "a:1", "y"), ("ACL", "WHOAMI"),
             ("DEL", "a:1"), ("INCR", "a:n"), ("MGET", "a:1", "b:1")]
    for user, pw in (("alice", "alice-pw"), ("bob", "bob-pw")):
        direct = [answer(app(master.port, user, pw), *c) for c in cases]
        master.client().set("a:1", "x")
        master.client().delete("a:n")
        via = [answer(app(sc.port, user, pw), *c) for c in cases]
        master.client().set("a:1", "x")
        master.client().delete("a:n")
        assert via == direct, user
    assert direct[3] == b"bob"
    # ACL LOG names the user whose command was denied
    master.client().execute_command("ACL", "LOG", "RESET")
    a = app(sc.port, "alice", "alice-pw")
    assert answer(a, "GET", "b:secret").startswith("ERR:")
    log = master.client().execute_command("ACL", "LOG", "1")
    entry = dict(zip(log[0][::2], log[0][1::2]))
    assert entry[b"username"] == b"alice" and entry[b"object"] == b"b:secret"
    # a never-authenticated app keeps the [upstream] (default) user
    assert sc.client().execute_command("ACL", "WHOAMI") == b"default"


def test_a_users_links_carry_only_its_requests(env, master):
    users(master, alice=ALICE, bob=BOB)
    port = free_port()
    sc = env.sidecar(master, admin={"metrics_listen": f"127.0.0.1:{port}"})
    a, b = app(sc.port, "alice", "alice-pw"), app(sc.port, "bob", "bob-pw")
    for i in range(50):
        b.set(f"b:{i}", i)
        assert a.get("a:none") is None
    by_user = {}
    for c in master.client().client_list():     # the test's own are the default user's
        by_user.setdefault(c["user"], set()).add(c["cmd"])
    # alice's links only ever ran what alice sent (and the proxy's PING)
    assert by_user["alice"] <= {"get", "ping", "auth", "client|setname", "NULL"}, by_user
    assert "set" in by_user["bob"]
    assert "set" not in by_user["default"] and "get" not in by_user["default"]
    # alice may not name her links (no CLIENT): they stay unnamed, bob's are named
    assert {c["name"] for c in master.client().client_list() if c["user"] == "alice"} == {""}
    assert sc.info()["users"] == "2"
    users_line = [v for k, v in sc.nodes().items() if k.startswith("user") and k != "users"]
    assert sorted(x.split(",")[0] for x in users_line) == ["name=alice", "name=bob"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'redis_sidecar_user_clients{user="alice"} 1' in text
    assert 'redis_sidecar_user_clients{user="bob"} 1' in text
    sent = [line for line in text.splitlines()
            if line.startswith('redis_sidecar_user_requests_total{user="bob"}')]
    assert int(sent[0].split()[-1]) >= 50


def test_rejected_auth_keeps_the_user(env, master):
    users(master, alice=ALICE, bob=BOB)
    sc = env.sidecar(master)
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("AUTH", "alice", "alice-pw") + resp_cmd("AUTH", "alice", "wrong") +
              resp_cmd("ACL", "WHOAMI") + resp_cmd("AUTH", "nobody", "x") +
              resp_cmd("ACL", "WHOAMI") + resp_cmd("AUTH", "bob", "bob-pw") +
              resp_cmd("ACL", "WHOAMI"))
    got = [resp_read(f) for _ in range(7)]
    wrongpass = "WRONGPASS invalid username-password pair or user is disabled."
    assert got[0] == b"OK"
    assert isinstance(got[1], Exception) and str(got[1]) == wrongpass
    assert got[2] == b"alice"
    assert isinstance(got[3], Exception) and str(got[3]) == wrongpass
    assert got[4] == b"alice"
    assert got[5] == b"OK" and got[6] == b"bob"
    # the unknown user's pool is gone at once: it holds no max_users slot
    wait_until(lambda: sc.info()["users"] == "2", what="nobody's pool closed")


def test_password_change_takes_effect_as_on_redis(env, master):
    users(master, alice=ALICE)
    sc = env.sidecar(master)
    a = app(sc.port, "alice", "alice-pw")
    assert a.execute_command("ACL", "WHOAMI") == b"alice"
    master.client().execute_command("ACL", "SETUSER", "alice", "resetpass", ">new-pw")
    with pytest.raises((redis.AuthenticationError, redis.ResponseError), match="WRONGPASS"):
        app(sc.port, "alice", "alice-pw").ping()
    assert app(sc.port, "alice", "new-pw").execute_command("ACL", "WHOAMI") == b"alice"
    # an app already authenticated stays so, as on Redis
    assert a.execute_command("ACL", "WHOAMI") == b"alice"


def test_refused_on_reconnect_closes_the_users_apps(env, master):
    users(master, alice=ALICE)
    sc = env.sidecar(master, pool={"validate_after": "0"})
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("AUTH", "alice", "alice-pw") + resp_cmd("GET", "a:1"))
    assert [resp_read(f) for _ in range(2)] == [b"OK", None]
    other = sc.client()
    # its password changes and its links drop: they cannot come back
    master.client().execute_command("ACL", "SETUSER", "alice", "resetpass", ">new-pw")
    master.client().execute_command("CLIENT", "KILL", "USER", "alice")
    s.sendall(resp_cmd("GET", "a:1"))
    try:
        # its GET gets Redis's refusal, unless the links' reconnect came first
        got = resp_read(f)
        assert isinstance(got, Exception) and str(got).startswith("WRONGPASS"), got
        assert f.read(1) == b""                  # then closed
    except ConnectionError:
        pass                                     # closed already
    assert other.ping()                          # the others go on
    wait_until(lambda: sc.counter("users_refused") == 1, what="counted")
    # a new AUTH with the new password works
    assert app(sc.port, "alice", "new-pw").get("a:1") is None


def test_max_users(env, master):
    users(master, alice=ALICE, bob=BOB, carol=["on", ">carol-pw", "~*", "+@all"])
    sc = env.sidecar(master, pool={"max_users": "2", "user_idle_timeout": "500ms"})
    a, b = app(sc.port, "alice", "alice-pw"), app(sc.port, "bob", "bob-pw")
    a.get("a:1")
    b.get("b:1")
    with pytest.raises(redis.ResponseError, match="max_users"):
        app(sc.port, "carol", "carol-pw").ping()
    assert sc.counter("err_max_users") == 1
    # once an app leaves and its user idles, the next user fits
    a.connection_pool.disconnect()
    wait_until(lambda: sc.info()["users"] == "1", what="alice's pools closed")
    assert app(sc.port, "carol", "carol-pw").execute_command("ACL", "WHOAMI") == b"carol"


def test_requirepass_then_auth(env, master):
    sc = env.sidecar(master)
    r = sc.client()
    r.config_set("requirepass", "x")
    try:
        assert r.execute_command("AUTH", "x") is True
        assert r.execute_command("ACL", "WHOAMI") == b"default"
        s = sc.raw()
        s.sendall(resp_cmd("AUTH", "wrong"))
        got = resp_read(s.makefile("rb"))
        assert isinstance(got, Exception) and str(got).startswith("WRONGPASS")
    finally:
        r.config_set("requirepass", "")
    assert sc.client().ping()


def test_hello_auth_checked_by_redis(env, master):
    users(master, bob=BOB)
    sc = env.sidecar(master)
    s = sc.raw()
    f = s.makefile("rb")
    s.sendall(resp_cmd("HELLO", "3", "AUTH", "bob", "nope", "SETNAME", "n1") +
              resp_cmd("CLIENT", "GETNAME") +
              resp_cmd("HELLO", "3", "AUTH", "bob", "bob-pw", "SETNAME", "n2") +
              resp_cmd("ACL", "WHOAMI") + resp_cmd("CLIENT", "GETNAME"))
    got = resp_read(f)
    assert isinstance(got, Exception) and str(got).startswith("WRONGPASS")
    assert resp_read(f) is None                  # the failed HELLO set no name
    hello = resp_read(f)
    assert hello[b"proto"] == 3
    assert resp_read(f) == b"bob"
    assert resp_read(f) == b"n2"


def test_a_narrow_user_works_as_directly(env, master):
    """A user without PING, CLIENT, SELECT or MULTI: its links are validated
    (NOPERM to PING proves them alive), a lease still opens, and every
    answer is Redis's own."""
    users(master, narrow=["on", ">n-pw", "~a:*", "+get", "+set", "+acl"])
    sc = env.sidecar(master, pool={"validate_after": "100ms"})
    cases = [("SET", "a:1", "v"), ("GET", "a:1"), ("SET", "b:1", "v"), ("PING",),
             ("MULTI",), ("EXEC",), ("BLPOP", "a:l", "1"), ("ACL", "WHOAMI")]
    direct = [answer(app(master.port, "narrow", "n-pw"), *c) for c in cases]
    n = app(sc.port, "narrow", "n-pw")
    via = [answer(n, *c) for c in cases]
    assert via == direct
    time.sleep(0.3)                              # idle past validate_after: validated
    assert n.get("a:1") == b"v"
    assert sc.counter("validations_failed") == 0 and sc.counter("validations") >= 1
    # what the proxy asks on its own never shows in the user's ACL LOG
    log = master.client().execute_command("ACL", "LOG")
    assert all(dict(zip(e[::2], e[1::2]))[b"object"] in (b"b:1", b"ping", b"multi", b"exec",
                                                          b"blpop") for e in log), log


def test_a_wrong_password_does_not_take_a_right_one_down(env, master):
    """Two first AUTHs as a user, a wrong and a right one, at the same
    time: each gets Redis's answer to its own password."""
    users(master, alice=ALICE)
    sc = env.sidecar(master)
    for _ in range(5):
        bad, good = sc.raw(), sc.raw()
        bad.sendall(resp_cmd("AUTH", "alice", "wrong"))
        good.sendall(resp_cmd("AUTH", "alice", "alice-pw"))
        got_bad, got_good = resp_read(bad.makefile("rb")), resp_read(good.makefile("rb"))
        assert isinstance(got_bad, Exception) and str(got_bad).startswith("WRONGPASS")
        assert got_good == b"OK"
        bad.close()
        good.close()
