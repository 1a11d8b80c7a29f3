"""`wsgistack export nginx`: the bundled example and a richer stack as nginx configuration that the real nginx
accepts (`nginx -t`, no warning) and serves, with the app servers run by `wsgistack serve` on the sockets the
config names: routing as wsgistack routes, X-Forwarded-* and X-Request-ID as wsgistack's proxy sets them (over
HTTP, uwsgi and FastCGI), limits, body sizes, gzip, static files with their .gz siblings, the access log; what nginx
cannot say is a `# not translated:` comment."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from commands import BASE_ENV
from export_stacks import check_command, example, free_port
from polling import wait_for

from wsgistack.export import nginx as nginx_export
from wsgistack.process import die_with_parent
from wsgistack.stack.compose import load_stack

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
pytestmark = pytest.mark.skipif(NGINX is None and not os.environ.get("CI"), reason="nginx is not installed")

ECHO_APP = '''import json


def _echo(name):
    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        seen = {key: environ.get(key) for key in ("PATH_INFO", "SCRIPT_NAME", "HTTP_HOST", "HTTP_X_FORWARDED_FOR",
                "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT", "HTTP_X_REQUEST_ID",
                "HTTP_X_REAL_IP")}
        seen.update(app=name, body=len(body), padding="x" * 400)
        answer = json.dumps(seen).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
        return [answer]
    return app


web = _echo("web")
api = _echo("api")
cgi = _echo("cgi")
'''

RICH = '''[serve]
workers = 1

[serve.web]
app = "echo:web"

[serve.api]
app = "echo:api"
protocol = "uwsgi"

[serve.cgi]
app = "echo:cgi"
protocol = "fastcgi"

[proxy]
engine = "nginx"
listen = ["127.0.0.1:{port}"]
forwarded_allow_ips = ["10.0.0.0/8"]
access_log = "access.log"
access_log_format = "json"
access_log_rotate = {{ size = "10m", keep = 3 }}
client_max_body_size = "64k"
gzip = {{ min_length = "100", level = 5 }}
keepalive_timeout = "30s"

[proxy.upstreams.web]
balance = "least_conn"
keepalive = 8
read_timeout = "20s"
health_check = {{ path = "/_wsgistack/health", interval = "5s" }}

[proxy.upstreams.outside]
servers = ["127.0.0.1:{dead} weight=2 max_fails=2 fail_timeout=3s", "unix:/nonexistent/x.sock backup"]
balance = "hash:$http_x_user"
connect_retry_timeout = "0s"

[[proxy.routes]]
path = "/static/"
static = "static"
cache_control = "public, max-age=60"

[[proxy.routes]]
path = "/api"
upstream = "api"
client_max_body_size = "1m"

[[proxy.routes]]
path = "/fcgi/"
upstream = "cgi"

[[proxy.routes]]
path = "/limited/"
upstream = "web"
limit_req = {{ rate = "1r/m", burst = 0, nodelay = true, status = 429 }}

[[proxy.routes]]
host = "admin.example.com"
path = "/"
upstream = "api"
limit_conn = {{ max = 2 }}

[[proxy.routes]]
path = "/stream/"
upstream = "web"
buffering = false

[[proxy.routes]]
path = "/elsewhere/"
upstream = "outside"

[[proxy.routes]]
path = "/"
upstream = "web"
'''


def _kill_on_parent_death() -> None:
    die_with_parent(signal.SIGKILL)


class Running:
    """Processes a test started (app servers, nginx): each stopped with its signal, killed at the deadline."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.procs: list[tuple[subprocess.Popen, int]] = []

    def start(self, name: str, command: list[str], cwd: Path, stop: int = signal.SIGTERM) -> subprocess.Popen:
        with open(self.folder / f"{name}.out", "wb") as out:
            proc = subprocess.Popen(command, cwd=cwd, env=BASE_ENV, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_kill_on_parent_death)  # noqa: PLW1509 (one C call)
        self.procs.append((proc, stop))
        return proc

    def output(self, name: str) -> str:
        return (self.folder / f"{name}.out").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc, stop in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(stop)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _nginx_command(out: Path, *extra: str) -> list[str]:
    # as root the workers stay root: the app servers' sockets are in a 0700 folder (see the module's docstring)
    directives = "daemon off; master_process on;" + (" user root root;" if os.geteuid() == 0 else "")
    return [NGINX, "-p", f"{out}/", "-c", str(out / "nginx.conf"), "-g", directives, *extra]


