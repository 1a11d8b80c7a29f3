"""The [dashboard] table of wsgistack.toml: where the dashboard listens and who may use it.

Off unless `listen` is set. A username and password are required unless `auth = false` says otherwise, and
`auth = false` is taken only on a loopback address or a unix socket: a dashboard starts and stops every
program, so one open to the network without credentials is refused at load, naming the option.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wsgistack.config import values
from wsgistack.config.addresses import Address, parse_address
from wsgistack.config.errors import ConfigError

KEYS = frozenset({"listen", "username", "password", "auth", "session_hours"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclass(frozen=True)
class DashboardSettings:
    """The dashboard's listener and credentials; `listen` None means no dashboard."""

    listen: str | None = None  # "127.0.0.1:9002", "[::1]:9002" or "unix:/path"
    username: str | None = None
    password: str | None = None
    auth: bool = True  # false: no login (loopback and unix sockets only)
    session_hours: float = 8.0  # a login lasts this long, then the login form again

    @property
    def address(self) -> Address | None:
        """The parsed listen address (checked at load), or None when off."""
        return parse_address(self.listen) if self.listen else None

    @property
    def credentials(self) -> tuple[str, str] | None:
        """(username, password) when a login is asked for; None with auth = false."""
        return (self.username or "", self.password or "") if self.auth else None


def is_loopback(address: Address) -> bool:
    """A unix socket, or a TCP address only this machine can reach."""
    if address.kind == "unix":
        return True
    if address.host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address.host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve to anything


def read_dashboard(table: Any, path: str, lines: Mapping[str, int] | None = None) -> DashboardSettings:
    """DashboardSettings from the [dashboard] table (None: absent); a ConfigError names the file, line and key."""
    if table is None:
        return DashboardSettings()
    lines = lines or {}

    def error(key: str | None, reason: str) -> ConfigError:
        line = lines.get(key or "") or lines.get("")
        return ConfigError(f"{path}{f':{line}' if line else ''}: [dashboard]{f' {key}' if key else ''}: {reason}")

    if not isinstance(table, dict):
        raise error(None, "must be a table ([dashboard])")
    table = {key.replace("-", "_"): value for key, value in table.items()}
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise error(unknown[0], f"unknown option (known: {', '.join(sorted(KEYS))})")

    def get(key: str, parse, default=None):
        if key not in table:
            return default
        try:
            return parse(table[key])
        except (ValueError, TypeError) as exc:
            raise error(key, str(exc)) from None

    settings = DashboardSettings(
        listen=get("listen", values.text), username=get("username", values.text),
        password=get("password", values.text), auth=get("auth", values.boolean, True),
        session_hours=get("session_hours", _hours, 8.0),
    )
    if settings.listen is None:
        if settings.username or settings.password or "auth" in table:
            raise error("listen", "missing: the dashboard is on only with a listen address (\"127.0.0.1:9002\")")
        return settings
    try:
        address = parse_address(settings.listen)
    except ConfigError as exc:
        raise error("listen", str(exc).replace("--bind ", "")) from None
    if address.kind not in ("tcp", "unix"):
        raise error("listen", "the dashboard listens on HOST:PORT or unix:PATH")
    if settings.session_hours <= 0:
        raise error("session_hours", "must be more than 0")
    if settings.auth:
        if settings.username is None or settings.password is None:
            missing = "username" if settings.username is None else "password"
            raise error(missing, "missing: the dashboard asks for a username and password (or say auth = false, "
                                 "on a loopback address only)")
    elif not is_loopback(address):
        raise error("auth", f"false is refused on {settings.listen}: anyone who can reach it could stop every "
                            f"program; set username and password, or listen on 127.0.0.1 or a unix socket")
    return settings


def _hours(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r} is not a number of hours")
    return float(value)
