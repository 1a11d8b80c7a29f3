"""Listening sockets: parse bind addresses, bind them in the master, clean unix socket files up."""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass

from wsgistack.config.errors import ConfigError


@dataclass(frozen=True)
class Address:
    """A parsed bind address: ('tcp', host, port), ('unix', path) or ('fd', number)."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_address(text: str) -> Address:
    """HOST:PORT, [IPv6]:PORT, :PORT, PORT, unix:PATH or fd://N."""
    raw = text.strip()
    if raw.startswith("unix:"):
        path = raw[5:]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ConfigError(f"--bind {text!r}: unix: needs a path")
        return Address("unix", path=path)
    if raw.startswith("fd://"):
        try:
            return Address("fd", fd=int(raw[5:]))
        except ValueError:
            raise ConfigError(f"--bind {text!r}: fd:// needs a descriptor number") from None
    if raw.startswith("["):
        host, sep, port = raw[1:].partition("]:")
        if not sep:
            raise ConfigError(f"--bind {text!r}: expected [IPv6]:PORT")
    elif raw.isdigit():
        host, port = "0.0.0.0", raw
    else:
        host, sep, port = raw.rpartition(":")
        if not sep:
            host, port = raw, "8000"
        host = host or "0.0.0.0"
    try:
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--bind {text!r}: {port!r} is not a port number") from None
    return Address("tcp", host=host, port=number)


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
