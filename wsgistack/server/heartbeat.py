"""A worker's heartbeat: a monotonic timestamp in memory shared with the master (no syscall per beat).

The master creates it before the fork; the worker writes, the master reads. CLOCK_MONOTONIC is one clock for
every process on the machine, so the two sides compare times directly.
"""

from __future__ import annotations

import mmap
import struct
import time

_FORMAT = struct.Struct("d")


class Heartbeat:
    """Eight bytes of shared memory holding the worker's last sign of life."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, _FORMAT.size)
        self.beat()

    def beat(self) -> None:
        """Say 'alive' now."""
        _FORMAT.pack_into(self._memory, 0, time.monotonic())

    def last(self) -> float:
        """When the worker last said it was alive (monotonic seconds)."""
        return _FORMAT.unpack_from(self._memory, 0)[0]

    def silent_for(self) -> float:
        """Seconds since the last beat."""
        return time.monotonic() - self.last()

    def close(self) -> None:
        """Release the shared page."""
        self._memory.close()
