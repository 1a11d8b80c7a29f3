"""Process states as supervisord names and numbers them, and the transitions allowed between them.

The numbers are supervisord's, so the XML-RPC facade can report them to supervisorctl unchanged.
"""

from __future__ import annotations

import enum


class ProcessState(enum.IntEnum):
    """Where a supervised process is in its life."""

    STOPPED = 0
    STARTING = 10
    RUNNING = 20
    BACKOFF = 30
    STOPPING = 40
    EXITED = 100
    FATAL = 200
    UNKNOWN = 1000


S = ProcessState

TRANSITIONS: dict[ProcessState, frozenset[ProcessState]] = {
    S.STOPPED: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.RUNNING, S.BACKOFF, S.STOPPING, S.EXITED}),
    S.RUNNING: frozenset({S.STOPPING, S.EXITED}),
    S.BACKOFF: frozenset({S.STARTING, S.FATAL, S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED}),
    S.EXITED: frozenset({S.STARTING, S.STOPPED, S.FATAL}),  # FATAL: our restart rate limit (flapping)
    S.FATAL: frozenset({S.STARTING, S.STOPPED}),
    S.UNKNOWN: frozenset(ProcessState),
}

RUNNING_STATES = frozenset({S.RUNNING, S.STARTING, S.BACKOFF})  # "running" in supervisorctl's sense
STOPPED_STATES = frozenset({S.STOPPED, S.EXITED, S.FATAL, S.UNKNOWN})


class TransitionError(Exception):
    """A state change the table does not allow: a bug in the supervisor, never a user error."""


def check_transition(current: ProcessState, new: ProcessState) -> None:
    """Raise TransitionError unless `current` may become `new`."""
    if new not in TRANSITIONS[current]:
        raise TransitionError(f"{current.name} -> {new.name} is not a valid transition")
