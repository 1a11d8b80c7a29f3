"""The dashboard in process: its listener on a real 127.0.0.1 socket (ephemeral port) in a thread's loop, over
fake Operations; the login, the session cookie, CSRF, the Origin check, routing, limits; the [dashboard]
table's checks. The browser tests (test_dashboard_browser.py) drive a real supervisor."""

from __future__ import annotations

import asyncio
import http.client
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from commands import BASE_ENV, one_error_line, run
from polling import wait_for

from wsgistack.config.errors import ConfigError
from wsgistack.observe.dashboard.app import ActionError, Dashboard
from wsgistack.observe.dashboard.sessions import COOKIE, Sessions
from wsgistack.observe.dashboard.settings import DashboardSettings
from wsgistack.supervisor import dashboard as listener
from wsgistack.supervisor.toml_config import load_toml

USER, PASSWORD = "admin", "s3cret pass"
RECORD = {"name": "web", "group": "web", "state": 20, "statename": "RUNNING", "pid": 42, "start": 1, "stop": 0,
          "now": 70, "uptime": 69, "exitstatus": 0, "spawnerr": "", "restarts": 0, "log_dropped": 0,
          "stdout_logfile": "", "stderr_logfile": "", "note": "", "description": "pid 42, uptime 0:01:09",
          "depends_on": ["db"], "ready": "tcp 127.0.0.1:5432", "waiting": False}


