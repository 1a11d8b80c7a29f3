"""The master's lifecycle, with real signals against a real `wsgistack serve`, for every worker class."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest
import requests
from servers import APPS, WORKER_CLASSES
from processes import children_of, pid_alive
from polling import wait_for


@pytest.fixture(params=WORKER_CLASSES)
def worker_class(request) -> str:
    return request.param


def get(server, path: str = "/hello", timeout: float = 10) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{server.port}{path}", timeout=timeout)


def test_killed_worker_is_replaced(start_server, worker_class):
    server = start_server("behaviour_app:app", "-w", "2", "-k", worker_class)
    before = server.wait_workers(2)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = wait_for(lambda: (pids := server.wait_workers(2)) and victim not in pids and pids,
                     message="a replacement worker")
    assert len(after) == 2 and victim not in after
    assert re.search(rf"worker {victim} killed by SIGKILL unexpectedly", server.log())
    assert get(server).status_code == 200


def test_stuck_worker_is_killed_after_timeout_with_its_stack(start_server, worker_class):
    server = start_server("behaviour_app:app", "-w", "1", "-k", worker_class, "--timeout", "3")
    (stuck,) = server.wait_workers(1)
    started = time.monotonic()
    # under gevent time.sleep yields to the other greenlets, so the worker is not stuck: there, a call
    # that never yields (a CPU loop) is what gets a worker killed
    route = "spin" if worker_class == "gevent" else "sleep"
    with pytest.raises(requests.exceptions.ConnectionError):
        get(server, f"/{route}?s=3600", timeout=30)
    assert time.monotonic() - started < 15, "the stuck request must be cut within 15 s"
    log = server.log()
    assert f"worker {stuck} timed out" in log
    assert re.search(rf'File ".*behaviour_app\.py", line \d+ in {route}', log), "the stuck stack is logged"
    replacement = wait_for(lambda: (pids := server.wait_workers(1)) and stuck not in pids and pids,
                           message="a replacement worker")
    assert stuck not in replacement
    assert get(server).status_code == 200


def test_sigterm_lets_the_request_in_flight_finish(start_server, worker_class, tmp_path):
    pidfile = tmp_path / "master.pid"
    server = start_server("behaviour_app:app", "-w", "2", "-k", worker_class, "--pid", str(pidfile), unix=True)
    assert pidfile.read_text().strip() == str(server.pid)
    result: dict = {}

    def slow_request():
        import socket as socketlib
        sock = socketlib.socket(socketlib.AF_UNIX)
        sock.settimeout(20)
        sock.connect(str(server.socket_path))
        sock.sendall(b"GET /sleep?s=1.5 HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
            if data.endswith(b"slept\n"):
                break
        result["data"] = data

    client = threading.Thread(target=slow_request)
    client.start()
    wait_for(lambda: "sleep started" in server.log(), message="the request to be in flight")
    server.signal(signal.SIGTERM)
    client.join(20)
    assert result["data"].startswith(b"HTTP/1.1 200") and result["data"].endswith(b"slept\n")
    assert server.proc.wait(20) == 0
    assert not server.socket_path.exists(), "the unix socket file is removed"
    assert not pidfile.exists(), "the pid file is removed"


def test_sigint_is_a_fast_stop(start_server, worker_class):
    server = start_server("behaviour_app:app", "-w", "2", "-k", worker_class, "--graceful-timeout", "30")
    workers = server.wait_workers(2)
    holder = threading.Thread(target=lambda: _ignore_errors(get, server, "/sleep?s=20", 30))
    holder.start()
    wait_for(lambda: "sleep started" in server.log(), message="a busy worker")
    started = time.monotonic()
    server.signal(signal.SIGINT)
    assert server.proc.wait(10) == 0
    assert time.monotonic() - started < 5
    wait_for(lambda: not any(pid_alive(p) for p in workers), message="workers gone")
    holder.join(30)


def _ignore_errors(fn, *args):
    try:
        fn(*args)
    except requests.RequestException:
        pass


def test_ttin_and_ttou(start_server, worker_class):
    server = start_server("behaviour_app:app", "-w", "2", "-k", worker_class)
    server.wait_workers(2)
    server.signal(signal.SIGTTIN)
    assert len(server.wait_workers(3)) == 3
    server.signal(signal.SIGTTOU)  # identical pending signals merge: wait before sending the next one
    assert len(server.wait_workers(2)) == 2
    server.signal(signal.SIGTTOU)
    assert len(server.wait_workers(1)) == 1
    assert get(server).status_code == 200


class Load:
    """Clients hammering the server from threads until stopped (bounded in time and count)."""

    def __init__(self, server, threads: int = 4, limit: int = 20000, seconds: float = 60):
        self.server = server
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.limit = limit
        self.deadline = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i % 2 == 0,)) for i in range(threads)]

    def _run(self, keep_alive: bool) -> None:
        session = requests.Session() if keep_alive else requests
        url = f"http://127.0.0.1:{self.server.port}/pid"
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if self.ok + len(self.failures) >= self.limit:
                    return
            try:
                response = session.get(url, timeout=10)
                good = response.status_code == 200 and response.text.isdigit()
            except requests.RequestException as exc:
                good, response = False, exc
            with self.lock:
                if good:
                    self.ok += 1
                else:
                    self.failures.append(repr(response))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def test_three_hups_under_load_lose_nothing(start_server, worker_class):
    server = start_server("behaviour_app:app", "-w", "2", "-k", worker_class)
    original = server.wait_workers(2)
    seen = set(original)
    with Load(server) as load:
        wait_for(lambda: load.ok > 50, message="load running")
        for round_number in range(3):
            previous = server.wait_workers(2)
            server.signal(signal.SIGHUP)
            current = wait_for(lambda: (pids := server.wait_workers(2, timeout=30)) and not (pids & previous)
                               and pids, timeout=30, message=f"generation {round_number + 1}")
            seen |= current
            count = load.ok
            wait_for(lambda: load.ok > count + 20, message="load continuing on the new workers")
    assert load.failures == [], f"{len(load.failures)} failed requests, e.g. {load.failures[:3]}"
    assert load.ok > 100
    assert len(seen) == 8, "every HUP replaced both workers"
    assert not (server.wait_workers(2) & original)


def test_hup_with_broken_code_keeps_the_old_workers(start_server, worker_class, tmp_path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    module = app_dir / "editable_app.py"
    module.write_text("def app(environ, start_response):\n"
                      "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                      "    return [b'version 1']\n")
    server = start_server("editable_app:app", "-w", "2", "-k", worker_class, cwd=app_dir)
    workers = server.wait_workers(2)
    module.write_text("def app(environ, start_response) this is not python\n")
    server.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in server.log(), message="the reload failure in the log")
    assert server.wait_workers(2) == workers
    assert get(server, "/").text == "version 1"
    module.write_text("def app(environ, start_response):\n"
                      "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                      "    return [b'version 2']\n")
    server.signal(signal.SIGHUP)
    wait_for(lambda: not (server.wait_workers(2) & workers), message="new workers")
    assert get(server, "/").text == "version 2"


def test_usr1_reopens_log_files(start_server, worker_class):
    server = start_server("behaviour_app:app", "-w", "2", "-k", worker_class,
                          "--access-log-format", "$pid $request_method $request_uri $status")
    workers = {str(p) for p in server.wait_workers(2)}
    get(server, "/hello?before")
    wait_for(lambda: any("before" in line for line in server.access_lines()), message="the first line")
    rotated = server.access_log.with_suffix(".1")
    server.access_log.rename(rotated)
    server.error_log.rename(server.error_log.with_suffix(".1"))
    server.signal(signal.SIGUSR1)
    wait_for(lambda: server.error_log.exists(), message="the master to reopen the error log")

    def every_worker_writes_the_new_file():
        requests.get(f"http://127.0.0.1:{server.port}/hello?after", timeout=10, headers={"Connection": "close"})
        writers = {line.split()[0] for line in server.access_lines() if "after" in line}
        return workers <= writers
    wait_for(every_worker_writes_the_new_file, timeout=20, message="both workers writing the new access log")
    assert any("before" in line for line in rotated.read_text().splitlines())
    assert all(re.fullmatch(r"\d+ GET /hello\?(before|after) 200", line) for line in server.access_lines())


def test_max_requests_recycles_workers(start_server, worker_class):
    server = start_server("behaviour_app:app", "-w", "1", "-k", worker_class, "--max-requests", "5")
    (first,) = server.wait_workers(1)
    pids = set()
    for _ in range(12):
        response = requests.get(f"http://127.0.0.1:{server.port}/pid", timeout=10,
                                headers={"Connection": "close"})
        pids.add(int(response.text))
        wait_for(lambda: len(server.wait_workers(1)) == 1, message="one worker")
    assert first in pids and len(pids) >= 3
    assert "reached 5 requests" in server.log()


def test_master_killed_leaves_no_orphans(start_server, worker_class):
    server = start_server("behaviour_app:app", "-w", "2", "-k", worker_class)
    workers = server.wait_workers(2)
    server.signal(signal.SIGKILL)
    server.proc.wait(10)
    wait_for(lambda: not any(pid_alive(p) for p in workers), timeout=10, message="workers to exit on their own")
    assert children_of(server.pid) == set()


def test_max_requests_jitter_spreads_restarts(start_server):
    server = start_server("behaviour_app:app", "-w", "1", "--max-requests", "3", "--max-requests-jitter", "4")
    (first,) = server.wait_workers(1)
    served = 0
    while True:
        pid = int(requests.get(f"http://127.0.0.1:{server.port}/pid", timeout=10,
                               headers={"Connection": "close"}).text)
        if pid != first:
            break
        served += 1
        assert served <= 7, "the jitter is at most 4 on top of 3"
        wait_for(lambda: len(server.wait_workers(1)) == 1, message="one worker")
    assert 3 <= served <= 7


def test_hup_rereads_the_config_file(start_server, tmp_path):
    app_dir = tmp_path / "cfg"
    app_dir.mkdir()
    config = app_dir / "wsgistack.toml"
    config.write_text('[serve]\nworkers = 1\n')
    server = start_server("behaviour_app:app", cwd=app_dir, env={"PYTHONPATH": str(APPS)})
    first = server.wait_workers(1)
    config.write_text('[serve]\nworkers = 3\n')
    server.signal(signal.SIGHUP)
    after = server.wait_workers(3)
    assert not (after & first)
    config.write_text('[serve]\nworkers = "many"\n')
    server.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.log(), message="the refused reload")
    assert server.wait_workers(3) == after


def test_sigquit_is_a_fast_stop(start_server):
    server = start_server("behaviour_app:app", "-w", "2")
    server.wait_workers(2)
    server.signal(signal.SIGQUIT)
    assert server.proc.wait(10) == 0
