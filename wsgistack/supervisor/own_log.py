"""The supervisor's own log ([supervisord] logfile=): stderr or a file rotated at logfile_maxbytes, as supervisord's.

The handler is the error log's (so SIGUSR2 reopens it like any other); it rotates between records, so no line is
split across two files, into `logfile_backups` files named as the programs' logs are (.1 the newest).
"""

from __future__ import annotations

import logging
import os
import stat

from wsgistack.observe.errorlog import ReopenableHandler, setup_error_log
from wsgistack.supervisor.logs import rotate
from wsgistack.supervisor.settings import SupervisorSettings


class RotatingLog(ReopenableHandler):
    """Appends records to a file; a record that would take it past `maxbytes` starts the next file."""

    def __init__(self, target: str, maxbytes: int, backups: int):
        self.maxbytes = maxbytes
        self.backups = backups
        super().__init__(target)

    def emit(self, record: logging.LogRecord) -> None:
        """Rotate first when this record does not fit, then write it."""
        try:
            info = os.fstat(self.stream.fileno())  # the file's size, so the watchdog's lines count too
            size = info.st_size
            if size and stat.S_ISREG(info.st_mode):  # /dev/stdout and the like are never rotated
                length = len((self.format(record) + self.terminator).encode("utf-8"))
                if size + length > self.maxbytes:
                    self._rotate()
        except OSError:
            self.handleError(record)
            return
        super().emit(record)

    def _rotate(self) -> None:
        self.stream.close()
        rotate(self.target, self.backups)
        self.stream = self._open()


def setup_supervisor_log(settings: SupervisorSettings) -> None:
    """Send the 'wsgistack' loggers to `logfile` (stderr without one), rotated past `logfile_maxbytes` (0: never)."""
    handler = setup_error_log(settings.logfile or "-", settings.loglevel)
    if not settings.logfile or settings.logfile_maxbytes <= 0:
        return
    rotating = RotatingLog(settings.logfile, settings.logfile_maxbytes, settings.logfile_backups)
    rotating.setFormatter(handler.formatter)
    root = logging.getLogger("wsgistack")
    root.removeHandler(handler)
    handler.close()
    root.addHandler(rotating)


def clear_supervisor_log(settings: SupervisorSettings) -> bool:
    """Empty the supervisor's log file (supervisorctl's clearLog); False when there is no file to empty."""
    path = settings.logfile
    try:
        if not path or not stat.S_ISREG(os.stat(path).st_mode):
            return False
        os.truncate(path, 0)  # the handler appends, so its next record starts the emptied file
    except OSError:
        return False
    return True
