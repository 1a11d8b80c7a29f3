"""The proxy benchmark's contenders and cases: nginx or `wsgistack proxy` in front of an app server on a unix
socket, or `wsgistack up` running both from one wsgistack.toml; the config each is given, and the loads run
through them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from apps import BIG_BODY, HELLO
from cases import SLOWLORIS_CONNECTIONS
from servers import BIN_DIR, WORKERS

UPSTREAM_KEEPALIVE = 64
# each front as it ships: nginx's `worker_processes auto` is 2 here; wsgistack proxy's default is 1, and on 2
# cores shared with the app servers and wrk a second process measured slower, not faster
PROXY_WORKERS = 1
# `wsgistack up`'s proxy is given what the nginx front has (worker_processes 2), as its contender
UP_PROXY_WORKERS = WORKERS
BODY_LIMIT = "2m"
UPLOAD_BYTES = 1 << 20
STATIC_FILES = {"f10k.bin": 10 * 1024, "f1m.bin": 1024 * 1024, "f10m.bin": 10 * 1024 * 1024}
# nginx's default of 512 per worker is near what the slowloris case needs (200 slow + 64 wrk clients, and an
# upstream connection for each request in flight) if one worker accepts them all.
NGINX_WORKER_CONNECTIONS = 1024
NGINX_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str:
    """nginx's path; /usr/sbin is not on every user's PATH."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin") or "nginx"


@dataclass(frozen=True)
class Places:
    """Where one start of a stack keeps its files: config, the upstream's socket, the access log, temp files."""

    workdir: Path
    static_dir: Path

    @property
    def socket(self) -> Path:
        """The unix socket the app server listens on and the front connects to."""
        return self.workdir / "app.sock"

    @property
    def access_log(self) -> Path:
        """The front's access log, combined format."""
        return self.workdir / "access.log"


FrontBuilder = Callable[[Places, int], list[str]]
UpstreamBuilder = Callable[[str, Path], list[str]]
# app, places, port: the command of a contender that is one process tree, front and app server at once
WholeBuilder = Callable[[str, Places, int], list[str]]


def nginx_config(places: Places, port: int) -> str:
    """nginx.conf: 2 workers, keep-alive to the upstream, static files with sendfile, a combined access log."""
    # As root the workers would drop to `nobody`, which may not connect to root's socket (a fast 502 for every
    # request); unprivileged, nginx ignores `user` with a warning, so it is left out.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp_paths = "".join(f"    {kind}_temp_path {places.workdir}/{kind}_temp;\n" for kind in NGINX_TEMP_PATHS)
    return f"""{user}worker_processes {WORKERS};
pid {places.workdir}/nginx.pid;
error_log stderr warn;
daemon off;
events {{ worker_connections {NGINX_WORKER_CONNECTIONS}; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {places.access_log} combined;
{temp_paths}    sendfile on;
    client_max_body_size {BODY_LIMIT};
    upstream app {{
        server unix:{places.socket};
        keepalive {UPSTREAM_KEEPALIVE};
    }}
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{
            alias {places.static_dir}/;
        }}
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # the headers wsgistack proxy sets by default, so both fronts do the same work per request
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Request-ID $request_id;
            add_header X-Request-ID $request_id;
        }}
    }}
}}
"""


def wsgistack_config(places: Places, port: int) -> str:
    """wsgistack.toml's [proxy]: the same shape as nginx.conf."""
    return f"""[proxy]
listen = ["127.0.0.1:{port}"]
workers = {PROXY_WORKERS}
access_log = "{places.access_log}"
access_log_format = "combined"
client_max_body_size = "{BODY_LIMIT}"
log_level = "warning"

[proxy.upstreams.app]
servers = ["unix:{places.socket}"]
keepalive = {UPSTREAM_KEEPALIVE}

[[proxy.routes]]
path = "/static/"
static = "{places.static_dir}"

[[proxy.routes]]
path = "/"
upstream = "app"
"""


