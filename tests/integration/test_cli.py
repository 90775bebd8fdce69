"""The command line: --check, --version, --help, listen addresses, logs."""
import re
import subprocess

import redis

from helpers import SIDECAR_BIN, free_port


def run(*args):
    return subprocess.run([SIDECAR_BIN, *args], capture_output=True, text=True, timeout=20)


def test_check_accepts_the_example_config():
    out = run("-c", "proxy.ini", "--check")
    assert out.returncode == 0 and "OK" in out.stdout


def test_check_reports_file_line_and_reason(tmp_path):
    ini = tmp_path / "bad.ini"
    ini.write_text("[upstream]\nmaster = 127.0.0.1:7000\n\n[pool]\nconnections = 0\n")
    out = run("-c", str(ini), "--check")
    assert out.returncode == 1
    assert out.stderr.strip() == f'{ini}:5: pool.connections: "0" not in 1..64'
    ini.write_text("[upstream]\nmaster = 127.0.0.1:7000\n[pool]\nconnect_timeout = 5\n")
    out = run("-c", str(ini))          # a normal start refuses it too
    assert out.returncode == 1 and f"{ini}:4: pool.connect_timeout" in out.stderr


def test_version_and_help():
    out = run("--version")
    assert out.returncode == 0 and re.match(r"redis-sidecar \d+\.\d+\.\d+", out.stdout)
    out = run("--help")
    assert out.returncode == 0 and "--check" in out.stdout and "-c" in out.stdout
    out = run("--bogus")
    assert out.returncode == 2 and "unknown argument" in out.stderr
    assert run().returncode == 2


def test_unix_socket_and_several_listen_addresses(env, master, tmp_path):
    sock = tmp_path / "sidecar.sock"
    second = free_port()
    sc = env.sidecar(master, start=False)
    first = f"listen = 127.0.0.1:{sc.port}"
    sc.ini.write_text(sc.ini.read_text().replace(
        first, f"{first}, unix:{sock}\nlisten = 127.0.0.1:{second}"))   # repeated key adds up
    sc.start()
    u = redis.Redis(unix_socket_path=str(sock))
    assert u.set("via-unix", "1") is True
    assert redis.Redis(port=second).get("via-unix") == b"1"
    assert sc.client().get("via-unix") == b"1"


def test_log_lines_have_time_and_level(env, master):
    sc = env.sidecar(master)
    sc.client().ping()
    first = sc.log().splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (INFO|WARN|ERROR|DEBUG) ", first), first
