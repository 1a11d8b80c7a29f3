"""A real Apache (Debian's apache2) for the tests of `wsgistack cgi` and `wsgistack export apache`.

Tests import it as `from apache import ...` (tests/server is on sys.path beside them; tests/export adds it).
The test writes only what goes inside the server config; the rest (ServerRoot, PidFile, ErrorLog, the
runtime folder, the modules) stays in the test's folder, and /etc/apache2 is never read.

Apache refuses `User root`, and mod_wsgi refuses daemons as root. As root, the test's Apache therefore runs
as www-data from its start (it never switches user) with CAP_DAC_OVERRIDE in its ambient set, passed to
every child it forks or runs (workers, cgid's scripts, mod_wsgi's daemons): they read pytest's 0700 folder
and this checkout's venv, whose interpreter may live under /root (pyenv). Unprivileged, it runs as us.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from polling import wait_for

from wsgistack.process import die_with_parent

APACHE = shutil.which("apache2") or shutil.which("apache2", path="/usr/sbin:/usr/local/sbin")
MODULES = Path("/usr/lib/apache2/modules")
MOD_WSGI = MODULES / "mod_wsgi.so"
PORT_TAKEN = "Address already in use"
RUN_AS = "www-data"
BASE_MODULES = ("mpm_event", "authz_core", "mime", "alias")


def require_apache(*modules: str) -> None:
    """Skip the test when apache2 (or one of `modules`) is missing; fail instead under CI, where the apt line
    of .ci/run installs them."""
    missing = [] if APACHE else ["apache2"]
    missing += [f"mod_{name}" for name in modules if not (MODULES / f"mod_{name}.so").is_file()]
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{', '.join(missing)} missing, and CI must run the Apache tests")
    pytest.skip(f"{', '.join(missing)} not installed (apt-get install apache2 libapache2-mod-wsgi-py3)")


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (Apache binds it itself, so this can race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _terminate_with_parent() -> None:
    """In Apache's parent before exec: SIGTERM (Apache stops its children) if pytest dies."""
    die_with_parent(signal.SIGTERM)


