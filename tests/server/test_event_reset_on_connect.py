"""A client that connects and resets at once, before the loop has made its connection, leaves the event
worker no descriptor and no traceback: uvloop then gives the transport no peer address."""

from __future__ import annotations

import os
import socket
import struct

import pytest
from polling import wait_for


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("protocol", ["http", "fastcgi"])
def test_clients_that_reset_right_after_connecting_leave_nothing_behind(start_server, protocol):
    server = start_server("behaviour_app:app", "-k", "event", "-w", "1", "--protocol", protocol)
    [worker] = server.wait_workers(1)
    baseline = _descriptors(worker)
    for _ in range(20):
        sock = server.connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # an RST, most likely before the worker's loop got to the accepted socket
    wait_for(lambda: _descriptors(worker) <= baseline, timeout=10,
             message=f"the worker's descriptors back to {baseline}")
    assert "Traceback" not in server.log()
