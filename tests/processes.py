"""What the tests ask /proc about processes (shared by tests/server and tests/supervisor)."""

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
