"""The gateway benchmark's contenders: nginx in front, speaking uwsgi or FastCGI over a unix socket to
`wsgistack serve --protocol uwsgi|fastcgi` or to a peer (uWSGI, flup); the nginx.conf each is given."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from proxy_setups import NGINX_TEMP_PATHS, NGINX_WORKER_CONNECTIONS, nginx_binary
from servers import BENCH_DIR, BIN_DIR, WORKERS

APP = "flask_hello"  # the proxy bench's stack_flask app: Flask's hello, 13 bytes
CONNECTIONS = 64  # wrk's connections to nginx, as in stack_flask
# nginx's idle connections kept per worker to a FastCGI server that keeps them (fastcgi_keep_conn on)
UPSTREAM_KEEPALIVE = 64
# uWSGI's default listen queue is 100; every server here gets the same, well above the 64 requests in flight
BACKLOG = 1024

UpstreamBuilder = Callable[[Path], list[str]]


@dataclass(frozen=True)
class GatewayStack:
    """One contender: the app server nginx talks to over `protocol`, and how nginx keeps its connections."""

    name: str
    protocol: str  # "uwsgi" or "fastcgi": nginx's uwsgi_pass or fastcgi_pass
    upstream: UpstreamBuilder
    wsgistack: bool
    # fastcgi_keep_conn on and an upstream keepalive pool; uwsgi has no way to keep a connection (the
    # response ends when the server closes it), so it is always False there
    keep_conn: bool = False
    # Shown, never judged: an extra row for information.
    informative: bool = False
    note: str = ""


@dataclass(frozen=True)
class Session:
    """The stacks of one protocol, run interleaved; `reference` names the peers the goal divides by (the
    best of their medians, when there are several)."""

    protocol: str
    stacks: tuple[GatewayStack, ...]
    reference: tuple[str, ...]
    goal_stack: str
    goal_factor: float


def nginx_config(workdir: Path, socket: Path, port: int, stack: GatewayStack) -> str:
    """nginx.conf: 2 workers, no access log (the app servers are what is measured), the gateway protocol to
    the unix socket with nginx's own parameter file."""
    # As root the workers would drop to `nobody`, which may not connect to root's socket (a fast 502).
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp_paths = "".join(f"    {kind}_temp_path {workdir}/{kind}_temp;\n" for kind in NGINX_TEMP_PATHS)
    keepalive = f"        keepalive {UPSTREAM_KEEPALIVE};\n" if stack.keep_conn else ""
    if stack.protocol == "uwsgi":
        passing = "            include /etc/nginx/uwsgi_params;\n            uwsgi_pass app;\n"
    else:
        # fastcgi_params gives SCRIPT_NAME as the whole path and no PATH_INFO: a WSGI app wants the path in
        # PATH_INFO (Flask under flup answers / with a 308 to // otherwise), so the usual two lines follow.
        passing = ("            include /etc/nginx/fastcgi_params;\n"
                   "            fastcgi_param SCRIPT_NAME \"\";\n"
                   "            fastcgi_param PATH_INFO $fastcgi_script_name;\n"
                   "            fastcgi_pass app;\n")
        if stack.keep_conn:
            passing += "            fastcgi_keep_conn on;\n"
    return f"""{user}worker_processes {WORKERS};
pid {workdir}/nginx.pid;
error_log stderr warn;
daemon off;
events {{ worker_connections {NGINX_WORKER_CONNECTIONS}; }}
http {{
    access_log off;
{temp_paths}    upstream app {{
        server unix:{socket};
{keepalive}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
{passing}        }}
    }}
}}
"""


def nginx_front(workdir: Path, socket: Path, port: int, stack: GatewayStack) -> list[str]:
    """Write nginx.conf for this start and return the command that runs nginx in the foreground."""
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(workdir, socket, port, stack))
    return [nginx_binary(), "-p", f"{workdir}/", "-c", str(conf), "-e", "stderr"]


def wsgistack_serve(protocol: str, worker_class: str, threads: int | None = None) -> UpstreamBuilder:
    """`wsgistack serve --protocol PROTOCOL -k CLASS -w 2` on the unix socket."""

    def build(socket: Path) -> list[str]:
        argv = [str(BIN_DIR / "wsgistack"), "serve", f"apps:{APP}", "--protocol", protocol, "-k", worker_class,
                "-w", str(WORKERS), "-b", f"unix:{socket}", "--backlog", str(BACKLOG), "--log-level", "warning"]
        return argv + (["--threads", str(threads)] if threads else [])

    return build


