"""A small HTTP/1.1 client over raw sockets for the tests, reading responses with httptools.

Raw sockets let the tests send exactly the bytes they mean (pipelining, malformed requests, trickled
bodies) and see exactly what the server sends back.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import httptools


@dataclass
class Response:
    """One parsed response."""

    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunked: bool = False

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class _Collector:
    def __init__(self) -> None:
        self.done: list[Response] = []
        self.current = Response()
        self._body: list[bytes] = []

    def on_message_begin(self) -> None:
        self.current = Response()
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.current.status = self.parser.get_status_code()

    def on_chunk_header(self) -> None:
        self.current.chunked = True

    def on_body(self, body: bytes) -> None:
        self._body.append(bytes(body))

    def on_message_complete(self) -> None:
        self.current.body = b"".join(self._body)
        self.done.append(self.current)
        self.current = Response()

    def end_of_stream(self) -> None:
        if self.current.status and self.current not in self.done:
            self.on_message_complete()


class Reader:
    """Reads responses from one connection; remembers bytes that arrived beyond them."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.collector = _Collector()
        self.parser = httptools.HttpResponseParser(self.collector)
        self.collector.parser = self.parser
        self.closed = False

    def responses(self, count: int) -> list[Response]:
        """Read until `count` complete responses arrived (or the server closed)."""
        while len(self.collector.done) < count and not self.closed:
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                self.collector.end_of_stream()  # ends a close-delimited body
                break
            self.parser.feed_data(data)
        return self.collector.done[:count]

    def one(self) -> Response:
        """Exactly one more response."""
        before = len(self.collector.done)
        got = self.responses(before + 1)
        assert len(got) > before, "the server closed the connection without a response"
        return got[before]


def request(sock: socket.socket, data: bytes) -> Response:
    """Send raw bytes and read one response."""
    sock.sendall(data)
    return Reader(sock).one()


def get(path: str = "/hello", host: str = "test", extra: str = "", version: str = "1.1") -> bytes:
    """The bytes of a simple GET."""
    return f"GET {path} HTTP/{version}\r\nHost: {host}\r\n{extra}\r\n".encode("latin-1")


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the server closed the connection (reads EOF or reset, waiting up to the socket timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