class Apache:
    """A real Apache in the foreground on 127.0.0.1 and a free port, with a config the test wrote."""

    def __init__(self, tmp: Path, body: str | Callable[[int], str], modules: tuple[str, ...] = ()):
        """`body` goes after the server's own lines (or body(port) gives it, made again for each port tried);
        `{port}` and `{tmp}` in it are replaced literally."""
        self.tmp = Path(tmp)
        self.body = body
        self.modules = BASE_MODULES + tuple(modules)
        self.conf = self.tmp / "apache.conf"
        self.pid_file = self.tmp / "apache.pid"
        self.error_log_path = self.tmp / "error.log"
        self.stderr_path = self.tmp / "apache.stderr"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def render(self) -> str:
        """The whole server config for the current port."""
        loads = "".join(f"LoadModule {name}_module {MODULES}/mod_{name}.so\n" for name in self.modules)
        body = self.body(self.port) if callable(self.body) else self.body
        body = body.replace("{port}", str(self.port)).replace("{tmp}", str(self.tmp))
        return (f"ServerRoot {self.tmp}\n"
                f"DefaultRuntimeDir {self.tmp}/run\n"
                f"PidFile {self.pid_file}\n"
                f"ErrorLog {self.error_log_path}\n"
                "LogLevel info\n"
                f"Listen 127.0.0.1:{self.port}\n"
                "ServerName 127.0.0.1\n"
                f"{loads}"
                "StartServers 1\nServerLimit 2\nThreadsPerChild 8\nMaxRequestWorkers 16\n"
                "MinSpareThreads 4\nMaxSpareThreads 16\n"
                "TypesConfig /etc/mime.types\n"
                # as Debian's apache2.conf: nothing is served unless the site's config grants it
                "<Directory />\n    AllowOverride None\n    Require all denied\n</Directory>\n"
                f"{body}\n")

    def configure(self, port: int) -> None:
        """Write the config for `port` (and the folders it names)."""
        (self.tmp / "run").mkdir(parents=True, exist_ok=True)
        self.port = port
        self.conf.write_text(self.render())

    def _command(self, *extra: str) -> list[str]:
        assert APACHE is not None, "apache2 is not installed (call require_apache() first)"
        command = [APACHE, "-f", str(self.conf), *extra]
        if os.geteuid() != 0:
            return command
        # --pdeathsig keep: the credentials change would otherwise clear what _terminate_with_parent set
        return ["setpriv", f"--reuid={RUN_AS}", f"--regid={RUN_AS}", "--clear-groups",
                "--inh-caps=+dac_override", "--ambient-caps=+dac_override", "--pdeathsig=keep", "--", *command]

    def check(self) -> None:
        """`apache2 -t` on the written config; a refusal fails with Apache's own message."""
        result = subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise AssertionError(f"apache2 -t refused {self.conf}:\n{result.stderr.strip()}\n"
                                 f"--- config ---\n{self.conf.read_text()}")

    def start(self, timeout: float = 15) -> Apache:
        """Write the config, check it, run Apache in the foreground and wait until it accepts connections.

        A port taken between free_port() and Apache's bind is tried again with another port (nginx.py does
        the same); any other failure fails at once."""
        for attempt in range(5):
            self.configure(free_port())
            self.check()
            if self._run(timeout):
                return self
            failure = self.error_log() + self._stderr()
            if PORT_TAKEN not in failure or attempt == 4:
                raise AssertionError(f"apache2 exited with {self.proc.returncode} on start:\n{failure}")
            self.error_log_path.unlink(missing_ok=True)
        raise AssertionError("unreachable")

    def _run(self, timeout: float) -> bool:
        """Start Apache; True once it serves, False if it exited (the caller reads why)."""
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(self._command("-DFOREGROUND"), stdin=subprocess.DEVNULL, stdout=stderr,
                                         stderr=stderr, start_new_session=True,
                                         # one C call resolved at import: safe even if pytest has threads
                                         preexec_fn=_terminate_with_parent)  # noqa: PLW1509

        def serving() -> bool:
            if self.proc.poll() is not None:
                return True
            # the pid file is written once the listeners are bound: a connection then reaches this Apache
            return self._pid_from_file() == self.proc.pid and self._accepts()
        try:
            wait_for(serving, timeout, message=f"apache2 to accept connections on port {self.port}")
        except AssertionError:
            self.stop()
            raise AssertionError(f"apache2 did not serve within {timeout}s:\n{self.error_log()}{self._stderr()}")
        return self.proc.poll() is None

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM (Apache stops its children and exits), SIGKILL to the whole group at the deadline and for
        anything left (cgid, mod_wsgi's daemons). Returns the parent's exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: nothing of it outlives the test
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        return self.proc.returncode

    def url(self, path: str = "/") -> str:
        """http://127.0.0.1:PORT/path"""
        return f"http://127.0.0.1:{self.port}{path}"

    def error_log(self) -> str:
        """The error log so far."""
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _pid_from_file(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True


@pytest.fixture(name="start_apache")
def apache_fixture(tmp_path: Path) -> Iterator[Callable[..., Apache]]:
    """The `start_apache` fixture: `start_apache(body, modules=(...))` starts one Apache (skipped without
    apache2 and those modules, outside CI); every one is stopped at the end, even on failure.

    A test module imports it (`from apache import apache_fixture  # noqa: F401`) and asks for `start_apache`."""
    started: list[Apache] = []

    def start(body: str | Callable[[int], str], modules: tuple[str, ...] = ()) -> Apache:
        require_apache(*modules)
        apache = Apache(tmp_path / f"apache{len(started)}", body, modules)
        started.append(apache)
        return apache.start()

    yield start
    for apache in started:
        apache.stop()


# --- the bundled example app, asked the same pages through any server -------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
_COMPARED = ("content-type", "location", "content-disposition")
_JSON = {"Content-Type": "application/json"}
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# (method, target, body, headers, the response headers compared): stateless ones first, then the two that add
# a note (with several processes, a note lives in one of them only)
EXAMPLE_REQUESTS: list[tuple[str, str, bytes, dict[str, str], tuple[str, ...]]] = [
    ("GET", "/", b"", {}, _COMPARED),
    ("GET", "/api/notes", b"", {}, _COMPARED),
    ("HEAD", "/api/notes", b"", {}, _COMPARED),
    ("GET", "/stream?n=3", b"", {}, _COMPARED),
    ("GET", "/slow?ms=1&unused=%C3%A9", b"", {}, _COMPARED),
    ("GET", "/no/such/page?q=1", b"", {}, _COMPARED),
    ("GET", "/download", b"", {}, _COMPARED),
    ("GET", "/static/style.css", b"", {}, ()),  # Flask's static route or the vhost's Alias: the same bytes
    ("POST", "/api/notes", b"{not json", _JSON, _COMPARED),
    ("POST", "/notes", b"text=++", _FORM, _COMPARED),
    ("POST", "/api/notes", b'{"text": "from a test"}', _JSON, _COMPARED),
    ("POST", "/notes", b"text=hello+there", _FORM, _COMPARED),
]


def example_answers(port: int) -> list[tuple[str, int, dict[str, str], bytes]]:
    """What the example app answers to EXAMPLE_REQUESTS on 127.0.0.1:port (no redirect followed): per request,
    its name, status, compared headers and body, with times masked and a new note's id left out."""
    answers = []
    for method, target, body, headers, compared in EXAMPLE_REQUESTS:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            connection.request(method, target, body=body or None, headers=headers)
            response = connection.getresponse()
            content = _TIME.sub(b"<time>", response.read())
        finally:
            connection.close()
        if response.status == 201:
            content = re.sub(rb'"id": ?\d+', b'"id": N', content)
        kept = {name: response.getheader(name) for name in compared if response.getheader(name) is not None}
        answers.append((f"{method} {target}", response.status, kept, content))
    return answers
