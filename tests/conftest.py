"""Fixtures that run a real `wsgistack serve` in a subprocess on 127.0.0.1 (ephemeral ports, unix sockets).

Every wait polls with a deadline (polling.py); every started server is stopped (and killed if it will not
stop), even when the test fails. Helpers live in modules of their own (servers.py, polling.py,
processes.py): a test imports them by those names, never from `conftest`, which names two files here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import APPS, Server


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers with `start_server(app, *args, unix=False, env=None)`; all are stopped at the end."""
    servers: list[Server] = []

    def start(app: str, *args: str, unix: bool = False, env: dict[str, str] | None = None,
              cwd: Path = APPS, ready: bool = True) -> Server:
        folder = tmp_path / f"server{len(servers)}"
        folder.mkdir()
        server = Server(folder, app, list(args), env=env, cwd=cwd, unix=unix)
        servers.append(server)
        return server.wait_ready() if ready else server

    yield start
    for server in servers:
        server.stop()
