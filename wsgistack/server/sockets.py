"""Listening sockets: parse bind addresses, bind them in the master, clean unix socket files up."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import struct
import termios

from wsgistack.config.addresses import Address, parse_address
from wsgistack.config.errors import ConfigError


class Listener:
    """One bound, listening socket, and how to describe and clean it up."""

    def __init__(self, address: Address, sock: socket.socket):
        self.address = address
        self.sock = sock

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
        """Close the socket; the master also removes its unix socket file."""
        path = self.sock.getsockname() if self.unix else None
        self.sock.close()
        if unlink and path and isinstance(path, str):
            try:
                os.unlink(path)
            except OSError:
                pass


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
    return Listener(address, sock)


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
