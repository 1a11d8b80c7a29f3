"""wsgi.input: a file-like view of the request body that never reads past it.

It pulls decoded body pieces from a callable the connection provides (which does the socket reads, the
100-continue and the timeouts), so the same stream serves every worker model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator


class InputStream:
    """The request body as PEP 3333's input stream (read, readline, readlines, iteration)."""

    def __init__(self, pull: Callable[[], bytes]):
        self._pull = pull  # returns the next piece of body, or b"" at its end
        self._buffer = bytearray()
        self._eof = False

    def _fill(self) -> bool:
        if self._eof:
            return False
        piece = self._pull()
        if not piece:
            self._eof = True
            return False
        self._buffer += piece
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes of the body (all of the rest when size is -1 or None)."""
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        while len(self._buffer) < size and self._fill():
            pass
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """One line, newline included, of at most `size` bytes."""
        limit = None if size is None or size < 0 else size
        start = 0
        while True:
            index = self._buffer.find(b"\n", start)
            if index >= 0:
                end = index + 1
                break
            if limit is not None and len(self._buffer) >= limit:
                end = limit
                break
            start = len(self._buffer)
            if not self._fill():
                end = len(self._buffer)
                break
        if limit is not None:
            end = min(end, limit)
        line = bytes(self._buffer[:end])
        del self._buffer[:end]
        return line

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """The remaining lines (stopping once `hint` bytes were read, when given)."""
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    @property
    def finished(self) -> bool:
        """True when the whole body was read by the app."""
        return self._eof and not self._buffer
