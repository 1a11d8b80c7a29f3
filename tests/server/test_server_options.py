"""Options of `wsgistack serve` that change how the server runs, seen from outside."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys

import pytest
import requests
from servers import APPS
from processes import children_of
from polling import wait_for
from rawhttp import request


def test_wsgiref_validator_finds_nothing(start_server):
    """The plain app wrapped in wsgiref.validate: any PEP 3333 violation by the server would be a 500."""
    server = start_server("plain_app:validated", "-w", "1")
    base = f"http://127.0.0.1:{server.port}"
    assert requests.get(f"{base}/", timeout=10).text == "plain hello\n"
    response = requests.post(f"{base}/echo", data=b"first line\nsecond\nthird", timeout=10)
    assert response.status_code == 200
    assert response.content == b"first line\nsecond\nthird"
    chunked = requests.post(f"{base}/echo", data=iter([b"a\nb", b"c"]), timeout=10)
    assert chunked.content == b"a\nbc"
    assert requests.head(f"{base}/", timeout=10).status_code == 200
    assert "AssertionError" not in server.log()
    assert "WSGIWarning" not in server.log()


@pytest.mark.parametrize("worker_class", ["sync", "thread"])
def test_file_wrapper_uses_sendfile(start_server, tmp_path, worker_class):
    """The app's file refuses read(): only os.sendfile on its descriptor can deliver it."""
    payload = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    server = start_server("plain_app:router", "-k", worker_class, env={"PLAIN_APP_FILE": str(path)})
    response = requests.get(f"http://127.0.0.1:{server.port}/sendfile", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(payload))
    assert response.content == payload


def test_preload_loads_the_app_once_in_the_master(start_server, tmp_path):
    marker = tmp_path / "imports"
    env = {"IMPORT_MARKER": str(marker)}
    server = start_server("marker_app:app", "-w", "2", "--preload", env=env)
    server.wait_workers(2)
    assert marker.read_text().split() == [str(server.pid)]
    assert requests.get(f"http://127.0.0.1:{server.port}/", timeout=10).status_code == 200


def test_without_preload_each_worker_imports_the_app(start_server, tmp_path):
    marker = tmp_path / "imports"
    server = start_server("marker_app:app", "-w", "2", env={"IMPORT_MARKER": str(marker)})
    workers = server.wait_workers(2)
    wait_for(lambda: sorted(map(int, marker.read_text().split())) == sorted(workers), message="two imports")
    assert str(server.pid) not in marker.read_text().split()


def test_reload_restarts_workers_on_code_change(start_server, tmp_path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    module = app_dir / "live_app.py"
    source = ("def app(environ, start_response):\n"
              "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
              "    return [b'%s']\n")
    module.write_text(source % "one")
    server = start_server("live_app:app", "--reload", cwd=app_dir)
    url = f"http://127.0.0.1:{server.port}/"
    assert requests.get(url, timeout=10).text == "one"
    module.write_text("broken(\n")
    os.utime(module, (os.stat(module).st_mtime + 2,) * 2)
    wait_for(lambda: "waiting for a change" in server.log(), timeout=20, message="the syntax error reported")
    module.write_text(source % "two")
    os.utime(module, (os.stat(module).st_mtime + 4,) * 2)

    def serves_two():
        try:
            return requests.get(url, timeout=5).text == "two"
        except requests.RequestException:
            return False
    wait_for(serves_two, timeout=20, message="the new code served")


def test_forwarded_headers_only_from_trusted_peers(start_server):
    trusted = start_server("behaviour_app:app")
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    env = requests.get(f"http://127.0.0.1:{trusted.port}/environ", headers=headers, timeout=10).json()
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    untrusted = start_server("behaviour_app:app", "--forwarded-allow-ips", "10.1.2.3")
    env = requests.get(f"http://127.0.0.1:{untrusted.port}/environ", headers=headers, timeout=10).json()
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"


def test_umask_applies_to_the_unix_socket(start_server):
    server = start_server("behaviour_app:app", "--umask", "077", unix=True)
    mode = stat.S_IMODE(os.stat(server.socket_path).st_mode)
    assert mode & 0o077 == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_user_and_group_for_workers(start_server, tmp_path):
    # --preload: the interpreter here lives under /root, which 'nobody' cannot read; the app is imported
    # by the master (as root) and the worker only runs it
    server = start_server("behaviour_app:app", "-w", "1", "--user", "nobody", "--group", "nogroup", "--preload")
    (worker,) = server.wait_workers(1)
    status = open(f"/proc/{worker}/status").read()
    uid = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1)
    assert uid == str(__import__("pwd").getpwnam("nobody").pw_uid)
    master_uid = re.search(r"^Uid:\s+(\d+)", open(f"/proc/{server.pid}/status").read(), re.MULTILINE).group(1)
    assert master_uid == "0"
    assert requests.get(f"http://127.0.0.1:{server.port}/hello", timeout=10).status_code == 200


