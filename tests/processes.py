"""What the tests ask /proc about processes, and the logs they read (shared by every layer's tests)."""

from __future__ import annotations

from pathlib import Path


def children_of(pid: int) -> set[int]:
    """The live child processes of `pid`."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(part) for part in text.split()}


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class LogFiles:
    """The error log and access log of a process under test (`error_log`, `access_log` set by the subclass)."""

    error_log: Path
    access_log: Path

    def log(self) -> str:
        """The error log so far."""
        try:
            return self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def access_lines(self) -> list[str]:
        """The access log's lines so far."""
        try:
            return self.access_log.read_text().splitlines()
        except FileNotFoundError:
            return []
