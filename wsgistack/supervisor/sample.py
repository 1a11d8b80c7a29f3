"""The commented sample configs of `wsgistack config sample`: a supervisord.conf or a wsgistack.toml.

Both formats render the example program from one list, PROGRAM, so they cannot drift apart. The example's
live lines hold the defaults, so the sample loads as printed; only autostart differs (false), so running
the sample unedited starts nothing. Options without a default are shown commented out with an example value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

FORMATS = ("ini", "toml")


@dataclass(frozen=True)
class Option:
    """One line of a sample section: the option, its value in each format, and why one would set it."""

    name: str
    ini: str  # the value as supervisord.conf writes it
    toml: str  # the value as TOML writes it (quoted text, arrays, inline tables)
    comment: str
    live: bool = True  # False: printed commented out (no default, or it needs something the sample lacks)


def _same(name: str, value: str, comment: str, live: bool = True) -> Option:
    """An option whose TOML value is the INI text quoted."""
    return Option(name, value, f'"{value}"', comment, live)


def _plain(name: str, value: str, comment: str, live: bool = True) -> Option:
    """An option whose value is written alike in both formats (numbers, booleans)."""
    return Option(name, value, value, comment, live)


PROGRAM = (
    Option("command", "wsgistack serve myproject.wsgi:application --bind 127.0.0.1:8000",
           '["celery", "--app", "myproject", "worker", "--loglevel", "info"]',
           "what to run (required); no shell runs it: write sh -c '...' for one"),
    _same("process_name", "%(program_name)s", "the process name; needs %(process_num)d if numprocs > 1"),
    _plain("numprocs", "1", "how many copies of the process to run"),
    _plain("numprocs_start", "0", "the first %(process_num)d"),
    _plain("priority", "999", "lower starts earlier and stops later"),
    _plain("autostart", "false", "start with the supervisor (default true; false: the sample runs nothing)"),
    _plain("startsecs", "1", "seconds it must stay up to count as started"),
    _plain("startretries", "3", "failed starts in a row before giving up (FATAL)"),
    _same("autorestart", "unexpected", "restart on exit: true, false, or unexpected (exit code not listed)"),
    Option("exitcodes", "0", "[0]", "the expected exit codes, for autorestart=unexpected"),
    _same("stopsignal", "TERM", "how to ask it to stop: TERM, HUP, INT, QUIT, KILL, USR1 or USR2"),
    _plain("stopwaitsecs", "10", "seconds to wait after stopsignal before SIGKILL"),
    _plain("stopasgroup", "false", "send stopsignal to its whole process group (for sh -c, reloaders)"),
    _plain("killasgroup", "false", "send SIGKILL to its whole process group (default: as stopasgroup)"),
    _same("user", "www-data", "run as this user (the supervisor must be root)", live=False),
    _same("umask", "022", "file mode mask of the process (default: the supervisor's)", live=False),
    _same("directory", "/srv/myproject", "change to this directory first (default: the supervisor's)",
          live=False),
    Option("environment", 'DJANGO_SETTINGS_MODULE="myproject.settings",PYTHONUNBUFFERED="1"',
           '{ DJANGO_SETTINGS_MODULE = "myproject.settings", PYTHONUNBUFFERED = "1" }',
           "added to the supervisor's environment", live=False),
    _plain("redirect_stderr", "false", "send stderr down stdout's log"),
    _same("stdout_logfile", "AUTO", "a path, AUTO (a file in childlogdir), NONE, or /dev/stdout"),
    _same("stdout_logfile_maxbytes", "50MB", "rotate past this size; 0 never rotates"),
    _plain("stdout_logfile_backups", "10", "rotated files kept; 0 keeps none"),
    _same("stderr_logfile", "AUTO", "as stdout_logfile, for stderr"),
    _same("stderr_logfile_maxbytes", "50MB", "as stdout_logfile_maxbytes"),
    _plain("stderr_logfile_backups", "10", "as stdout_logfile_backups"),
    # beyond supervisord (which ignores them)
    _same("depends_on", "db", "programs that must be RUNNING (and ready) first", live=False),
    _same("ready", "http://127.0.0.1:8000/health",
          "RUNNING once this answers: tcp:HOST:PORT, http://URL, unix:PATH or command:CMD", live=False),
    _plain("ready_timeout", "30", "seconds the ready check may take (needs ready)", live=False),
    _plain("backoff_max", "30", "longest pause between restarts; pauses double up to it"),
    _plain("max_restarts", "0", "restarts per restart_window before FATAL (flapping); 0: no limit"),
    _plain("restart_window", "60", "the window of max_restarts, in seconds"),
)

INI_HEAD = """\
; A supervisord.conf for `wsgistack supervise`, which supervisord also reads. Edit the paths, then the
; example program at the end. %(here)s is this file's directory; %(ENV_HOME)s an environment variable.
; Check it with: wsgistack config check supervisord.conf
"""

INI_TAIL = """\
; A group: its programs start, stop and are named together (supervisorctl start webapps:*).
;[group:webapps]
;programs=web,worker           ; the programs it holds (each listed once, in one group)
;priority=999                  ; its start priority (default 999)

