"""Who is an admin: nobody by default; over the [admin] socket the proxy's
own user and root; addresses in a non-empty [admin] allow; a client that
AUTHs with [admin] password."""
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile

import pytest
import redis

from helpers import SIDECAR_BIN, BoundRedis, connect_from, resp_cmd, resp_read, wait_until

NOPERM = "this command needs admin rights"


def unix_client(path):
    return redis.Redis(unix_socket_path=str(path), socket_timeout=10)


def test_nobody_is_an_admin_by_default(env, master, tmp_path):
    sock = tmp_path / "apps.sock"
    sc = env.sidecar(master, admin={"allow": None}, start=False)
    sc.cfg["proxy"]["listen"] += f", unix:{sock}"
    sc.write_ini()
    sc.start()
    for c in (sc.client(), unix_client(sock)):        # loopback TCP, and a unix listener
        with pytest.raises(redis.ResponseError) as e:
            c.execute_command("PROXY", "INFO")
        assert NOPERM in str(e.value)            # (redis-py keeps the text after NOPERM)
        assert c.set("k", "v")                        # everything else works
    assert sc.log().count("no client can run PROXY commands") == 1


def test_minimal_sidecars_start_side_by_side(env, master):
    a = env.sidecar(master, admin={"allow": None})
    b = env.sidecar(master, admin={"allow": None})
    assert a.client().ping() and b.client().ping()


def test_admin_socket_for_the_proxys_own_user(env, master, tmp_path):
    path = tmp_path / "admin.sock"
    sc = env.sidecar(master, admin={"allow": None, "socket": str(path)})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    c = unix_client(path)
    assert b"connected_clients" in c.execute_command("PROXY", "INFO")
    out = subprocess.run(["redis-cli", "-s", str(path), "proxy", "clients"],
                         capture_output=True, text=True, timeout=10)
    assert "ip=" in out.stdout, out
    with pytest.raises(redis.ResponseError):          # TCP from loopback: not an admin
        sc.client().execute_command("PROXY", "INFO")


def test_admin_socket_refuses_other_users_even_if_its_mode_is_opened(env, master):
    d = tempfile.mkdtemp(prefix="sidecar-admin-", dir="/tmp")    # reachable by nobody
    os.chmod(d, 0o755)
    path = os.path.join(d, "admin.sock")
    sc = env.sidecar(master, admin={"allow": None, "socket": path})
    try:
        os.chmod(path, 0o666)                         # someone loosened it: SO_PEERCRED holds
        # refused at accept, with a line: read it, send nothing
        probe = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                 "print(s.recv(200).decode())")
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              sys.executable, "-c", probe, str(path)],
                             capture_output=True, text=True, timeout=10)
        assert "admits only the proxy's own user and root" in out.stdout, out
    finally:
        sc.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_a_stale_admin_socket_is_replaced_a_live_one_stops_the_start(env, master, tmp_path):
    path = tmp_path / "admin.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()                                     # the file stays, nobody listens
    sc = env.sidecar(master, admin={"allow": None, "socket": str(path)})
    assert unix_client(path).execute_command("PROXY", "BANS") is not None
    # a second sidecar on the same admin socket: a clear error, not a takeover
    other = env.sidecar(master, admin={"allow": None, "socket": str(path)}, start=False)
    run = subprocess.run([SIDECAR_BIN, "-c", str(other.ini)], capture_output=True, text=True,
                         timeout=10)
    assert run.returncode != 0
    assert f"admin socket {path} is served by another running process" in run.stderr
    assert unix_client(path).ping()                   # the first keeps it
    assert sc.alive()


def test_a_restart_takes_the_admin_socket_over(env, master, tmp_path):
    path = tmp_path / "admin.sock"
    old = env.sidecar(master, admin={"allow": None, "socket": str(path)})
    new = subprocess.Popen([SIDECAR_BIN, "-c", str(old.ini), "--replace-admin-socket"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: unix_client(path).execute_command("PROXY", "INFO") and
                   f"process_id:{new.pid}" in
                   unix_client(path).execute_command("PROXY", "INFO").decode(),
                   what="the new process on the admin socket")
        assert old.stop() == 0                        # drains, leaves the new one's file
        assert os.path.exists(path)
        assert unix_client(path).ping()
    finally:
        new.send_signal(signal.SIGTERM)
        new.wait(10)


def test_allow_and_password_still_make_admins(env, master):
    sc = env.sidecar(master, admin={"allow": "127.0.0.1", "password": "adm1n"})
    assert sc.client().execute_command("PROXY", "BANS") is not None
    with pytest.raises(redis.ResponseError):
        BoundRedis("127.0.0.2", sc.port).execute_command("PROXY", "BANS")
    s = connect_from("127.0.0.3", sc.port)
    f = s.makefile("rb")
    s.sendall(resp_cmd("AUTH", "adm1n") + resp_cmd("PROXY", "BANS"))
    assert resp_read(f) == b"OK" and resp_read(f) is not None


def test_the_admin_socket_comes_with_a_reload(env, master, tmp_path):
    path = tmp_path / "admin.sock"
    sc = env.sidecar(master, admin={"allow": None})
    sc.cfg["admin"]["socket"] = str(path)
    sc.write_ini()
    sc.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: os.path.exists(path), what="the admin socket after SIGHUP")
    assert b"admin.socket" in unix_client(path).execute_command("PROXY", "CONFIG")
