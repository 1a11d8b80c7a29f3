"""The log streams supervisorctl follows over HTTP: GET /logtail/NAME[/stdout|/stderr] (`tail -f`, `fg`) and
GET /mainlogtail (`maintail -f`), on the same socket as XML-RPC.

Each is one chunked response that lasts until the client goes away or the supervisor stops: the log's last
FIRST_BYTES, then whatever is added, checked every POLL seconds (as supervisord's tail_f_producer does). A
program's output comes from what its LogWriter keeps in memory (so it works without a log file, and across
rotations); the supervisor's own log is followed in its file, reopened when logrotate moves it.
"""

from __future__ import annotations

import asyncio
import os
import stat
from urllib.parse import unquote

from wsgistack.http.framing import Framing
from wsgistack.http.heads import error_response, reply_head
from wsgistack.supervisor.logs import LogWriter
from wsgistack.supervisor.process import Process
from wsgistack.supervisor.runtime import Supervisor

FIRST_BYTES = 1024  # supervisord's logtail begins with the last 1024 bytes
POLL = 0.1  # seconds between looks at the log; supervisord's producer polls at the same pace
TRUNCATED = b"==> File truncated <==\n"  # supervisord's words, which supervisorctl users know


def is_log_stream(target: str) -> bool:
    """True for the request targets this module answers."""
    return target.startswith(("/logtail/", "/mainlogtail"))


class ProcessOutput:
    """One stream of one process, read from its writer's memory by offset."""

    def __init__(self, supervisor: Supervisor, process: Process, writer: LogWriter):
        self.supervisor = supervisor
        self.process = process
        self.writer = writer
        self.offset = max(writer.written - FIRST_BYTES, 0)

    def more(self) -> bytes | None:
        """What came since the last call; None once the process is gone (removed by update or reload)."""
        if self.supervisor.processes.get(self.process.name) is not self.process:
            return None
        kept, total = bytes(self.writer.recent), self.writer.written
        start = max(self.offset, total - len(kept))
        self.offset = total
        return kept[len(kept) - (total - start):] if total > start else b""


class FileFollower:
    """A file followed as `tail -F` does: new bytes; a truncation noted; a rotated file reopened by name."""

    def __init__(self, path: str):
        self.path = path
        self.handle = open(path, "rb")  # noqa: SIM115 (closed by close())
        size = os.fstat(self.handle.fileno()).st_size
        self.handle.seek(max(size - FIRST_BYTES, 0))

    def more(self) -> bytes | None:
        """What the file gained since the last call."""
        try:
            if os.stat(self.path).st_ino != os.fstat(self.handle.fileno()).st_ino:
                rest = self.handle.read()  # what the old file got before it was moved
                self.handle.close()
                self.handle = open(self.path, "rb")  # noqa: SIM115
                return rest
        except FileNotFoundError:
            pass  # moved away, the new one not yet created: keep reading the old one
        position = self.handle.tell()
        if os.fstat(self.handle.fileno()).st_size < position:
            self.handle.seek(0)
            return TRUNCATED
        return self.handle.read()

    def close(self) -> None:
        """Release the file."""
        self.handle.close()


def open_source(target: str, supervisor: Supervisor) -> ProcessOutput | FileFollower | None:
    """What a GET target names, or None (a 404: no such process or stream, no log file)."""
    path = unquote(target.split("?", 1)[0])
    if path.rstrip("/") == "/mainlogtail":
        logfile = supervisor.config.supervisor.logfile
        try:
            if not logfile or not stat.S_ISREG(os.stat(logfile).st_mode):
                return None
            return FileFollower(logfile)
        except OSError:
            return None
    name, _, stream = path[len("/logtail/"):].partition("/")
    stream = stream or "stdout"
    found = supervisor.select(name) if name and not name.endswith(":*") and name != "all" else []
    if len(found) != 1 or stream not in ("stdout", "stderr"):
        return None
    process = found[0]
    return ProcessOutput(supervisor, process, process.stdout if stream == "stdout" else process.stderr)


async def serve_log_stream(target: str, supervisor: Supervisor, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter, closing: asyncio.Event) -> None:
    """Answer one GET for a log stream; returns when the client closes, the source ends or `closing` is set."""
    source = open_source(target, supervisor)
    if source is None:
        writer.write(error_response(404, "No such process, stream or log file"))
        await writer.drain()
        return
    framing = Framing("chunked")
    writer.write(reply_head("200 OK", [("Content-Type", "text/plain;charset=utf-8"), ("X-Accel-Buffering", "no"),
                                       ("Transfer-Encoding", "chunked")]))
    gone = asyncio.ensure_future(_until_eof(reader))
    stop = asyncio.ensure_future(closing.wait())
    try:
        while True:
            data = source.more()
            if data is None:
                break
            if data:
                writer.write(framing.encode(data))
                await writer.drain()
            done, _ = await asyncio.wait({gone, stop}, timeout=POLL, return_when=asyncio.FIRST_COMPLETED)
            if gone in done:
                return
            if stop in done:
                break
        writer.write(framing.finish())
        await writer.drain()
    finally:
        gone.cancel()
        stop.cancel()
        if isinstance(source, FileFollower):
            source.close()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    # supervisorctl sends nothing after its request (an empty line at most): the end of input is its leaving
    while await reader.read(65536):
        pass
