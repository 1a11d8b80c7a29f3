"""HUP's readiness gate: a new worker says "booted" to the master only once it answered its own health
check, through its own class's connection code; until every new worker has, the old ones keep serving."""

from __future__ import annotations

import re
import signal

import pytest
from polling import wait_for
from rawhttp import Reader, get
from servers import Server


def worker_pid(server: Server) -> int:
    with server.connect() as sock:
        sock.sendall(get("/"))
        response = Reader(sock).one()
    assert response.status == 200
    return int(response.body)


@pytest.mark.parametrize("worker_class", ["sync", "event", "tornado"])
def test_a_generation_that_cannot_answer_its_health_check_never_replaces_the_old_one(start_server, tmp_path,
                                                                                    worker_class):
    config = tmp_path / "wsgistack.toml"
    config.write_text(f'[serve]\nworkers = 1\nworker_class = "{worker_class}"\n')
    server = start_server("stop_app:app", "-c", str(config))
    old = worker_pid(server)
    # the app still imports, but no request target of the health path's length gets past the new limit:
    # the health endpoint, so a load balancer's probe, could not be answered
    config.write_text(f'[serve]\nworkers = 1\nworker_class = "{worker_class}"\nlimit_request_line = 8\n')
    server.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed, the previous workers keep serving" in server.log(), message="the refusal")
    assert re.search(r"failed its self-check: the health endpoint answered b'HTTP/1.1 414", server.log())
    assert worker_pid(server) == old
    # a good reload then goes through the gate
    config.write_text(f'[serve]\nworkers = 1\nworker_class = "{worker_class}"\n')
    server.signal(signal.SIGHUP)
    wait_for(lambda: worker_pid(server) != old, message="the new generation to serve")
    # the self-checks were no requests: not in the access log (where every real request is)
    wait_for(lambda: len(server.access_lines()) >= 3, message="the access log")
    assert not [line for line in server.access_lines() if "/_wsgistack/health" in line]