def nginx_test(out: Path) -> str:
    """`nginx -t` on the written files: passes, without a warning; nginx's output."""
    result = subprocess.run(_nginx_command(out, "-t"), capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, f"{result.stderr}\n--- wsgistack.conf ---\n{(out / 'wsgistack.conf').read_text()}"
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr
    return result.stderr


def serve_stack(running: Running, config: Path) -> None:
    """Every app server of the file, as `wsgistack up` would run it, on the socket the nginx config names."""
    stack = load_stack(str(config))
    for server in stack.servers:
        command = [sys.executable, "-m", "wsgistack", "serve", "--config", str(config),
                   "--bind", f"unix:{stack.socket(server.name)}"]
        if server.table is not None:
            command += ["--serve-table", server.table]
        running.start(server.name, command, config.parent)
    for server in stack.servers:
        wait_for(lambda server=server: os.path.exists(stack.socket(server.name)), 20,
                 message=f"{server.name}'s socket")


def start_nginx(running: Running, out: Path, port: int) -> None:
    proc = running.start("nginx", _nginx_command(out), out, stop=signal.SIGQUIT)

    def accepts() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited with {proc.returncode}:\n{running.output('nginx')}")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
        except OSError:
            return False
        return True
    wait_for(accepts, 15, message="nginx accepting")


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture
def running(tmp_path):
    processes = Running(tmp_path)
    yield processes
    processes.stop_all()


def _forget_run_dir(config: Path) -> None:
    """load_stack made the stack's private run folder; the app servers removed their sockets on stop."""
    shutil.rmtree(load_stack(str(config)).run_dir, ignore_errors=True)


def test_the_bundled_example_runs_under_nginx(tmp_path, running):
    port = free_port()
    config = example(tmp_path / "example", port)
    out = tmp_path / "out"
    try:
        files = check_command("nginx", config, out)
        assert list(files) == ["nginx.conf", "wsgistack.conf"]
        assert "include wsgistack.conf;" in files["nginx.conf"]
        nginx_test(out)
        serve_stack(running, config)
        start_nginx(running, out, port)
        status, _, page = request(port, "GET", "/")
        assert status == 200 and b"<html" in page.lower()
        status, headers, css = request(port, "GET", "/static/style.css")
        assert status == 200 and css == (config.parent / "flask_app" / "static" / "style.css").read_bytes()
        assert len(headers["x-request-id"]) == 32
        status, _, _ = request(port, "GET", "/_wsgistack/health")  # answered by the app server, through nginx
        assert status == 200
        status, _, _ = request(port, "GET", "/static/nothing-here.css")  # never passed on to the app
        assert status == 404
    finally:
        running.stop_all()
        _forget_run_dir(config)


def _rich(folder: Path) -> tuple[Path, int]:
    port = free_port()
    folder.mkdir(parents=True)
    (folder / "echo.py").write_text(ECHO_APP)
    static = folder / "static"
    static.mkdir()
    script = b"function hello() { return 'hello'; }\n" * 20
    (static / "app.js").write_bytes(script)
    (static / "app.js.gz").write_bytes(gzip.compress(script))
    (static / ".env").write_text("SECRET=1\n")
    config = folder / "wsgistack.toml"
    config.write_text(RICH.format(port=port, dead=free_port()))
    return config, port


def test_a_rich_stack_is_translated_and_served_as_wsgistack_would(tmp_path, running):
    config, port = _rich(tmp_path / "rich")
    out = tmp_path / "out"
    files = check_command("nginx", config, out)
    site = files["wsgistack.conf"]
    try:
        nginx_test(out)
        # what nginx cannot say is said as such, where it would go
        untranslated = "\n".join(nginx_export.not_translated(files.values()))
        for what in ("access_log_rotate", "health_check (GET /_wsgistack/health every 5s",
                     "backup server unix:/nonexistent/x.sock", "a request without x-user", "Retry-After",
                     "symlinks"):
            assert what in untranslated, (what, untranslated)
        assert "connect_retry_timeout = 0s" not in untranslated  # 0 is nginx's own behaviour: nothing to say
        assert "fastcgi_pass cgi;" in site and "fastcgi_keep_conn on;" in site and "keepalive 32;" in site
        assert "uwsgi_pass api;" in site and "include /etc/nginx/uwsgi_params;" in site and "proxy_pass http://web;" in site
        assert "hash $http_x_user consistent;" in site and "least_conn;" in site
        assert "server 127.0.0.1:" in site and "weight=2 max_fails=2 fail_timeout=3s;" in site

        serve_stack(running, config)
        start_nginx(running, out, port)

        def get(path: str, **headers: str) -> dict:
            status, _, body = request(port, "GET", path, headers)
            assert status == 200, (path, status, body[:300])
            return json.loads(body)

        # routing: a prefix without its slash stops at a segment boundary; a host's routes come first
        assert get("/")["app"] == "web"
        assert get("/api")["app"] == "api" and get("/api")["PATH_INFO"] == "/api"
        assert get("/api/x")["PATH_INFO"] == "/api/x" and get("/api/x")["app"] == "api"
        assert get("/apix")["app"] == "web"
        assert get("/static/app.js", Host="admin.example.com")["app"] == "api"
        assert get("/stream/x")["app"] == "web"
        seen = get("/fcgi/a/b?q=1")
        assert (seen["app"], seen["PATH_INFO"], seen["SCRIPT_NAME"]) == ("cgi", "/fcgi/a/b", "")

        # X-Forwarded-* replaced for a client not in forwarded_allow_ips, over HTTP and over uwsgi alike
        for path in ("/", "/api", "/fcgi/"):
            seen = get(path, **{"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https", "X-Real-IP": "9.9.9.9",
                                "X-Request-ID": "abc-123", "Host": "site.example"})
            assert seen["HTTP_X_FORWARDED_FOR"] == "127.0.0.1", (path, seen)
            assert seen["HTTP_X_FORWARDED_PROTO"] == "http" and seen["HTTP_X_FORWARDED_HOST"] == "site.example"
            assert seen["HTTP_X_FORWARDED_PORT"] == str(port) and seen["HTTP_HOST"] == "site.example"
            assert seen["HTTP_X_REQUEST_ID"] == "abc-123" and seen["HTTP_X_REAL_IP"] is None
        status, headers, body = request(port, "GET", "/", {"X-Request-ID": "not a token!"})
        made = json.loads(body)["HTTP_X_REQUEST_ID"]
        assert len(made) == 32 and headers["x-request-id"] == made

        # limits: the route's body size over the proxy's, limit_req's status
        assert request(port, "POST", "/", body=b"x" * 100_000)[0] == 413
        status, _, body = request(port, "POST", "/api", body=b"x" * 100_000)
        assert status == 200 and json.loads(body)["body"] == 100_000
        assert request(port, "GET", "/limited/")[0] == 200
        assert request(port, "GET", "/limited/")[0] == 429

        # gzip of a proxied answer; a static file's .gz sibling, its Cache-Control; dotfiles refused
        status, headers, body = request(port, "GET", "/", {"Accept-Encoding": "gzip"})
        assert headers.get("content-encoding") == "gzip" and json.loads(gzip.decompress(body))["app"] == "web"
        status, headers, body = request(port, "GET", "/static/app.js", {"Accept-Encoding": "gzip"})
        assert status == 200 and headers.get("content-encoding") == "gzip"
        assert body == (config.parent / "static" / "app.js.gz").read_bytes()
        assert headers["cache-control"] == "public, max-age=60" and "x-request-id" in headers
        assert request(port, "GET", "/static/.env")[0] == 404

        # the access log in the config's folder, one JSON object a line, with the request id the app saw
        log = config.parent / "access.log"
        lines = wait_for(lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else [],
                         10, message="the access log")
        assert any(line["request_id"] == "abc-123" for line in lines)
    finally:
        running.stop_all()
        _forget_run_dir(config)


def test_hosts_and_prefixes_follow_wsgistack_routing():
    """The location blocks of one file, without running anything: the default server gets the routes without a
    host, a host's server its own first (shadowing the hostless ones under them), `/api` becomes `= /api` and
    `/api/`, and every server answers 404 where no route takes a path."""
    from wsgistack.proxy.settings import ProxySettings, RouteSettings, UpstreamSettings

    def route(index: int, path: str, hosts: tuple[str, ...] = ()) -> RouteSettings:
        return RouteSettings(path=path, hosts=hosts, upstream=f"u{index}", index=index)

    routes = (route(0, "/api"), route(1, "/static/"), route(2, "/", ("*.example.com",)),
              route(3, "/docs/", ("docs.example.com",)))
    upstreams = {f"u{n}": UpstreamSettings(name=f"u{n}", servers=()) for n in range(4)}
    text = nginx_export.http_conf(ProxySettings(routes=routes, upstreams=upstreams), {})
    servers = text.split("server {")[1:]
    default, wildcard, docs = servers
    assert "server_name _;" in default and "location = /api {" in default and "location /api/ {" in default
    assert "location = /static {" in default and "return 404;  # no route takes it" in default
    # *.example.com: its "/" shadows every hostless route
    assert "server_name *.example.com;" in wildcard and "/api" not in wildcard and "u2;" in wildcard
    # docs.example.com: its /docs/, then the wildcard's "/" for the rest
    assert "location /docs/ {" in docs and "proxy_pass http://u3;" in docs and "proxy_pass http://u2;" in docs
    assert "u0" not in docs and "u1" not in docs


def test_the_proxys_metrics_address_is_said_to_be_untranslated(tmp_path):
    """nginx has no Prometheus endpoint: a [proxy] metrics_bind is named in a comment, not dropped unseen."""
    config = tmp_path / "wsgistack.toml"
    config.write_text('[serve]\napp = "echo:app"\n\n[proxy]\nlisten = ["127.0.0.1:8000"]\n'
                      'metrics_bind = "127.0.0.1:9101"\n')
    files = check_command("nginx", config, tmp_path / "out")
    untranslated = "\n".join(nginx_export.not_translated(files.values()))
    assert "metrics_bind = 127.0.0.1:9101" in untranslated, untranslated


@pytest.mark.parametrize(("worker_class", "kept"), [("thread", True), ("sync", False)])
def test_fastcgi_connections_are_kept_only_with_workers_that_keep_them(tmp_path, worker_class, kept):
    """The sync worker closes a FastCGI connection after each request, and FastCGI cannot say so: nginx must
    neither pool its connections nor ask to keep them (it would send a POST on a closed one: a 502)."""
    config = tmp_path / "wsgistack.toml"
    config.write_text(f'[serve]\napp = "x:app"\nprotocol = "fastcgi"\nworker_class = "{worker_class}"\n\n'
                      f'[proxy]\nengine = "nginx"\nlisten = ["127.0.0.1:{free_port()}"]\n')
    stack = load_stack(str(config))
    try:
        site = nginx_export.render(stack)["wsgistack.conf"]
    finally:
        shutil.rmtree(stack.run_dir, ignore_errors=True)
    assert "fastcgi_pass app;" in site
    assert ("fastcgi_keep_conn on;" in site) is kept
    assert ("keepalive 32;" in site) is kept
