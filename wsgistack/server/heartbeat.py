"""A worker's heartbeat: a monotonic timestamp in memory shared with the master (no syscall per beat).

The master creates it before the fork; the worker writes, the master reads. CLOCK_MONOTONIC is one clock for
every process on the machine, so the two sides compare times directly.

The timestamp is one aligned 8-byte store and load through a memoryview of doubles, never struct.pack_into:
that zeroes its buffer before writing the value, so the master, reading at that moment (a worker preempted
there on a loaded machine), saw 0.0, took the worker for silent since boot, and killed it with its request.
"""

from __future__ import annotations

import mmap
import time

_SIZE = 8  # one double


class Heartbeat:
    """Eight bytes of shared memory holding the worker's last sign of life."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, _SIZE)
        self._stamp = memoryview(self._memory).cast("d")
        self.beat()

    def beat(self) -> None:
        """Say 'alive' now."""
        self._stamp[0] = time.monotonic()

    def last(self) -> float:
        """When the worker last said it was alive (monotonic seconds)."""
        return self._stamp[0]

    def silent_for(self) -> float:
        """Seconds since the last beat."""
        return time.monotonic() - self.last()

    def close(self) -> None:
        """Release the shared page."""
        self._stamp.release()
        self._memory.close()
