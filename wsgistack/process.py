"""What every process owner shares (serve's arbiter, the proxy's master, the supervisor): dying with the
parent (PR_SET_PDEATHSIG), reaping exited children, and saying how a child ended.

Imports nothing of wsgistack, so every layer may use it.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

try:
    # resolved once at import, so a child between fork and exec makes one C call: no import, no lock
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None  # not Linux: the owners' own stop paths still apply


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `signum` to this process when its parent dies (Linux; a no-op elsewhere).

    Safe in a `preexec_fn`: one C call through a function resolved at import.
    """
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def become_subreaper() -> bool:
    """Adopt the orphans of our descendants (Linux): a process whose parent exits becomes our child, which we
    reap, instead of init's. False where the kernel does not offer it."""
    return _prctl is not None and _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def reap_children() -> Iterator[tuple[int, int]]:
    """(pid, waitpid status) of every child that has exited, without blocking; ends when none is left to
    collect now (or no child exists at all)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if pid == 0:
            return
        yield pid, status


def exit_signal(status: int) -> int | None:
    """The signal that killed the child, or None if it exited by itself."""
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None


def exit_code(status: int) -> int | None:
    """The child's exit code, or None if a signal killed it."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else None


def signal_name(signum: int) -> str:
    """'SIGKILL'; 'signal 40' for a number without a name (real-time signals)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(status: int) -> str:
    """How a child ended, in supervisord's words: 'exit status 1' or 'terminated by SIGKILL'."""
    signum = exit_signal(status)
    if signum is not None:
        return f"terminated by {signal_name(signum)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def describe_exit_verb(status: int) -> str:
    """The same as a sentence's verb, as serve's arbiter logs it ("worker 12 killed by SIGKILL"):
    'exited with code 1' or 'killed by SIGKILL'."""
    signum = exit_signal(status)
    if signum is not None:
        return f"killed by {signal_name(signum)}"
    return f"exited with code {os.WEXITSTATUS(status)}"


def daemonize() -> None:
    """Detach: fork twice, new session, standard streams to /dev/null; the caller continues in the daemon
    (`wsgistack serve -D` and `wsgistack supervise --daemon`)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