def uwsgi(socket: Path) -> list[str]:
    """uWSGI as it is run behind nginx: its own protocol on the socket, a master and 2 processes without
    threads (its default: one request at a time per process)."""
    # --die-on-term: uWSGI 2.0 reloads on SIGTERM; --need-app: a broken app is a failed start, not a 500.
    return [str(BIN_DIR / "uwsgi"), "--socket", str(socket), "--master", "--processes", str(WORKERS),
            "--module", f"apps:{APP}", "--pythonpath", str(BENCH_DIR), "--disable-logging", "--die-on-term",
            "--need-app", "--listen", str(BACKLOG)]


# flup has no command line: the server is built in a few lines run by the bench venv's Python. Its
# servers listen with a backlog of socket.SOMAXCONN and cannot be told otherwise.
_FLUP_THREADED = "from flup.server.fcgi import WSGIServer; import apps; WSGIServer(apps.{app}, bindAddress={path!r}).run()"
# minSpare 1, maxSpare and maxChildren 2: exactly 2 children, each taking one connection at a time.
_FLUP_FORK = ("from flup.server.fcgi_fork import WSGIServer; import apps; "
              "WSGIServer(apps.{app}, bindAddress={path!r}, minSpare=1, maxSpare={n}, maxChildren={n}).run()")


def flup_threaded(socket: Path) -> list[str]:
    """flup.server.fcgi: one process, a thread per connection (its thread pool)."""
    return [str(BIN_DIR / "python"), "-c", _FLUP_THREADED.format(app=APP, path=str(socket))]


def flup_fork(socket: Path) -> list[str]:
    """flup.server.fcgi_fork: a parent and 2 pre-forked children, one connection at a time each."""
    return [str(BIN_DIR / "python"), "-c", _FLUP_FORK.format(app=APP, path=str(socket), n=WORKERS)]


WSGISTACK_UWSGI = GatewayStack("wsgistack uwsgi (sync)", "uwsgi", wsgistack_serve("uwsgi", "sync"), wsgistack=True)
WSGISTACK_UWSGI_EVENT = GatewayStack("wsgistack uwsgi (event --threads 1)", "uwsgi",
                                     wsgistack_serve("uwsgi", "event", threads=1), wsgistack=True,
                                     informative=True)
UWSGI = GatewayStack("uWSGI", "uwsgi", uwsgi, wsgistack=False)

WSGISTACK_FASTCGI = GatewayStack("wsgistack fastcgi (event --threads 1)", "fastcgi",
                                 wsgistack_serve("fastcgi", "event", threads=1), wsgistack=True, keep_conn=True)
WSGISTACK_FASTCGI_SYNC = GatewayStack("wsgistack fastcgi (sync)", "fastcgi", wsgistack_serve("fastcgi", "sync"),
                                      wsgistack=True, informative=True,
                                      note="no fastcgi_keep_conn: a sync worker holds a kept connection")
# Informative: one process whatever WORKERS says, its threads behind one GIL.
FLUP_THREADED = GatewayStack("flup fcgi (threaded, 1 process)", "fastcgi", flup_threaded, wsgistack=False,
                             keep_conn=True, informative=True, note="one process; a thread per connection")
# No fastcgi_keep_conn: each child serves one connection at a time until nginx closes it, so kept connections
# hold both children and the other requests wait in the listen queue (measured: 0 requests answered in 3 s).
FLUP_FORK = GatewayStack("flup fcgi_fork (2 children)", "fastcgi", flup_fork, wsgistack=False,
                         note="no fastcgi_keep_conn: a child holds a kept connection")

SESSIONS: tuple[Session, ...] = (
    Session("uwsgi", (WSGISTACK_UWSGI, UWSGI, WSGISTACK_UWSGI_EVENT), (UWSGI.name,), WSGISTACK_UWSGI.name, 1.0),
    Session("fastcgi", (WSGISTACK_FASTCGI, FLUP_FORK, FLUP_THREADED, WSGISTACK_FASTCGI_SYNC),
            (FLUP_FORK.name,), WSGISTACK_FASTCGI.name, 2.0),
)
STACKS: tuple[GatewayStack, ...] = tuple(stack for session in SESSIONS for stack in session.stacks)
