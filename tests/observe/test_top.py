"""`wsgistack top` as a user runs it: in a real terminal (a tmux pane, read with capture-pane), against a real
metrics endpoint (a small HTTP server of the test serving a stack's text, and a real `wsgistack serve
--metrics-bind`); without a terminal, one summary; and its address from the command line or wsgistack.toml."""

from __future__ import annotations

import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands import one_error_line, run
from metrics_samples import START, stack_text
from polling import wait_for
from stacks import Stack, free_port, get, write_release
from unix_http import UnixHTTPServer

from wsgistack.config.errors import ConfigError
from wsgistack.observe.top import metrics_listen


class StackMetrics(http.server.BaseHTTPRequestHandler):
    """GET /metrics: the next scrape of the sample stack (counters grow by one scrape's worth each time)."""

    scrapes = 0
    started = START  # the supervisor's process_start_time_seconds

    def do_GET(self):
        text = stack_text(type(self).scrapes)
        body = text.replace(f"process_start_time_seconds {START}", f"process_start_time_seconds {self.started}").encode()
        type(self).scrapes += 1
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def serve_metrics() -> Iterator:
    """serve_metrics(path): a metrics endpoint on a unix socket, from now on; stopped at the end."""
    servers = []
    StackMetrics.scrapes = 0
    StackMetrics.started = time.time() - 7200  # a supervisor up for two hours

    def start(path: Path) -> http.server.HTTPServer:
        server = UnixHTTPServer(str(path), StackMetrics)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class Pane:
    """`wsgistack top ARGS` in a tmux pane of a tmux server of the test's own; the shell around it records the
    terminal's settings before and after, and the exit code."""

    def __init__(self, folder: Path, *args: str):
        self.folder = folder
        self.socket = str(folder / "tmux.sock")
        top = shlex.join([sys.executable, "-m", "wsgistack", "top", *args])
        # `trap : INT`: the shell lives through a Ctrl-C meant for top (top gets the default action back at exec)
        script = (f"cd {shlex.quote(str(folder))}; trap : INT; stty -g > stty.before; {top} 2> top.stderr; "
                  f"echo $? > top.exit; stty -g > stty.after")
        # COLUMNS and LINES (set under pytest-xdist) would win over the pane's size in rich
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("TMUX", "WSGISTACK_")) and key not in ("COLUMNS", "LINES")}
        subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", "250", "-y", "60",
                        "-s", "top", f"sh -c {shlex.quote(script)}"], env=env, check=True, timeout=10)

    def screen(self) -> str:
        result = subprocess.run(["tmux", "-S", self.socket, "capture-pane", "-p", "-t", "top"], check=False,
                                capture_output=True, text=True, timeout=10)
        return result.stdout if result.returncode == 0 else ""

    def wait_screen(self, *patterns: str, timeout: float = 15.0) -> str:
        """A capture of the screen showing every pattern at once (a capture can catch a frame half drawn)."""
        def shown() -> str | None:
            screen = self.screen()
            return screen if all(re.search(pattern, screen) for pattern in patterns) else None
        try:
            return wait_for(shown, timeout, message=f"{patterns!r} on the screen")  # type: ignore[return-value]
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.screen()}") from None

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "-S", self.socket, "send-keys", "-t", "top", *keys], check=True, timeout=10)

    def wait_exit(self) -> int:
        done = self.folder / "stty.after"
        wait_for(lambda: done.exists() and done.read_text(), 15, message="top to exit")
        return int((self.folder / "top.exit").read_text())

    def terminal_restored(self) -> bool:
        return (self.folder / "stty.before").read_text() == (self.folder / "stty.after").read_text()

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], check=False, capture_output=True, timeout=10)


