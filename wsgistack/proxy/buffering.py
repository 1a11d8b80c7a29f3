"""Bytes held by the proxy on their way through: in memory up to a size, then in a temporary file.

One spooler serves both directions. A request body is read whole before it goes upstream, so a slow client
can trickle its upload without holding an app worker: the upstream sees the request only when it can be
sent at full speed. A response is read on from the upstream while the client cannot take it yet (nginx's
proxy_buffering), so the app worker is free as soon as the app has finished, however slowly the client reads.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Iterator
from typing import IO

CHUNK = 256 * 1024


class Spool:
    """A first-in first-out byte queue: pieces in memory up to `memory_limit`, the rest in a temporary file.

    `file_limit` caps the bytes waiting in the file (0: no file at all): past it `full` is true and the
    producer is expected to wait, which is how a buffered response falls back to backpressure.
    """

    prefix = "wsgistack-"  # of the temporary file's name

    def __init__(self, memory_limit: int, file_limit: int | None = None, prefix: str | None = None):
        self.memory_limit = memory_limit
        self.file_limit = file_limit
        if prefix is not None:
            self.prefix = prefix
        self.size = 0  # every byte ever added
        self.pending = 0  # bytes added and not taken yet
        self._pieces: deque[bytes] = deque()
        self._in_memory = 0  # pending bytes in _pieces
        self._file: IO[bytes] | None = None
        self._written = 0  # end of the data in the file
        self._read = 0  # where take() reads the file next

    def add(self, data: bytes) -> None:
        """Append bytes: to memory while they fit, else (and from then on, to keep the order) to the file."""
        self.size += len(data)
        self.pending += len(data)
        if self._file is None and (self._in_memory + len(data) <= self.memory_limit or self.file_limit == 0):
            self._pieces.append(data)
            self._in_memory += len(data)
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix=self.prefix)
        os.pwrite(self._file.fileno(), data, self._written)
        self._written += len(data)

    @property
    def full(self) -> bool:
        """True when the producer should wait: the file (or, without one, memory) holds all it may."""
        if self.file_limit == 0:
            return self._in_memory >= self.memory_limit
        return self.file_limit is not None and self._written - self._read >= self.file_limit

    @property
    def in_memory(self) -> bool:
        """True while nothing had to go to the file."""
        return self._file is None

    def take(self, limit: int = CHUNK) -> bytes:
        """Up to `limit` of the oldest pending bytes (empty when none), removed from the spool."""
        if self._pieces:
            piece = self._pieces.popleft()
            if len(piece) > limit:
                self._pieces.appendleft(piece[limit:])
                piece = piece[:limit]
            self._in_memory -= len(piece)
        elif self._file is not None and self._read < self._written:
            piece = os.pread(self._file.fileno(), min(limit, self._written - self._read), self._read)
            self._read += len(piece)
            if self._read == self._written:  # drained: the file starts over rather than growing on
                self._file.truncate(0)
                self._read = self._written = 0
        else:
            return b""
        self.pending -= len(piece)
        return piece

    def close(self) -> None:
        """Drop the temporary file, if any, and what is pending."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._pieces:
            self._pieces.clear()
        self._in_memory = self.pending = 0


class RequestBody(Spool):
    """The body of one request, collected whole and then read again from its start for each attempt."""

    prefix = "wsgistack-body-"  # Spool's __init__ as it is: one made for every request

    def add(self, data: bytes) -> None:
        """Append a piece; past the memory limit everything moves to the temporary file."""
        if self._file is None and self._in_memory + len(data) > self.memory_limit:
            self._file = tempfile.TemporaryFile(prefix=self.prefix)
            for piece in self._pieces:
                os.pwrite(self._file.fileno(), piece, self._written)
                self._written += len(piece)
            self._pieces.clear()
            self._in_memory = 0
        super().add(data)

    def memory(self) -> bytes:
        """The whole body when it is in memory."""
        return b"".join(self._pieces)

    def chunks(self) -> Iterator[bytes]:
        """The body again from its start, in pieces of at most CHUNK bytes (each attempt reads it anew)."""
        if self._file is None:
            yield from self._pieces
            return
        offset = 0
        while offset < self._written:
            piece = os.pread(self._file.fileno(), min(CHUNK, self._written - offset), offset)
            if not piece:
                return
            offset += len(piece)
            yield piece
