"""`wsgistack export supervisord`: the file runs under the real supervisord, every program RUNNING as the real
supervisorctl reports it, the app answering through the proxy; supervisord stops them all."""

from __future__ import annotations

import configparser
import http.client
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from commands import BASE_ENV, one_error_line, run
from export_stacks import STACKS, check_command, free_port
from polling import wait_for
from processes import children_of, pid_alive

BIN = Path(sys.executable).parent


def supervisorctl(conf: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "supervisorctl"), "-c", str(conf), *args], capture_output=True, text=True,
                          env=BASE_ENV, timeout=20, check=False)


def states(conf: Path) -> dict[str, tuple[str, int]]:
    """name -> (state, pid) from `supervisorctl status`."""
    found = {}
    for line in supervisorctl(conf, "status").stdout.splitlines():
        name, state, *rest = line.split()
        pid = int(rest[1].rstrip(",")) if rest[:1] == ["pid"] else 0
        found[name] = (state, pid)
    return found


def get(port: int, path: str) -> tuple[int, bytes] | None:
    """One GET through the proxy; None while nothing answers yet."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return None
    finally:
        connection.close()


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_supervisord_runs_the_stack(stack, tmp_path):
    port = free_port()
    config = STACKS[stack](tmp_path / "project", port)
    out = tmp_path / "supervisord"
    check_command("supervisord", config, out)
    conf = out / "supervisord.conf"
    log = open(tmp_path / "supervisord.out", "wb")  # noqa: SIM115 (closed below)
    daemon = subprocess.Popen([str(BIN / "supervisord"), "-c", str(conf)], cwd=tmp_path, env=BASE_ENV,
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    pids: set[int] = set()
    try:
        expected = {"app", "proxy", "jobs"} if stack == "example" else {"web", "api", "proxy", "ticker"}

        def all_running():
            found = states(conf)
            return found if set(found) == expected and all(s == "RUNNING" for s, _ in found.values()) else None

        found = wait_for(all_running, 20, 0.1, "every program RUNNING under supervisord")
        pids = {pid for _, pid in found.values()}  # type: ignore[union-attr]
        pids |= {child for pid in pids for child in children_of(pid)}  # the app servers' workers
        if stack == "example":
            status, body = wait_for(lambda: get(port, "/"), 15, message="the example through the proxy")
            assert status == 200 and b"<html" in body.lower()
            assert get(port, "/static/style.css")[0] == 200  # type: ignore[index] (the proxy's static route)
        else:
            assert wait_for(lambda: get(port, "/hello"), 15, message="web through the proxy") == (200, b"web /hello")
            assert get(port, "/api/x") == (200, b"api /api/x")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
        wait_for(lambda: not any(pid_alive(pid) for pid in pids), 10, message="no process left behind")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()


def test_depends_on_becomes_priority(tmp_path):
    config = STACKS["two_servers"](tmp_path / "project")
    conf = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    out = tmp_path / "out"
    conf.read_string(check_command("supervisord", config, out)["supervisord.conf"])
    priority = {section.partition(":")[2]: conf.getint(section, "priority") for section in conf.sections()
                if section.startswith("program:")}
    assert priority["web"] == priority["api"] < priority["proxy"] < priority["ticker"]
    assert conf.get("program:web", "stopwaitsecs") == "9"  # graceful-timeout 4 s + 5
    assert "--serve-table api" in conf.get("program:api", "command")
    # `wsgistack supervise` reads the same file
    checked = run(tmp_path, "config", "check", str(out / "supervisord.conf"))
    assert checked.returncode == 0 and "4 programs" in checked.stdout, (checked.stdout, checked.stderr)


@pytest.mark.parametrize("kind", ["supervisord", "systemd", "k8s", "compose"])
def test_a_proxy_engine_other_than_wsgistack_is_one_line(kind, tmp_path):
    """These exports run `wsgistack proxy`: with [proxy] engine = "nginx" they say so instead of changing it."""
    config = STACKS["two_servers"](tmp_path / "project")
    config.write_text(config.read_text().replace("[proxy]\n", '[proxy]\nengine = "nginx"\n'))
    line = one_error_line(run(config.parent, "export", kind, "-c", str(config)))
    assert line.startswith(f"wsgistack export: error: {config}: [proxy] engine = 'nginx': `wsgistack export {kind}` "
                           f"runs the wsgistack proxy only"), line
