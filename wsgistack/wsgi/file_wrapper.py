"""wsgi.file_wrapper: lets the server send a real file with os.sendfile instead of iterating over it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import IO


class FileWrapper:
    """Wraps a file-like object; iterates in blocks, or is recognised by the server for sendfile."""

    def __init__(self, filelike: IO[bytes], block_size: int = 65536):
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.block_size)
            if not block:
                return
            yield block

    def sendfile_source(self) -> tuple[int, int, int] | None:
        """(fd, offset, size left) when the file is a regular file on disk, else None (iterate instead)."""
        try:
            fd = self.filelike.fileno()
            info = os.fstat(fd)
        except (AttributeError, OSError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        try:
            offset = self.filelike.tell()
        except (AttributeError, OSError):
            offset = 0
        return fd, offset, max(0, info.st_size - offset)