; More sections from other files; globs are relative to this file.
;[include]
;files=conf.d/*.ini            ; one or more globs, separated by spaces
"""

TOML_HEAD = """\
# A wsgistack.toml for `wsgistack up`, which runs it all: the app server of [serve], the proxy of [proxy] in
# front of it (over a private unix socket), the [programs.NAME], under the supervisor of [supervisor]. Each
# table also works alone: [serve] for `wsgistack serve`, [proxy] for `wsgistack proxy`, [supervisor] and
# [programs.NAME] for `wsgistack supervise`. Commented-out keys have no default; their values are examples.
# Check it with: wsgistack config check wsgistack.toml; then: wsgistack up, wsgistack ctl status.

[serve]  # command-line flags and WSGISTACK_<OPTION> variables win over these
app = "myproject.wsgi:application"  # module:name, module:factory(), or path/to/file.py[:name]
# under `up` with a [proxy], the app server listens on a private socket instead of its bind
bind = ["127.0.0.1:8000"]           # HOST:PORT, [::1]:PORT, unix:PATH or fd://N; several allowed
workers = 2                         # worker processes (default: $WEB_CONCURRENCY or 1)
worker-class = "event"              # event, thread, sync, gevent or tornado
timeout = 30                        # a worker silent this many seconds is replaced
access-log = "-"                    # one line per request: a file, or - for stdout
health-path = "/_wsgistack/health"  # answered without calling the app: 200 ready, 503 stopping; "" turns it off
# several app servers for `up`: [serve.NAME] tables, each over the keys above, each an upstream of its name
# [serve.api]
# app = "myproject.api:app"
"""


def sample(fmt: str) -> str:
    """A complete, commented sample config in `fmt` ("ini" or "toml")."""
    if fmt == "ini":
        return _ini()
    if fmt == "toml":
        return _toml()
    raise ValueError(f"{fmt!r} is not a sample format ({', '.join(FORMATS)})")


def _line(text: str, comment: str, mark: str, width: int) -> str:
    """`text` with `comment` aligned after it, or on the line above when `text` is too long for that."""
    if len(text) > width - 2:
        return f"{mark} {comment}\n{text}"
    return f"{text.ljust(width - 2)}  {mark} {comment}"  # INI needs whitespace before an inline comment


def _ini() -> str:
    def lines(options: Iterable[Option]) -> list[str]:
        return [_line(("" if option.live else ";") + f"{option.name}={option.ini}", option.comment, ";", 32)
                for option in options]

    unix = [_same("file", "%(here)s/supervisor.sock", "the control socket (wsgistack ctl, supervisorctl)"),
            _same("chmod", "0700", "its file mode; 0770 lets a group use it (default 0600)"),
            _same("chown", "nobody:nogroup", "its owner, user:group", live=False),
            _same("username", "admin", "required of clients, with password (default: none)", live=False),
            _same("password", "secret", "in clear text", live=False)]
    daemon = [_same("logfile", "%(here)s/supervisord.log", "the supervisor's own log (default: stderr)"),
              _same("logfile_maxbytes", "50MB", "rotate past this size; 0 never rotates"),
              _same("logfile_backups", "10", "rotated files kept; 0 keeps none"),
              _same("loglevel", "info", "critical, error, warn, info, debug, trace or blather"),
              _same("pidfile", "%(here)s/supervisord.pid", "written at start, removed at exit"),
              _same("nodaemon", "true", "the foreground; false (the default here) detaches; -n, --daemon decide"),
              _same("childlogdir", "%(here)s", "where AUTO program logs go (default /tmp)"),
              _same("umask", "022", "file mode mask of the supervisor and its programs", live=False),
              _same("identifier", "supervisor", "part of AUTO log names", live=False)]
    text = [INI_HEAD, "[unix_http_server]", *lines(unix), "",
            "; supervisord's control API over TCP: XML-RPC for supervisorctl, only with username and password.",
            ";[inet_http_server]",
            _line(";port=127.0.0.1:9001", "HOST:PORT, or *:PORT for every interface", ";", 32),
            _line(";username=admin", "one username and password guard both endpoints", ";", 32),
            ";password=secret", "",
            "[supervisord]", *lines(daemon), "",
            "; supervisorctl's XML-RPC needs this section; wsgistack serves the same API without it.",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]",
            _line("serverurl=unix://%(here)s/supervisor.sock", "as [unix_http_server] file", ";", 32), "",
            "; The example program: the live lines are the defaults, except autostart; commented-out lines",
            "; have no default. From depends_on on, the options are wsgistack's: supervisord ignores them.",
            "[program:web]", *lines(PROGRAM), "", INI_TAIL]
    return "\n".join(text)


PROXY_SAMPLE = """\
[proxy]  # `wsgistack proxy`, nginx's job in front of [serve]; docs/proxy.md lists every key
listen = ["127.0.0.1:8080"]         # HOST:PORT, [::1]:PORT or unix:PATH; "ADDRESS ssl" with certfile/keyfile
access_log = "-"                    # nginx's combined format (access_log_format = "json" for JSON)
client_max_body_size = "10m"        # 413 above it (default 1m)

[proxy.upstreams.app]
# for `wsgistack proxy` alone: the [serve] bind above (more to balance: "HOST:PORT weight=2", "backup");
# under `wsgistack up`, an upstream named after an app server is that server's private socket
servers = ["127.0.0.1:8000"]
balance = "round_robin"             # least_conn, ip_hash or hash:$http_NAME
# health_check = { path = "/_wsgistack/health", interval = "2s" }

# [[proxy.routes]]
# path = "/static/"
# static = "static"                 # a folder, relative to this file

[[proxy.routes]]
path = "/"
upstream = "app"
# limit_req = { rate = "10r/s", burst = 20, nodelay = true }
"""


def _toml() -> str:
    def lines(options: Iterable[Option]) -> list[str]:
        return [_line(("" if option.live else "# ") + f"{option.name} = {option.toml}", option.comment, "#",
                      36) for option in options]

    daemon = [_same("socket", "%(here)s/supervisor.sock", "the control socket (wsgistack ctl)"),
              _same("socket_mode", "0700", "its file mode; 0770 lets a group use it (default 0600)"),
              _same("socket_owner", "nobody:nogroup", "its owner, user:group", live=False),
              _same("http", "127.0.0.1:9001", "XML-RPC over TCP; needs username and password", live=False),
              _same("username", "admin", "required of clients, with password", live=False),
              _same("password", "secret", "in clear text", live=False),
              _same("logfile", "%(here)s/supervisor.log", "the supervisor's own log (default: stderr)"),
              _same("logfile_maxbytes", "50MB", "rotate past this size; 0 never rotates"),
              _plain("logfile_backups", "10", "rotated files kept; 0 keeps none"),
              _same("loglevel", "info", "critical, error, warn, info, debug, trace or blather"),
              _same("pidfile", "%(here)s/supervisor.pid", "written at start, removed at exit"),
              _plain("nodaemon", "true", "the foreground (the default); false detaches; -n, --daemon decide"),
              _same("childlogdir", "%(here)s", "where AUTO program logs go (default /tmp)"),
              _same("umask", "022", "file mode mask of the supervisor and its programs", live=False)]
    group = _same("group", "webapps", "put it in a group, named with the other members", live=False)
    text = [TOML_HEAD, PROXY_SAMPLE, "[supervisor]", *lines(daemon), "",
            "# The example program: the live keys are the defaults, except autostart; commented-out keys have",
            "# no default. `command` may be a command line or an argv array; `environment` a table.",
            "[programs.worker]", *lines([*PROGRAM[:1], group, *PROGRAM[1:]]), ""]
    return "\n".join(text)
