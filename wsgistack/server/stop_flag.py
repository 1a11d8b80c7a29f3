"""The whole server is stopping: one byte of shared memory the master sets before it sends TERM.

A worker is sent TERM for two reasons that must end differently. When it retires alone (an old generation
after HUP, TTOU, a TERM sent to it by hand) the other workers share its listening sockets, so it stops
accepting at once and they take what waits in the kernel's queue. When the whole server stops, nobody
else will: every worker then empties the queue before it closes its sockets. The master creates the flag
before the first fork, so every worker reads the same byte.
"""

from __future__ import annotations

import mmap


class StopFlag:
    """Set once by the master (graceful stop); read by the workers when their TERM arrives."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 1)  # anonymous and shared: inherited across fork()

    def set(self) -> None:
        """The server is stopping: workers empty the listen queue before closing."""
        self._memory[0] = 1

    def is_set(self) -> bool:
        """True once the master began a graceful stop of the whole server."""
        return self._memory[0] == 1
