"""The access log: one line per request, in nginx's `combined` format unless told otherwise.

Formats are templates of nginx variable names ($remote_addr, $status, $http_user_agent, ...), compiled
once at start so that an unknown variable is a config error, not a surprise at the first request. Lines are
written with one os.write on an O_APPEND descriptor, so lines of several workers never interleave.
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


def compile_format(spec: str, json_fields: tuple[str, ...] = JSON_FIELDS) -> Callable[[AccessRecord], str]:
    """A function that formats a record as one line (without newline), for a format name or template."""
    if spec == "json":
        getters = [(name, _getter(name)) for name in json_fields]
        return lambda r: json.dumps({name: get(r) for name, get in getters}, ensure_ascii=True)
    template = FORMATS.get(spec, spec)
    pieces: list[str | Callable[[AccessRecord], Any]] = []
    position = 0
    for match in _VARIABLE.finditer(template):
        pieces.append(template[position:match.start()])
        pieces.append(_getter(match.group(1).strip("{}")))
        position = match.end()
    pieces.append(template[position:])

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
