"""The server's own log (errors, lifecycle, tracebacks): stderr or a file, reopened on SIGUSR1."""

from __future__ import annotations

import logging
import sys

from wsgistack.config.errors import ConfigError

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"


class ReopenableHandler(logging.StreamHandler):
    """Writes to stderr or appends to a file that can be reopened after log rotation."""

    def __init__(self, target: str):
        self.target = target
        super().__init__(self._open())

    def _open(self):
        if self.target == "-":
            return sys.stderr
        try:
            return open(self.target, "a", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise ConfigError(f"--error-log: cannot open {self.target}: {exc.strerror}") from None

    def reopen(self) -> None:
        """Close and open the file again (nothing to do for stderr)."""
        if self.target == "-":
            return
        self.acquire()
        try:
            old = self.stream
            self.stream = self._open()
            old.close()
        finally:
            self.release()

    def fileno(self) -> int:
        """The descriptor the handler writes to (for faulthandler's stack dumps)."""
        return self.stream.fileno()


def setup_error_log(target: str, level: str) -> ReopenableHandler:
    """Send the 'wsgistack' loggers to `target` at `level`; returns the handler for reopen()."""
    handler = ReopenableHandler(target)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    root = logging.getLogger("wsgistack")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    return handler


def reopen_error_log() -> None:
    """Reopen every reopenable handler of the 'wsgistack' loggers."""
    for handler in logging.getLogger("wsgistack").handlers:
        if isinstance(handler, ReopenableHandler):
            handler.reopen()


def error_log_fd() -> int:
    """The descriptor of the error log, for writing from signal context (faulthandler)."""
    for handler in logging.getLogger("wsgistack").handlers:
        if isinstance(handler, ReopenableHandler):
            try:
                return handler.fileno()
            except (OSError, ValueError):
                break
    return 2


class ErrorStream:
    """wsgi.errors: what the app writes there lands in the error log's current file."""

    def _stream(self):
        for handler in logging.getLogger("wsgistack").handlers:
            if isinstance(handler, ReopenableHandler):
                return handler.stream
        return sys.stderr

    def write(self, text: str) -> None:
        """Write text as given."""
        self._stream().write(text)

    def writelines(self, lines) -> None:
        """Write each line as given."""
        self._stream().writelines(lines)

    def flush(self) -> None:
        """Flush the underlying file."""
        self._stream().flush()
