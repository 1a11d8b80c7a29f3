"""Capture of a program's output: pipes always drained by the loop, files written by a thread.

A child must never block on its stdout because our disk is slow or full: the loop reads every pipe as soon as
it is readable and hands the bytes to a writer thread through a bounded queue; what does not fit, or cannot
be written (disk full), is dropped and counted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque

from wsgistack.supervisor.settings import LogSettings

log = logging.getLogger("wsgistack.supervisor")

QUEUE_LIMIT = 4 * 1024 * 1024  # bytes waiting for the disk before new output is dropped
TAIL_KEEP = 64 * 1024  # recent output kept in memory for `tail` when there is no file


class LogWriter:
    """Appends one stream's output to a file, rotating it at maxbytes into .1 … .N backups."""

    def __init__(self, settings: LogSettings):
        self.settings = settings
        self.path = settings.path
        self.dropped = 0  # bytes lost: the queue was full or the disk refused them
        self.dropped_lines = 0  # ...and the lines they held (a piece without a newline counts as one)
        self.recent = bytearray()  # the tail of the output, for `tail` without a file
        self.written = 0  # bytes seen since the start: the offset `tail -f` follows
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._lock = threading.Condition()
        self._closed = False
        self._reopen = False
        self._clear = False
        self._warned = -1e9
        self._fd = -1
        self._size = 0
        self._line = 0  # bytes of the file's last line when it has no newline yet (rotation waits for it)
        if self.path is not None and self.path not in ("/dev/stdout", "/dev/stderr"):
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="wsgistack-log", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        """Queue output for the file; never blocks the caller (the loop)."""
        self.recent += data
        self.written += len(data)
        if len(self.recent) > TAIL_KEEP:
            del self.recent[: len(self.recent) - TAIL_KEEP]
        if self.path is None:
            return
        with self._lock:
            if self._queued + len(data) > QUEUE_LIMIT:
                self.dropped += len(data)
                self.dropped_lines += max(1, data.count(b"\n"))
                return
            self._queue.append(data)
            self._queued += len(data)
            self._lock.notify()

    def reopen(self) -> None:
        """Open the file again before the next write (after logrotate moved it; SIGUSR2)."""
        with self._lock:
            self._reopen = True
            self._lock.notify()

    def read(self, offset: int, length: int) -> bytes:
        """Bytes of the output by supervisord's read rules (see read_range), offsets counted from the first byte
        the program wrote; what is no longer kept in memory (all but the last TAIL_KEEP) is left out."""
        kept, total = bytes(self.recent), self.written
        start, end = read_range(total, offset, length)
        first = total - len(kept)
        return kept[max(start, first) - first:max(end, first) - first]

    def clear(self) -> None:
        """Forget the output so far (supervisorctl's `clear`): the kept tail, what waits for the disk, and the
        file's contents. `written` keeps counting, so a `tail -f` in progress just sees nothing new."""
        self.recent.clear()
        with self._lock:
            self._queue.clear()
            self._queued = 0
            self._clear = True
            self._lock.notify()

    def close(self) -> None:
        """Write what is queued, then stop the thread and close the file."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(5)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far is on disk (for tests and `tail`)."""
        with self._lock:
            self._lock.wait_for(lambda: not self._queue, timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._queue or self._closed or self._reopen or self._clear)
                if not self._queue and self._closed:
                    break
                data = b"".join(self._queue)
                self._queue.clear()
                self._queued = 0
                reopen, self._reopen = self._reopen, False
                clear, self._clear = self._clear, False
                self._lock.notify_all()
            if clear:
                self._empty_file()
            if reopen and self._fd > 2:
                os.close(self._fd)
                self._fd = -1
            if data:
                self._write(data)
        if self._fd > 2:
            os.close(self._fd)

    def _empty_file(self) -> None:
        if self.path is None or self.path in ("/dev/stdout", "/dev/stderr"):
            return
        try:
            if self._fd > 2:
                os.ftruncate(self._fd, 0)  # O_APPEND: the next write goes to the new end, 0
            elif os.path.exists(self.path):
                os.truncate(self.path, 0)
        except OSError as exc:
            log.warning("cannot clear %s: %s", self.path, exc.strerror)
        self._size = self._line = 0

    def _open(self) -> None:
        assert self.path is not None
        if self.path in ("/dev/stdout", "/dev/stderr"):
            self._fd = 1 if self.path == "/dev/stdout" else 2
            return
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._line = 0  # an existing file is taken to end with a whole line

    def _write(self, data: bytes) -> None:
        done = 0
        try:
            if self._fd < 0:
                self._open()
            while done < len(data):
                size, rotate = self._cut(data, done)
                end = done + size
                while done < end:
                    done += os.write(self._fd, data[done:end])
                self._count(data, end - size, end)
                if rotate:
                    self._rotate()
        except OSError as exc:
            self.dropped += len(data) - done  # counted, never retried: the child must not wait for our disk
            self.dropped_lines += max(1, data.count(b"\n", done))
            if time.monotonic() - self._warned > 60:  # a full disk must not flood our own log either
                self._warned = time.monotonic()
                log.warning("cannot write %s: %s; output dropped (%d bytes so far)", self.path, exc.strerror,
                            self.dropped)

    def _cut(self, data: bytes, start: int) -> tuple[int, bool]:
        """How many bytes of data[start:] go to the current file, and whether to rotate after them.

        Rotation happens on line boundaries, so no line is split across two files: a whole line that does
        not fit starts the next file, and a line the file already holds the beginning of is finished in
        it (the file then ends past maxbytes by less than one line). Only a line longer than maxbytes by
        itself is split, at the limit.
        """
        pending = len(data) - start
        maxbytes = self.settings.maxbytes
        if not maxbytes or self._fd <= 2:
            return pending, False
        room = maxbytes - self._size
        if pending <= room:
            return pending, False
        last = data.rfind(b"\n", start, start + max(room, 0))
        if last >= 0:
            return last + 1 - start, True
        if self._line:  # the file ends inside a line: finish it here if the line is not too long
            end = data.find(b"\n", start)
            length = self._line + (end + 1 - start if end >= 0 else pending)
            if length <= maxbytes:
                return (end + 1 - start, True) if end >= 0 else (pending, False)
        elif self._size:
            return 0, True  # the file ends with a whole line: the next line starts the next file
        return max(room, 0), True  # a line longer than maxbytes

    def _count(self, data: bytes, start: int, end: int) -> None:
        """Account for data[start:end] just written: the file's size, and the length of its last line."""
        self._size += end - start
        newline = data.rfind(b"\n", start, end)
        self._line = end - newline - 1 if newline >= 0 else self._line + end - start

    def _rotate(self) -> None:
        assert self.path is not None
        os.close(self._fd)
        rotate(self.path, self.settings.backups)
        self._fd = -1
        self._open()


