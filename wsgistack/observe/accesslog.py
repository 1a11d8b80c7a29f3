"""The access log: one line per request, in nginx's `combined` format unless told otherwise.

Formats are templates of nginx variable names ($remote_addr, $status, $http_user_agent, ...), compiled
once at start so that an unknown variable is a config error, not a surprise at the first request. Lines are
written with one os.write on an O_APPEND descriptor, so lines of several workers never interleave.

Templates of gunicorn's `access_log_format` atoms (%(h)s, %(r)s, %({x-real-ip}i)s, ...) are accepted too, for
users who bring their gunicorn settings along: a template with at least one such atom is read as gunicorn's
(where `$` is plain text and `%%` a literal `%`) and translated into the same pieces as an nginx template.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsgistack.config.errors import ConfigError

FORMATS = {
    "combined": '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                '"$http_referer" "$http_user_agent"',
    "common": '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent',
}
JSON_FIELDS = ("time_iso8601", "remote_addr", "remote_user", "request_method", "request_uri", "server_protocol",
               "status", "body_bytes_sent", "request_time", "http_referer", "http_user_agent", "pid")
# what the proxy adds to its JSON lines: where the request went and how long the upstream took
PROXY_JSON_FIELDS = (*JSON_FIELDS[:-1], "host", "request_id", "upstream_addr", "upstream_status",
                     "upstream_response_time")

_VARIABLE = re.compile(r"\$(\{[a-z0-9_]+\}|[a-z0-9_]+)")
_UNSAFE = re.compile(r'[\x00-\x1f"\\\x7f-\xff]')


@dataclass
class AccessRecord:
    """What the access log needs to know about one finished request."""

    environ: dict[str, Any]
    status: int
    body_bytes: int
    started: float  # time.time() when the request's head was complete
    duration: float  # seconds, monotonic


def clean(text: str) -> str:
    """A value as it may appear in a line: escaped only if it needs to be (the regex costs)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return _escape(text)


def _escape(text: str) -> str:
    # as nginx does: quotes, backslashes and non-printable bytes as \xHH, so a header cannot forge a line
    return _UNSAFE.sub(lambda m: "\\x%02X" % ord(m.group()), text)