@pytest.fixture
def pane(tmp_path: Path) -> Iterator:
    """pane(*args): `wsgistack top ARGS` in a terminal; its tmux server is stopped at the end."""
    if shutil.which("tmux") is None and not os.environ.get("CI"):  # CI installs it (.ci/run): there, fail
        pytest.skip("tmux is not installed")
    panes: list[Pane] = []

    def start(*args: str) -> Pane:
        folder = tmp_path / f"pane{len(panes)}"
        folder.mkdir()
        panes.append(Pane(folder, *args))
        return panes[-1]

    yield start
    for each in panes:
        each.close()


def test_live_view_of_a_stack_then_q(tmp_path, serve_metrics, pane):
    serve_metrics(tmp_path / "metrics.sock")
    top = pane("--url", f"unix:{tmp_path / 'metrics.sock'}", "--interval", "0.3")
    # the second frame has a window: p99 of the window's requests (372.5 ms), not of the process's life (422.0 ms)
    top.wait_screen(r"web\s+[\d.]+\s+14\.1ms\s+59\.5ms\s+372\.5ms",
                    r"wsgistack top\s+unix:\S+metrics\.sock\s+\d\d:\d\d:\d\d\s+up 2h0\dm",
                    r"proxy\s+[\d.]+\s+14\.1ms",
                    r"web\s+101\s+\d+\s+[\d.]+\s+busy\s+50\.0MiB\s+1h00m",
                    r"api\s+127\.0\.0\.1:9002\s+down",
                    r"web\s+unix:/tmp/wsgistack/web\.sock\s+up",
                    r"mailer\s+backoff")
    top.keys("q")
    assert top.wait_exit() == 0
    assert top.terminal_restored()
    assert (tmp_path / "pane0" / "top.stderr").read_text() == ""


def test_an_endpoint_that_does_not_answer_is_one_line_until_it_does(tmp_path, serve_metrics, pane):
    path = tmp_path / "later.sock"
    top = pane("--url", f"unix:{path}", "--interval", "0.2")
    screen = top.wait_screen(r"cannot read metrics: unix:\S+later\.sock: no such file or directory; retrying")
    assert "Traceback" not in screen
    serve_metrics(path)
    screen = top.wait_screen(r"mailer\s+backoff")
    assert "cannot read metrics" not in screen
    top.keys("C-c")  # Ctrl-C: the terminal is given back too
    assert top.wait_exit() == 130
    assert top.terminal_restored()


def test_live_view_of_a_real_server(tmp_path, start_server, pane):
    metrics = tmp_path / "serve-metrics.sock"
    server = start_server("plain_app:hello", "-w", "2", "--metrics-bind", f"unix:{metrics}")
    pids = server.wait_workers(2)
    stop = threading.Event()

    def traffic() -> None:  # a request every 20 ms, so every window of top has some
        while not stop.wait(0.02):
            with server.connect() as client:
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while client.recv(65536):
                    pass

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        top = pane("--url", f"unix:{metrics}", "--interval", "0.3")
        top.wait_screen(r"app\s+[\d.]+\s+[\d.]+ms\s+[\d.]+ms\s+[\d.]+ms\s+[\d.]+\s+0\s+\d",
                        r"wsgistack top\s+unix:\S+serve-metrics\.sock\s+\d\d:\d\d:\d\d\s+up \d+s",
                        *(rf"app\s+{pid}\s+\d+\s+[\d.]+\s+(idle|busy)\s+[\d.]+MiB\s+\d+s" for pid in pids))
    finally:
        stop.set()
        sender.join(10)
    top.keys("q")
    assert top.wait_exit() == 0
    assert top.terminal_restored()


def test_without_a_terminal_one_summary(tmp_path, serve_metrics):
    serve_metrics(tmp_path / "metrics.sock")
    result = run(tmp_path, "top", "--url", f"unix:{tmp_path / 'metrics.sock'}")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "q quits" not in result.stdout and "\x1b" not in result.stdout  # no live view, no escape codes
    # one scrape: no rates, latency over each process's life
    assert re.search(r"web\s+-\s+14\.2ms\s+61\.4ms\s+422\.0ms\s+-\s+100\s+3", result.stdout), result.stdout
    assert re.search(r"mailer\s+backoff\s+7\s+0s", result.stdout), result.stdout


