"""Listening sockets: parse bind addresses, bind them in the master, clean unix socket files up."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import stat
import struct
import sys
import termios
from collections.abc import Iterator
from typing import Any

from wsgistack.config.addresses import Address, parse_address
from wsgistack.config.errors import ConfigError


class Listener:
    """One bound, listening socket, and how to describe it, shut it to new clients and clean it up.

    `inherited` sockets (fd://N, systemd's) belong to whoever passed them: their path is never removed and
    no filter is put on them (systemd keeps its own copy and hands it to the next start, queue and all).
    """

    def __init__(self, address: Address, sock: socket.socket, inherited: bool = False):
        self.address = address
        self.sock = sock
        self.inherited = inherited
        self.path: str | None = None  # the unix socket file we made, and its (st_dev, st_ino) right after bind
        self.identity: tuple[int, int] | None = None
        if self.unix and not inherited:
            name = sock.getsockname()
            if isinstance(name, str) and name:
                self.path = name
                info = os.stat(name)
                self.identity = (info.st_dev, info.st_ino)

    @property
    def unix(self) -> bool:
        """True for a unix domain socket."""
        return self.sock.family == socket.AF_UNIX

    def name(self) -> str:
        """What the log says we listen at, with the real port when 0 was asked for."""
        if self.unix:
            return f"unix:{self.sock.getsockname()}"
        host, port = self.sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def close(self, unlink: bool) -> None:
        """Close the socket; the master also removes its unix socket file (if it is still ours)."""
        self.sock.close()
        if unlink:
            self.unlink()

    def unlink(self) -> None:
        """Remove our unix socket file, so no new client can connect, unless another socket took the path
        since: a new generation in a deploy may have renamed its own socket over it, and must keep it."""
        if self.path is None:
            return
        path, self.path = self.path, None
        try:
            info = os.stat(path)
            if (info.st_dev, info.st_ino) == self.identity:
                os.unlink(path)
        except OSError:
            pass

    def shut(self) -> str:
        """Let no new client in while the connections queued in the kernel stay there to be accepted (the
        first step of a graceful stop; see refuse_new_connections for TCP). Says what was done."""
        if self.inherited:
            return "left as passed in"
        if self.unix:
            self.unlink()
            return "socket file removed"
        return "new connections dropped" if refuse_new_connections(self.sock) else "still open to new clients"


# classic BPF over a TCP segment (a socket filter sees it from its TCP header on): drop a segment whose
# SYN is set without ACK, that is a client opening a connection; keep every other one
_DROP_SYN = (
    (0x30, 0, 0, 13),          # ldb [13]      the flags byte
    (0x54, 0, 0, 0x12),        # and #0x12     SYN and ACK
    (0x15, 0, 1, 0x02),        # jeq #0x02     SYN alone?
    (0x06, 0, 0, 0),           # ret #0        yes: drop it
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1       no: keep it
)
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)


def refuse_new_connections(sock: socket.socket) -> bool:
    """Linux: have a listening TCP socket drop new clients' SYNs, while the handshakes under way finish and
    the connections already queued stay queued; False elsewhere (and for non-TCP sockets).

    Nothing else does this on Linux: close() and shutdown(SHUT_RD) on a listening socket both reset every
    queued connection (shutdown acts on the socket, so for every process sharing it) and refuse new ones;
    SHUT_WR does nothing; listen(0) still admits one connection each time the queue empties. A dropped SYN
    is retried by the client, which gets "connection refused" once the socket is closed: never a reset
    after its request was sent.
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not sys.platform.startswith("linux"):
        return False
    code = b"".join(struct.pack("HBBI", *insn) for insn in _DROP_SYN)
    program = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(_DROP_SYN), ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program
    except OSError:
        return False
    return True


def accept_backlog(sock: socket.socket) -> Iterator[tuple[socket.socket, Any]]:
    """Accept every connection waiting in the listen queue, until the kernel says it is empty (EAGAIN).

    The last step of a graceful stop once no new client can arrive: what waits in the queue was sent a
    request already, and closing the listener with it queued would reset it.
    """
    sock.setblocking(False)
    while True:
        try:
            yield sock.accept()
        except (InterruptedError, ConnectionAbortedError):
            continue  # that client gave up before we took it: the next one
        except BlockingIOError:
            return
        except OSError:
            return  # closed under us: nothing more can be accepted


def _unlink_stale(path: str) -> None:
    """Remove a leftover socket file, unless a live server still answers on it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"--bind unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a crashed server's leftover
    else:
        raise ConfigError(f"--bind unix:{path}: another server is listening there")
    finally:
        probe.close()


def bind(address: Address, backlog: int) -> Listener:
    """Create, bind and listen; errors are ConfigErrors with the address in them."""
    try:
        if address.kind == "fd":
            sock = socket.socket(fileno=address.fd)
            sock.setblocking(True)
        elif address.kind == "unix":
            _unlink_stale(address.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(address.path)
        else:
            infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
            family, kind, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind(sockaddr)
        sock.listen(backlog)
    except ConfigError:
        raise
    except socket.gaierror as exc:
        raise ConfigError(f"--bind {address}: cannot resolve {address.host!r}: {exc.strerror}") from None
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ConfigError(f"--bind {address}: {reason}") from None
    sock.set_inheritable(False)
    return Listener(address, sock, inherited=address.kind == "fd")


def bind_all(texts: tuple[str, ...], backlog: int) -> list[Listener]:
    """Bind every address; on any failure close what was bound and raise."""
    listeners: list[Listener] = []
    try:
        for text in texts:
            listeners.append(bind(parse_address(text), backlog))
    except BaseException:
        for listener in listeners:
            listener.close(unlink=listener.address.kind == "unix")
        raise
    return listeners


def inherited_listeners(fds: list[tuple[int, str]]) -> list[Listener]:
    """Listeners over the sockets systemd passed (socket activation), as they are: their backlog and
    options are the unit's (Backlog=, ...), so listen() is not called again."""
    listeners: list[Listener] = []
    for fd, name in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise ConfigError(f"LISTEN_FDS: descriptor {fd} ({name}): {exc.strerror or exc}") from None
        if sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise ConfigError(f"LISTEN_FDS: descriptor {fd} ({name}) is not a stream socket "
                              f"(use ListenStream= in the .socket unit)")
        sock.setblocking(True)
        sock.set_inheritable(False)
        listeners.append(Listener(Address("fd", fd=fd), sock, inherited=True))
    return listeners


def defer_accept(sock: socket.socket, seconds: float) -> None:
    """Have the kernel hand a TCP connection to accept() only once its first bytes arrived (Linux).

    A client that connects and sends nothing then costs a worker no slot and no thread; after about
    `seconds` the kernel stops waiting for it. Elsewhere (and for unix sockets) nothing changes.
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not hasattr(socket, "TCP_DEFER_ACCEPT"):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, max(1, int(seconds)))
    except OSError:
        pass


def unread_bytes(fd: int) -> int:
    """Bytes the kernel holds for a connected socket that were not read yet (0 when unknown).

    A connection is closed as idle only when this is 0: closing a socket with unread bytes makes the kernel
    answer with a reset, and a client whose request was already on its way would see a failure instead of
    an answer or a clean close.
    """
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0
