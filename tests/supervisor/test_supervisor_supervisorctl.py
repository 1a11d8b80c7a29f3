"""The real supervisorctl (from the supervisor package) driving `wsgistack supervise` over XML-RPC."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from supervisors import status
from polling import wait_for
from processes import pid_alive

pytest.importorskip("supervisor")


def supervisorctl(conf: Path, *args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "supervisorctl"
    command = [str(script)] if script.exists() else [shutil.which("supervisorctl") or "supervisorctl"]
    return subprocess.run([*command, "-c", str(conf), *args], capture_output=True, text=True, timeout=60)


def lines_by_name(text: str) -> dict[str, str]:
    return {line.split()[0]: line for line in text.splitlines() if line.strip()}


def test_supervisorctl_status_matches_ours(supervised):
    conf, _ = supervised
    wait_for(lambda: (s := status(conf))["long:long"]["statename"] == "RUNNING" and
             s["fail:fail"]["statename"] == "FATAL", timeout=20, message="RUNNING and FATAL")
    theirs = lines_by_name(supervisorctl(conf, "status").stdout)
    ours = status(conf)
    for key, record in ours.items():
        shown = key.split(":")[1] if record["group"] == record["name"] else key
        assert shown in theirs, (shown, theirs)
        assert theirs[shown].split()[1] == record["statename"]
    assert "pid " in theirs["long"]


def test_supervisorctl_stop_start_restart_tail(supervised):
    conf, _ = supervised
    first = wait_for(lambda: (r := status(conf)["long:long"])["statename"] == "RUNNING" and r["pid"], message="RUNNING")
    out = supervisorctl(conf, "stop", "long")
    assert out.stdout.strip() == "long: stopped", out
    assert status(conf)["long:long"]["statename"] == "STOPPED"
    out = supervisorctl(conf, "start", "long")
    assert out.stdout.strip() == "long: started", out
    assert status(conf)["long:long"]["statename"] == "RUNNING"
    out = supervisorctl(conf, "restart", "long")
    assert out.stdout.splitlines() == ["long: stopped", "long: started"], out
    assert status(conf)["long:long"]["pid"] != first
    wait_for(lambda: status(conf)["env:env"]["statename"] == "RUNNING", message="env RUNNING")
    out = supervisorctl(conf, "tail", "env")
    assert out.stdout.strip() == "hello, world eu", out
    out = supervisorctl(conf, "stop", "pool:*")
    assert sorted(out.stdout.splitlines()) == ["pool:pool_00: stopped", "pool:pool_01: stopped",
                                               "pool:pool_02: stopped"], out


def test_supervisorctl_shutdown(supervised):
    conf, proc = supervised
    pids = wait_for(lambda: [r["pid"] for r in status(conf).values() if r["statename"] == "RUNNING"] or None,
                    message="running children")
    out = supervisorctl(conf, "shutdown")
    assert "Shut down" in out.stdout, out
    assert proc.wait(20) == 0
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), timeout=5, message="no child left")



def test_supervisorctl_reread_and_update(supervised, tmp_path):
    from test_supervisor_ctl import _edit_conf

    conf, _ = supervised
    before = wait_for(lambda: (s := status(conf)) and s["long:long"]["statename"] == "RUNNING" and s, message="RUNNING")
    _edit_conf(conf, tmp_path)
    out = supervisorctl(conf, "reread")
    assert sorted(out.stdout.splitlines()) == ["extra: available", "late: disappeared"], out
    out = supervisorctl(conf, "update")
    assert out.returncode == 0, out
    assert "extra: added process group" in out.stdout and "late: removed process group" in out.stdout, out
    after = wait_for(lambda: (s := status(conf)) and s.get("extra:extra", {}).get("statename") == "RUNNING" and s,
                     message="extra RUNNING")
    assert "late:late" not in after
    assert after["long:long"]["pid"] == before["long:long"]["pid"]


def test_same_conf_same_states_as_real_supervisord(tmp_path):
    """The same supervisord.conf under real supervisord and under wsgistack reaches the same states."""
    from supervisors import PY, write_conf

    def states_under(command: list[str], folder: Path) -> dict[str, str]:
        folder.mkdir()
        conf = write_conf(folder, startsecs="1")  # supervisord takes whole seconds only
        (folder / "logs").mkdir(exist_ok=True)
        proc = subprocess.Popen([*command, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            def settled():
                if not (folder / "supervisor.sock").exists():
                    return None
                shown = {line.split()[0]: line.split()[1]
                         for line in supervisorctl(conf, "status").stdout.splitlines() if line.strip()}
                stable = {name: state for name, state in shown.items() if name != "late"}
                return stable if stable.get("fail") == "FATAL" and stable.get("long") == "RUNNING" and \
                    all(state in ("RUNNING", "FATAL") for state in stable.values()) else None
            return wait_for(settled, timeout=40, message="settled states")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    supervisord = Path(sys.executable).parent / "supervisord"
    if not supervisord.exists():
        pytest.skip("supervisord is not installed beside this Python")
    theirs = states_under([str(supervisord), "-n"], tmp_path / "supervisord")
    ours = states_under([PY, "-m", "wsgistack", "supervise"], tmp_path / "wsgistack")
    assert ours == theirs
    assert theirs == {"long": "RUNNING", "fail": "FATAL", "pool:pool_00": "RUNNING", "pool:pool_01": "RUNNING",
                      "pool:pool_02": "RUNNING", "chatty": "RUNNING", "env": "RUNNING"}


def test_supervisorctl_over_inet_http_server_with_credentials(tmp_path):
    import socket as socketlib

    from supervisors import PY

    probe = socketlib.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[inet_http_server]\nport=127.0.0.1:{port}\nusername=admin\npassword=s3cret\n"
                    f"[supervisord]\nlogfile=%(here)s/s.log\n"
                    f"[supervisorctl]\nserverurl=http://127.0.0.1:{port}\nusername=admin\npassword=s3cret\n"
                    f"[program:long]\ncommand={PY} -c 'import time; time.sleep(60)'\nstartsecs=0\n")
    proc = subprocess.Popen([PY, "-m", "wsgistack", "supervise", "-n", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        out = wait_for(lambda: (r := supervisorctl(conf, "status")).stdout.startswith("long") and r,
                       message="status over TCP")
        assert out.stdout.split()[1] == "RUNNING"
        wrong = subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-s",
                                f"http://127.0.0.1:{port}", "-u", "admin", "-p", "wrong", "status"],
                               capture_output=True, text=True, timeout=30)
        assert "RUNNING" not in wrong.stdout
        with socketlib.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b'{"cmd": "shutdown", "args": []}\n')  # the JSON protocol is not served over TCP
            assert raw.recv(4096).split(b" ")[1] == b"400"
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(20)


def test_inet_http_server_without_credentials_is_refused(tmp_path):
    from supervisors import PY

    conf = tmp_path / "supervisord.conf"
    conf.write_text("[inet_http_server]\nport=127.0.0.1:9\n[supervisord]\n"
                    f"[program:long]\ncommand={PY} -c 'pass'\n")
    result = subprocess.run([PY, "-m", "wsgistack", "supervise", "-c", str(conf)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "needs username and password" in result.stderr and "Traceback" not in result.stderr