def test_config_file_and_environment(start_server, tmp_path):
    app_dir = tmp_path / "cfg"
    app_dir.mkdir()
    (app_dir / "wsgistack.toml").write_text('[serve]\napp = "behaviour_app:app"\nworkers = 3\n'
                                            'max-body-size = "10"\n')
    env = {"PYTHONPATH": str(APPS), "WSGISTACK_WORKERS": "2"}
    server = start_server("", env=env, cwd=app_dir)
    assert len(server.wait_workers(2)) == 2  # the environment beats the file
    with server.connect() as sock:
        response = request(sock, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world")
    assert response.status == 413  # the file's limit applies


def test_process_titles(start_server):
    pytest.importorskip("setproctitle")
    server = start_server("behaviour_app:app", "-w", "1", "--name", "shop")
    (worker,) = server.wait_workers(1)
    master_title = open(f"/proc/{server.pid}/cmdline", "rb").read().replace(b"\0", b" ").strip()
    worker_title = open(f"/proc/{worker}/cmdline", "rb").read().replace(b"\0", b" ").strip()
    assert master_title.startswith(b"wsgistack: master [shop]")
    assert worker_title.startswith(b"wsgistack: worker [shop]")


def test_boot_failure_stops_the_master_with_one_line(tmp_path):
    (tmp_path / "broken_app.py").write_text("import no_such_dependency_here\napp = None\n")
    proc = subprocess.run([sys.executable, "-m", "wsgistack", "serve", "broken_app:app", "-w", "2",
                           "-b", "127.0.0.1:0"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 4
    errors = [line for line in proc.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "no_such_dependency_here" in errors[0]
    assert "Traceback" not in proc.stderr
    assert "listening at" not in proc.stderr


def test_port_in_use_is_one_line(start_server):
    server = start_server("behaviour_app:app")
    proc = subprocess.run([sys.executable, "-m", "wsgistack", "serve", "behaviour_app:app",
                           "-b", f"127.0.0.1:{server.port}"], cwd=APPS, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "address already in use" in proc.stderr


def test_children_are_only_workers(start_server):
    server = start_server("behaviour_app:app", "-w", "3")
    assert children_of(server.pid) == server.wait_workers(3)
    server.signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0


def test_log_level_warning_hides_info(start_server):
    server = start_server("behaviour_app:app", "--log-level", "warning", ready=False)

    def answers():
        try:
            return server.port or _port_from_proc(server)
        except OSError:
            return None
    # with info hidden there is no "listening at" line: find the port from the master's socket instead
    port = wait_for(answers, message="the listening port")
    server.port = port
    wait_for(lambda: _get_ok(server), message="a served request")
    requests.get(f"http://127.0.0.1:{port}/boom", timeout=10)
    log = wait_for(lambda: "RuntimeError: boom" in server.log() and server.log(), message="the app error logged")
    assert "[INFO]" not in log


def _get_ok(server) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{server.port}/hello", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _port_from_proc(server) -> int | None:
    """The TCP port the master listens on, from /proc (state 0A is LISTEN)."""
    inodes = set()
    fd_dir = f"/proc/{server.pid}/fd"
    for name in os.listdir(fd_dir):
        target = os.readlink(os.path.join(fd_dir, name))
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:
            return int(fields[1].split(":")[1], 16)
    return None
