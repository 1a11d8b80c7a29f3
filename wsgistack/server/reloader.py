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

    def wait_for_change(self, extra: str = "") -> str:
        """Block until a loaded module's file, or a file named in `extra` (a traceback), changes."""
        paths = _module_files() | {p for p in re.findall(r'File "([^"]+)"', extra) if os.path.isfile(p)}
        stamps = _mtimes(paths)
        while True:
            time.sleep(self.interval)
            for path, stamp in _mtimes(paths).items():
                if stamps[path] != stamp:
                    return path
