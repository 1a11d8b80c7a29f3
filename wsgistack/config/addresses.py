"""Bind addresses as users write them: HOST:PORT, [IPv6]:PORT, unix:PATH, fd://N.

Parsed while the settings load, so --check-config and a typo in the file are caught before anything binds.
"""

from __future__ import annotations

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
    """HOST:PORT, [IPv6]:PORT, :PORT, PORT, http://HOST[:PORT][/], unix:PATH or fd://N."""
    raw = text.strip()
    if raw.startswith("unix:"):
        path = raw[5:]
        path = path.removeprefix("//")
        if not path:
            raise ConfigError(f"--bind {text!r}: unix: needs a path")
        return Address("unix", path=path)
    if raw.startswith("fd://"):
        try:
            return Address("fd", fd=int(raw[5:]))
        except ValueError:
            raise ConfigError(f"--bind {text!r}: fd:// needs a descriptor number") from None
    scheme, sep, rest = raw.partition("://")
    if sep:
        # a URL as gunicorn's bind and nginx's proxy_pass are often written: http://HOST:PORT[/]
        if scheme.lower() not in ("http", "tcp"):
            raise ConfigError(f"--bind {text!r}: {scheme}:// is not supported here "
                              f"(write HOST:PORT, http://HOST:PORT, unix:PATH or fd://N)")
        rest = rest.removesuffix("/")
        if "/" in rest or "?" in rest or "#" in rest:
            raise ConfigError(f"--bind {text!r}: an address has no path (write http://HOST:PORT)")
        if ":" not in rest.rpartition("]")[2]:
            rest += ":80" if scheme.lower() == "http" else ""  # http's own port, as in any URL
        raw = rest
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
    if not host or any(char in host for char in "/?#@ \t"):
        raise ConfigError(f"--bind {text!r}: {host!r} is not a host name or address")
    try:
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--bind {text!r}: {port!r} is not a port number") from None
    return Address("tcp", host=host, port=number)