def up_config(app: str, places: Places, port: int, worker_class: str = "sync", threads: int | None = None) -> str:
    """wsgistack.toml for `wsgistack up`: [serve] as `wsgistack serve -k CLASS -w 2`, and [proxy] set up as
    the other fronts are (nginx's worker count; keep-alive, access log, body limit and /static/ as both have).
    The app server's socket is up's own (in its private run folder), so the upstream gives no servers."""
    return f"""[serve]
app = "apps:{app}"
worker_class = "{worker_class}"
workers = {WORKERS}
{f"threads = {threads}" if threads is not None else ""}
log_level = "warning"

[proxy]
listen = ["127.0.0.1:{port}"]
workers = {UP_PROXY_WORKERS}
access_log = "{places.access_log}"
access_log_format = "combined"
client_max_body_size = "{BODY_LIMIT}"
log_level = "warning"

[proxy.upstreams.app]
keepalive = {UPSTREAM_KEEPALIVE}

[[proxy.routes]]
path = "/static/"
static = "{places.static_dir}"

[[proxy.routes]]
path = "/"
upstream = "app"
"""


def wsgistack_up(worker_class: str, threads: int | None = None) -> WholeBuilder:
    """Write wsgistack.toml for this start and return the `wsgistack up` command that runs all of it (the app
    server is found on PYTHONPATH, which names bench/, as for every other contender)."""

    def build(app: str, places: Places, port: int) -> list[str]:
        conf = places.workdir / "wsgistack.toml"
        conf.write_text(up_config(app, places, port, worker_class, threads))
        return [str(BIN_DIR / "wsgistack"), "up", "-c", str(conf)]

    return build


def nginx_front(places: Places, port: int) -> list[str]:
    """Write nginx.conf for this start and return the command that runs nginx in the foreground."""
    conf = places.workdir / "nginx.conf"
    conf.write_text(nginx_config(places, port))
    # -e: errors before the config's error_log is read go to the server's log, not /var/log/nginx
    return [nginx_binary(), "-p", f"{places.workdir}/", "-c", str(conf), "-e", "stderr"]


def wsgistack_front(places: Places, port: int) -> list[str]:
    """Write wsgistack.toml for this start and return the `wsgistack proxy` command that reads it."""
    conf = places.workdir / "wsgistack.toml"
    conf.write_text(wsgistack_config(places, port))
    return [str(BIN_DIR / "wsgistack"), "proxy", "-c", str(conf)]


def wsgistack_serve(worker_class: str, threads: int | None = None) -> UpstreamBuilder:
    """`wsgistack serve` on the unix socket; threads None keeps the class's default."""

    def build(app: str, socket: Path) -> list[str]:
        argv = [str(BIN_DIR / "wsgistack"), "serve", f"apps:{app}", "-k", worker_class, "-w", str(WORKERS),
                "-b", f"unix:{socket}", "--log-level", "warning"]
        return argv + (["--threads", str(threads)] if threads else [])

    return build


def gunicorn_sync(app: str, socket: Path) -> list[str]:
    """gunicorn's sync workers on the unix socket, the classic companion of nginx."""
    return [str(BIN_DIR / "gunicorn"), f"apps:{app}", "-k", "sync", "-w", str(WORKERS), "-b", f"unix:{socket}",
            "--log-level", "warning"]


@dataclass(frozen=True)
class Stack:
    """One contender: a front (nginx or `wsgistack proxy`) and the app server behind it, or (`whole`) one
    command that runs both, `wsgistack up`; front and upstream are then None."""

    name: str
    front: FrontBuilder | None
    upstream: UpstreamBuilder | None
    wsgistack: bool
    # Shown, never judged: an extra row for information.
    informative: bool = False
    whole: WholeBuilder | None = None
    whole_serve: str = ""  # with `whole`: the worker class its [serve] runs, for the report


@dataclass(frozen=True)
class ProxyLoad:
    """One measured wrk run through the front, and what a correct response to it is."""

    key: str
    title: str
    connections: int
    path: str = "/"
    upload: bool = False
    slowloris: bool = False
    expect_length: int | None = None
    expect_body: bytes | None = None


@dataclass(frozen=True)
class ProxySession:
    """One start of each stack on one app, then its loads in order; ratios divide by `reference`'s figures."""

    app: str
    stacks: tuple[Stack, ...]
    reference: str
    loads: tuple[ProxyLoad, ...]


