"""Typed settings, one frozen dataclass per section; each field carries its default, its flags and its help.

The command line, the environment (`WSGISTACK_<NAME>`) and the TOML file are all read from these
declarations by `config.loader`, so an option is described exactly once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wsgistack.config import values

WORKER_CLASSES = ("sync", "thread", "event", "gevent", "tornado")
WORKER_EXTRAS = {"gevent": "gevent", "tornado": "tornado"}  # worker class -> the optional package it needs
# gunicorn's names for the same models, so a command line or config brought over keeps working
WORKER_ALIASES = {"gthread": "thread", "gunicorn.workers.gthread.threadworker": "thread",
                  "gunicorn.workers.sync.syncworker": "sync", "gunicorn.workers.ggevent.geventworker": "gevent",
                  "gunicorn.workers.gtornado.tornadoworker": "tornado"}


def option(
    default: Any,
    parse: Callable[[Any], Any],
    help: str,
    flags: tuple[str, ...] = (),
    metavar: str | None = None,
    repeatable: bool = False,
    switch: bool = False,
    formerly: str | None = None,
) -> Any:
    """Declare one setting: its default, the parser of its text, its help and its command-line flags.

    `formerly` is an old name still read (as a key, a flag and a variable) with a deprecation line naming this one.
    """
    meta = {
        "parse": parse,
        "help": help,
        "flags": flags,
        "metavar": metavar,
        "repeatable": repeatable,
        "switch": switch,
        "formerly": formerly,
    }
    if isinstance(default, (list, dict)):
        raise TypeError("settings are frozen: use a tuple for list defaults")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ServeSettings:
    """Everything `wsgistack serve` can be told, with gunicorn's option names where gunicorn has one."""

    app: str | None = option(
        None, values.text, "The WSGI app: module:name, module:factory(), a bare module, or path/to/file.py[:name]."
    )
    apps: tuple[str, ...] | None = option(
        None, values.mounts,
        "Several apps in one server, by path prefix or host: a table like { \"/\" = \"site:app\", \"/admin\" = "
        "\"admin_site:app\", \"api.example.com/\" = \"api:app\" } in wsgistack.toml, or --mount PREFIX=APP "
        "repeated. The longest prefix wins (at a '/' boundary), a host's mounts before host-less ones; each app "
        "sees its prefix in SCRIPT_NAME and the rest in PATH_INFO; other paths get 404. Not with 'app'.",
        flags=("--mount",), metavar="PREFIX=APP", repeatable=True,
    )
    bind: tuple[str, ...] = option(
        ("127.0.0.1:8000",), values.text_list,
        "Address to listen on: HOST:PORT, [::1]:PORT, unix:PATH or fd://N. Repeat to listen on several.",
        flags=("-b", "--bind"), metavar="ADDRESS", repeatable=True,
    )
    workers: int = option(
        1, values.whole(1), "Number of worker processes (default: $WEB_CONCURRENCY or 1).",
        flags=("-w", "--workers"), metavar="N",
    )
    worker_class: str = option(
        # event by default: as fast as the thread pool in docs/benchmarks.md, and slow clients cost it no thread
        "event", values.worker_class(WORKER_CLASSES, WORKER_ALIASES),
        "Worker model: thread (a thread pool per process), event (an asyncio/uvloop loop in front of a "
        "thread pool; immune to slow clients), gevent (greenlets, monkey patching), tornado (Tornado's "
        "HTTP server) or sync (one request at a time, no keep-alive; meant to sit behind a proxy).",
        flags=("-k", "--worker-class"), metavar="CLASS",
    )
    threads: int | None = option(
        None, values.threads,
        "App threads per worker for the thread, event and tornado workers. 'auto' (the default): the event and "
        "tornado workers start with 2 and, when every thread is in a call and those calls spend most of their "
        "time waiting (on a database, an API), add threads for the calls waiting, up to --max-threads; idle "
        "threads leave. The thread worker keeps 4. A number pins it; with event, 1 runs the app inline on the "
        "loop. sync and gevent do not use it.", flags=("--threads",), metavar="N|auto")
    max_threads: int | None = option(
        None, values.threads,
        "With --threads auto: the most app threads a worker grows to (default: --worker-connections, one per "
        "connection it may hold).", flags=("--max-threads",), metavar="N")
    inline_below: float = option(
        # about the CPU a hand-off to a thread and back costs here (docs/workers.md: where calls run)
        20e-6, values.duration,
        "With the event worker and --threads auto: a route whose calls take less than this in the threads "
        "(method and path, learned under load) runs on the loop instead, where it costs less than the "
        "hand-off; a call there that takes 1 ms or more sends its route back to the threads. At most 500us "
        "(larger values count as 500us); 0: every call runs in a thread.", flags=("--inline-below",), metavar="TIME")
    worker_connections: int = option(
        1000, values.whole(1),
        "Most connections one worker holds open (thread, event, gevent, tornado); at the cap a new client "
        "closes the oldest idle one.",
        flags=("--worker-connections",), metavar="N",
    )
    backlog: int = option(2048, values.whole(1), "Length of the kernel's queue of pending connections.",
                          flags=("--backlog",), metavar="N")
    timeout: float = option(
        30.0, values.seconds,
        "A worker silent for this long (an app stuck in a call) is killed, its stack logged, and replaced. "
        "0 disables.",
        flags=("-t", "--timeout"), metavar="SECONDS",
    )
    graceful_timeout: float = option(
        30.0, values.seconds, "On a graceful stop or reload, how long in-flight requests get to finish.",
        flags=("--graceful-timeout",), metavar="SECONDS",
    )
    keep_alive: float = option(
        5.0, values.seconds, "How long an idle keep-alive connection is kept open; 0 turns keep-alive off.",
        flags=("--keep-alive",), metavar="SECONDS",
    )
    client_timeout: float = option(
        30.0, values.seconds,
        "How long a client may take to send a request's head, and the longest pause while sending its body.",
        flags=("--client-timeout",), metavar="SECONDS",
    )
    max_requests: int = option(
        0, values.whole(0), "Recycle a worker after this many requests (0: never); guards against leaks.",
        flags=("--max-requests",), metavar="N",
    )
    max_requests_jitter: int = option(
        0, values.whole(0), "Add a random 0..N to --max-requests per worker so they do not all restart at once.",
        flags=("--max-requests-jitter",), metavar="N",
    )
    limit_request_line: int = option(
        8190, values.whole(0), "Longest request target in bytes (longer: 414). 0: no limit.",
        flags=("--limit-request-line",), metavar="BYTES",
    )
    limit_request_fields: int = option(
        100, values.whole(0), "Most header fields in a request (more: 431). 0: no limit.",
        flags=("--limit-request-fields",), metavar="N",
    )
    limit_request_field_size: int = option(
        8190, values.whole(0), "Longest header field, name and value, in bytes (longer: 431). 0: no limit.",
        flags=("--limit-request-field-size",), metavar="BYTES",
    )
    max_body_size: int = option(
        0, values.size, "Largest request body, e.g. 10m (larger: 413). 0: no limit.",
        flags=("--max-body-size",), metavar="SIZE",
    )
    access_log: str | None = option(
        None, values.optional_text, "Write one line per request to this file, or '-' for standard output.",
        flags=("--access-log", "--access-logfile"), metavar="PATH",
    )
    access_log_format: str = option(
        "combined", values.text,
        "Access-log format: 'combined' (nginx's), 'common', 'json', a template of nginx variables "
        "such as '$remote_addr \"$request\" $status $request_time', or gunicorn's atoms such as "
        "'%%(h)s %%(r)s %%(s)s'.",  # %% is argparse's escape: the help shows %(h)s
        flags=("--access-log-format", "--access-logformat"), metavar="FORMAT",
    )
    error_log: str = option("-", values.text, "Where the server's own log goes: a file, or '-' for stderr.",
                            flags=("--error-log", "--error-logfile", "--log-file"), metavar="PATH")
    log_level: str = option(
        "info", values.choice("debug", "info", "warning", "error", "critical"), "Least severity of the error log.",
        flags=("--log-level",), metavar="LEVEL",
    )
    pid: str | None = option(None, values.optional_text, "Write the master's process id to this file.",
                             flags=("-p", "--pid"), metavar="PATH")
    preload: bool = option(
        False, values.boolean, "Import the app once in the master before forking (faster start, memory "
                               "shared copy-on-write). Code changes then need a full restart: HUP only "
                               "replaces the workers.",
        flags=("--preload",), switch=True,
    )
    reload: bool = option(False, values.boolean, "Restart workers when a source file changes (development only).",
                          flags=("--reload",), switch=True)
    forwarded_allow_ips: tuple[str, ...] = option(
        ("127.0.0.1", "::1"), values.text_list,
        "Peers trusted to set X-Forwarded-For / X-Forwarded-Proto / Forwarded: comma-separated IPs, or '*'.",
        flags=("--forwarded-allow-ips",), metavar="IPS",
    )
    umask: int | None = option(None, values.umask, "File mode mask for the server (affects unix socket files).",
                               flags=("-m", "--umask"), metavar="MASK")
    user: str | None = option(None, values.name_or_id, "Run workers as this user (name or id).",
                              flags=("-u", "--user"), metavar="USER")
    group: str | None = option(None, values.name_or_id, "Run workers as this group (name or id).",
                               flags=("-g", "--group"), metavar="GROUP")
    proc_name: str | None = option(None, values.optional_text, "Name shown in process titles (default: the app).",
                                   flags=("-n", "--name"), metavar="NAME")
    daemon: bool = option(
        False, values.boolean, "Detach from the terminal once the sockets are bound (gunicorn's -D): "
                               "the server's log then goes to --error-log only.",
        flags=("-D", "--daemon"), switch=True,
    )
    protocol: str = option(
        "http", values.choice("http", "uwsgi", "fastcgi"),
        "What the listeners speak: http, uwsgi (nginx's uwsgi_pass: one request per connection) or fastcgi "
        "(nginx's fastcgi_pass, the responder role, with fastcgi_keep_conn). uwsgi and fastcgi take requests "
        "from a web server in front, not from browsers (sync, thread, event and gevent workers).",
        flags=("--protocol",), metavar="PROTOCOL",
    )
    protocol_allow_from: tuple[str, ...] = option(
        ("127.0.0.1", "::1"), values.text_list,
        "With --protocol uwsgi or fastcgi: the peers (IPs or networks, comma-separated, or '*') allowed to "
        "connect over TCP; unix-socket peers always are. Others are closed without an answer (gunicorn's "
        "--uwsgi-allow-from).",
        flags=("--protocol-allow-from",), metavar="IPS",
    )
    health_path: str = option(
        "/_wsgistack/health", values.health_path,
        "A path the server answers itself, without the app, for load balancers and readiness checks: GET or "
        "HEAD get 200 'ready' while the worker serves, 503 'draining' once it is stopping. Matched against the "
        "exact request target (no query string). An empty string turns it off.",
        flags=("--health-path",), metavar="PATH",
    )
    metrics_bind: str | None = option(
        None, values.optional_text,
        "Serve Prometheus metrics (OpenMetrics when the scraper asks) at /metrics on this address: HOST:PORT or "
        "unix:PATH, apart from the app's listeners. The master gathers every worker's numbers, the workers "
        "that are gone included (docs/metrics.md). Off when not given.",
        flags=("--metrics-bind",), metavar="ADDRESS",
    )
    chdir: str | None = option(None, values.optional_text,
                               "Change to this folder before loading the app (it is then found there too).",
                               flags=("--chdir",), metavar="DIR")

    @classmethod
    def options(cls) -> list[dataclasses.Field]:
        """The declared settings, in order."""
        return list(dataclasses.fields(cls))

    @property
    def title(self) -> str:
        """What the process titles name: proc_name, else the app, else the mounts."""
        return self.proc_name or self.app or " ".join(self.apps or ())

    def replace(self, **changes: Any) -> ServeSettings:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)
