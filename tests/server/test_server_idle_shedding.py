"""At --worker-connections, idle connections (keep-alive, or open without a byte sent) make room for new
clients in the tornado and gevent classes; connections in a request are never shed."""

from __future__ import annotations

import pytest
from polling import wait_for
from rawhttp import Reader, closed_by_peer, get


@pytest.mark.parametrize("worker_class", ["tornado", "gevent"])
def test_idle_connections_make_room_for_a_new_client(start_server, worker_class):
    server = start_server("behaviour_app:app", "-w", "1", "-k", worker_class, "--worker-connections", "3",
                          "--threads", "4")
    idle = [server.connect() for _ in range(3)]  # connected, not a byte sent
    try:
        with server.connect() as newcomer:
            newcomer.sendall(get(extra="Connection: close\r\n"))
            assert Reader(newcomer).one().status == 200
        assert closed_by_peer(idle[0]), "the oldest idle connection made room"
        busy = [server.connect() for _ in range(3)]
        for sock in busy:
            sock.sendall(get("/sleep?s=1.5"))
        wait_for(lambda: server.log().count("sleep started") == 3, message="three requests in the app")
        with server.connect() as refused:
            assert closed_by_peer(refused), "every connection is in a request: the new one is refused"
        assert [Reader(sock).one().body for sock in busy] == [b"slept\n"] * 3
        for sock in busy:
            sock.close()
    finally:
        for sock in idle:
            sock.close()
