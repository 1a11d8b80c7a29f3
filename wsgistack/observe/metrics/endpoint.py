"""The /metrics endpoint: a small HTTP responder for scrapers, on its own listener (never the public one
unless the user points it there).

`answer` is sans-IO: a request head in, a whole response out. Two drivers serve it: `SelectorEndpoint`
inside a master's selector loop (the server's arbiter must never block, so every socket is non-blocking
and a connection that dawdles is closed at its deadline), and `serve_asyncio` for the processes that run
an event loop (the proxy, the supervisor). One request per connection; the response says Connection: close.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from wsgistack.config.addresses import Address
from wsgistack.http.heads import reply_head

if TYPE_CHECKING:  # asyncio brings ssl: ~6 MB of RSS in every process of a sync or thread server
    import asyncio

log = logging.getLogger("wsgistack.observe")

HEAD_LIMIT = 8192  # a scraper's request head is a few hundred bytes
TIMEOUT = 5.0  # seconds a scraper gets to send its request and read the answer
PATH = "/metrics"

Render = Callable[[str], tuple[str, bytes]]  # Accept field -> (content type, body)


def check(head: bytes) -> tuple[bytes | None, str, bool]:
    """A request head (the bytes up to the blank line) as (the refusal to send, or None; the Accept field;
    whether it is a HEAD)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _plain("400 Bad Request", b"bad request\n"), "", False
    method, target, _ = parts
    if target.split("?", 1)[0] != PATH:
        return _plain("404 Not Found", b"not found: the metrics are at /metrics\n"), "", False
    if method not in ("GET", "HEAD"):
        return _plain("405 Method Not Allowed", b"method not allowed: GET or HEAD\n", [("Allow", "GET, HEAD")]), "", False
    accept = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept":
            accept = value.strip()
    return None, accept, method == "HEAD"


def scrape_response(content_type: str, body: bytes, head_only: bool) -> bytes:
    """A successful scrape's response."""
    fields = [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    return reply_head("200 OK", fields) + (b"" if head_only else body)


def render_failed() -> bytes:
    """The answer when rendering raised (a bug of ours, logged: it must not take the process down)."""
    log.exception("the metrics could not be rendered")
    return _plain("500 Internal Server Error", b"the metrics could not be rendered\n")


def answer(head: bytes, render: Render) -> bytes:
    """The response to a request head, rendered now."""
    refusal, accept, head_only = check(head)
    if refusal is not None:
        return refusal
    try:
        content_type, body = render(accept)
    except Exception:  # noqa: BLE001
        return render_failed()
    return scrape_response(content_type, body, head_only)


def _plain(status: str, body: bytes, extra: list[tuple[str, str]] | None = None) -> bytes:
    fields = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *(extra or [])]
    return reply_head(status, fields) + body


def listen(address: Address) -> socket.socket:
    """A non-blocking listening socket for the endpoint (a stale unix socket file is replaced)."""
    if address.kind == "unix":
        try:
            os.unlink(address.path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(address.path)
    else:
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host or "127.0.0.1", address.port))
    sock.listen(64)
    sock.setblocking(False)
    sock.set_inheritable(False)
    return sock


def where(sock: socket.socket) -> str:
    """The endpoint's address as a scraper would name it."""
    name = sock.getsockname()
    if isinstance(name, str):
        return f"unix:{name}"
    host = f"[{name[0]}]" if ":" in name[0] else name[0]
    return f"http://{host}:{name[1]}{PATH}"


class _Exchange:
    __slots__ = ("deadline", "outgoing", "received", "sock")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.received = bytearray()
        self.outgoing = b""
        self.deadline = time.monotonic() + TIMEOUT


class SelectorEndpoint:
    """The endpoint driven by a master's selector: call `handle(key)` for keys whose data is this object
    and `expire()` once per loop turn."""

    def __init__(self, selector: selectors.BaseSelector, sock: socket.socket, render: Render):
        self.selector = selector
        self.sock = sock
        self.render = render
        self.exchanges: dict[int, _Exchange] = {}
        selector.register(sock, selectors.EVENT_READ, self)

    def handle(self, key: selectors.SelectorKey, events: int) -> None:
        """A ready socket: the listener (accept) or one exchange (read, or write the rest)."""
        if key.fileobj is self.sock:
            self._accept()
            return
        exchange = self.exchanges.get(key.fd)
        if exchange is None:
            return
        if exchange.outgoing:
            self._write(exchange)
        else:
            self._read(exchange)

    def _accept(self) -> None:
        for _ in range(16):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            conn.setblocking(False)
            exchange = _Exchange(conn)
            self.exchanges[conn.fileno()] = exchange
            self.selector.register(conn, selectors.EVENT_READ, self)

    def _read(self, exchange: _Exchange) -> None:
        try:
            data = exchange.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(exchange)
            return
        exchange.received += data
        end = exchange.received.find(b"\r\n\r\n")
        if end < 0:
            if len(exchange.received) > HEAD_LIMIT:
                exchange.outgoing = _plain("431 Request Header Fields Too Large", b"request head too large\n")
                self._write(exchange)
            return
        exchange.outgoing = answer(bytes(exchange.received[:end]), self.render)
        self._write(exchange)

    def _write(self, exchange: _Exchange) -> None:
        try:
            sent = exchange.sock.send(exchange.outgoing)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(exchange)
            return
        exchange.outgoing = exchange.outgoing[sent:]
        if not exchange.outgoing:
            self._close(exchange)
        else:
            self.selector.modify(exchange.sock, selectors.EVENT_WRITE, self)

    def _close(self, exchange: _Exchange) -> None:
        self.exchanges.pop(exchange.sock.fileno(), None)
        try:
            self.selector.unregister(exchange.sock)
        except (KeyError, ValueError):
            pass
        exchange.sock.close()

    def expire(self) -> None:
        """Close the exchanges past their deadline (a scraper that connected and went quiet)."""
        now = time.monotonic()
        for exchange in [e for e in self.exchanges.values() if e.deadline < now]:
            self._close(exchange)

    def close(self) -> None:
        """Close the listener and every exchange."""
        for exchange in list(self.exchanges.values()):
            self._close(exchange)
        self.selector.unregister(self.sock)
        self.sock.close()


async def serve_asyncio(sock: socket.socket, render: Callable[[str], Awaitable[tuple[str, bytes]]]) -> asyncio.AbstractServer:
    """The endpoint on the running event loop, for an async `render` (the supervisor asks its children)."""
    import asyncio  # noqa: PLC0415 - only the processes that run a loop pay for it

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            refusal, accept, head_only = check(head[:-4])
            if refusal is None:
                try:
                    content_type, body = await render(accept)
                    refusal = scrape_response(content_type, body, head_only)
                except Exception:  # noqa: BLE001
                    refusal = render_failed()
            writer.write(refusal)
            await asyncio.wait_for(writer.drain(), TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()

    if sock.family == socket.AF_UNIX:
        return await asyncio.start_unix_server(exchange, sock=sock, limit=HEAD_LIMIT)
    return await asyncio.start_server(exchange, sock=sock, limit=HEAD_LIMIT)
