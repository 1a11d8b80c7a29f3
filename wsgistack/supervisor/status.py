"""A process's status record in words, as supervisorctl prints it: `ctl status` lines and XML-RPC descriptions."""

from __future__ import annotations

import time
from typing import Any


def _uptime(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def describe(record: dict[str, Any]) -> str:
    """What follows the state: `pid 42, uptime 0:01:05`, the spawn error, when it stopped, or `Not started`."""
    state = record["statename"]
    if state == "RUNNING":
        return f"pid {record['pid']}, uptime {_uptime(record['uptime'])}"
    if state in ("FATAL", "BACKOFF") and record["spawnerr"]:
        return record["spawnerr"]
    if record["stop"]:
        return time.strftime("%b %d %I:%M %p", time.localtime(record["stop"]))
    return "Not started"


def format_status(record: dict[str, Any]) -> str:
    """One line as supervisorctl prints it: name, state, description."""
    name = record["name"] if record["group"] == record["name"] else f"{record['group']}:{record['name']}"
    return f"{name:<33}{record['statename']:<10}{describe(record)}"
