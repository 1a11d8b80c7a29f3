"""The control plane's password, on every protocol and socket, and its size caps: black-box, real processes."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from supervisors import PY
from polling import wait_for

USER, PASSWORD = "admin", "s3cret"


def _start(conf: Path, ready) -> subprocess.Popen:
    proc = subprocess.Popen([PY, "-m", "wsgistack", "supervise", "-n", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(ready, message="the supervisor listening")
    except BaseException:
        _stop(proc)
        raise
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _exchange(path: Path, *lines: bytes) -> tuple[list[dict], bool]:
    """Send JSON lines on one connection; the answers, and whether the supervisor then closed it."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"".join(lines))
        data = b""
        while data.count(b"\n") < len(lines):
            piece = sock.recv(65536)
            if not piece:
                return [json.loads(line) for line in data.splitlines()], True
            data += piece
        sock.settimeout(0.5)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return [json.loads(line) for line in data.splitlines()], closed


@pytest.fixture
def shared_socket(tmp_path):
    """supervisord's usual shared socket: chmod=0777 with a username and password."""
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[unix_http_server]\nfile=%(here)s/s.sock\nchmod=0777\nusername={USER}\npassword={PASSWORD}\n"
                    f"[supervisord]\nlogfile=%(here)s/s.log\n"
                    f"[supervisorctl]\nserverurl=unix://%(here)s/s.sock\nusername={USER}\npassword={PASSWORD}\n"
                    f"[program:long]\ncommand={PY} -c 'import time; time.sleep(60)'\nstartsecs=0\n")
    proc = _start(conf, (tmp_path / "s.sock").exists)
    try:
        yield conf, tmp_path / "s.sock"
    finally:
        _stop(proc)


def test_json_protocol_asks_the_password_of_the_shared_socket(shared_socket):
    conf, path = shared_socket
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o777
    status = b'{"cmd": "status", "args": []}\n'
    [answer], closed = _exchange(path, status, status)
    assert answer["ok"] is False and answer["error"].startswith("authentication required") and closed
    wrong = json.dumps({"cmd": "shutdown", "auth": {"username": USER, "password": "wrong"}}).encode() + b"\n"
    [answer], closed = _exchange(path, wrong, status)
    assert answer == {"ok": False, "error": "authentication failed: wrong username or password"} and closed
    auth = json.dumps({"auth": {"username": USER, "password": PASSWORD}}).encode() + b"\n"
    answers, closed = _exchange(path, auth, status, b"{" + b" " * (70 * 1024) + b"}\n")
    assert answers[0] == {"ok": True, "result": "authenticated"} and closed  # after the over-long line
    assert answers[1]["ok"] and answers[1]["result"][0]["name"] == "long"
    assert answers[2] == {"ok": False, "error": "bad request: a request line takes at most 65536 bytes"}


def test_ctl_sends_the_configured_credentials_and_fails_in_one_line_without_them(shared_socket):
    conf, path = shared_socket
    ran = subprocess.run([PY, "-m", "wsgistack", "ctl", "-c", str(conf), "status"], capture_output=True,
                         text=True, timeout=30)
    assert ran.returncode in (0, 3) and ran.stdout.startswith("long "), ran
    ran = subprocess.run([PY, "-m", "wsgistack", "ctl", "-s", str(path), "-u", USER, "-p", "wrong", "stop", "long"],
                         capture_output=True, text=True, timeout=30)
    assert ran.returncode == 1 and ran.stdout == ""
    assert ran.stderr == "wsgistack ctl: authentication failed: wrong username or password\n"
    ran = subprocess.run([PY, "-m", "wsgistack", "ctl", "-s", str(path), "stop", "long"], capture_output=True,
                         text=True, timeout=30)
    assert ran.returncode == 1 and len(ran.stderr.splitlines()) == 1
    assert ran.stderr.startswith("wsgistack ctl: authentication required")


def test_supervisorctl_with_credentials_on_the_shared_socket(shared_socket):
    pytest.importorskip("supervisor")
    conf, _ = shared_socket
    script = Path(sys.executable).parent / "supervisorctl"
    command = [str(script)] if script.exists() else [shutil.which("supervisorctl") or "supervisorctl"]
    out = subprocess.run([*command, "-c", str(conf), "status"], capture_output=True, text=True, timeout=60)
    assert out.stdout.split()[:2] == ["long", "RUNNING"], out


def _rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in text.splitlines() if line.startswith("VmRSS:")).split()[1])


def _http(port: int, head: bytes, body: bytes = b"") -> tuple[bytes, float]:
    """Send a head (and a body); the whole answer up to the close, and how long it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(head + body)
        data = b""
        while piece := sock.recv(65536):
            data += piece
        return data, time.monotonic() - started


def test_inet_http_server_checks_credentials_on_the_head_and_caps_bodies(tmp_path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[inet_http_server]\nport=127.0.0.1:{port}\nusername={USER}\npassword={PASSWORD}\n"
                    f"[supervisord]\nlogfile=%(here)s/s.log\n"
                    f"[program:long]\ncommand={PY} -c 'import time; time.sleep(60)'\nstartsecs=0\n")

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    proc = _start(conf, listening)
    try:
        before = _rss_kib(proc.pid)
        # a stranger announces 200 MiB and sends none of it: the answer comes from the head alone
        head = (b"POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
                b"Content-Length: %d\r\n\r\n" % (200 << 20))
        answer, took = _http(port, head)
        assert answer.startswith(b"HTTP/1.1 401 ") and took < 5
        assert _rss_kib(proc.pid) - before < 4096
        basic = b"Authorization: Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()) + b"\r\n"
        answer, took = _http(port, head.replace(b"Host:", basic + b"Host:"))
        assert answer.startswith(b"HTTP/1.1 413 ") and took < 5
        chunked = (b"POST /RPC2 HTTP/1.1\r\nHost: localhost\r\n" + basic + b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
        answer, _ = _http(port, chunked, piece * 17 + b"0\r\n\r\n")  # 1 MiB + 64 KiB
        assert answer.startswith(b"HTTP/1.1 413 ")
        call = b"<?xml version='1.0'?><methodCall><methodName>supervisor.getPID</methodName></methodCall>"
        answer, _ = _http(port, b"POST /RPC2 HTTP/1.1\r\nHost: localhost\r\n" + basic + b"Connection: close\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(call), call)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"<int>%d</int>" % proc.pid in answer
        assert _rss_kib(proc.pid) - before < 8192
    finally:
        _stop(proc)
