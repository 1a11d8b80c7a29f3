"""A process's status record in words, as supervisorctl prints it: `ctl status` lines and XML-RPC descriptions."""

from __future__ import annotations

import datetime
import time
from typing import Any


def _uptime(seconds: int) -> str:
    # supervisord prints a timedelta: 0:01:05, and "2 days, 3:04:05" past a day
    return str(datetime.timedelta(seconds=max(seconds, 0)))


def describe(record: dict[str, Any]) -> str:
    """What follows the state, by supervisord's rules: `pid 42, uptime 0:01:05` when RUNNING; the spawn error
    when FATAL or BACKOFF; when it stopped (STOPPED, EXITED), or `Not started` if it never started; nothing
    while STARTING or STOPPING."""
    state = record["statename"]
    if state == "RUNNING":
        note = f", {record['note']}" if record.get("note") else ""
        return f"pid {record['pid']}, uptime {_uptime(record['uptime'])}{note}"
    if state in ("FATAL", "BACKOFF"):
        if record["spawnerr"]:
            return record["spawnerr"]
        # a BACKOFF without a spawn error is an exit before startsecs; supervisord's words for it
        return "Exited too quickly (process log may have details)" if state == "BACKOFF" else \
            f'unknown error (try "tail {record["name"]}")'
    if state in ("STOPPED", "EXITED"):
        if not record["start"]:
            return "Not started"
        return time.strftime("%b %d %I:%M %p", time.localtime(record["stop"]))
    return ""


def format_status(record: dict[str, Any]) -> str:
    """One line as supervisorctl prints it: name, state, description."""
    name = record["name"] if record["group"] == record["name"] else f"{record['group']}:{record['name']}"
    return f"{name:<33}{record['statename']:<10}{describe(record)}".rstrip()
