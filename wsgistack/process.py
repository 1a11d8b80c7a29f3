"""What every process owner shares (serve's arbiter, the proxy's master, the supervisor): dying with the
parent (PR_SET_PDEATHSIG), reaping exited children, saying how a child ended, and speaking to systemd
(socket activation's LISTEN_FDS, Type=notify's NOTIFY_SOCKET).

Imports nothing of wsgistack, so every layer may use it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import time
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


# -- systemd: socket activation and readiness ----------------------------------------------------------

SD_LISTEN_FDS_START = 3  # systemd passes its sockets from descriptor 3 on


def listen_fds(unset_environment: bool = True) -> list[tuple[int, str]]:
    """The sockets systemd passed us (socket activation), as (descriptor, name) pairs; [] when none.

    They are ours only when LISTEN_PID is this process's pid (a child that inherited the variables must not
    take its parent's sockets). As sd_listen_fds(unset_environment=1) does, LISTEN_PID, LISTEN_FDS and
    LISTEN_FDNAMES are removed from the environment, so no child process sees them, and the descriptors are
    made close-on-exec. Names come from LISTEN_FDNAMES (FileDescriptorName=), "unknown" without it.
    """
    pid, count, names = (os.environ.get(key) for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"))
    if unset_environment:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(key, None)
    try:
        if pid is None or count is None or int(pid) != os.getpid():
            return []
        number = int(count)
    except ValueError:
        return []
    labels = names.split(":") if names else []
    fds = []
    for index in range(max(0, number)):
        fd = SD_LISTEN_FDS_START + index
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass  # not open: binding it says so, with the descriptor's number
        fds.append((fd, labels[index] if index < len(labels) and labels[index] else "unknown"))
    return fds


def notify(state: str, status: str | None = None) -> bool:
    """Tell systemd (Type=notify) about our state: "READY=1", "RELOADING=1", "STOPPING=1" (several at once
    one a line), with `status` as STATUS=, one line of what is going on. Sent as one datagram to
    $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace); False when not run by systemd or when the
    message could not be sent."""
    if status is not None:
        line = "STATUS=" + " ".join(status.split())
        state = f"{state}\n{line}" if state else line
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8", "replace"), address)
    except OSError:
        return False
    return True


def notify_reloading(status: str) -> bool:
    """RELOADING=1 with the CLOCK_MONOTONIC time in microseconds that Type=notify-reload requires, and a
    STATUS= line; READY=1 must follow once the reload is done (or has failed)."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}", status)
