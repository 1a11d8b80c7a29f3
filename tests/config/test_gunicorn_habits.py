"""What users bring from gunicorn either works or is refused in one line, never silently ignored.

A gunicorn config file given with -c is run as Python and its settings mapped; gunicorn's worker class
names, `--chdir`, URL-style addresses (`http://127.0.0.1:4000`) work; misspelt tables and keys of
wsgistack.toml are errors with file, line and a suggestion.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from commands import one_error_line, run
from polling import wait_for
from processes import pid_alive

from wsgistack.config import ConfigError
from wsgistack.config.addresses import parse_address

APPS = Path(__file__).resolve().parent.parent / "apps"

GUNICORN_CONF = """\
import multiprocessing

bind = "127.0.0.1:8123"
workers = 2
worker_class = "gthread"
threads = 3
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s'
timeout = 45
keepalive = 7
max_requests = 500


cores = multiprocessing.cpu_count()  # a name of the file's own is not a setting


def helper():  # nor is a function of its own
    return cores
"""


def test_a_gunicorn_config_file_is_read_as_gunicorn_reads_it(tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text(GUNICORN_CONF)
    result = run(tmp_path, "serve", "-c", "gunicorn.conf.py", "app:app", "--check-config")
    assert result.returncode == 0, result.stderr
    settings = tomllib.loads(result.stdout)["serve"]
    assert settings["bind"] == ["127.0.0.1:8123"]
    assert (settings["workers"], settings["worker_class"], settings["threads"]) == (2, "thread", 3)
    assert (settings["timeout"], settings["keep_alive"], settings["max_requests"]) == (45.0, 7.0, 500)
    assert (settings["access_log"], settings["access_log_format"]) == ("-", '%(h)s "%(r)s" %(s)s')


def test_a_server_runs_with_the_gunicorn_config_files_settings(start_server, tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("workers = 2\nworker_class = 'sync'\ntimeout = 30\n")
    server = start_server("plain_app:hello", "-c", str(conf))  # the command line's --bind wins, as in gunicorn
    assert len(server.wait_workers(2)) == 2
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(("body", "message"), [
    ("def post_fork(server, worker):\n    pass\n", "gunicorn server hook post_fork() is not supported"),
    ("workers = 2\nstatsd_host = 'localhost:8125'\n", "gunicorn setting 'statsd_host' is not supported"),
    ("reuse_port = True\n", "gunicorn setting reuse_port = True is not supported"),
    ("workers = 1 / 0\n", "the gunicorn config file failed: ZeroDivisionError: division by zero"),
    ("worker_class = 'eventlet'\n", "'eventlet' is not one of: sync, thread, event, gevent, tornado "
                                    "(eventlet: use gevent)"),
])
def test_what_wsgistack_cannot_honour_is_refused_in_one_line(tmp_path, body, message):
    (tmp_path / "gunicorn.conf.py").write_text(body)
    line = one_error_line(run(tmp_path, "serve", "-c", "gunicorn.conf.py", "app:app", "--check-config"))
    assert line.startswith("wsgistack serve: error: ") and message in line, line


@pytest.mark.parametrize(("given", "meant"), [("gthread", "thread"), ("sync", "sync"), ("GThread", "thread")])
def test_gunicorn_worker_class_names_work(tmp_path, given, meant):
    result = run(tmp_path, "serve", "-k", given, "app:app", "--check-config")
    assert tomllib.loads(result.stdout)["serve"]["worker_class"] == meant


def test_chdir_loads_the_app_from_that_folder(start_server, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = start_server("plain_app:hello", "--chdir", str(APPS), cwd=elsewhere)
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 200 ")


def test_daemon_detaches_serves_and_stops_on_term(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pidfile = tmp_path / "serve.pid"
    started = subprocess.run([sys.executable, "-m", "wsgistack", "serve", "-D", "--chdir", str(APPS), "plain_app:hello",
                              "-b", f"127.0.0.1:{port}", "-p", str(pidfile), "--error-log", str(tmp_path / "err.log")],
                             cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert (started.returncode, started.stdout, started.stderr) == (0, "", "")  # the foreground process returns
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), message="the pid file"))
    try:
        assert os.getsid(pid) != os.getsid(0)  # a session of its own: detached from this terminal's
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_all(sock).startswith(b"HTTP/1.1 200 ")
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), message="the daemon gone")
        assert not pidfile.exists()
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_daemon_reports_a_busy_port_before_it_detaches(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        line = one_error_line(run(tmp_path, "serve", "-D", "app:app", "-b", f"127.0.0.1:{busy.getsockname()[1]}"),
                              code=2)
    assert "address already in use" in line.lower(), line


def test_chdir_to_a_missing_folder_is_one_line(tmp_path):
    line = one_error_line(run(tmp_path, "serve", "--chdir", "nowhere", "app:app"))
    assert line == f"wsgistack serve: error: --chdir {tmp_path / 'nowhere'}: no such folder"


@pytest.mark.parametrize(("text", "expected"), [
    ("http://127.0.0.1:4000", "http://127.0.0.1:4000"), ("http://127.0.0.1:4000/", "http://127.0.0.1:4000"),
    ("HTTP://app.internal", "http://app.internal:80"), ("http://[::1]:81", "http://[::1]:81"),
    ("tcp://10.0.0.1:9000", "http://10.0.0.1:9000"),
])
def test_url_style_addresses_are_read(text, expected):
    assert str(parse_address(text)) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("https://127.0.0.1:4000", "https:// is not supported here"), ("http://127.0.0.1:4000/app", "has no path"),
    ("ftp://x:1", "ftp:// is not supported here"), ("a b:80", "is not a host name or address"),
])
def test_addresses_that_cannot_work_are_refused(text, reason):
    with pytest.raises(ConfigError, match=reason):
        parse_address(text)


def test_proxy_upstream_with_https_is_refused_at_check_time(tmp_path):
    line = one_error_line(run(tmp_path, "proxy", "--upstream", "https://127.0.0.1:4000", "--check-config"))
    assert "https:// is not supported here" in line, line


@pytest.mark.parametrize("command", [("proxy", "--check-config"), ("supervise",), ("config", "check")])
def test_every_command_refuses_a_misspelt_table(tmp_path, command):
    (tmp_path / "wsgistack.toml").write_text('[proxi]\nlisten = ["127.0.0.1:0"]\n')
    args = (*command, "wsgistack.toml") if command[0] == "config" else (*command, "-c", "wsgistack.toml")
    line = one_error_line(run(tmp_path, *args))
    assert line.endswith("wsgistack.toml:1: [proxi]: unknown table (known: [serve], [proxy], [supervisor], "
                         "[programs.NAME]); did you mean [proxy]?"), line


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_config_convert_prints_a_serve_table_that_reads_back_the_same(tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text(GUNICORN_CONF)
    converted = run(tmp_path, "config", "convert", "gunicorn.conf.py")
    assert converted.returncode == 0, converted.stderr
    table = tomllib.loads(converted.stdout)["serve"]
    assert set(table) == {"bind", "workers", "worker_class", "threads", "access_log", "access_log_format",
                          "timeout", "keep_alive", "max_requests"}  # what the file sets, nothing else
    (tmp_path / "wsgistack.toml").write_text(converted.stdout)
    from_toml = run(tmp_path, "serve", "-c", "wsgistack.toml", "app:app", "--check-config")
    from_python = run(tmp_path, "serve", "-c", "gunicorn.conf.py", "app:app", "--check-config")
    assert from_toml.returncode == 0, from_toml.stderr
    assert tomllib.loads(from_toml.stdout) == tomllib.loads(from_python.stdout)


def test_config_convert_refuses_what_it_cannot_convert_in_one_line(tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text("statsd_host = 'localhost:8125'\n")
    line = one_error_line(run(tmp_path, "config", "convert", "gunicorn.conf.py"))
    assert line.endswith("gunicorn setting 'statsd_host' is not supported by wsgistack serve"), line
