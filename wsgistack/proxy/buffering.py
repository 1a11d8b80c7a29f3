"""A request body, read whole before it goes upstream: in memory up to a size, then in a temporary file.

Reading the body completely first is what lets a slow client trickle its upload without holding an app
worker: the upstream sees the request only when it can be sent at full speed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO

CHUNK = 256 * 1024


class RequestBody:
    """Collects the body pieces of one request."""

    def __init__(self, memory_limit: int):
        self.memory_limit = memory_limit
        self.size = 0
        self._pieces: list[bytes] = []
        self._file: IO[bytes] | None = None

    def add(self, data: bytes) -> None:
        """Append a piece; past the memory limit everything moves to a temporary file."""
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
        elif self.size > self.memory_limit:
            self._file = tempfile.TemporaryFile(prefix="wsgistack-body-")
            for piece in self._pieces:
                self._file.write(piece)
            self._file.write(data)
            self._pieces = []
        else:
            self._pieces.append(data)

    @property
    def in_memory(self) -> bool:
        """True while the body is small enough to be kept in memory."""
        return self._file is None

    def memory(self) -> bytes:
        """The whole body when it is in memory."""
        return b"".join(self._pieces)

    def chunks(self) -> Iterator[bytes]:
        """The body again from its start, in pieces of at most CHUNK bytes."""
        if self._file is None:
            yield from self._pieces
            return
        self._file.flush()
        self._file.seek(0)
        while True:
            piece = self._file.read(CHUNK)
            if not piece:
                return
            yield piece

    def close(self) -> None:
        """Drop the temporary file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._pieces = []