def read_range(size: int, offset: int, length: int) -> tuple[int, int]:
    """The byte range [start, end) of a log of `size` bytes that supervisord's read calls (readLog,
    readProcessStdoutLog) ask for: a negative offset is the last -offset bytes (length must then be 0);
    otherwise `length` bytes from `offset`, 0 meaning up to the end. ValueError for the other combinations."""
    if offset < 0:
        if length:
            raise ValueError("a negative offset reads the end of the log: its length must be 0")
        return max(size + offset, 0), size
    if length < 0:
        raise ValueError("the length must not be negative")
    end = size if length == 0 else min(offset + length, size)
    return min(offset, size), end


def read_file(path: str, offset: int, length: int) -> bytes:
    """Bytes of a log file by supervisord's read rules (see read_range); OSError when it cannot be read."""
    with open(path, "rb") as handle:
        start, end = read_range(os.fstat(handle.fileno()).st_size, offset, length)
        handle.seek(start)
        return handle.read(end - start)


def rotate(path: str, backups: int) -> None:
    """Move `path` to `path.1` (and .1 to .2 …, keeping `backups` of them); with no backups, empty it."""
    if backups > 0:
        for index in range(backups - 1, 0, -1):
            older = f"{path}.{index}"
            if os.path.exists(older):
                os.replace(older, f"{path}.{index + 1}")
        os.replace(path, f"{path}.1")
    else:
        os.truncate(path, 0)