class FakeOperations:
    """Operations that record what was asked."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.log = "line one\nline <two>\n"

    def status(self):
        return [dict(RECORD), {**RECORD, "name": "db", "group": "db", "depends_on": [], "ready": ""}]

    async def act(self, action, target):
        if target == "nope":
            raise ActionError("no such process: nope")
        self.calls.append((action, target))
        return {target: f"{action}ed"}

    def tail(self, name, stream, offset, size):
        self.calls.append(("tail", name, stream, offset))
        start = max(offset, 0)
        return self.log[start:], len(self.log)

    async def search(self, name, stream, needle, limit):
        return [line for line in self.log.splitlines() if needle in line][:limit]


class Running:
    """A DashboardServer serving in a thread's loop; `request` speaks HTTP to it."""

    def __init__(self, credentials=(USER, PASSWORD), metrics_text=None):
        self.operations = FakeOperations()
        settings = DashboardSettings(listen="127.0.0.1:0", username=credentials and credentials[0],
                                     password=credentials and credentials[1], auth=credentials is not None)
        sessions = Sessions(settings.credentials, 3600)
        self.app = Dashboard(self.operations, sessions, "test", metrics_text,
                             loopback_host_only=credentials is None)
        self.server = listener.DashboardServer(settings, self.app)
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)
        self.port = self.server.port
        self.origin = f"http://127.0.0.1:{self.port}"

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def request(self, method, path, body=None, headers=None, cookie=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        fields = dict(headers or {})
        if cookie:
            fields["Cookie"] = f"{COOKIE}={cookie}"
        if isinstance(body, dict):
            body = urlencode(body)
            fields.setdefault("Content-Type", "application/x-www-form-urlencoded")
        try:
            connection.request(method, path, body=body, headers=fields)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def login(self):
        status, headers, _ = self.request("POST", "/login", {"username": USER, "password": PASSWORD},
                                          {"Origin": self.origin})
        assert status == 303, status
        cookie = re.match(rf"{COOKIE}=([^;]+)", headers["Set-Cookie"]).group(1)
        _, _, page = self.request("GET", "/", cookie=cookie)
        csrf = re.search(rb'name="csrf-token" content="([^"]+)"', page).group(1).decode()
        return cookie, csrf


@pytest.fixture
def running():
    server = Running()
    yield server
    server.stop()


def test_without_a_session_pages_redirect_and_the_api_and_actions_are_refused(running):
    status, headers, _ = running.request("GET", "/")
    assert (status, headers["Location"]) == (303, "/login?next=/")
    assert running.request("GET", "/program/web:web")[0] == 303
    assert running.request("GET", "/api/status")[0] == 401
    assert running.request("GET", "/api/tail?name=web:web")[0] == 401
    assert running.request("GET", "/api/metrics")[0] == 401
    assert running.request("POST", "/action", {"action": "stop", "target": "all"})[0] == 403
    assert running.request("POST", "/api/action", {"action": "stop", "target": "all"})[0] == 403
    assert running.request("GET", "/api/status", cookie="forged-token")[0] == 401
    assert running.operations.calls == []
    # the login page and the static files need no session, and give nothing away
    assert running.request("GET", "/login")[0] == 200
    assert running.request("GET", "/static/dashboard.js")[0] == 200


def test_a_login_gives_a_strict_http_only_cookie_and_a_wrong_password_nothing(running):
    status, headers, body = running.request("POST", "/login", {"username": USER, "password": "wrong"})
    assert status == 401 and "Set-Cookie" not in headers and b"Wrong username or password" in body
    status, headers, _ = running.request("POST", "/login", {"username": USER, "password": PASSWORD})
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in cookie


def test_pages_and_api_with_a_session_carry_the_security_headers(running):
    cookie, _ = running.login()
    status, headers, page = running.request("GET", "/", cookie=cookie)
    assert status == 200 and b'data-process="web:web"' in page and b'data-process="db:db"' in page
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"
    assert b"tcp 127.0.0.1:5432" in page and b"<script>" not in page  # readiness shown; no inline script
    status, headers, body = running.request("GET", "/api/status", cookie=cookie)
    assert status == 200 and headers["Cache-Control"] == "no-store" and b'"statename": "RUNNING"' in body
    status, _, page = running.request("GET", "/program/web:web?q=two", cookie=cookie)
    assert status == 200 and b"line &lt;two&gt;" in page  # found, and escaped
    assert running.request("GET", "/program/nope:nope", cookie=cookie)[0] == 400
    assert running.request("GET", "/nothing-here", cookie=cookie)[0] == 404


def test_an_action_needs_the_session_csrf_token(running):
    cookie, csrf = running.login()
    form = {"action": "stop", "target": "web:web"}
    headers = {"Origin": running.origin}
    assert running.request("POST", "/action", form, headers, cookie=cookie)[0] == 403
    forged = ("y" if csrf[0] == "x" else "x") + csrf[1:]  # one character off (a token may begin with "x")
    assert running.request("POST", "/action", {**form, "csrf": forged}, headers, cookie=cookie)[0] == 403
    _, other_csrf = running.login()  # another session's token is no good here
    assert running.request("POST", "/action", {**form, "csrf": other_csrf}, headers, cookie=cookie)[0] == 403
    assert running.operations.calls == []
    status, answer_headers, _ = running.request("POST", "/action", {**form, "csrf": csrf}, headers, cookie=cookie)
    assert (status, answer_headers["Location"]) == (303, "/")
    status, _, body = running.request("POST", "/api/action", {"action": "restart", "target": "web:*"},
                                      {"X-CSRF-Token": csrf}, cookie=cookie)
    assert status == 200 and b"restarted" in body
    assert running.operations.calls == [("stop", "web:web"), ("restart", "web:*")]
    _, _, page = running.request("GET", "/", cookie=cookie)
    assert b"stop web:web: web:web stoped" in page  # the outcome shown once, on the next page
    status, _, body = running.request("POST", "/api/action", {"action": "start", "target": "nope"},
                                      {"X-CSRF-Token": csrf}, cookie=cookie)
    assert status == 400 and b"no such process" in body


def test_cross_origin_posts_are_refused_even_with_the_token(running):
    cookie, csrf = running.login()
    form = {"action": "stop", "target": "all", "csrf": csrf}
    assert running.request("POST", "/action", form, {"Origin": "http://evil.example"}, cookie=cookie)[0] == 403
    assert running.request("POST", "/action", form, {"Origin": "null"}, cookie=cookie)[0] == 403
    assert running.request("POST", "/action", form, {"Sec-Fetch-Site": "cross-site"}, cookie=cookie)[0] == 403
    assert running.request("POST", "/login", {"username": USER, "password": PASSWORD},
                           {"Origin": "http://evil.example"})[0] == 403
    assert running.operations.calls == []


def test_a_get_changes_nothing(running):
    cookie, csrf = running.login()
    status, headers, _ = running.request("GET", f"/action?action=stop&target=all&csrf={csrf}", cookie=cookie)
    assert status == 405 and headers["Allow"] == "POST"
    assert running.request("DELETE", "/api/status", cookie=cookie)[0] == 405
    assert running.operations.calls == []


def test_logout_ends_the_session(running):
    cookie, csrf = running.login()
    status, headers, _ = running.request("POST", "/logout", {"csrf": csrf}, {"Origin": running.origin},
                                         cookie=cookie)
    assert status == 303 and "Max-Age=0" in headers["Set-Cookie"]
    assert running.request("GET", "/api/status", cookie=cookie)[0] == 401


def test_tail_by_offset_and_search(running):
    cookie, _ = running.login()
    status, _, body = running.request("GET", "/api/tail?name=web:web&stream=stdout&offset=-1", cookie=cookie)
    assert status == 200 and body == b'{"data": "line one\\nline <two>\\n", "offset": 20}'
    _, _, body = running.request("GET", "/api/tail?name=web:web&stream=stdout&offset=20", cookie=cookie)
    assert body == b'{"data": "", "offset": 20}'
    assert running.request("GET", "/api/tail?name=web:web&stream=stdin", cookie=cookie)[0] == 400
    assert running.request("GET", "/api/tail?name=web:web&offset=x", cookie=cookie)[0] == 400
    _, _, body = running.request("GET", "/api/search?name=web:web&q=one", cookie=cookie)
    assert body == b'{"matches": ["line one"]}'


def test_too_many_wrong_passwords_lock_the_login(running):
    for _ in range(10):
        assert running.request("POST", "/login", {"username": USER, "password": "guess"})[0] == 401
    assert running.request("POST", "/login", {"username": USER, "password": PASSWORD})[0] == 429


def raw(port: int, data: bytes, read_timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as client:
        client.sendall(data)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer


def test_every_read_is_bounded(running, monkeypatch):
    assert raw(running.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n") \
        .startswith(b"HTTP/1.1 431")
    assert raw(running.port, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n") \
        .startswith(b"HTTP/1.1 413")
    assert raw(running.port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    monkeypatch.setattr(listener, "READ_SECONDS", 0.2)
    started = time.monotonic()
    assert raw(running.port, b"GET / HTTP/1.1\r\nHost: x\r\n").startswith(b"HTTP/1.1 408")  # never finished
    assert time.monotonic() - started < 5


def test_a_bug_is_a_500_and_the_server_goes_on(running):
    cookie, _ = running.login()
    running.operations.status = lambda: 1 / 0
    assert running.request("GET", "/api/status", cookie=cookie)[0] == 500
    assert running.request("GET", "/login")[0] == 200


def test_without_auth_loopback_names_only_and_still_csrf():
    server = Running(credentials=None)
    try:
        status, headers, page = server.request("GET", "/")
        assert status == 200 and COOKIE in headers["Set-Cookie"]
        assert b"Log out" not in page
        cookie = re.match(rf"{COOKIE}=([^;]+)", headers["Set-Cookie"]).group(1)
        csrf = re.search(rb'name="csrf-token" content="([^"]+)"', page).group(1).decode()
        # a DNS-rebinding page reaches us with its own host name: refused
        assert server.request("GET", "/api/status", headers={"Host": "evil.example:80"})[0] == 421
        form = {"action": "stop", "target": "all"}
        assert server.request("POST", "/action", form, cookie=cookie)[0] == 403
        assert server.request("POST", "/action", {**form, "csrf": csrf}, cookie=cookie)[0] == 303
        assert server.operations.calls == [("stop", "all")]
    finally:
        server.stop()


METRICS = """# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{{program="app",http_request_method="GET",http_response_status_code="200",http_route="/",le="0.01"}} {fast}
http_server_request_duration_seconds_bucket{{program="app",http_request_method="GET",http_response_status_code="200",http_route="/",le="+Inf"}} {fast}
http_server_request_duration_seconds_count{{program="app",http_request_method="GET",http_response_status_code="200",http_route="/"}} {fast}
http_server_request_duration_seconds_sum{{program="app",http_request_method="GET",http_response_status_code="200",http_route="/"}} 1
"""


def test_the_chart_api_turns_two_scrapes_into_rates():
    scrapes = iter([100, 300])

    async def metrics_text() -> str:
        return METRICS.format(fast=next(scrapes))

    server = Running(metrics_text=metrics_text)
    now = [1000.0]
    server.app.charts.clock = lambda: now[0]  # the window between the scrapes, set by the test
    try:
        cookie, _ = server.login()
        status, _, body = server.request("GET", "/api/metrics", cookie=cookie)
        assert status == 200 and b'"available": true' in body and b'"app"' in body
        now[0] += 0.2  # closer than MIN_INTERVAL: the same answer, no scrape
        assert server.request("GET", "/api/metrics", cookie=cookie)[2] == body
        now[0] += 1.8
        _, _, body = server.request("GET", "/api/metrics", cookie=cookie)
        assert re.search(rb'"rps": 100.0\b', body)  # 200 requests in 2 s
        assert re.search(rb'"p99_ms": [0-9.]+', body)
    finally:
        server.stop()


def test_without_metrics_the_chart_api_says_why(running):
    cookie, _ = running.login()
    _, _, body = running.request("GET", "/api/metrics", cookie=cookie)
    assert b'"available": false' in body and b"metrics engine" in body


# -- the [dashboard] table -----------------------------------------------------------------------------

def config(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "wsgistack.toml"
    path.write_text(f'[programs.a]\ncommand = ["true"]\n\n[dashboard]\n{table}\n')
    return path


def test_the_dashboard_is_off_without_the_table(tmp_path):
    path = tmp_path / "wsgistack.toml"
    path.write_text('[programs.a]\ncommand = ["true"]\n')
    assert load_toml(str(path)).dashboard.listen is None


def test_the_table_as_read(tmp_path):
    settings = load_toml(str(config(tmp_path, 'listen = "0.0.0.0:9002"\nusername = "u"\npassword = "p"'))).dashboard
    assert (settings.listen, settings.credentials) == ("0.0.0.0:9002", ("u", "p"))
    settings = load_toml(str(config(tmp_path, 'listen = "127.0.0.1:9002"\nauth = false'))).dashboard
    assert settings.credentials is None
    assert load_toml(str(config(tmp_path, 'listen = "unix:/tmp/d.sock"\nauth = false'))).dashboard.auth is False


@pytest.mark.parametrize(("table", "words"), [
    ('listen = "0.0.0.0:9002"\nauth = false', ":6: [dashboard] auth: false is refused on 0.0.0.0:9002"),
    ('listen = "192.168.1.5:9002"\nauth = false', "[dashboard] auth: false is refused"),
    ('listen = "127.0.0.1:9002"', "[dashboard] username: missing"),
    ('listen = "127.0.0.1:9002"\nusername = "u"', "[dashboard] password: missing"),
    ('listen = "127.0.0.1:9002"\nauth = false\ncolour = "blue"', "[dashboard] colour: unknown option"),
    ('listen = "fd://3"\nauth = false', "[dashboard] listen: the dashboard listens on HOST:PORT or unix:PATH"),
    ('username = "u"\npassword = "p"', "[dashboard] listen: missing"),
    ('listen = "127.0.0.1:9002"\nauth = "maybe"', "[dashboard] auth: 'maybe' is not true or false"),
])
def test_bad_tables_are_one_line_errors_naming_the_option(tmp_path, table, words):
    with pytest.raises(ConfigError) as caught:
        load_toml(str(config(tmp_path, table)))
    assert words in str(caught.value) and "\n" not in str(caught.value)


# -- `wsgistack supervise -c wsgistack.toml` with a [dashboard] ----------------------------------------

def test_supervise_refuses_a_bad_table_or_a_busy_port_in_one_line(tmp_path):
    bad = config(tmp_path, 'listen = "0.0.0.0:9002"\nauth = false')
    assert "[dashboard] auth: false is refused" in one_error_line(run(tmp_path, "supervise", "-c", str(bad)))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = config(tmp_path, f'listen = "127.0.0.1:{busy.getsockname()[1]}"\nauth = false')
        line = one_error_line(run(tmp_path, "supervise", "-c", str(taken)))
    assert line.endswith("address already in use") and f"{taken}: [dashboard] listen" in line


def test_supervise_serves_it_on_a_private_unix_socket(tmp_path):
    sock = tmp_path / "dashboard.sock"
    path = tmp_path / "wsgistack.toml"
    path.write_text(f'[supervisor]\nchildlogdir = "{tmp_path}"\n\n[programs.sleeper]\n'
                    f'command = ["{sys.executable}", "-c", "import time; time.sleep(60)"]\nstartsecs = 0\n\n'
                    f'[dashboard]\nlisten = "unix:{sock}"\nauth = false\n')
    proc = subprocess.Popen([sys.executable, "-m", "wsgistack", "supervise", "-c", str(path)], env=BASE_ENV,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, message="the dashboard's socket")
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600

        def page() -> bytes:
            answer = raw_unix(sock, b"GET /api/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            return answer if b'"statename": "RUNNING"' in answer else b""

        assert b'"name": "sleeper"' in wait_for(page, message="sleeper RUNNING on the dashboard")
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
    assert not sock.exists()


def raw_unix(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(data)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer
