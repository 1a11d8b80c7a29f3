"""Readiness checks: what must answer before a program counts as RUNNING (beyond startsecs).

Each check is one short attempt; the process polls it until it succeeds or `ready_timeout` passes.
"""

from __future__ import annotations

import asyncio
import shlex
import subprocess
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from wsgistack.http.heads import request_head
from wsgistack.server.protocols.choose import probe_exchange
from wsgistack.supervisor.settings import ReadyCheck

ATTEMPT_TIMEOUT = 1.0
_GATEWAY_ANSWER = 1 << 20  # what a probe reads of a uwsgi or FastCGI answer: a status needs far less
UNIX_URL = "http://unix:"

# how a check command is run: spawn it and return its exit status once the supervisor reaped it
CommandRunner = Callable[[list[str]], Awaitable[int]]


async def _connects(opening: Awaitable) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(opening, ATTEMPT_TIMEOUT)
    except (TimeoutError, OSError):
        return False
    writer.close()
    return True


async def http_status(url: str, timeout: float = ATTEMPT_TIMEOUT, protocol: str = "http") -> int | None:
    """The status of a GET of `url` (http://HOST:PORT/path, or nginx's spelling of a unix socket:
    http://unix:/run/app.sock:/health), or None when nothing answered in time. `protocol` is what the server
    at `url` speaks: http, or uwsgi or fastcgi (an app server of `--protocol`), asked in its own packets."""
    if url.startswith(UNIX_URL):
        socket_path, _, path = url[len(UNIX_URL):].partition(":")
        opening = asyncio.open_unix_connection(socket_path)
        host = "localhost"
    else:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        opening = asyncio.open_connection(parts.hostname, port, ssl=parts.scheme == "https" or None)
        host = parts.netloc
        path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        reader, writer = await asyncio.wait_for(opening, timeout)
    except (TimeoutError, OSError):
        return None
    try:
        if protocol != "http":
            return await _gateway_status(reader, writer, protocol, path or "/", timeout)
        writer.write(request_head("GET", path or "/", [("Host", host), ("Connection", "close")]))
        line = await asyncio.wait_for(reader.readline(), timeout)
    except (TimeoutError, OSError):
        return None
    finally:
        writer.close()
    fields = line.split()
    return int(fields[1]) if len(fields) >= 2 and fields[1].isdigit() else None


async def _gateway_status(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: str, path: str,
                          timeout: float) -> int | None:
    """GET `path` of a uwsgi or FastCGI server: the answer is read to the server's close (one request a
    connection), at most _GATEWAY_ANSWER bytes."""
    request, read_answer = probe_exchange(protocol, path)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(_GATEWAY_ANSWER), timeout)
    while answer and len(answer) < _GATEWAY_ANSWER:
        more = await asyncio.wait_for(reader.read(_GATEWAY_ANSWER - len(answer)), timeout)
        if not more:
            break
        answer += more
    status = read_answer(answer)[0]
    return status or None


async def _http_ok(url: str, protocol: str = "http") -> bool:
    status = await http_status(url, protocol=protocol)
    return status is not None and 200 <= status < 400


async def attempt(check: ReadyCheck, run_command: CommandRunner | None) -> bool:
    """One try of the check: True when the program answers as ready."""
    if check.kind == "tcp":
        host, _, port = check.target.rpartition(":")
        return await _connects(asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port)))
    if check.kind == "unix":
        return await _connects(asyncio.open_unix_connection(check.target))
    if check.kind == "http":
        return await _http_ok(check.target)
    if check.kind in ("uwsgi", "fastcgi"):  # an app server's health endpoint, asked in its --protocol
        return await _http_ok(check.target, check.kind)
    if check.kind == "command" and run_command is not None:
        return await run_command(shlex.split(check.target)) == 0
    return False


def spawn_check(argv: list[str]) -> subprocess.Popen:
    """Start a check command quietly (the supervisor's reaper collects its exit)."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            close_fds=True)
