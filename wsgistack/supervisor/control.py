"""The control socket: JSON lines over a unix socket, one request and one answer per line.

Request: {"cmd": "status", "args": ["web"]}. Answer: {"ok": true, "result": ...} or
{"ok": false, "error": "one line"}. docs/supervisor.md lists the commands; `wsgistack ctl` is the client.
With a username and password configured, a connection's first request carries them ({"auth": {...}}),
as every XML-RPC request on the same socket carries HTTP Basic credentials.
"""

from __future__ import annotations

import asyncio
import grp
import hmac
import json
import logging
import os
import pwd
from collections.abc import Callable
from typing import Any

from wsgistack.config.errors import ConfigError
from wsgistack.supervisor.runtime import Supervisor
from wsgistack.supervisor.states import STOPPED_STATES
from wsgistack.supervisor.xmlrpc import RPCInterface, serve_http

log = logging.getLogger("wsgistack.supervisor")

MAX_LINE = 64 * 1024  # a request line of `wsgistack ctl` is a few hundred bytes
BAD_REQUEST = "bad request: expected {\"cmd\": ..., \"args\": [...]}"
AUTH_REQUIRED = ("authentication required: this supervisor has a username and password; send "
                 "{\"auth\": {\"username\": ..., \"password\": ...}} with the first request")
LINE_TOO_LONG = f"bad request: a request line takes at most {MAX_LINE} bytes"
TOO_LONG = b"\0"  # what _line returns for a line over MAX_LINE (a real line always ends with a newline)


