"""`wsgistack up` with `[proxy] engine = "nginx"`: a real nginx in front of the app servers, on the config
`wsgistack export nginx` writes into the stack's run folder. The bundled example served through it; app servers
speaking uwsgi and FastCGI behind it, deployed with checks in their protocol; deploys under load that no client notices;
and the refusals, each one line before anything starts."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from commands import one_error_line, run
from polling import wait_for
from stacks import Load, Stack, free_port, get, write_release

from wsgistack.config.errors import ConfigError
from wsgistack.stack import compose
from wsgistack.stack.compose import load_stack
from wsgistack.supervisor.toml_config import stack_run_dir

EXAMPLE = Path(__file__).resolve().parents[2] / "examples"
HAVE_NGINX = bool(shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin"))
needs_nginx = pytest.mark.skipif(not HAVE_NGINX and not os.environ.get("CI"), reason="nginx is not installed")
FAILING_APP = '''from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    raise RuntimeError("this release is broken")
'''


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as file:
        return file.read().strip()


@needs_nginx
def test_the_bundled_example_runs_behind_nginx(tmp_path):
    port = free_port()
    toml = (EXAMPLE / "wsgistack.toml").read_text()
    toml = (toml.replace("[proxy]\n", '[proxy]\nengine = "nginx"\n')
            .replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            .replace('"flask_app/', f'"{EXAMPLE}/flask_app/')
            .replace('command = ["python3", ', f'command = ["{sys.executable}", ')
            .replace('"%(here)s"', f'"{EXAMPLE}"'))
    assert 'engine = "nginx"' in toml
    stack = Stack(tmp_path, toml)
    run_dir = Path(stack_run_dir(str(stack.config)))
    try:
        status = stack.wait_running("app", "proxy", "jobs")
        assert _comm(status["proxy"]["pid"]) == "nginx"  # the program is nginx itself (sh exec'd it)
        code, page = get(port)
        assert code == 200 and "<html" in page.lower()
        code, css = get(port, "/static/style.css")
        assert code == 200 and css == (EXAMPLE / "flask_app" / "static" / "style.css").read_text()
        assert get(port, "/_wsgistack/health")[0] == 200
        assert (run_dir / "nginx" / "nginx.conf").is_file() and (run_dir / "nginx" / "wsgistack.conf").is_file()
    finally:
        assert stack.stop(signal.SIGINT) == 0
    assert not run_dir.exists()  # nginx's folder goes with the stack, then the run folder
    log = stack.log()
    assert "proxy:proxy: RUNNING -> STOPPING (stop requested, sending SIGQUIT)" in log
    assert log.index("proxy:proxy: STOPPING -> STOPPED") < log.index("app:app: RUNNING -> STOPPING")
    assert '"GET /static/style.css HTTP/1.1" 200' in log  # nginx's access log: access_log = "-"


PROTOCOLS = ["uwsgi", "fastcgi"]  # http: the example and the deploy below


@needs_nginx
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_app_servers_in_each_protocol_behind_nginx(tmp_path, protocol):
    port = free_port()
    write_release(tmp_path / "r1", "one")
    stack = Stack(tmp_path, f'''
[serve]
app = "hello:app"
chdir = "r1"
workers = 2
worker_class = "thread"
protocol = "{protocol}"

[proxy]
engine = "nginx"
listen = ["127.0.0.1:{port}"]
''')
    try:
        stack.wait_running("app", "proxy")
        assert get(port, "/x") == (200, "one 0")
        load = Load(port, clients=2, limit=40, seconds=20)  # GET and POST on kept-alive client connections
        wait_for(lambda: load.done >= 40, 20, message="40 requests through nginx")
        # deploy asks the new generation in its own protocol: a release answering 500 is refused (an HTTP
        # probe of a uwsgi socket would read no status, or a 400, and let it through)
        write_release(tmp_path / "failing", "x", source=FAILING_APP)
        refused = stack.wsgistack("deploy", "--chdir", "failing", "--watch", "0.3")
        assert refused.returncode == 1 and "smoke request GET / answered 500" in refused.stderr, refused.stderr
        write_release(tmp_path / "r2", "two")
        deployed = stack.wsgistack("deploy", "--chdir", "r2", "--watch", "0.3")
        assert deployed.returncode == 0, deployed.stderr
        assert get(port, "/x") == (200, "two 0")
        done, failures = load.stop()
        assert failures == [] and done >= 40
    finally:
        assert stack.stop() == 0


@needs_nginx
def test_deploys_behind_nginx_under_load_fail_no_request(tmp_path):
    """Each generation binds its own socket and the link turns: nginx's next connect reaches the new one, its
    kept-alive connections to the old one end as the old one drains."""
    port = free_port()
    write_release(tmp_path / "r1", "release 1")
    stack = Stack(tmp_path, f'''
[serve]
app = "hello:app"
chdir = "r1"
workers = 2

[proxy]
engine = "nginx"
listen = ["127.0.0.1:{port}"]
''')
    try:
        stack.wait_running("app", "proxy")
        nginx = stack.status()["proxy"]["pid"]
        load = Load(port, clients=4, seconds=60)
        wait_for(lambda: load.done > 50, 20, message="the load under way")
        write_release(tmp_path / "r2", "release 2")
        deployed = stack.wsgistack("deploy", "--chdir", "r2", "--watch", "0.5")
        assert deployed.returncode == 0, deployed.stderr
        assert get(port)[1] == "release 2 0"
        wait_for(lambda: load.done > 200, 20, message="more load after the deploy")
        _, failures = load.stop()
        assert failures == [], failures[:5]
        assert stack.status()["proxy"]["pid"] == nginx  # nginx was never restarted nor told
    finally:
        assert stack.stop() == 0


@pytest.mark.parametrize(("proxy", "message"), [
    ('engine = "apache"', "wsgistack.toml:5: proxy.engine: 'apache' is not an engine"),
    ('engine = "nginx"\nwrong = 1', "proxy.wrong: unknown setting"),
    # nginx has no Prometheus endpoint: the metrics asked for would be missing, unseen
    ('engine = "nginx"\nmetrics_bind = "127.0.0.1:9101"', ('wsgistack.toml:6: proxy.metrics_bind: nginx (engine = '
                                                           '"nginx") serves no Prometheus metrics; remove it, or '
                                                           'set engine = "wsgistack"')),
])
def test_a_bad_engine_is_one_line(tmp_path, proxy, message):
    (tmp_path / "wsgistack.toml").write_text(f'[serve]\napp = "x:app"\n\n[proxy]\n{proxy}\n')
    line = one_error_line(run(tmp_path, "up"))
    assert line.startswith("wsgistack up: error: ") and message in line, line


@pytest.mark.parametrize("protocol", ["uwsgi", "fastcgi"])
def test_uwsgi_or_fastcgi_behind_the_wsgistack_proxy_is_refused(tmp_path, protocol):
    (tmp_path / "wsgistack.toml").write_text(
        f'[serve]\napp = "x:app"\n\n[serve.api]\nprotocol = "{protocol}"\n\n[proxy]\nlisten = ["127.0.0.1:1"]\n')
    line = one_error_line(run(tmp_path, "up"))
    assert line == (f"wsgistack up: error: {tmp_path / 'wsgistack.toml'}:5: serve.api.protocol = '{protocol}': the "
                    f"wsgistack proxy speaks HTTP to app servers; set [proxy] engine = \"nginx\" for {protocol} (or "
                    f"protocol = \"http\")")


def test_without_nginx_the_engine_is_one_line(tmp_path, monkeypatch):
    config = tmp_path / "wsgistack.toml"
    config.write_text('[serve]\napp = "x:app"\n\n[proxy]\nengine = "nginx"\nlisten = ["127.0.0.1:1"]\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(compose, "_NGINX_SEARCH", str(tmp_path))
    stack = load_stack(str(config))  # exporting needs no nginx: only running one does
    try:
        with pytest.raises(ConfigError, match=r'engine = "nginx": no nginx on PATH nor in '):
            stack.supervisor_config()
    finally:
        shutil.rmtree(stack.run_dir, ignore_errors=True)


def test_an_app_server_speaking_uwsgi_alone_is_ready_when_its_health_endpoint_says_so(tmp_path):
    """Without a [proxy] the app server listens itself; its readiness asks the health endpoint in uwsgi."""
    socket = tmp_path / "app.sock"
    config = tmp_path / "wsgistack.toml"
    config.write_text(f'[serve]\napp = "x:app"\nprotocol = "uwsgi"\nbind = ["unix:{socket}"]\n')
    stack = load_stack(str(config))
    try:
        program = stack.supervisor_config().programs[0]
        assert program.ready is not None
        assert (program.ready.kind, program.ready.target) == ("uwsgi", f"http://unix:{socket}:/_wsgistack/health")
    finally:
        shutil.rmtree(stack.run_dir, ignore_errors=True)
