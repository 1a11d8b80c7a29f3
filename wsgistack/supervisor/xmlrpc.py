"""The XML-RPC facade: the `supervisor.*` methods the real supervisorctl calls, over HTTP on the control socket.

Requests are parsed by our own sans-IO HTTP parser; XML-RPC marshalling is the standard library's. Fault
codes and record fields are supervisord's, as its API documentation lists them, so supervisorctl shows the
same output against `wsgistack supervise` as against supervisord.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import os
import time
import xmlrpc.client
from typing import Any

from wsgistack import __version__
from wsgistack.config.errors import ConfigError
from wsgistack.http.heads import error_response, simple_response
from wsgistack.http.parser import BodyData, EndOfMessage, Limits, ParseError, RequestHead, RequestParser
from wsgistack.supervisor.logs import LogWriter, read_file
from wsgistack.supervisor.logtail import is_log_stream, serve_log_stream
from wsgistack.supervisor.own_log import clear_supervisor_log
from wsgistack.supervisor.process import Process
from wsgistack.supervisor.runtime import Supervisor
from wsgistack.supervisor.settings import SupervisorConfig
from wsgistack.supervisor.states import RUNNING_STATES, STOPPED_STATES, ProcessState
from wsgistack.supervisor.status import describe

API_VERSION = "3.0"  # supervisorctl refuses servers that do not say this
MAX_BODY = 1 << 20  # supervisorctl's requests are a few hundred bytes; a multicall of every process, a few KiB
# a head of at most ~130 KiB: supervisorctl sends six fields
HEAD_LIMITS = Limits(request_line=4094, fields=32, field_size=4096, body_size=0)
LINGER_SECONDS, LINGER_BYTES = 2.0, 4 << 20  # what a refused client may still send, read and dropped

# supervisord's fault codes
UNKNOWN_METHOD, INCORRECT_PARAMETERS, BAD_ARGUMENTS, BAD_NAME, BAD_SIGNAL, NO_FILE = 1, 2, 3, 10, 11, 20
FAILED, ABNORMAL_TERMINATION, SPAWN_ERROR, ALREADY_STARTED, NOT_RUNNING = 30, 40, 50, 60, 70
SUCCESS, ALREADY_ADDED, STILL_RUNNING, CANT_REREAD = 80, 90, 91, 92


class Fault(xmlrpc.client.Fault):
    """An XML-RPC fault with supervisord's code and a `CODE_NAME: detail` string."""

    def __init__(self, code: int, name: str, detail: str = ""):
        super().__init__(code, f"{name}: {detail}" if detail else name)