def remote_user(environ: Any) -> str:
    """$remote_user: the user name of Basic authentication, or "-"."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if auth[:6].lower() == "basic ":
        try:
            return base64.b64decode(auth[6:].strip()).decode("latin-1").split(":", 1)[0] or "-"
        except ValueError:
            return "-"
    return "-"


_clock_cache: list[Any] = [-1, ""]


def time_local(started: float) -> str:
    """$time_local for a time.time() value."""
    # formatted once a second: strftime(localtime()) per line showed in the proxy's profiles
    second = int(started)
    if _clock_cache[0] != second:
        _clock_cache[:] = [second, time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))]
    return _clock_cache[1]


def _request_line(environ: dict[str, Any]) -> str:
    return f"{environ.get('REQUEST_METHOD', '-')} {environ.get('RAW_URI', '-')} {environ.get('SERVER_PROTOCOL', '-')}"


_GETTERS: dict[str, Callable[[AccessRecord], Any]] = {
    "remote_addr": lambda r: r.environ.get("REMOTE_ADDR") or "-",
    "remote_port": lambda r: r.environ.get("REMOTE_PORT") or "-",
    "remote_user": lambda r: remote_user(r.environ),
    "time_local": lambda r: time_local(r.started),
    "time_iso8601": lambda r: time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(r.started)),
    "msec": lambda r: f"{r.started:.3f}",
    "request": lambda r: _request_line(r.environ),
    "request_method": lambda r: r.environ.get("REQUEST_METHOD", "-"),
    "request_uri": lambda r: r.environ.get("RAW_URI", "-"),
    "uri": lambda r: r.environ.get("PATH_INFO", "-"),
    "args": lambda r: r.environ.get("QUERY_STRING", ""),
    "server_protocol": lambda r: r.environ.get("SERVER_PROTOCOL", "-"),
    "scheme": lambda r: r.environ.get("wsgi.url_scheme", "-"),
    "host": lambda r: r.environ.get("HTTP_HOST") or r.environ.get("SERVER_NAME", "-"),
    "status": lambda r: r.status,
    "body_bytes_sent": lambda r: r.body_bytes,
    "request_time": lambda r: f"{r.duration:.3f}",
    "pid": lambda r: os.getpid(),
    # the proxy's variables (nginx's names); "-" when a request never went upstream
    "upstream_addr": lambda r: r.environ.get("wsgistack.upstream_addr") or "-",
    "upstream_status": lambda r: r.environ.get("wsgistack.upstream_status") or "-",
    "upstream_response_time": lambda r: r.environ.get("wsgistack.upstream_response_time") or "-",
    "request_id": lambda r: r.environ.get("wsgistack.request_id") or r.environ.get("HTTP_X_REQUEST_ID") or "-",
}


def _getter(name: str) -> Callable[[AccessRecord], Any]:
    if name in _GETTERS:
        return _GETTERS[name]
    if name.startswith("http_") and len(name) > 5:
        key = "HTTP_" + name[5:].upper()
        return lambda r: r.environ.get(key) or "-"
    raise ConfigError(f"--access-log-format: unknown variable ${name} "
                      f"(known: {', '.join(sorted(_GETTERS))}, $http_NAME)")


class FormatError(ConfigError, ValueError):
    """A format the access log cannot write: a ConfigError for the config layers, a ValueError for callers."""


Piece = str | Callable[[AccessRecord], Any]

# gunicorn's atoms (its documented meanings) that are an nginx variable of _GETTERS under another name
_GUNICORN_AS_NGINX = {
    "h": "remote_addr", "u": "remote_user", "r": "request", "m": "request_method", "U": "uri", "q": "args",
    "H": "server_protocol", "s": "status", "B": "body_bytes_sent", "f": "http_referer", "a": "http_user_agent",
    "p": "pid",
}


def _decimal_seconds(duration: float) -> str:
    micro = int(duration * 1_000_000)
    return f"{micro // 1_000_000}.{micro % 1_000_000:06d}"


# the others: times as gunicorn writes them (T, M, D truncated; L with six decimals), b '-' for no bytes (CLF)
_GUNICORN_OWN: dict[str, list[Piece]] = {
    "l": ["-"],
    "t": ["[", _GETTERS["time_local"], "]"],
    "b": [lambda r: r.body_bytes or "-"],
    "T": [lambda r: int(r.duration)],
    "M": [lambda r: int(r.duration * 1000)],
    "D": [lambda r: int(r.duration * 1_000_000)],
    "L": [lambda r: _decimal_seconds(r.duration)],
}
# %(name)s, %% or any other `%(`: Python's %-formatting, which gunicorn applies to its template
_ATOM = re.compile(r"%\(([^)]*)\)s|%%|%\([^)]*\)?\S?")
_HAS_ATOM = re.compile(r"%\([^)]*\)s")


def _request_header(name: str) -> Callable[[AccessRecord], Any]:
    key = name.upper().replace("-", "_")
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):  # in a WSGI environ without HTTP_; the proxy's view has both
        other = "HTTP_" + key
        return lambda r: r.environ.get(key) or r.environ.get(other) or "-"
    key = "HTTP_" + key
    return lambda r: r.environ.get(key) or "-"


def _environ_entry(name: str) -> Callable[[AccessRecord], Any]:
    # gunicorn matches these names without regard to case: REMOTE_PORT as remote_port, wsgi.url_scheme as is
    keys = tuple(dict.fromkeys((name, name.upper(), name.lower())))

    def get(r: AccessRecord) -> Any:
        for key in keys:
            value = r.environ.get(key)
            if value is not None:
                return value
        return "-"
    return get


def _gunicorn_atom(atom: str) -> list[Piece]:
    if atom in _GUNICORN_AS_NGINX:
        return [_getter(_GUNICORN_AS_NGINX[atom])]
    if atom in _GUNICORN_OWN:
        return _GUNICORN_OWN[atom]
    if len(atom) > 3 and atom[0] == "{" and atom[-2] == "}" and atom[-1] in "ioe":
        name = atom[1:-2]
        if atom[-1] == "i":
            return [_request_header(name)]
        if atom[-1] == "e":
            return [_environ_entry(name)]
        return ["-"]  # {name}o: AccessRecord carries no response headers, so '-' as for a missing one
    raise FormatError(f"--access-log-format: unknown gunicorn atom %({atom})s "
                      f"(known: {' '.join(sorted(_GUNICORN_AS_NGINX.keys() | _GUNICORN_OWN.keys()))}, "
                      f"{{NAME}}i, {{NAME}}o, {{NAME}}e)")


def _gunicorn_pieces(template: str) -> list[Piece]:
    pieces: list[Piece] = []
    position = 0
    for match in _ATOM.finditer(template):
        pieces.append(template[position:match.start()])
        if match.group(1) is not None:
            pieces.extend(_gunicorn_atom(match.group(1)))
        elif match.group() == "%%":
            pieces.append("%")
        else:
            raise FormatError(f"--access-log-format: unsupported {match.group()} "
                              f"(gunicorn atoms are written %(NAME)s, a literal % as %%)")
        position = match.end()
    pieces.append(template[position:])
    # adjacent texts as one piece: fewer steps per line
    merged: list[Piece] = []
    for piece in pieces:
        if piece.__class__ is str and merged and merged[-1].__class__ is str:
            merged[-1] += piece  # type: ignore[operator]
        elif piece != "":
            merged.append(piece)
    return merged


def _nginx_pieces(template: str) -> list[Piece]:
    pieces: list[Piece] = []
    position = 0
    for match in _VARIABLE.finditer(template):
        pieces.append(template[position:match.start()])
        pieces.append(_getter(match.group(1).strip("{}")))
        position = match.end()
    pieces.append(template[position:])
    return pieces


def compile_format(spec: str, json_fields: tuple[str, ...] = JSON_FIELDS) -> Callable[[AccessRecord], str]:
    """A function that formats a record as one line (without newline), for a format name or template."""
    if spec == "json":
        getters = [(name, _getter(name)) for name in json_fields]
        return lambda r: json.dumps({name: get(r) for name, get in getters}, ensure_ascii=True)
    template = FORMATS.get(spec, spec)
    pieces = _gunicorn_pieces(template) if _HAS_ATOM.search(template) else _nginx_pieces(template)

    def render(record: AccessRecord) -> str:
        out = []
        for piece in pieces:
            if piece.__class__ is str:
                out.append(piece)  # type: ignore[arg-type]
                continue
            out.append(clean(str(piece(record))))  # type: ignore[operator]
        return "".join(out)

    return render


class AccessLog:
    """Appends formatted lines to a file or standard output; reopen() after log rotation (SIGUSR1).

    With `rotate_size` or `rotate_interval` it also rotates by itself (access.log -> access.log.1 ...). That is
    only safe with one writing process, which the proxy is: the rename and reopen happen between two writes of
    the same process, so no line is lost or split.
    """

    def __init__(self, target: str | None, fmt: str, json_fields: tuple[str, ...] = JSON_FIELDS,
                 rotate_size: int = 0, rotate_interval: float = 0.0, rotate_keep: int = 5):
        self.target = target
        self.render = compile_format(fmt, json_fields)
        self.fd = -1
        self.errors = 0  # lines that could not be written: counted, never silently lost
        self.rotate_size = rotate_size if target not in (None, "-") else 0
        self.rotate_interval = rotate_interval if target not in (None, "-") else 0.0
        self.rotate_keep = rotate_keep
        self.size = 0
        self.next_rotation = time.time() + rotate_interval if self.rotate_interval else 0.0
        self.reopen()

    @property
    def enabled(self) -> bool:
        """False when no access log was asked for."""
        return self.target is not None

    def reopen(self) -> None:
        """Open (again) the target file, e.g. after logrotate moved it away; keeps the old one on failure."""
        if self.target is None:
            return
        if self.target == "-":
            self.fd = 1
            return
        old = self.fd
        try:
            self.fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if old >= 0:
                logging.getLogger("wsgistack.server").error(
                    "cannot reopen the access log %s: %s; still writing to the old file", self.target, exc.strerror)
                return
            raise ConfigError(f"--access-log: cannot open {self.target}: {exc.strerror}") from None
        if old > 2:
            os.close(old)
        if self.rotate_size:
            try:
                self.size = os.fstat(self.fd).st_size
            except OSError:
                self.size = 0

    def rotate(self) -> None:
        """Shift access.log.N-1 -> access.log.N ... access.log -> access.log.1, then start a new file."""
        assert self.target is not None
        for number in range(self.rotate_keep - 1, 0, -1):
            source = f"{self.target}.{number}"
            if os.path.exists(source):
                os.replace(source, f"{self.target}.{number + 1}")
        try:
            os.replace(self.target, f"{self.target}.1")
        except FileNotFoundError:
            pass
        except OSError as exc:
            logging.getLogger("wsgistack.proxy").error("cannot rotate the access log %s: %s", self.target,
                                                       exc.strerror)
            return
        self.reopen()
        self.size = 0

    def write(self, record: AccessRecord) -> None:
        """Write one line for a finished request."""
        if self.fd < 0:
            return
        self.write_bytes((self.render(record) + "\n").encode("utf-8", "replace"))

    def write_bytes(self, data: bytes) -> None:
        """Write whole lines at once (rotating first if it is time), in one os.write."""
        if self.fd < 0:
            return
        if self.rotate_size or self.rotate_interval:
            self._maybe_rotate(len(data))
        try:
            os.write(self.fd, data)
        except OSError:
            self.errors += 1

    def _maybe_rotate(self, coming: int) -> None:
        if self.rotate_interval and time.time() >= self.next_rotation:
            self.next_rotation = time.time() + self.rotate_interval
            if self.size:
                self.rotate()
        elif self.rotate_size and self.size and self.size + coming > self.rotate_size:
            self.rotate()
        self.size += coming