def test_without_a_terminal_an_unreachable_endpoint_is_one_line(tmp_path):
    line = one_error_line(run(tmp_path, "top", "--url", f"unix:{tmp_path / 'none.sock'}"), code=1)
    assert line == f"wsgistack top: error: unix:{tmp_path / 'none.sock'}: no such file or directory"


@pytest.mark.parametrize(("args", "message"), [
    (["--url", "fd://3"], "'fd://3' is not a metrics address"),
    (["--url", "x:1", "--interval", "0"], "--interval 0: must be more than 0 and at most 3600 seconds"),
    ([], "no metrics address: wsgistack top --url ADDR"),
])
def test_bad_arguments_are_one_line(tmp_path, args, message):
    assert message in one_error_line(run(tmp_path, "top", *args))


def test_a_config_without_metrics_says_so(tmp_path):
    (tmp_path / "wsgistack.toml").write_text('[serve]\napp = "x:app"\n')
    line = one_error_line(run(tmp_path, "top"))
    assert line == ("wsgistack top: error: wsgistack.toml: no [metrics] table with listen = \"HOST:PORT\" "
                    "(or give --url ADDR)")


def test_the_address_from_wsgistack_toml(tmp_path):
    # read by the supervisor's own reader of [metrics]: the same address, the same errors
    (tmp_path / "wsgistack.toml").write_text('[metrics]\nlisten = "unix:run/metrics.sock"\n')
    # a relative unix path is relative to the file's folder, as the supervisor binds it
    assert str(metrics_listen(tmp_path / "wsgistack.toml")) == f"unix:{tmp_path / 'run' / 'metrics.sock'}"
    (tmp_path / "wsgistack.toml").write_text('[metrics]\nlisten = "127.0.0.1:9100"\n')
    assert str(metrics_listen(tmp_path / "wsgistack.toml")) == "http://127.0.0.1:9100"
    (tmp_path / "wsgistack.toml").write_text('[serve]\napp = "x:app"\n\n[metrics]\nlisten = "fd://3"\n')
    with pytest.raises(ConfigError, match=r"wsgistack\.toml:5: \[metrics\] listen: give HOST:PORT or unix:PATH"):
        metrics_listen(tmp_path / "wsgistack.toml")


def test_top_reads_the_stack_file(tmp_path, serve_metrics):
    serve_metrics(tmp_path / "metrics.sock")
    (tmp_path / "wsgistack.toml").write_text('[metrics]\nlisten = "unix:metrics.sock"\n')
    result = run(tmp_path, "top")
    assert result.returncode == 0, result.stderr
    assert "mailer" in result.stdout


def test_top_of_a_whole_stack(tmp_path):
    # `wsgistack up` with [metrics] listen: the supervisor's one endpoint, each app server's series labelled
    # with its program; top finds it from ./wsgistack.toml
    port = free_port()
    release = write_release(tmp_path / "release", "hello")
    stack = Stack(tmp_path, f'[serve]\napp = "hello:app"\nchdir = "{release}"\nworkers = 2\n\n'
                            f'[proxy]\nlisten = ["127.0.0.1:{port}"]\n\n[metrics]\nlisten = "unix:metrics.sock"\n')
    try:
        stack.wait_running("app", "proxy")
        for _ in range(3):
            assert get(port)[0] == 200

        def summary() -> str:
            result = run(tmp_path, "top")
            ready = result.returncode == 0 and re.search(r"\napp\s+-\s+[\d.]+ms", result.stdout)
            return result.stdout if ready else ""

        screen = wait_for(summary, 30, interval=0.2, message="the stack's app in top's summary")
        assert re.search(r"\napp\s+running\s+0\s+\d+s", screen), screen  # the programs table
        assert re.search(r"\nproxy\s+running\s+0\s+\d+s", screen), screen
        assert len(re.findall(r"\napp\s+\d+\s+\d+\s+-\s+(idle|busy)", screen)) == 2, screen  # its two workers
    finally:
        stack.stop()
