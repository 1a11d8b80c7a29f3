"""Restarts and deploys that no client notices: under a steady GET + POST load through the proxy of a real
`wsgistack up`, `ctl restart` of the app server, `kill -9` of its master, deploys (each changing the answer),
refused deploys and a rollback cost no failed request."""

from __future__ import annotations

import os
import signal

from polling import wait_for
from stacks import Load, Stack, free_port, get, write_release


def _stack(tmp_path, port: int) -> Stack:
    write_release(tmp_path / "r1", "release 1")
    return Stack(tmp_path, f'''
[serve]
app = "hello:app"
chdir = "r1"
workers = 2

[proxy]
listen = ["127.0.0.1:{port}"]
''')


def test_restarts_and_deploys_under_load_fail_no_request(tmp_path):
    port = free_port()
    stack = _stack(tmp_path, port)
    try:
        stack.wait_running("app", "proxy")
        assert get(port)[1] == "release 1 0"
        load = Load(port, clients=4, seconds=100)
        wait_for(lambda: load.done > 50, 20, message="the load under way")

        restarted = stack.wsgistack("ctl", "restart", "app")
        assert restarted.returncode == 0, restarted.stderr
        stack.wait_running("app")

        master = stack.status()["app"]["pid"]
        os.kill(master, signal.SIGKILL)
        def back() -> bool:
            app = stack.status()["app"]
            return app["pid"] not in (master, 0) and app["statename"] == "RUNNING"
        wait_for(back, 30, interval=0.1, message="the app server back after kill -9 of its master")

        for number in (2, 3, 4):
            write_release(tmp_path / f"r{number}", f"release {number}")
            deployed = stack.wsgistack("deploy", "--chdir", f"r{number}", "--watch", "0.3")
            assert deployed.returncode == 0, deployed.stderr
            assert f"generation {number} serving" in deployed.stdout
            assert get(port)[1] == f"release {number} 0"

        # broken code: an import error, then an app whose smoke request fails; the old answer stays
        write_release(tmp_path / "broken", "x", source="import no_such_module_here\n")
        refused = stack.wsgistack("deploy", "--chdir", "broken")
        assert refused.returncode == 1
        assert "No module named 'no_such_module_here'" in refused.stderr
        assert "keeps serving" in refused.stderr and "Traceback" not in refused.stderr
        write_release(tmp_path / "failing", "x", source=FAILING_APP)
        refused = stack.wsgistack("deploy", "--chdir", "failing")
        assert refused.returncode == 1
        assert "smoke request GET / answered 500" in refused.stderr
        assert get(port)[1] == "release 4 0"

        rolled = stack.wsgistack("deploy", "--rollback", "--watch", "0.3")
        assert rolled.returncode == 0, rolled.stderr
        assert get(port)[1] == "release 3 0"

        done, failures = load.stop()
        assert failures == []
        assert done > 200
        assert set(stack.status()) == {"app", "proxy"}  # no generation left behind
        shown = stack.wsgistack("ctl", "status").stdout
        assert "generation 5" in next(line for line in shown.splitlines() if line.startswith("app "))
    finally:
        assert stack.stop() == 0


FAILING_APP = '''from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    raise RuntimeError("this release is broken")
'''
