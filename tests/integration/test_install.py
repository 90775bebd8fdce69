"""make install: exactly the documented files, in PREFIX and DESTDIR; the
systemd unit passes systemd-analyze verify; SIGHUP (its ExecReload)
reloads, it does not stop the proxy."""
import fcntl
import os
import pathlib
import shutil
import signal
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def install(**vars_):
    """make install, one at a time: it may have to build the binary first
    (under make asan), and two workers must not build it together."""
    args = ["make", "-s", "-C", str(ROOT), "install"] + [f"{k}={v}" for k, v in vars_.items()]
    with open("/tmp/redis-sidecar-test-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(args, check=True, capture_output=True, timeout=300)


def files(root):
    return sorted(str(p.relative_to(root)) for p in pathlib.Path(root).rglob("*") if p.is_file())


def test_install_with_destdir_puts_exactly_the_documented_files(tmp_path):
    install(DESTDIR=tmp_path / "usr-prefix", PREFIX="/usr")
    assert files(tmp_path / "usr-prefix") == [
        "etc/redis-sidecar/proxy.ini",
        "usr/bin/redis-sidecar",
        "usr/lib/systemd/system/redis-sidecar.service",
        "usr/share/man/man1/redis-sidecar.1",
    ]
    install(DESTDIR=tmp_path / "default")
    assert files(tmp_path / "default") == [
        "usr/local/bin/redis-sidecar",
        "usr/local/etc/redis-sidecar/proxy.ini",
        "usr/local/lib/systemd/system/redis-sidecar.service",
        "usr/local/share/man/man1/redis-sidecar.1",
    ]
    unit = (tmp_path / "default/usr/local/lib/systemd/system/redis-sidecar.service").read_text()
    assert ("ExecStart=/usr/local/bin/redis-sidecar -c "
            "/usr/local/etc/redis-sidecar/proxy.ini") in unit
    for key in ("ExecReload=kill -HUP $MAINPID", "LimitNOFILE=", "DynamicUser=yes",
                "ProtectSystem=strict", "RuntimeDirectory=redis-sidecar"):
        assert key in unit
    # an edited proxy.ini is never overwritten
    ini = tmp_path / "default/usr/local/etc/redis-sidecar/proxy.ini"
    ini.write_text("; mine\n")
    install(DESTDIR=tmp_path / "default")
    assert ini.read_text() == "; mine\n"
    assert os.access(tmp_path / "default/usr/local/bin/redis-sidecar", os.X_OK)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="SKIPPED: no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    prefix = tmp_path / "usr"                     # real paths, so that it can check them
    install(PREFIX=prefix)
    unit = prefix / "lib/systemd/system/redis-sidecar.service"
    p = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=60,
                       env=dict(os.environ, MANPATH=f"{prefix}/share/man:"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "redis-sidecar" not in p.stderr, p.stderr
    installed_ini = prefix / "etc/redis-sidecar/proxy.ini"
    check = subprocess.run([str(prefix / "bin/redis-sidecar"), "-c", str(installed_ini),
                            "--check"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def test_sighup_reloads_and_does_not_stop_the_proxy(sidecar):
    sidecar.proc.send_signal(signal.SIGHUP)
    sidecar.wait_log(f"{sidecar.ini}: reloaded")
    assert sidecar.alive()
    assert sidecar.client().ping()
    assert f"{sidecar.ini}: reloaded" in sidecar.log()
