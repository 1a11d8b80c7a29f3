"""The stacks the export tests render: a copy of the bundled example, and a file with two [serve.NAME] app servers,
a [proxy] routing to both and a [programs.NAME] that depends on one of them; each on a port of its own."""

from __future__ import annotations

import re
import shutil
import socket
import sys
from pathlib import Path

from commands import run

from wsgistack.export import render
from wsgistack.stack.compose import load_stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

HELLO = '''def _answer(text):
    def app(environ, start_response):
        body = (text + " " + environ["PATH_INFO"]).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    return app


web = _answer("web")
api = _answer("api")
'''

TWO_SERVERS = '''[serve]
workers = 1
graceful-timeout = 4

[serve.web]
app = "hello:web"
workers = 2

[serve.api]
app = "hello:api"

[proxy]
listen = ["127.0.0.1:{port}"]

[[proxy.routes]]
path = "/api/"
upstream = "api"

[[proxy.routes]]
path = "/"
upstream = "web"

[programs.ticker]
command = [{python}, "-c", "import signal; signal.pause()"]
depends_on = ["api"]
stopwaitsecs = 3
'''


def free_port() -> int:
    """A port nothing listens on now, for a proxy whose address must be in its file."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_servers(folder: Path, port: int = 8000) -> Path:
    """The fixture stack in `folder` (hello.py beside it); its wsgistack.toml."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hello.py").write_text(HELLO)
    config = folder / "wsgistack.toml"
    config.write_text(TWO_SERVERS.format(port=port, python=f'"{sys.executable}"'))
    return config


def example(folder: Path, port: int = 8000) -> Path:
    """A copy of examples/ in `folder`, its proxy on `port`; the copy's wsgistack.toml."""
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    config = folder / "wsgistack.toml"
    text = config.read_text()
    config.write_text(re.sub(r'listen = \["127\.0\.0\.1:\d+"\]', f'listen = ["127.0.0.1:{port}"]', text))
    return config


STACKS = {"example": example, "two_servers": two_servers}


def rendered(kind: str, config: Path) -> dict[str, str]:
    """The files `wsgistack export KIND` writes for `config`, by name."""
    return render(kind, load_stack(str(config)))


def check_command(kind: str, config: Path, out: Path) -> dict[str, str]:
    """`wsgistack export KIND -c FILE -o DIR` writes the files and prints their paths; without -o it prints them
    (each under a comment naming it when there are several). The files written, by name."""
    written = run(config.parent, "export", kind, "-c", str(config), "-o", str(out))
    assert written.returncode == 0, written.stderr
    files = rendered(kind, config)
    assert written.stdout.splitlines() == [str(out / name) for name in files]
    for name, text in files.items():
        assert (out / name).read_text() == text
    printed = run(config.parent, "export", kind, "-c", str(config))
    assert printed.returncode == 0, printed.stderr
    if len(files) == 1:
        assert printed.stdout == next(iter(files.values()))
    else:
        for name, text in files.items():
            assert f"# ---- {name}\n{text}" in printed.stdout
    return files