class RPCInterface:
    """The `supervisor.*` and `system.*` methods, over a Supervisor."""

    def __init__(self, supervisor: Supervisor, on_shutdown):
        self.supervisor = supervisor
        self.on_shutdown = on_shutdown
        self.pending: SupervisorConfig | None = None  # the config as reloadConfig (reread) last read it
        self.closing = asyncio.Event()  # set when the control server closes: log streams end

    async def call(self, method: str, params: tuple) -> Any:
        """Dispatch one call; raises Fault for errors supervisorctl knows how to show."""
        handler = getattr(self, method.replace(".", "_"), None) if method.startswith(("supervisor.", "system.")) \
            else None
        if handler is None:
            raise Fault(UNKNOWN_METHOD, "UNKNOWN_METHOD", method)
        try:
            result = handler(*params)
        except TypeError as exc:
            raise Fault(INCORRECT_PARAMETERS, "INCORRECT_PARAMETERS", str(exc)) from None
        if asyncio.iscoroutine(result):
            result = await result
        return result

    # -- the supervisor itself --------------------------------------------------------------------------

    def supervisor_getAPIVersion(self) -> str:
        return API_VERSION

    supervisor_getVersion = supervisor_getAPIVersion

    def supervisor_getSupervisorVersion(self) -> str:
        return f"wsgistack {__version__}"

    def supervisor_getIdentification(self) -> str:
        return self.supervisor.config.supervisor.identifier

    def supervisor_getState(self) -> dict:
        return {"statecode": 1, "statename": "RUNNING"}

    def supervisor_getPID(self) -> int:
        return os.getpid()

    def supervisor_shutdown(self) -> bool:
        self.supervisor.loop.call_soon(self.on_shutdown)
        return True

    def supervisor_restart(self) -> bool:
        """supervisorctl's reload: stop everything, read the config again, start it (in the background, as
        supervisord answers before it restarts)."""
        try:
            new = self.supervisor.reread()
        except ConfigError as exc:
            raise Fault(CANT_REREAD, "CANT_REREAD", str(exc)) from None
        self.pending = None
        self.supervisor.loop.create_task(self.supervisor.reload(new))
        return True

    def supervisor_readLog(self, offset: int, length: int) -> str:
        """Bytes of the supervisor's own log file (maintail)."""
        logfile = self.supervisor.config.supervisor.logfile
        if not logfile or not os.path.exists(logfile):
            raise Fault(NO_FILE, "NO_FILE", logfile or "no logfile configured ([supervisord] logfile=)")
        try:
            return read_file(logfile, offset, length).decode("utf-8", "replace")
        except ValueError as exc:
            raise Fault(BAD_ARGUMENTS, "BAD_ARGUMENTS", str(exc)) from None
        except OSError as exc:
            raise Fault(FAILED, "FAILED", f"{logfile}: {exc.strerror}") from None

    supervisor_readMainLog = supervisor_readLog

    def supervisor_clearLog(self) -> bool:
        """Empty the supervisor's own log file."""
        if not clear_supervisor_log(self.supervisor.config.supervisor):
            raise Fault(NO_FILE, "NO_FILE", self.supervisor.config.supervisor.logfile or "no logfile configured")
        return True

    def supervisor_getAllConfigInfo(self) -> list[dict]:
        """Every process of the config as last read (reread), and whether it is in use (avail)."""
        config = self.pending or self.supervisor.config
        in_use = set(self.supervisor.groups())
        group_priority: dict[str, int] = {}
        for settings in config.programs:
            group_priority[settings.group] = min(group_priority.get(settings.group, settings.priority),
                                                 settings.priority)
        records = []
        for settings in config.programs:
            records.append({
                "name": settings.name, "group": settings.group, "inuse": settings.group in in_use,
                "autostart": settings.autostart, "group_prio": group_priority[settings.group],
                "process_prio": settings.priority, "command": " ".join(settings.command),
                "directory": settings.directory or "none", "uid": settings.user or "none",
                "exitcodes": list(settings.exitcodes), "killasgroup": settings.killasgroup,
                "redirect_stderr": settings.redirect_stderr, "startretries": settings.startretries,
                "startsecs": int(settings.startsecs), "stopsignal": int(settings.stopsignal),
                "stopwaitsecs": int(settings.stopwaitsecs),
                "stdout_logfile": settings.stdout.path or "none", "stderr_logfile": settings.stderr.path or "none",
                "stdout_logfile_maxbytes": settings.stdout.maxbytes, "stdout_logfile_backups": settings.stdout.backups,
                "stderr_logfile_maxbytes": settings.stderr.maxbytes, "stderr_logfile_backups": settings.stderr.backups,
            })
        return sorted(records, key=lambda record: record["name"])

    def supervisor_reloadConfig(self) -> list:
        try:
            self.pending = self.supervisor.reread()
        except ConfigError as exc:
            raise Fault(CANT_REREAD, "CANT_REREAD", str(exc)) from None
        return [list(self.supervisor.diff(self.pending))]

    def supervisor_addProcessGroup(self, name: str) -> bool:
        new = self.pending or self.supervisor.config
        if name in self.supervisor.groups():
            raise Fault(ALREADY_ADDED, "ALREADY_ADDED", name)
        if not any(p.group == name for p in new.programs):
            raise Fault(BAD_NAME, "BAD_NAME", name)
        self.supervisor.add_group(new, name)
        self.supervisor.config = new
        return True

    def supervisor_removeProcessGroup(self, name: str) -> bool:
        if name not in self.supervisor.groups():
            raise Fault(BAD_NAME, "BAD_NAME", name)
        if not self.supervisor.remove_group(name):
            raise Fault(STILL_RUNNING, "STILL_RUNNING", name)
        return True

    def system_listMethods(self) -> list[str]:
        return sorted(name.replace("_", ".", 1) for name in dir(self) if name.startswith(("supervisor_", "system_")))

    async def system_multicall(self, calls: list) -> list:
        results = []
        for call in calls:
            try:
                results.append(await self.call(call["methodName"], tuple(call.get("params", ()))))
            except xmlrpc.client.Fault as fault:
                results.append({"faultCode": fault.faultCode, "faultString": fault.faultString})
        return results

    # -- processes -------------------------------------------------------------------------------------

    def _one(self, name: str) -> Process:
        found = self.supervisor.select(name)
        if len(found) != 1 or name.endswith(":*"):
            raise Fault(BAD_NAME, "BAD_NAME", name)
        return found[0]

    def _group(self, name: str) -> list[Process]:
        found = [p for p in self.supervisor.ordered() if p.settings.group == name]
        if not found:
            raise Fault(BAD_NAME, "BAD_NAME", name)
        return found

    def _info(self, process: Process) -> dict:
        record = next(r for r in self.supervisor.status() if f"{r['group']}:{r['name']}" == process.name)
        record["description"] = describe(record)  # supervisorctl prints name and state itself
        record["logfile"] = record["stdout_logfile"]
        return record

    def supervisor_getProcessInfo(self, name: str) -> dict:
        return self._info(self._one(name))

    def supervisor_getAllProcessInfo(self) -> list[dict]:
        return [self._info(p) for p in self.supervisor.ordered()]

    async def _await_state(self, process: Process, done: set, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while process.state not in done and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def supervisor_startProcess(self, name: str, wait: bool = True) -> bool:
        process = self._one(name)
        if not process.start():
            raise Fault(ALREADY_STARTED, "ALREADY_STARTED", name)
        if wait:
            await self._await_state(process, {ProcessState.RUNNING, ProcessState.FATAL, ProcessState.BACKOFF},
                                    process.settings.startsecs + 30)
            if process.state in (ProcessState.BACKOFF, ProcessState.FATAL):  # could not start, or exited early
                raise Fault(SPAWN_ERROR, "SPAWN_ERROR", name)
            if process.state != ProcessState.RUNNING:
                raise Fault(ABNORMAL_TERMINATION, "ABNORMAL_TERMINATION", name)
        return True

    async def supervisor_stopProcess(self, name: str, wait: bool = True) -> bool:
        process = self._one(name)
        if not process.stop():
            raise Fault(NOT_RUNNING, "NOT_RUNNING", name)
        if wait:
            await self._await_state(process, set(STOPPED_STATES), process.settings.stopwaitsecs + 5)
        return True

    async def _many(self, processes: list[Process], action, *args: Any) -> list[dict]:
        """`action(name, *args)` for each process, as supervisord's group calls report it: one record per
        process with its fault code (SUCCESS when done); those already started (or not running) are left out."""
        results = []
        for process in processes:
            try:
                outcome = action(process.name, *args)
                if asyncio.iscoroutine(outcome):
                    await outcome
                code, description = SUCCESS, "OK"
            except xmlrpc.client.Fault as fault:
                code, description = fault.faultCode, fault.faultString
            if code in (ALREADY_STARTED, NOT_RUNNING):
                continue
            results.append({"name": process.settings.name, "group": process.settings.group, "status": code,
                            "description": description})
        return results

    async def supervisor_startProcessGroup(self, name: str, wait: bool = True) -> list[dict]:
        return await self._many(self._group(name), self.supervisor_startProcess, wait)

    async def supervisor_stopProcessGroup(self, name: str, wait: bool = True) -> list[dict]:
        return await self._many(self._group(name)[::-1], self.supervisor_stopProcess, wait)

    async def supervisor_startAllProcesses(self, wait: bool = True) -> list[dict]:
        return await self._many(self.supervisor.ordered(), self.supervisor_startProcess, wait)

    async def supervisor_stopAllProcesses(self, wait: bool = True) -> list[dict]:
        return await self._many(self.supervisor.ordered(reverse=True), self.supervisor_stopProcess, wait)

    async def supervisor_signalProcessGroup(self, name: str, signame: str) -> list[dict]:
        self._signal_number(signame)
        return await self._many(self._group(name), self.supervisor_signalProcess, signame)

    async def supervisor_signalAllProcesses(self, signame: str) -> list[dict]:
        self._signal_number(signame)
        return await self._many(self.supervisor.ordered(), self.supervisor_signalProcess, signame)

    def _signal_number(self, signame: str) -> None:
        # a bad signal is one fault for the whole call, before anything is sent, as supervisord does
        try:
            self.supervisor.signal([], signame)
        except ValueError:
            raise Fault(BAD_SIGNAL, "BAD_SIGNAL", str(signame)) from None

    def supervisor_signalProcess(self, name: str, signame: str) -> bool:
        process = self._one(name)
        self._signal_number(signame)
        if process.state not in (ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING):
            raise Fault(NOT_RUNNING, "NOT_RUNNING", name)  # supervisord signals only these states
        [delivered] = self.supervisor.signal([process], signame).values()
        if not delivered:
            raise Fault(NOT_RUNNING, "NOT_RUNNING", name)
        return True

    def supervisor_sendProcessStdin(self, name: str, chars: str) -> bool:
        """What supervisorctl's fg types goes to the program's stdin (a pipe, as supervisord gives)."""
        process = self._one(name)
        if process.state not in RUNNING_STATES or not process.pid:
            raise Fault(NOT_RUNNING, "NOT_RUNNING", name)
        try:
            process.send_stdin(chars.encode("utf-8") if isinstance(chars, str) else bytes(chars))
        except BlockingIOError:
            raise Fault(FAILED, "FAILED", f"{name}: its stdin is full (it does not read it)") from None
        except OSError:
            raise Fault(NOT_RUNNING, "NOT_RUNNING", name) from None
        return True

    def _clear(self, name: str) -> bool:
        process = self._one(name)
        process.stdout.clear()
        if process.stderr is not process.stdout:
            process.stderr.clear()
        return True

    def supervisor_clearProcessLogs(self, name: str) -> bool:
        """Empty a process's stdout and stderr logs (its files, and what tail shows)."""
        return self._clear(name)

    supervisor_clearProcessLog = supervisor_clearProcessLogs

    async def supervisor_clearAllProcessLogs(self) -> list[dict]:
        return await self._many(self.supervisor.ordered(), self._clear)

    def _tail(self, name: str, stream: str, offset: int, length: int) -> list:
        return list(self.supervisor.tail(self._one(name), stream, offset, length))

    def supervisor_tailProcessStdoutLog(self, name: str, offset: int, length: int) -> list:
        return self._tail(name, "stdout", offset, length)

    def supervisor_tailProcessStderrLog(self, name: str, offset: int, length: int) -> list:
        return self._tail(name, "stderr", offset, length)

    def _read(self, writer: LogWriter, offset: int, length: int) -> str:
        try:
            return writer.read(offset, length).decode("utf-8", "replace")
        except ValueError as exc:
            raise Fault(BAD_ARGUMENTS, "BAD_ARGUMENTS", str(exc)) from None

    def supervisor_readProcessStdoutLog(self, name: str, offset: int, length: int) -> str:
        """Bytes of a process's stdout (tail -300 NAME asks for offset -300, length 0: the last 300)."""
        return self._read(self._one(name).stdout, offset, length)

    def supervisor_readProcessStderrLog(self, name: str, offset: int, length: int) -> str:
        return self._read(self._one(name).stderr, offset, length)

    supervisor_readProcessLog = supervisor_readProcessStdoutLog


async def serve_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes,
                     rpc: RPCInterface, credentials: tuple[str, str] | None) -> None:
    """Answer XML-RPC-over-HTTP requests on one connection (keep-alive), starting with bytes `first`.

    Credentials and the declared body size are checked on the head, before any of the body is read: a
    stranger's 200 MiB POST costs a 401 and a closed connection, never 200 MiB of memory.
    """
    parser = RequestParser(HEAD_LIMITS, empty_host=True)  # Host names nothing here; supervisorctl's tail -f
    parser.feed(first)
    head: RequestHead | None = None
    body = bytearray()
    while True:
        event = parser.next_event()
        if event is None:
            data = await reader.read(65536)
            if not data:
                return
            parser.feed(data)
            continue
        refusal = None
        if isinstance(event, ParseError):
            refusal = error_response(event.status, event.reason)
        elif isinstance(event, RequestHead):
            head, body = event, bytearray()
            refusal = _refuse(event, credentials)
        elif isinstance(event, BodyData):
            body += event.data
            if len(body) > MAX_BODY:  # a chunked body announces no size: counted as it comes
                refusal = error_response(413, f"An XML-RPC request takes at most {MAX_BODY} bytes")
        elif isinstance(event, EndOfMessage) and head is not None:
            if head.method == "GET" and is_log_stream(head.target):  # tail -f, maintail -f, fg
                await serve_log_stream(head.target, rpc.supervisor, reader, writer, rpc.closing)
                return
            writer.write(await _respond(head, bytes(body), rpc))
            await writer.drain()
            if not head.keep_alive:
                return
        if refusal is not None:
            writer.write(refusal)
            await writer.drain()
            await _linger(reader, writer)
            return


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close after a refusal as nginx's lingering close does: stop writing, then read and drop what the client
    is still sending for a moment, so that a close with unread data (a TCP reset) cannot destroy the answer."""
    if writer.can_write_eof():
        writer.write_eof()
    deadline = asyncio.get_running_loop().time() + LINGER_SECONDS
    dropped = 0
    while dropped < LINGER_BYTES:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            return
        if not data:
            return
        dropped += len(data)


def authorized(head: RequestHead, credentials: tuple[str, str] | None) -> bool:
    """True when no credentials are configured, or the request carries them (HTTP Basic)."""
    if credentials is None:
        return True
    expected = "Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    return hmac.compare_digest((head.header("Authorization") or "").encode(), expected.encode())


def _refuse(head: RequestHead, credentials: tuple[str, str] | None) -> bytes | None:
    """The answer to a request refused on its head alone (401, 413), or None to read its body."""
    if not authorized(head, credentials):
        return simple_response("401 Unauthorized", b"Unauthorized\n")
    if (head.content_length or 0) > MAX_BODY:
        return error_response(413, f"An XML-RPC request takes at most {MAX_BODY} bytes")
    return None


async def _respond(head: RequestHead, body: bytes, rpc: RPCInterface) -> bytes:
    if head.method != "POST":
        return error_response(405, "XML-RPC takes POST")
    try:
        params, method = xmlrpc.client.loads(body, use_builtin_types=True)
        result = await rpc.call(method or "", params)
        payload = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=False)
    except xmlrpc.client.Fault as fault:
        payload = xmlrpc.client.dumps(fault, methodresponse=True)
    except Exception as exc:  # malformed XML and the like: a fault, never a dropped connection
        payload = xmlrpc.client.dumps(xmlrpc.client.Fault(FAILED, f"FAILED: {exc}"), methodresponse=True)
    return simple_response("200 OK", payload.encode("utf-8"), content_type="text/xml", close=not head.keep_alive)
