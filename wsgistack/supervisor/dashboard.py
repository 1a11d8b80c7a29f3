"""The dashboard's listener on the supervisor's loop, and the supervisor's side of its Operations.

observe/dashboard/ holds the pages, the login and the charts, without sockets; this module reads each request
with http/'s parser, bounded in size and time, hands it to the Dashboard, and writes the answer's head with
http/heads.py. Actions go through the control socket's own commands (control.py), so the dashboard starts,
stops and tails exactly as `wsgistack ctl` and supervisorctl do.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from wsgistack.config.errors import ConfigError
from wsgistack.http.heads import error_response, reply_head
from wsgistack.http.parser import BodyData, EndOfMessage, Limits, ParseError, RequestHead, RequestParser
from wsgistack.observe.dashboard.app import ActionError, Dashboard, Request
from wsgistack.observe.dashboard.sessions import Sessions
from wsgistack.observe.dashboard.settings import DashboardSettings, is_loopback
from wsgistack.supervisor.control import CommandError, ControlServer
from wsgistack.supervisor.status import describe

log = logging.getLogger("wsgistack.supervisor")

# a browser's head is a few KiB (cookies included); a form post, a few hundred bytes
LIMITS = Limits(request_line=4096, fields=64, field_size=8192, body_size=16 * 1024)
READ_SECONDS = 10.0  # a whole request (head and body) must arrive within this
IDLE_SECONDS = 30.0  # a kept-alive connection with no new request is closed after this
MAX_CONNECTIONS = 64  # more at once are closed at accept: the dashboard is for a few people
SEARCH_BYTES = 4 << 20  # a log search reads at most the file's last 4 MiB (in a thread)


class SupervisorOperations:
    """The Operations the dashboard needs, over the control server's commands."""

    def __init__(self, control: ControlServer):
        self.control = control
        self.supervisor = control.supervisor

    def status(self) -> list[dict[str, Any]]:
        """Status records, with what the dashboard shows beside them: dependencies, readiness, description."""
        waiting = {process.name for process in self.supervisor.waiting}
        records = self.control.cmd_status()
        for record in records:
            full = f"{record['group']}:{record['name']}"
            process = self.supervisor.processes.get(full)
            settings = process.settings if process is not None else None
            record["description"] = describe(record)
            record["depends_on"] = list(settings.depends_on) if settings else []
            record["ready"] = f"{settings.ready.kind} {settings.ready.target}" if settings and settings.ready else ""
            record["waiting"] = full in waiting
        return records

    def deploys(self) -> list[dict[str, Any]]:
        """`up`'s deploys, newest first (none under `supervise`)."""
        return list(reversed(self.supervisor.deploys))

    async def act(self, action: str, target: str) -> dict[str, str]:
        """start, stop, restart (a process, group:* or all) or clear (a process's logs), as ctl does them."""
        try:
            if action == "clear":
                for process in self._processes(target):
                    process.stdout.clear()
                    if process.stderr is not process.stdout:
                        process.stderr.clear()
                return {target: "log cleared"}
            result = getattr(self.control, f"cmd_{action}")(target)
            return await result if asyncio.iscoroutine(result) else result
        except CommandError as exc:
            raise ActionError(str(exc)) from None

    def _processes(self, target: str) -> list:
        found = self.supervisor.select(target)
        if not found:
            raise ActionError(f"no such process: {target}")
        return found

    def tail(self, name: str, stream: str, offset: int, size: int) -> tuple[str, int]:
        """What a stream gained since `offset` (or its last `size` bytes), from what memory keeps."""
        try:
            answer = self.control.cmd_tail(name, stream, str(size), str(offset))
        except CommandError as exc:
            raise ActionError(str(exc)) from None
        return answer["data"], answer["offset"]

    async def search(self, name: str, stream: str, needle: str, limit: int) -> list[str]:
        """Lines holding `needle`: in the log file's last SEARCH_BYTES, or what memory keeps without a file."""
        process = self._processes(name)[0]
        writer = process.stdout if stream == "stdout" else process.stderr
        path = writer.path
        if path and os.path.isfile(path):
            data = await asyncio.to_thread(_file_end, path, SEARCH_BYTES)
        else:
            data = bytes(writer.recent)
        lines = [line for line in data.decode("utf-8", "replace").splitlines() if needle in line]
        return [line[:500] for line in lines[-limit:]]


def _file_end(path: str, size: int) -> bytes:
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        handle.seek(max(end - size, 0))
        return handle.read(size)


