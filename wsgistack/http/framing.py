"""How a response's body goes on the wire (RFC 9112 §6), and the chunked coding.

Content-Length when the app gives one, chunked for HTTP/1.1 when it does not, close-delimited for HTTP/1.0;
no body at all for HEAD, 1xx, 204 and 304.
"""

from __future__ import annotations


class Framing:
    """How the body of one response goes on the wire, and whether the connection may be reused after it."""

    def __init__(self, mode: str, length: int | None = None):
        self.mode = mode  # "length", "chunked", "close" or "none"
        self.remaining = length
        self.sent = 0  # body bytes the app produced and we sent (before transfer coding)

    def encode(self, data: bytes) -> bytes:
        """The bytes to write for one piece of the app's body."""
        if not data or self.mode == "none":
            return b""
        if self.mode == "length":
            assert self.remaining is not None
            if len(data) > self.remaining:
                data = data[: self.remaining]  # never send more than announced: it would be a second response
            self.remaining -= len(data)
            self.sent += len(data)
            return data
        self.sent += len(data)
        if self.mode == "chunked":
            return b"%x\r\n%b\r\n" % (len(data), data)
        return data

    def finish(self) -> bytes:
        """The bytes that end the body."""
        return b"0\r\n\r\n" if self.mode == "chunked" else b""

    @property
    def complete(self) -> bool:
        """False when the app sent less than its Content-Length: the connection cannot be reused."""
        return self.mode != "length" or self.remaining == 0


def choose_framing(status: int, method: str, length: int | None, version: str) -> Framing:
    """How a response's body goes on the wire (RFC 9112 §6): none for HEAD, 1xx, 204 and 304; its
    Content-Length when known; chunked to an HTTP/1.1 client; otherwise until the connection closes."""
    if method == "HEAD" or status < 200 or status in (204, 304):
        return Framing("none")
    if length is not None:
        return Framing("length", length)
    return Framing("chunked") if version == "1.1" else Framing("close")
