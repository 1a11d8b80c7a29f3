"""The contenders: how to start each server with 2 worker processes on 127.0.0.1, as argv and environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# The venv that runs the harness holds every server; not resolved, since its python is a symlink out of it.
BIN_DIR = Path(sys.executable).parent

WORKERS = 2
# The `wsgistack serve -k` classes to compare. A class that wsgistack does not have (yet) fails at start
# and is reported as n/a, so a new class is benchmarked by adding its name here.
WSGISTACK_CLASSES = ("sync", "thread", "event", "gevent", "tornado")

# Threads per worker process for every thread-pool server (wsgistack thread/event/tornado, gunicorn gthread,
# granian's blocking threads, uWSGI): 8 keeps a CPU-bound app busy on 2 cores without drowning it in GIL
# hand-offs. The 20 ms case gets 32, so that its 64 connections over 2 workers can all wait at once: 64
# requests every 20 ms is the 3,200 req/s ceiling the goals refer to. The c256 run of that case keeps 32, so
# it shows how each server copes with more connections than threads.
THREADS = 8
IO_THREADS = 32
# Most connections one coroutine worker (gunicorn gevent) or waitress holds; the same as wsgistack's default.
CONNECTIONS = 1000
# Pending-connection queue for servers whose default is small (uWSGI: 100), so 200 slowloris sockets plus
# wrk's 256 connections are not refused by the kernel before the server sees them.
BACKLOG = 1024

Builder = Callable[[str, int, int], list[str]]
FLOOR = "floor (timer only)"


@dataclass(frozen=True)
class Server:
    """One contender: a name for the tables, how to build its command line, and what to say about it."""

    name: str
    build: Builder
    wsgistack: bool = False
    caveat: str = ""
    # Runs one process whatever WORKERS says, so its memory is not comparable with a master and 2 workers.
    single_process: bool = False
    # The apps it serves (empty: every app); runs of other apps skip it.
    apps: tuple[str, ...] = ()
    # Not a peer: a yardstick shown in its cases' tables, never a ratio's reference or a goal's.
    reference: bool = False

    def serves(self, app: str) -> bool:
        """Whether this contender runs the sessions of `app`."""
        return not self.apps or app in self.apps

    def argv(self, app: str, port: int, threads: int) -> list[str]:
        """The command that serves `apps:<app>` on 127.0.0.1:<port> with <threads> threads per worker."""
        return self.build(app, port, threads)

    def env(self) -> dict[str, str]:
        """The environment: the harness's own, with bench/ importable so `apps:NAME` resolves everywhere."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH", "")]))
        # A server must not answer from another checkout's wsgistack.toml or WSGISTACK_* settings.
        for key in [k for k in env if k.startswith("WSGISTACK_")]:
            del env[key]
        return env


def wsgistack(worker_class: str, fixed_threads: int | None = None) -> Builder:
    """`wsgistack serve` with one worker class; --threads is passed to every class that may run a pool."""

    def build(app: str, port: int, threads: int) -> list[str]:
        threads = fixed_threads or threads
        argv = [str(BIN_DIR / "wsgistack"), "serve", f"apps:{app}", "-w", str(WORKERS), "-k", worker_class,
                "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
        if worker_class != "sync":
            argv += ["--threads", str(threads)]
        return argv

    return build


def gunicorn(worker_class: str) -> Builder:
    """gunicorn with sync, gthread (same thread count as wsgistack) or gevent workers."""

    def build(app: str, port: int, threads: int) -> list[str]:
        argv = [str(BIN_DIR / "gunicorn"), f"apps:{app}", "-w", str(WORKERS), "-k", worker_class,
                "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
        if worker_class == "gthread":
            argv += ["--threads", str(threads)]
        if worker_class == "gevent":
            argv += ["--worker-connections", str(CONNECTIONS)]
        return argv

    return build


def waitress(app: str, port: int, threads: int) -> list[str]:
    """waitress: one process, so it gets the threads of both workers."""
    return [str(BIN_DIR / "waitress-serve"), f"--listen=127.0.0.1:{port}", f"--threads={threads * WORKERS}",
            f"--connection-limit={CONNECTIONS}", f"apps:{app}"]


def granian(app: str, port: int, threads: int) -> list[str]:
    """granian's WSGI interface: the Rust runtime does the HTTP, a pool of blocking threads runs the app."""
    return [str(BIN_DIR / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(WORKERS), "--blocking-threads", str(threads), "--no-access-log",
            "--log-level", "warning", f"apps:{app}"]


def uwsgi(app: str, port: int, threads: int) -> list[str]:
    """uWSGI speaking HTTP itself (no router process), with keep-alive, so wrk reuses connections."""
    # --http11-socket is --http-socket with HTTP/1.1 keep-alive; --die-on-term because uWSGI 2.0 reloads on
    # SIGTERM; --need-app so a broken app is a failed start, not a server answering 500.
    return [str(BIN_DIR / "uwsgi"), "--http11-socket", f"127.0.0.1:{port}", "--processes", str(WORKERS),
            "--threads", str(threads), "--master", "--wsgi", f"apps:{app}", "--disable-logging",
            "--die-on-term", "--need-app", "--listen", str(BACKLOG), "--pythonpath", str(BENCH_DIR)]


def wsgistack_defaults(app: str, port: int, threads: int) -> list[str]:
    """`wsgistack serve` as a user first runs it: only the app, the address and 2 workers."""
    return [str(BIN_DIR / "wsgistack"), "serve", f"apps:{app}", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}",
            "--log-level", "warning"]


def granian_defaults(app: str, port: int, threads: int) -> list[str]:
    """granian as a user first runs it: its WSGI interface, 2 workers, its own thread defaults."""
    return [str(BIN_DIR / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(WORKERS), "--no-access-log", "--log-level", "warning", f"apps:{app}"]


def floor(app: str, port: int, threads: int) -> list[str]:
    """The 20 ms case without WSGI: a loop timer per request (floor.py), what the machine allows."""
    return [sys.executable, str(BENCH_DIR / "floor.py"), str(port), str(WORKERS)]


SERVERS: tuple[Server, ...] = (
    *(Server(f"wsgistack {cls}", wsgistack(cls), wsgistack=True) for cls in WSGISTACK_CLASSES),
    # the event class with --threads 1 runs the app inline on its loop: fastest for apps that never wait,
    # one request at a time per worker for apps that do (the 20 ms case shows the price)
    Server("wsgistack event-inline", wsgistack("event", fixed_threads=1), wsgistack=True,
           caveat="event with --threads 1: the app runs on the loop, no thread pool"),
    Server("gunicorn sync", gunicorn("sync")),
    Server("gunicorn gthread", gunicorn("gthread")),
    Server("gunicorn gevent", gunicorn("gevent")),
    Server("waitress", waitress, caveat="single process (threads of both workers in one process)",
           single_process=True),
    Server("granian", granian),
    # what a user gets without tuning: no worker class, no thread count (issue 15 compares these two)
    Server("wsgistack defaults", wsgistack_defaults, wsgistack=True, caveat="only -w 2: the defaults"),
    Server("granian defaults", granian_defaults, caveat="only --workers 2: the defaults"),
    Server("uwsgi", uwsgi),
    Server(FLOOR, floor, apps=("flask_io",), reference=True,
           caveat="no WSGI, no app: a uvloop timer of 20 ms per request, 2 processes (bench/floor.py)"),
)


def threads_for(app: str) -> int:
    """Threads per worker for an app: more for the one that waits on I/O."""
    return IO_THREADS if app == "flask_io" else THREADS