def build_dashboard(settings: DashboardSettings, control: ControlServer,
                    metrics_text: Callable[[], Awaitable[str]] | None = None) -> Dashboard:
    """The Dashboard of one supervisor: its operations through `control`, its logins as `settings` say."""
    address = settings.address
    sessions = Sessions(settings.credentials, settings.session_hours * 3600)
    return Dashboard(SupervisorOperations(control), sessions, control.supervisor.config.supervisor.identifier,
                     metrics_text, loopback_host_only=settings.credentials is None and address is not None
                     and address.kind == "tcp")


class DashboardServer:
    """The dashboard's listener (TCP or a unix socket) on the supervisor's loop."""

    def __init__(self, settings: DashboardSettings, dashboard: Dashboard, source: str = ""):
        self.settings = settings
        self.source = source  # the config file, named by a listen error
        address = settings.address
        assert address is not None
        self.address = address
        self.dashboard = dashboard
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Listen; a unix socket is made 0600 before anyone can connect. A ConfigError when it cannot."""
        try:
            await self._listen()
        except OSError as exc:
            raise ConfigError(f"{self.source}: [dashboard] listen = {self.settings.listen!r}: cannot listen there: "
                              f"{exc.strerror or exc}") from None
        where = self.settings.listen if self.address.kind == "unix" or self.address.port else \
            ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in self.server.sockets)
        log.info("dashboard at %s%s", where, "" if self.settings.credentials else " (no login: auth = false)")
        if not is_loopback(self.address):
            log.warning("dashboard: %s is reachable from the network over plain HTTP: put it behind TLS",
                        self.settings.listen)

    async def _listen(self) -> None:
        if self.address.kind == "unix":
            path = self.address.path
            if os.path.exists(path):
                os.unlink(path)
            old = os.umask(0o177)
            try:
                self.server = await asyncio.start_unix_server(self._client, path)
            finally:
                os.umask(old)
        else:
            self.server = await asyncio.start_server(self._client, self.address.host, self.address.port)

    @property
    def port(self) -> int:
        """The TCP port bound (the kernel's pick for port 0)."""
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and end the open connections."""
        if self.server is not None:
            self.server.close()
        for task in list(self.connections):
            task.cancel()
        if self.connections:
            await asyncio.wait(self.connections, timeout=1)
        if self.address.kind == "unix":
            try:
                os.unlink(self.address.path)
            except OSError:
                pass

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self.connections) >= MAX_CONNECTIONS or task is None:
            writer.close()
            return
        self.connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            self.connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests one after the other on one connection, while both sides keep it alive."""
        parser = RequestParser(LIMITS)
        while True:
            request, keep_alive = await self._read(parser, reader, writer)
            if request is None:
                return
            try:
                response = await self.dashboard.handle(request)
            except Exception:  # a bug: its traceback in the log, a 500 to the browser, the supervisor unharmed
                log.exception("dashboard: %s %s failed", request.method, request.target)
                writer.write(error_response(500, "Internal Server Error"))
                return
            head = reply_head(response.status_text, response.all_fields(), keep_alive=keep_alive)
            writer.write(head if request.method == "HEAD" else head + response.body)
            await writer.drain()
            if not keep_alive:
                return

    async def _read(self, parser: RequestParser, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> tuple[Request | None, bool]:
        """The next whole request (None: the client left, was too slow, or was answered with an error)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + IDLE_SECONDS
        head: RequestHead | None = None
        body = bytearray()
        while True:
            event = parser.next_event()
            if event is None:
                try:
                    data = await asyncio.wait_for(reader.read(65536), max(deadline - loop.time(), 0))
                except TimeoutError:
                    if head is not None or parser.started:
                        writer.write(error_response(408, "Request Timeout"))
                    return None, False
                if not data:
                    return None, False
                if head is None and not parser.started:
                    deadline = loop.time() + READ_SECONDS  # the request has begun: it has this long to arrive
                parser.feed(data)
            elif isinstance(event, ParseError):
                writer.write(error_response(event.status, event.reason))
                return None, False
            elif isinstance(event, RequestHead):
                head = event
                deadline = min(deadline, loop.time() + READ_SECONDS)
            elif isinstance(event, BodyData):
                body += event.data
            elif isinstance(event, EndOfMessage) and head is not None:
                headers: dict[str, str] = {}
                for name, value in head.headers:
                    headers.setdefault(name.lower(), value)
                return Request(head.method, head.target, headers, bytes(body)), head.keep_alive
