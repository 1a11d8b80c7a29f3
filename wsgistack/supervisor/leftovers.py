"""What programs leave behind: the processes they started that outlive them, found and killed (Linux).

A program's own children die with it only if it takes them along. A shell's `cmd &` child stays in the
program's session; a double-forked daemon leaves the session (setsid) and its parent. Two marks find them:

- the session: every program leads a session of its own (its pid is the session id), and everything it
  starts stays in it unless it calls setsid;
- the environment: every program gets WSGISTACK_SUPERVISOR=<a token of this supervisor run> besides
  SUPERVISOR_GROUP_NAME/SUPERVISOR_PROCESS_NAME, and every process it starts inherits them, daemons
  included, unless it clears its environment (or overwrites it in place, as setproctitle does).

Found by either mark, a process is one of ours. The search runs when a program stops and when the supervisor
shuts down: then it walks only our own descendants, since as a child subreaper we adopt every orphan of our
programs. The watchdog, when the supervisor was killed, reads all of /proc once per pass (~80 µs a process).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from collections.abc import Collection

from wsgistack import process

log = logging.getLogger("wsgistack.supervisor")

MARK = "WSGISTACK_SUPERVISOR"
_subreaper = False  # set once we adopt orphans: our descendants are then all there is to search


def new_mark() -> str:
    """A token no other supervisor run has: our pid and 64 random bits."""
    return f"{os.getpid()}-{secrets.token_hex(8)}"


def become_subreaper() -> bool:
    """Adopt our programs' orphans (Linux): a daemon whose parent exits becomes our child, which we reap,
    instead of init's. False where the kernel does not offer it."""
    global _subreaper
    _subreaper = process.become_subreaper()
    return _subreaper


def _descendants(root: int) -> list[int]:
    """Every process below `root`, from the kernel's per-thread child lists."""
    found: list[int] = []
    parents = [root]
    while parents:
        parent = parents.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", "rb") as file:
                    children = [int(pid) for pid in file.read().split()]
            except OSError:
                continue
            found += children
            parents += children
    return found


def _all() -> list[int]:
    try:
        return [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return []


def _session(pid: int) -> int | None:
    """The session id of a live process; None for a zombie or a process gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == b"Z" else int(fields[3])


def _environment(pid: int) -> set[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return set(file.read().split(b"\0"))
    except OSError:  # gone, or another user's process we may not read (then it is not one we started)
        return set()


def find(mark: str | None, sessions: Collection[int] = (), program: tuple[str, str] | None = None) -> set[int]:
    """Live processes in one of `sessions`, or carrying our `mark` (and, with `program` = (group, name),
    that program's names) in their environment."""
    wanted = {f"{MARK}={mark}".encode()} if mark else set()
    if wanted and program is not None:
        wanted |= {f"SUPERVISOR_GROUP_NAME={program[0]}".encode(), f"SUPERVISOR_PROCESS_NAME={program[1]}".encode()}
    me = os.getpid()
    found = set()
    for pid in _descendants(me) if _subreaper else _all():
        if pid == me:
            continue
        session = _session(pid)
        if session is None:
            continue
        if session in sessions or (wanted and wanted <= _environment(pid)):
            found.add(pid)
    return found


def kill(mark: str | None, sessions: Collection[int] = (), program: tuple[str, str] | None = None) -> set[int]:
    """SIGKILL what `find` finds, again until a pass finds nothing new (a process may fork while we scan);
    the pids killed."""
    killed: set[int] = set()
    for _ in range(5):
        found = find(mark, sessions, program) - killed
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        killed |= found
        time.sleep(0.005)  # let a process that was forking when killed show its child
    return killed
