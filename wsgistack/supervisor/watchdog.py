"""The watchdog: a small forked helper that outlives a SIGKILLed supervisor just long enough to kill what its
programs left behind.

The programs themselves die with the supervisor (PR_SET_PDEATHSIG), but nothing signals their own children:
a shell's `cmd &` child or a double-forked daemon would run on under init. The watchdog holds the read end
of a pipe whose only write end is the supervisor's; the kernel closes it however the supervisor ends, so an
end of file means the supervisor is gone. Unless the supervisor said goodbye first (a clean shutdown, which
kills leftovers itself), the watchdog then kills every process of the programs' sessions and every process
carrying the supervisor's mark (`supervisor/leftovers.py`), and exits.

Through the pipe the supervisor also tells it which sessions are alive ("+pid", "-pid"), so it never kills a
session that ended and whose id a stranger may have taken since.
"""

from __future__ import annotations

import logging
import os
import signal

from wsgistack.observe.errorlog import reopen_error_log
from wsgistack.supervisor import leftovers

log = logging.getLogger("wsgistack.supervisor")

GOODBYE = b"exit"


class Watchdog:
    """The supervisor's handle on its watchdog process. Fork it before any thread is started."""

    def __init__(self, mark: str):
        read_end, self._fd = os.pipe()  # both close-on-exec: no program inherits the write end
        supervisor = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.close(self._fd)
                _watch(read_end, mark, supervisor)
            finally:
                os._exit(0)
        os.close(read_end)

    def session_started(self, sid: int) -> None:
        """A program started; it leads session `sid`."""
        self._tell(b"+%d" % sid)

    def session_ended(self, sid: int) -> None:
        """The program leading session `sid` has exited (and its leftovers were dealt with)."""
        self._tell(b"-%d" % sid)

    def dismiss(self) -> None:
        """A clean shutdown: the watchdog exits without killing anything."""
        self._tell(GOODBYE)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _tell(self, message: bytes) -> None:
        if self._fd < 0:
            return
        try:
            os.write(self._fd, message + b"\n")
        except OSError as exc:  # the watchdog is gone (killed by hand): the programs still die with us
            log.warning("the watchdog (pid %s) is gone (%s): a SIGKILL of the supervisor would leave its "
                        "programs' own children running", self.pid, exc.strerror)
            os.close(self._fd)
            self._fd = -1


def _watch(fd: int, mark: str, supervisor: int) -> None:
    """The watchdog's life: follow the sessions until the pipe ends; then kill what is left, unless dismissed."""
    os.setsid()  # signals to the supervisor's process group (a terminal's ^C, kill -- -PGID) are not for us
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)
    sessions: set[int] = set()
    pending = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not data:
            break
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            if line == GOODBYE:
                return
            if line[:1] == b"+":
                sessions.add(int(line[1:]))
            elif line[:1] == b"-":
                sessions.discard(int(line[1:]))
    killed = leftovers.kill(mark, sessions)
    if killed:
        reopen_error_log()  # the file we inherited may have been rotated away since (SIGUSR2 reopened theirs)
        log.warning("watchdog: the supervisor (pid %s) died; killed %d process(es) its programs left: %s",
                    supervisor, len(killed), " ".join(map(str, sorted(killed))))
