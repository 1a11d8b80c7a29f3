"""`wsgistack up` black-box: the bundled example as a new user runs it, several app servers, an app server
without a proxy, and bad files refused in one line before anything starts."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from commands import one_error_line, run
from scrape import Scrape
from stacks import Stack, free_port, get, write_release

from wsgistack.supervisor.toml_config import stack_run_dir

EXAMPLE = Path(__file__).resolve().parents[2] / "examples"


def test_the_bundled_example_runs_as_one_stack(tmp_path):
    """examples/wsgistack.toml as shipped, but on a free port and with this interpreter for its program."""
    port, metrics_port = free_port(), free_port()
    toml = (EXAMPLE / "wsgistack.toml").read_text()
    assert 'listen = ["127.0.0.1:8000"]' in toml and 'command = ["python3", ' in toml
    assert 'listen = "127.0.0.1:9100"' in toml
    toml = (toml.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("127.0.0.1:9100", f"127.0.0.1:{metrics_port}")
            .replace('"flask_app/', f'"{EXAMPLE}/flask_app/')
            .replace('command = ["python3", ', f'command = ["{sys.executable}", ')
            .replace('"%(here)s"', f'"{EXAMPLE}"'))
    stack = Stack(tmp_path, toml)
    try:
        status = stack.wait_running("app", "proxy", "jobs")
        assert set(status) == {"app", "proxy", "jobs"}
        code, page = get(port)
        assert code == 200 and "<html" in page.lower()
        code, css = get(port, "/static/style.css")
        assert code == 200 and css == (EXAMPLE / "flask_app" / "static" / "style.css").read_text()
        assert get(port, "/_wsgistack/health")[0] == 200  # answered by the app server, through the proxy
        workers = stack.descendants()
        assert len(workers) >= 5  # the app master and its 2 workers, the proxy, the program
        run_dir = Path(stack_run_dir(str(stack.config)))
        assert sorted(path.name for path in run_dir.iterdir()) == [
            "app.1.metrics.sock", "app.1.sock", "app.sock", "proxy.metrics.sock", "supervisor.sock"]
        assert Scrape(f"127.0.0.1:{metrics_port}").total("wsgistack_program_state", program="app", state="running") == 1
    finally:
        assert stack.stop(signal.SIGINT) == 0
    assert not run_dir.exists()  # the private run folder goes with the stack
    log = stack.log()
    # one line per state change, and the stop in reverse order: the proxy and the program before the app
    assert "app:app: STARTING -> RUNNING" in log
    assert log.index("proxy:proxy: STOPPING -> STOPPED") < log.index("app:app: RUNNING -> STOPPING")
    assert log.index("jobs:jobs: STOPPING -> STOPPED") < log.index("app:app: RUNNING -> STOPPING")


def test_several_app_servers_each_an_upstream(tmp_path):
    port = free_port()
    write_release(tmp_path / "web", "web")
    write_release(tmp_path / "api", "api")
    stack = Stack(tmp_path, f'''
[serve]
app = "hello:app"
workers = 1

[serve.web]
chdir = "web"

[serve.api]
chdir = "api"
worker_class = "thread"

[proxy]
listen = ["127.0.0.1:{port}"]

[[proxy.routes]]
path = "/api/"
upstream = "api"

[[proxy.routes]]
path = "/"
upstream = "web"

[programs.after]
command = ["{sys.executable}", "-c", "import time; time.sleep(300)"]
depends_on = ["api"]
''')
    try:
        stack.wait_running("web", "api", "proxy", "after")
        assert get(port, "/")[1] == "web 0"
        assert get(port, "/api/")[1] == "api 0"
        deployed = stack.wsgistack("deploy", "api", "--watch", "0", "--python", sys.executable)
        assert deployed.returncode == 0, deployed.stderr
        assert deployed.stdout.startswith("api: generation 2 serving")
        refused = stack.wsgistack("deploy", "web", "--python", "python-that-is-not-there")
        assert refused.returncode == 1 and "cannot run 'python-that-is-not-there'" in refused.stderr
        assert "generation 1 keeps serving" in refused.stderr
        assert get(port, "/")[1] == "web 0"
        missing = stack.wsgistack("deploy", "web", "--python", "/no/such/python")
        assert missing.returncode == 2 and missing.stderr.strip() == \
            "wsgistack deploy: error: --python /no/such/python: no such program"
    finally:
        assert stack.stop(signal.SIGTERM) == 0


def test_without_a_proxy_the_app_server_listens_itself(tmp_path):
    port = free_port()
    write_release(tmp_path, "alone")
    stack = Stack(tmp_path, f'[serve]\napp = "hello:app"\nbind = ["127.0.0.1:{port}"]\n')
    try:
        stack.wait_running("app")
        assert get(port) == (200, "alone 0")
        refused = stack.wsgistack("deploy")
        assert refused.returncode == 1 and "needs a [proxy]" in refused.stderr
    finally:
        assert stack.stop() == 0


@pytest.mark.parametrize(("toml", "message"), [
    ('[proxy]\nlisten = ["127.0.0.1:1"]\n', "no [serve] table"),
    ('[serve]\napp = "x:app"\nwrkers = 2\n', "wsgistack.toml:3: serve.wrkers: unknown setting; did you mean 'workers'?"),
    ('[serve]\napp = "x:app"\n[programs.app]\ncommand = "true"\n', "a program is named 'app'"),
    ('[serve]\napp = "x:app"\n[proxy]\nlisten = ["127.0.0.1:1"]\n[[proxy.routes]]\npath = "/"\nupstream = "nope"\n',
     "no upstream named 'nope'"),
])
def test_a_bad_file_is_one_line_and_nothing_starts(tmp_path, toml, message):
    (tmp_path / "wsgistack.toml").write_text(toml)
    line = one_error_line(run(tmp_path, "up"))
    assert line.startswith("wsgistack up: error: ") and message in line


def test_no_file_is_one_line(tmp_path):
    line = one_error_line(run(tmp_path, "up"))
    assert "no config" in line
