"""The [metrics] table of wsgistack.toml: where the supervisor serves the whole stack's /metrics.

    [metrics]
    listen = "127.0.0.1:9100"   # or "unix:/run/app/metrics.sock"

Off unless `listen` is set. Under `wsgistack up` the app servers and the proxy then report on private unix
sockets of the run folder, and the supervisor's endpoint gathers them with its own programs' numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from wsgistack.config.addresses import parse_address
from wsgistack.config.errors import ConfigError

KEYS = frozenset({"listen"})


def read_metrics_listen(table: Any, path: str, lines: Mapping[str, int] | None = None) -> str | None:
    """The [metrics] table's listen address (None when absent); a ConfigError names the file, line and key."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'metrics' must be a table ([metrics] listen = \"HOST:PORT\")")
    lines = lines or {}
    for key in table:
        if key not in KEYS:
            raise ConfigError(f"{path}:{lines.get(key, '?')}: [metrics] {key}: unknown key (known: listen)")
    listen = table.get("listen")
    if listen is None:
        return None
    where = f"{path}:{lines.get('listen', '?')}: [metrics] listen"
    if not isinstance(listen, str) or not listen.strip():
        raise ConfigError(f"{where}: give HOST:PORT or unix:PATH")
    try:
        address = parse_address(listen)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {str(exc).split(': ', 1)[-1]}") from None
    if address.kind == "fd":
        raise ConfigError(f"{where}: give HOST:PORT or unix:PATH")
    if address.kind == "unix" and not os.path.isabs(address.path):
        # relative to the file's folder, as every other path of wsgistack.toml: `top -c` finds the same socket
        return f"unix:{os.path.join(os.path.dirname(os.path.abspath(path)), address.path)}"
    return listen.strip()