HELLO_UPSTREAM = wsgistack_serve("event", threads=1)
WSGISTACK_PROXY = Stack("wsgistack proxy", wsgistack_front, HELLO_UPSTREAM, wsgistack=True)
NGINX = Stack("nginx", nginx_front, HELLO_UPSTREAM, wsgistack=False)
STACK_SYNC = Stack("wsgistack proxy + wsgistack sync", wsgistack_front, wsgistack_serve("sync"), wsgistack=True)
STACK_NGINX = Stack("nginx + gunicorn sync", nginx_front, gunicorn_sync, wsgistack=False)
# the app never waits, so the event worker runs it inline (--threads 1): what docs/workers.md advises for it
STACK_INLINE = Stack("wsgistack proxy + wsgistack event --threads 1", wsgistack_front,
                     wsgistack_serve("event", threads=1), wsgistack=True)
STACK_EVENT = Stack("wsgistack proxy + wsgistack event", wsgistack_front, wsgistack_serve("event"),
                    wsgistack=True, informative=True)
# the whole stack from one wsgistack.toml, with the worker class of STACK_SYNC
STACK_UP = Stack("wsgistack up (sync)", None, None, wsgistack=True, whole=wsgistack_up("sync"), whole_serve="sync")
# the app server as the stack that meets the 1.5x goal today (proxy + serve -k event --threads 1), under up
STACK_UP_INLINE = Stack("wsgistack up (event --threads 1)", None, None, wsgistack=True,
                        whole=wsgistack_up("event", threads=1), whole_serve="event --threads 1")
STACKS = (WSGISTACK_PROXY, NGINX, STACK_SYNC, STACK_NGINX, STACK_UP, STACK_UP_INLINE, STACK_INLINE, STACK_EVENT)

SESSIONS: tuple[ProxySession, ...] = (
    # The static files are the front's own work; the hello upstream only answers the readiness probe there.
    ProxySession("plain", (WSGISTACK_PROXY, NGINX), NGINX.name, (
        ProxyLoad("proxy_hello", "proxy_hello: plain WSGI hello through the proxy, c64", 64,
                  expect_body=HELLO),
        ProxyLoad("static_10k", "static_10k: a 10 KiB static file, c64", 64, path="/static/f10k.bin",
                  expect_length=STATIC_FILES["f10k.bin"]),
        ProxyLoad("static_1m", "static_1m: a 1 MiB static file, c16", 16, path="/static/f1m.bin",
                  expect_length=STATIC_FILES["f1m.bin"]),
        ProxyLoad("static_10m", "static_10m: a 10 MiB static file, c8", 8, path="/static/f10m.bin",
                  expect_length=STATIC_FILES["f10m.bin"]),
    )),
    ProxySession("flask_big", (WSGISTACK_PROXY, NGINX), NGINX.name, (
        ProxyLoad("proxy_big", "proxy_big: 1 MiB response from the upstream, c64", 64,
                  expect_length=len(BIG_BODY)),
    )),
    ProxySession("upload", (WSGISTACK_PROXY, NGINX), NGINX.name, (
        ProxyLoad("proxy_upload", "proxy_upload: 1 MiB POST to the upstream, c16", 16, upload=True,
                  expect_body=str(UPLOAD_BYTES).encode()),
    )),
    # The slowloris run follows the plain one on the same stack, which is its own baseline.
    ProxySession("flask_hello", (STACK_SYNC, STACK_NGINX, STACK_UP, STACK_UP_INLINE, STACK_INLINE, STACK_EVENT),
                 STACK_NGINX.name, (
        ProxyLoad("stack_flask", "stack_flask: Flask hello through proxy and app server, c64", 64,
                  expect_body=HELLO),
        ProxyLoad("stack_slowloris", f"stack_flask with {SLOWLORIS_CONNECTIONS} slowloris connections open "
                  "to the front, c64", 64, slowloris=True, expect_body=HELLO),
    )),
)

LOADS: tuple[ProxyLoad, ...] = tuple(load for session in SESSIONS for load in session.loads)


def write_static_files(folder: Path) -> None:
    """The static cases' files, of incompressible bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in STATIC_FILES.items():
        (folder / name).write_bytes(os.urandom(size))


def write_upload_script(path: Path) -> None:
    """wrk's script for the upload case, like bench/post.lua with a 1 MiB body."""
    path.write_text(f'wrk.method = "POST"\nwrk.body = string.rep("x", {UPLOAD_BYTES})\n'
                    'wrk.headers["Content-Type"] = "application/octet-stream"\n')
