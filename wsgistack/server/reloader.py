"""Development autoreload: notice that a source file changed and restart the worker that loaded it."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable

POLL_INTERVAL = 1.0


def _module_files() -> set[str]:
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and os.path.isfile(path):
            files.add(path)
    return files


def _mtimes(paths: set[str]) -> dict[str, float]:
    stamps = {}
    for path in paths:
        try:
            stamps[path] = os.stat(path).st_mtime
        except OSError:
            stamps[path] = -1.0
    return stamps


class Reloader:
    """Polls the modification times of every loaded module's file (no extra dependency, works everywhere)."""

    def __init__(self, interval: float = POLL_INTERVAL):
        self.interval = interval

    def start(self, on_change: Callable[[str], None]) -> None:
        """Watch in a daemon thread; call on_change(path) once, at the first change."""
        stamps = _mtimes(_module_files())

        def watch() -> None:
            while True:
                time.sleep(self.interval)
                current = _mtimes(_module_files() | set(stamps))
                for path, stamp in current.items():
                    if stamps.get(path, stamp) != stamp:
                        on_change(path)
                        return
                stamps.update(current)

        threading.Thread(target=watch, name="wsgistack-reloader", daemon=True).start()

    @staticmethod
    def snapshot(extra: str = "") -> dict[str, float]:
        """The files to watch after a failed import (loaded modules, and files named in the traceback
        `extra`) with their modification times now: taken before the failure is reported, so a fix written
        as soon as the report is seen still counts as a change."""
        paths = _module_files() | {p for p in re.findall(r'File "([^"]+)"', extra) if os.path.isfile(p)}
        return _mtimes(paths)

    def wait_for_change(self, stamps: dict[str, float]) -> str:
        """Block until one of the files of a `snapshot` changes; returns its path."""
        paths = set(stamps)
        while True:
            time.sleep(self.interval)
            for path, stamp in _mtimes(paths).items():
                if stamps[path] != stamp:
                    return path