def _decode(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """One request line as a JSON object, or the error to answer."""
    if line == TOO_LONG:
        return None, LINE_TOO_LONG
    try:
        request = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, BAD_REQUEST
    return (request, None) if isinstance(request, dict) else (None, BAD_REQUEST)


class CommandError(Exception):
    """A request that cannot be carried out; its message goes back to the client."""


class ControlServer:
    """Serves the control protocol for one Supervisor on a unix socket."""

    def __init__(self, supervisor: Supervisor, path: str | None, mode: int, on_shutdown: Callable[[], None],
                 credentials: tuple[str, str] | None = None, owner: str | None = None,
                 inet: tuple[str, int] | None = None):
        self.supervisor = supervisor
        self.path = path
        self.mode = mode
        self.owner = owner  # [unix_http_server] chown=user[:group]
        self.inet = inet  # [inet_http_server] port: XML-RPC only, and only with credentials
        self.inet_server: asyncio.AbstractServer | None = None
        self.on_shutdown = on_shutdown
        self.credentials = credentials  # username/password, asked of every client on every socket
        self.rpc = RPCInterface(supervisor, on_shutdown)
        self.commands: dict[str, Callable[..., Any]] = {}  # what a layer above adds (`up`'s deploy)
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Bind the socket with its mode set before anyone can connect (umask), then listen."""
        if self.path is not None:
            await self._start_unix()
        if self.inet is not None:
            self.inet_server = await asyncio.start_server(self._inet_client, self.inet[0], self.inet[1],
                                                          limit=MAX_LINE)

    async def _start_unix(self) -> None:
        assert self.path is not None
        if os.path.exists(self.path):
            os.unlink(self.path)
        old = os.umask(0o777 & ~self.mode)
        try:
            self.server = await asyncio.start_unix_server(self._client, self.path, limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, self.mode)
        if self.owner:
            user, _, group = self.owner.partition(":")
            entry = pwd.getpwnam(user)
            os.chown(self.path, entry.pw_uid, grp.getgrnam(group).gr_gid if group else entry.pw_gid)

    async def close(self) -> None:
        """Stop listening, end the log streams (tail -f) and remove the socket file."""
        self.rpc.closing.set()
        if self.inet_server is not None:
            self.inet_server.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    async def _inet_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # over TCP only XML-RPC is spoken (supervisorctl's protocol), always behind the username/password
        try:
            await serve_http(reader, writer, b"", self.rpc, self.credentials)
        except (ConnectionError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # one socket, two protocols: an HTTP request starts with its method's letters (supervisorctl's
        # XML-RPC); anything else is JSON lines (`wsgistack ctl`). Both ask for the same credentials.
        try:
            first = await reader.read(1)
            if first.isalpha():
                await serve_http(reader, writer, first, self.rpc, self.credentials)
            elif first:
                rest = b"" if first == b"\n" else await _line(reader)
                await self._json_lines(reader, writer, rest if rest == TOO_LONG else first + rest)
        except (ConnectionError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()

    async def _json_lines(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> None:
        """Answer request lines until the client closes; until it has authenticated, one answer only."""
        authenticated = self.credentials is None
        while line:
            request, error = _decode(line)
            if request is not None and not authenticated:
                error = self._authenticate(request)
                authenticated = error is None
            if error is not None:
                answer = {"ok": False, "error": error}
            elif "cmd" not in request and "auth" in request:
                answer = {"ok": True, "result": "authenticated"}  # an auth line of its own
            else:
                answer = await self._answer(request)
            writer.write((json.dumps(answer) + "\n").encode())
            await writer.drain()
            if not authenticated or error == LINE_TOO_LONG:
                return  # a client that failed to authenticate gets its answer, then the door
            line = await _line(reader)

    def _authenticate(self, request: dict[str, Any]) -> str | None:
        """None when the request carries the configured username and password; else the error to answer."""
        assert self.credentials is not None
        auth = request.get("auth")
        if not isinstance(auth, dict):
            return AUTH_REQUIRED
        username, password = str(auth.get("username", "")), str(auth.get("password", ""))
        # both compared, always, in constant time: the time taken says nothing about what was wrong
        good = hmac.compare_digest(username.encode(), self.credentials[0].encode())
        good &= hmac.compare_digest(password.encode(), self.credentials[1].encode())
        if not good:
            log.warning("control socket: refused a client with a wrong username or password")
            return "authentication failed: wrong username or password"
        return None

    async def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            command = request["cmd"]
            args = [str(arg) for arg in request.get("args", [])]
            handler = self.commands.get(command) or getattr(self, f"cmd_{command}", None)
            if handler is None:
                raise CommandError(f"unknown command {command!r}")
            result = handler(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return {"ok": True, "result": result}
        except (KeyError, TypeError):
            return {"ok": False, "error": BAD_REQUEST}
        except CommandError as exc:
            return {"ok": False, "error": str(exc)}

    # -- commands --------------------------------------------------------------------------------------

    def _select(self, names: tuple[str, ...]) -> list:
        if not names:
            raise CommandError("name a process, group:*, or all")
        chosen = []
        for name in names:
            found = self.supervisor.select(name)
            if not found:
                raise CommandError(f"no such process: {name}")
            chosen += found
        return chosen

    def cmd_status(self, *names: str) -> list[dict]:
        """Status records of all processes, or of the named ones."""
        records = self.supervisor.status()
        if not names:
            return records
        wanted = {p.name for p in self._select(names)}
        return [r for r in records if f"{r['group']}:{r['name']}" in wanted]

    def cmd_start(self, *names: str) -> dict[str, str]:
        """Start processes; the answer says, per process, 'started' or why not."""
        return {p.name: "started" if p.start() else "already started" for p in self._select(names)}

    async def cmd_stop(self, *names: str) -> dict[str, str]:
        """Stop processes and answer once they are stopped (as supervisorctl waits), or why not."""
        processes = self._select(names)
        asked = {p.name: p.stop() for p in processes}
        await self.supervisor.until_stopped([p for p in processes if asked[p.name]])
        return {p.name: ("stopped" if p.state in STOPPED_STATES else f"still {p.state.name}") if asked[p.name]
                else "not running" for p in processes}

    def cmd_restart(self, *names: str) -> dict[str, str]:
        """Stop, then start again once stopped."""
        result = {}
        for process in self._select(names):
            if process.stop():
                self.supervisor.start_when_stopped(process)
                result[process.name] = "restarting"
            else:
                result[process.name] = "started" if process.start() else "already started"
        return result

    def cmd_signal(self, name: str, *names: str) -> dict[str, str]:
        """Send a signal (TERM, HUP, USR1, 15, ...) to processes."""
        processes = self._select(names)
        try:
            delivered = self.supervisor.signal(processes, name)
        except ValueError:
            raise CommandError(f"unknown signal {name!r}") from None
        return {process: "signalled" if done else "not running" for process, done in delivered.items()}

    def cmd_pid(self, *names: str) -> Any:
        """The supervisor's pid, or the named processes' pids (0 when not running)."""
        if not names:
            return os.getpid()
        return {p.name: p.pid for p in self._select(names)}

    def cmd_tail(self, name: str, stream: str = "stdout", size: str = "1600", since: str = "-1") -> dict:
        """The last `size` bytes a process wrote to a stream, or what came after offset `since` (tail -f)."""
        process = self._select((name,))[0]
        offset, length = int(since), int(size)
        try:
            if offset >= 0:  # tail -f: all that came since
                tail = self.supervisor.tail(process, stream, offset, None)
            else:
                tail = self.supervisor.tail(process, stream, 0, length if length > 0 else None)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return {"data": tail.data, "offset": tail.offset}

    def _reread(self):
        try:
            return self.supervisor.reread()
        except ConfigError as exc:
            raise CommandError(f"the config has an error, nothing changed: {exc}") from None

    def cmd_reread(self) -> dict[str, str]:
        """What an update would do: groups available (new), changed, disappeared."""
        added, changed, removed = self.supervisor.diff(self._reread())
        return {**{g: "available" for g in added}, **{g: "changed" for g in changed},
                **{g: "disappeared" for g in removed}}

    async def cmd_update(self) -> dict[str, str]:
        """Re-read the config and apply the difference; unchanged programs keep running."""
        self.rpc.pending = None  # what supervisorctl's reread read is older than what now runs
        return await self.supervisor.update(self._reread())

    def cmd_avail(self) -> list[dict]:
        """Every process of the config file, and whether it is in use."""
        running = set(self.supervisor.processes)
        return [{"name": f"{p.group}:{p.name}", "in_use": f"{p.group}:{p.name}" in running,
                 "autostart": p.autostart, "priority": p.priority} for p in self._reread().programs]

    async def cmd_reload(self) -> str:
        """Stop everything, re-read the config, start again."""
        self.rpc.pending = None
        await self.supervisor.reload(self._reread())
        return "reloaded"

    def cmd_shutdown(self) -> str:
        """Stop every process, then the supervisor."""
        self.supervisor.loop.call_soon(self.on_shutdown)
        return "shutting down"


async def _line(reader: asyncio.StreamReader) -> bytes:
    """The next request line; TOO_LONG past MAX_LINE (the StreamReader's limit)."""
    try:
        return await reader.readline()
    except ValueError:
        return TOO_LONG
